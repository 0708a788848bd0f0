"""FunctionChat-Bench's data: one version folder of kakao/FunctionChat-Bench's `data/`, as items.

The repository's files are read as its `payload_creator.py` reads them, and every scored request
becomes one `ToolChatCase`: the messages and tools the model gets, the ground truth, the
`acceptable_arguments`, the turn type the judge rubric is chosen by, and an id that pairs runs:

* Dialog: one case per scored turn, `<version>/dialog/<serial_num>` (serial_num 1-200);
  messages = system prompt + the turn's `query` (earlier tool calls and tool results included);
* Singlecall: one case per query x tool set, `<version>/singlecall/<serial_num>/<tools_type>`;
  messages = system prompt + the query; always a `call` turn;
* CallDecision: one case per line, `<version>/calldecision/<category>/<serial_num>`
  (serial_num restarts in each category); its `input_messages` carry their own system prompt.

The system prompt is `system_prompt.txt` read and `.strip()`ped, as the repository's
`get_prompt_text` does. A line that does not parse, or a case whose ground-truth arguments are
not JSON, becomes a case with `error` set: it is scored 0 and recorded, and the run goes on.
The version decides the judge model and two scoring details (`VersionRules`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import ConfigError, DataUnavailableError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import shared_data_dir

DATASET_ID = "kakao/FunctionChat-Bench"
SHARED_FOLDER = "functionchat_bench"  # under KANANA_SHARED_DATA
FILES = {"dialog": "FunctionChat-Dialog.jsonl", "singlecall": "FunctionChat-Singlecall.jsonl",
         "calldecision": "FunctionChat-CallDecision.jsonl"}
RUBRICS = ("call", "completion", "relevance", "slot")
SYSTEM_PROMPT_FILE = "system_prompt.txt"
SUBSETS = tuple(FILES)


@dataclass(frozen=True)
class VersionRules:
    """What differs between the two data versions, read from the repository at each commit."""

    commit: str
    judge_model: str  # config/openai.cfg `api_version`
    judge_max_tokens: int  # config/openai.cfg `max_tokens`
    # v2.0.0's get_input_prompt always sets ground_truth["tool_calls"] (None for text turns).
    ground_truth_tool_calls_always: bool
    # v2.0.0's compare_arguments: a missing key passes only through acceptable_arguments;
    # 571abec's: a key whose gold value is not None must be present.
    arguments_rule: str
    # v2.0.0's convert_eval_key also reads '성공' (success) as pass.
    pass_words: tuple[str, ...]


VERSIONS: dict[str, VersionRules] = {
    "571abec": VersionRules("571abecdd473e08f11a44d47b14b74cbbe756791", "gpt-4-0125-preview",
                            4096, False, "571abec", ("패스", "패쓰", "통과", "합격")),
    "v2.0.0": VersionRules("cb32af3", "gpt-4.1-2025-04-14", 32768, True, "v2.0.0",
                           ("패스", "패쓰", "통과", "합격", "성공")),
}
DEFAULT_VERSION = "571abec"  # the last commit before v2.0.0: the Kanana 1.5 README predates it


@dataclass
class ToolChatCase:
    """One scored request: what the model sees, what is expected, and how it is judged."""

    item_id: str
    subset: str  # dialog | singlecall | calldecision
    subtask: str  # dialog:<type>, singlecall:<tools_type>, calldecision:<category>
    type_of_output: str  # call | completion | slot | relevance: the rubric
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    ground_truth: dict[str, Any]  # an assistant message, or {"name", "arguments"} (Singlecall)
    acceptable_arguments: str | None  # as the repository's RequestFormatter keeps it: JSON text
    serial_num: int | None = None
    error: str | None = None  # the line or its ground truth did not parse: scored 0, recorded
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FunctionChatData:
    """One version's cases, rubrics and where they came from."""

    version: str
    rules: VersionRules
    folder: Path
    cases: list[ToolChatCase]
    rubrics: dict[str, str]
    system_prompt: str
    fingerprint: str
    files: dict[str, str]  # file name -> sha256

    def by_subset(self) -> dict[str, list[ToolChatCase]]:
        out: dict[str, list[ToolChatCase]] = {name: [] for name in SUBSETS}
        for case in self.cases:
            out[case.subset].append(case)
        return out


def check_version(version: str) -> VersionRules:
    if version not in VERSIONS:
        raise ConfigError(f"FunctionChat-Bench version '{version}' is unknown (known: "
                          f"{', '.join(VERSIONS)})")
    return VERSIONS[version]


def find_folder(version: str, data_dir: Path | None) -> Path:
    """`DIR/kakao/FunctionChat-Bench/<version>` under --data-dir, else the shared data folder."""
    check_version(version)
    candidates = []
    if data_dir is not None:
        candidates += [data_dir / DATASET_ID / version, data_dir / SHARED_FOLDER / version]
    shared = shared_data_dir()
    if shared is not None:
        candidates.append(shared / SHARED_FOLDER / version)
    for folder in candidates:
        if (folder / FILES["dialog"]).is_file():
            return folder
    looked = ", ".join(str(c) for c in candidates) or "nowhere"
    raise DataUnavailableError(
        f"FunctionChat-Bench {version} data not found (looked in {looked}): pass --data-dir DIR "
        f"holding {DATASET_ID}/{version}/ or set KANANA_SHARED_DATA to the folder holding "
        f"{SHARED_FOLDER}/{version}/")


def _jsonl(path: Path) -> list[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, error) for every non-empty line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line), None))
        except ValueError as exc:
            rows.append((number, None, f"{path.name} line {number} does not parse: {exc}"))
    return rows


