"""The tool-calling chat path of a run (`AnswerPath.TOOL_CHAT`): data, answers, exact match, judge.

`prepare` loads the data version a run asks for and plans `--limit` over its subtasks; `answer`
asks the run's engine every planned request (a local model through its chat template, with the
tools, `kanana_eval.engine.tool_chat`; a served model through chat completions with `tools`) and
reads the calls back into items; `judge` settles exact matches and asks the rubric judge for the
rest (`--no-judge`: exact matches only, the rest judged later by `kanana-eval judge RUN`).
Answers are stored on disk the moment they are made, keyed by the request, so a killed run resumes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlitedict import SqliteDict

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import EngineError, ResultsError
from kanana_eval.engine.build import EngineConfig
from kanana_eval.engine.tool_chat import (
    FALLBACK_INSTRUCTION,
    SYSTEM_PROMPT,
    ParsedReply,
    ServedToolChat,
    parse_reply,
    render,
    template_family,
)
from kanana_eval.results.records import DataRecord, Item
from kanana_eval.scoring.judge.client import JudgeConfig
from kanana_eval.scoring.tool_calls import judge as tool_judge
from kanana_eval.scoring.tool_calls.scorer import UNJUDGED
from kanana_eval.tasks.functionchatbench.loader import (
    DATASET_ID,
    DEFAULT_VERSION,
    FunctionChatData,
    ToolChatCase,
    load_functionchat,
)
from kanana_eval.tasks.limits import spread_limit

DEFAULT_MAX_NEW_TOKENS = 1024
_VERDICT_DETAILS = frozenset({"judge", "exact", "exact_eval", "error"})  # dropped to re-judge


@dataclass
class ToolChatJob:
    """One tool-chat benchmark of a run: its data version and the planned cases."""

    spec: BenchmarkSpec
    data: FunctionChatData
    cases: list[ToolChatCase]
    plan: dict[str, int]

    @property
    def available(self) -> int:
        return len(self.data.cases)


def data_version(spec: BenchmarkSpec, config: RunConfig) -> str:
    """--functionchat-version, else the task's `scorer_options.version`, else 571abec."""
    return (config.functionchat_version or spec.task.scorer_options.get("version")
            or DEFAULT_VERSION)


def prepare(spec: BenchmarkSpec, config: RunConfig, data_dir: Path | None) -> ToolChatJob:
    """Load the version's cases and keep the first `plan[subtask]` of each (file order)."""
    data = load_functionchat(data_version(spec, config), data_dir)
    sizes = dict(Counter(case.subtask for case in data.cases))
    plan = spread_limit(sizes, config.limit)
    taken: Counter[str] = Counter()
    cases = []
    for case in data.cases:
        if taken[case.subtask] < plan.get(case.subtask, 0):
            taken[case.subtask] += 1
            cases.append(case)
    return ToolChatJob(spec, data, cases, plan)


def data_record(job: ToolChatJob) -> DataRecord:
    """Where the files came from; `revision` is the data version, which `compare` checks."""
    data = job.data
    return DataRecord(source="release", dataset_id=DATASET_ID, path=str(data.folder),
                      fingerprint=data.fingerprint, revision=data.version,
                      derived_fewshot=False, files=data.files, commit=data.rules.commit)


def _key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                     default=str).encode("utf-8")).hexdigest()


class _Store:
    """Answers by request key in `<request cache>_tool_chat.db`; in memory without a cache."""

    def __init__(self, cache_path: Path | None) -> None:
        self.db: Any = {}
        if cache_path is not None:
            path = Path(f"{cache_path}_tool_chat.db")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = SqliteDict(str(path), autocommit=True)

    def close(self) -> None:
        if isinstance(self.db, SqliteDict):
            self.db.close()


def _max_new_tokens(spec: BenchmarkSpec) -> int:
    return int((spec.generation or {}).get("max_gen_toks", DEFAULT_MAX_NEW_TOKENS))


def _local_answers(lm: Any, spec: BenchmarkSpec, cases: list[ToolChatCase], store: _Store
                   ) -> tuple[list[str], list[str], dict[str, Any]]:
    """(prompts, raw outputs, record) from a local engine through its chat template."""
    from lm_eval.api.instance import Instance  # noqa: PLC0415 - heavy: lm-eval, only for a run

    tokenizer = getattr(lm, "tokenizer", None)
    if tokenizer is None:
        raise EngineError(f"{spec.id}: the engine has no tokenizer to render tool prompts with")
    family = template_family(tokenizer)
    prompts = [render(tokenizer, case.messages, case.tools, family) for case in cases]
    gen = {"until": [], "max_gen_toks": _max_new_tokens(spec), "do_sample": False,
           "temperature": 0.0}
    keys = [_key(["local", prompt, gen]) for prompt in prompts]
    missing = [(k, p) for k, p in zip(keys, prompts, strict=True) if k not in store.db]
    missing = list(dict(missing).items())
    if missing:
        requests = [Instance(request_type="generate_until", doc={}, arguments=(p, dict(gen)),
                             idx=0, metadata=("tool_chat", n, 1))
                    for n, (_k, p) in enumerate(missing)]
        for (key, _p), output in zip(missing, lm.generate_until(requests), strict=True):
            store.db[key] = str(output)
    record = {"path": "chat template" if family != SYSTEM_PROMPT
              else "system-prompt fallback (the template ignores tools or is missing)",
              "template_family": family, "generation": gen,
              "fallback_instruction": FALLBACK_INSTRUCTION if family == SYSTEM_PROMPT else None}
    return prompts, [str(store.db[k]) for k in keys], record