def _acceptable(value: Any) -> str | None:
    """As the repository's RequestFormatter: a dict becomes JSON text, a string stays."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _broken(version: str, subset: str, number: int, error: str) -> ToolChatCase:
    return ToolChatCase(item_id=f"{version}/{subset}/line{number}", subset=subset,
                        subtask=f"{subset}:unreadable", type_of_output="call", messages=[],
                        tools=[], ground_truth={}, acceptable_arguments=None, error=error)


def _check_arguments(case: ToolChatCase) -> ToolChatCase:
    """A call case whose gold arguments are not JSON is kept, marked, and scored 0."""
    if case.type_of_output != "call" or case.error:
        return case
    gold = case.ground_truth
    calls = gold.get("tool_calls") or [{"function": gold}]
    try:
        json.loads(calls[0]["function"]["arguments"])
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        case.error = f"ground-truth arguments are not valid JSON: {exc}"
    return case


def _dialog(version: str, rows: list, system: str) -> list[ToolChatCase]:
    cases = []
    for number, dialog, error in rows:
        if error is not None or not isinstance(dialog, dict):
            cases.append(_broken(version, "dialog", number, error or "not a JSON object"))
            continue
        try:
            for turn in dialog["turns"]:
                kind = turn["type_of_output"]
                cases.append(_check_arguments(ToolChatCase(
                    item_id=f"{version}/dialog/{turn['serial_num']}", subset="dialog",
                    subtask=f"dialog:{kind}", type_of_output=kind,
                    messages=[{"role": "system", "content": system}, *turn["query"]],
                    tools=dialog["tools"], ground_truth=turn["ground_truth"],
                    acceptable_arguments=_acceptable(turn["acceptable_arguments"]),
                    serial_num=int(turn["serial_num"]),
                    extra={"dialog_num": dialog.get("dialog_num"),
                           "turn_num": turn.get("turn_num")})))
        except (KeyError, TypeError, ValueError) as exc:
            cases.append(_broken(version, "dialog", number, f"dialog line {number}: missing or "
                                 f"bad field {exc!r}"))
    return cases


def _singlecall(version: str, rows: list, system: str) -> list[ToolChatCase]:
    cases = []
    for number, entry, error in rows:
        if error is not None or not isinstance(entry, dict):
            cases.append(_broken(version, "singlecall", number, error or "not a JSON object"))
            continue
        try:
            for index, query in enumerate(entry["query"]):
                truth_text = entry["ground_truth"][index]["content"]
                try:
                    truth, problem = json.loads(truth_text), None
                except ValueError as exc:
                    truth, problem = {}, f"ground truth does not parse: {exc}"
                for toolset in entry["tools"]:
                    cases.append(_check_arguments(ToolChatCase(
                        item_id=f"{version}/singlecall/{query['serial_num']}/{toolset['type']}",
                        subset="singlecall", subtask=f"singlecall:{toolset['type']}",
                        type_of_output="call",
                        messages=[{"role": "system", "content": system},
                                  {"role": "user", "content": query["content"]}],
                        tools=toolset["content"], ground_truth=truth,
                        acceptable_arguments=_acceptable(
                            entry["acceptable_arguments"][index]["content"]),
                        serial_num=int(query["serial_num"]), error=problem,
                        extra={"function_num": entry.get("function_num"),
                               "tools_type": toolset["type"]})))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            cases.append(_broken(version, "singlecall", number, f"singlecall line {number}: "
                                 f"missing or bad field {exc!r}"))
    return cases


def _calldecision(version: str, rows: list) -> list[ToolChatCase]:
    cases = []
    for number, entry, error in rows:
        if error is not None or not isinstance(entry, dict):
            cases.append(_broken(version, "calldecision", number, error or "not a JSON object"))
            continue
        try:
            category = entry["category"]
            cases.append(_check_arguments(ToolChatCase(
                item_id=f"{version}/calldecision/{category}/{entry['serial_num']}",
                subset="calldecision", subtask=f"calldecision:{category}",
                type_of_output=entry["type_of_output"], messages=entry["input_messages"],
                tools=entry["input_tools"], ground_truth=entry["ground_truth"],
                acceptable_arguments=_acceptable(entry["acceptable_arguments"]),
                serial_num=int(entry["serial_num"]), extra={"category": category})))
        except (KeyError, TypeError, ValueError) as exc:
            cases.append(_broken(version, "calldecision", number, f"calldecision line {number}: "
                                 f"missing or bad field {exc!r}"))
    return cases


def load_functionchat(version: str, data_dir: Path | None) -> FunctionChatData:
    """Every case of one version, in file order (Dialog, Singlecall, CallDecision)."""
    rules = check_version(version)
    folder = find_folder(version, data_dir)
    names = [*FILES.values(), *(f"rubric_{r}.txt" for r in RUBRICS), SYSTEM_PROMPT_FILE]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataUnavailableError(f"{folder} lacks {', '.join(missing)}: pass --data-dir or set "
                                   "KANANA_SHARED_DATA to a complete FunctionChat-Bench copy")
    files = {n: file_sha256(folder / n) for n in names}
    system = (folder / SYSTEM_PROMPT_FILE).read_text(encoding="utf-8").strip()
    rubrics = {r: (folder / f"rubric_{r}.txt").read_text(encoding="utf-8").strip()
               for r in RUBRICS}
    cases = (_dialog(version, _jsonl(folder / FILES["dialog"]), system)
             + _singlecall(version, _jsonl(folder / FILES["singlecall"]), system)
             + _calldecision(version, _jsonl(folder / FILES["calldecision"])))
    digest = hashlib.sha256(json.dumps([version, files], sort_keys=True).encode()).hexdigest()
    return FunctionChatData(version=version, rules=rules, folder=folder, cases=cases,
                            rubrics=rubrics, system_prompt=system,
                            fingerprint=f"sha256:{digest}", files=files)