def _served_answers(engine: EngineConfig, spec: BenchmarkSpec, cases: list[ToolChatCase],
                    store: _Store) -> tuple[list[str], list[ParsedReply], dict[str, Any]]:
    """(prompts as JSON, replies, record) from an OpenAI-compatible server's chat completions."""
    if not engine.base_url:
        raise EngineError("--backend openai needs --base-url")
    chat = ServedToolChat(engine.base_url, engine.model, max_tokens=_max_new_tokens(spec))
    payloads = [{"messages": c.messages, "tools": c.tools} for c in cases]
    keys = [_key(["served", engine.model, chat.describe(), p]) for p in payloads]

    def ask(index: int) -> None:
        if keys[index] in store.db:
            return
        try:
            reply = chat.reply(payloads[index]["messages"], payloads[index]["tools"])
        except Exception as exc:  # noqa: BLE001 - the openai client's errors, worded once
            raise EngineError(f"{spec.id}: the server {chat.base_url} failed a chat request "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                              "answers so far are cached: run the same command again") from exc
        store.db[keys[index]] = {"content": reply.content, "calls": reply.calls,
                                 "status": reply.status}

    try:
        with ThreadPoolExecutor(max_workers=max(1, engine.num_concurrent)) as pool:
            list(pool.map(ask, range(len(cases))))
    finally:
        chat.close()
    replies = [ParsedReply(**store.db[k]) for k in keys]
    prompts = [json.dumps(p, ensure_ascii=False) for p in payloads]
    return prompts, replies, {"path": "served chat completions with tools", **chat.describe(),
                              "template_family": "server"}


def _item(spec: BenchmarkSpec, case: ToolChatCase, prompt: str, output: str,
          reply: ParsedReply, family: str) -> Item:
    message = reply.message()
    return Item(benchmark=spec.id, item_id=case.item_id, subtask=case.subtask, prompt=prompt,
                output=output,
                extracted=json.dumps(reply.calls, ensure_ascii=False) if reply.calls else None,
                target=tool_judge.target_text(case), score=None, verdict=UNJUDGED,
                details={"subset": case.subset, "type_of_output": case.type_of_output,
                         "serial_num": case.serial_num, **case.extra, "response": message,
                         "parse": {"family": family, "status": reply.status}})


def answer(job: ToolChatJob, lm: Any, engine: EngineConfig, cache_path: Path | None
           ) -> tuple[list[Item], dict[str, Any]]:
    """Items (not judged yet) for the planned cases, and how the prompts were made."""
    spec = job.spec
    runnable = [c for c in job.cases if not c.error]
    store = _Store(cache_path)
    try:
        if engine.backend == "openai":
            prompts, replies, record = _served_answers(engine, spec, runnable, store)
            outputs = [r.content or "" for r in replies]
        else:
            prompts, outputs, record = _local_answers(lm, spec, runnable, store)
            replies = [parse_reply(o, record["template_family"]) for o in outputs]
    finally:
        store.close()
    family = record["template_family"]
    made = {c.item_id: _item(spec, c, p, o, r, family)
            for c, p, o, r in zip(runnable, prompts, outputs, replies, strict=True)}
    items = [made.get(c.item_id) or _item(spec, c, "", "", ParsedReply(None, [], "none"), family)
             for c in job.cases]
    record["outputs_read_as"] = dict(Counter(str(i.details["parse"]["status"]) for i in items
                                             if i.details))
    record["data_version"] = job.data.version
    return items, record


def judge(job: ToolChatJob, items: list[Item], config: RunConfig, base: JudgeConfig, *,
          progress: bool = True) -> dict[str, Any]:
    """Exact match, then the rubric judge unless the run said --no-judge."""
    if not config.judge:
        return tool_judge.settle_only(items, job.data)
    judge_config = tool_judge.judge_config(job.data, base, config.functionchat_judge_model)
    return tool_judge.judge_items(items, job.data, judge_config, progress=progress,
                                  desc=f"judge {job.spec.id}")


def rejudge(spec: BenchmarkSpec, items: list[Item], manifest_data: DataRecord,
            config: RunConfig, base: JudgeConfig, data_dir: Path | None) -> dict[str, Any]:
    """`kanana-eval judge RUN`: judge stored items afresh with the data they were made from."""
    version = str(manifest_data.revision or data_version(spec, config))
    data = load_functionchat(version, data_dir)
    if data.fingerprint != manifest_data.fingerprint:
        raise ResultsError(f"{spec.id}: the FunctionChat-Bench {version} files differ from the "
                           f"ones this run was made with ({data.fingerprint[:19]} vs "
                           f"{manifest_data.fingerprint[:19]}); pass the run's --data-dir")
    for item in items:  # a fresh judgment: drop the previous verdicts
        item.score, item.verdict = None, UNJUDGED
        item.details = {k: v for k, v in (item.details or {}).items()
                        if k not in _VERDICT_DETAILS}
    judge_config = tool_judge.judge_config(data, base, config.functionchat_judge_model)
    return tool_judge.judge_items(items, data, judge_config, desc=f"judge {spec.id}")
