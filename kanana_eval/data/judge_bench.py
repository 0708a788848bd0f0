"""MT-Bench and KoMT-Bench questions, judge prompts and reference answers, loaded as data.

Judge prompts and GPT-4 reference answers are data files of FastChat (and of the KoMT-Bench
fork of it), never text in our code: the judge formats exactly what those files say, and a run
records which bytes it used (`JudgeBenchData.source`, `.fingerprint`).

Default sources (`data_dir` None):

* `mt_bench` - FastChat's `fastchat/llm_judge/data/{mt_bench/question.jsonl, judge_prompts.jsonl,
  mt_bench/reference_answer/gpt-4.jsonl}` at the pinned commit `FASTCHAT_COMMIT`, downloaded once
  from `https://raw.githubusercontent.com/lm-sys/FastChat/<commit>/<path>`.
* `komt_bench` - the questions from the hub dataset `LGAI-EXAONE/KoMT-Bench` (train split, 80
  rows) through `datasets.load_dataset`, as lm-eval loads every hub dataset; the Korean judge
  prompts and Korean GPT-4 references from the KoMT-Bench repository at `KOMT_COMMIT`
  (`FastChat/fastchat/llm_judge/data/{judge_prompts_ko.jsonl,
  mt_bench/reference_answer_ko/gpt-4.jsonl}`), downloaded like MT-Bench's.

Every download is checked against the file's pinned sha256 (`kanana_eval.data.judge_sources`:
the same digests pin the offline copies, which are byte for byte these files) before it is cached at
`cache_dir()/judge_data/<owner>/<repo>/<commit>/<path>`; nothing is cached on a mismatch, and a
cached file is hashed again on every load (a changed one is fetched anew). The raw roots can be
replaced with KANANA_FASTCHAT_RAW_URL and KANANA_KOMT_RAW_URL (`<root>/<commit>/<path>` is read).

Offline (`data_dir` given), the mirror `kanana-eval data build-mirror DIR` writes, each repository
in its own layout (so a `git clone` at the pinned commit, or `huggingface-cli download
--repo-type dataset LGAI-EXAONE/KoMT-Bench --local-dir DIR/LGAI-EXAONE/KoMT-Bench`, works too):

    DIR/lm-sys/FastChat/fastchat/llm_judge/data/judge_prompts.jsonl
    DIR/lm-sys/FastChat/fastchat/llm_judge/data/mt_bench/question.jsonl
    DIR/lm-sys/FastChat/fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl
    DIR/LGAI-EXAONE/KoMT-Bench/   hub layout: README.md card, data/train-*.parquet (+ raw/)
    DIR/LG-AI-EXAONE/KoMT-Bench/FastChat/fastchat/llm_judge/data/judge_prompts_ko.jsonl
    DIR/LG-AI-EXAONE/KoMT-Bench/FastChat/fastchat/llm_judge/data/mt_bench/
        reference_answer_ko/gpt-4.jsonl   (and question_ko.jsonl; LICENSE at the top)

A mirror file need not be the pinned one (a clone at another commit is a valid mirror): the
source record says per file whether its sha256 is the pinned one, and names the commit only when
all are. Every load is validated: 80 questions with ids 81-160, 10 in each of the 8 categories,
two turns each; the four single-answer judge prompts with output format `[[rating]]` and the
fields their templates use; a two-turn reference for every math, reasoning and coding question.
A malformed file is a one-line DataUnavailableError naming `path:line`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import ConfigError, DataUnavailableError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import cache_dir
from kanana_eval.data.dataset_fingerprint import (
    FINGERPRINT_PREFIX,
    dataset_fingerprint,
    hub_fingerprint,
)
from kanana_eval.data.judge_sources import (
    FASTCHAT_COMMIT,
    FASTCHAT_DATA,
    KOMT_COMMIT,
    KOMT_REPO_PATHS,
    KOMT_SOURCES,
    MT_BENCH_FILES,
)
from kanana_eval.data.mirror.record import mirror_info

FASTCHAT_REPO = "lm-sys/FastChat"
KOMT_REPO = "LG-AI-EXAONE/KoMT-Bench"  # the GitHub repository (judge prompts, references)
KOMT_HUB_ID = "LGAI-EXAONE/KoMT-Bench"  # the hub dataset (questions)
FASTCHAT_RAW_ENV = "KANANA_FASTCHAT_RAW_URL"
KOMT_RAW_ENV = "KANANA_KOMT_RAW_URL"
_RAW_DEFAULTS = {
    FASTCHAT_RAW_ENV: f"https://raw.githubusercontent.com/{FASTCHAT_REPO}",
    KOMT_RAW_ENV: f"https://raw.githubusercontent.com/{KOMT_REPO}",
}
DOWNLOAD_TIMEOUT_S = 60.0

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
              "humanities")
QUESTIONS_PER_CATEGORY = 10
QUESTION_IDS = range(81, 161)
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})  # FastChat's NEED_REF_CATS
# The single-answer grading prompts and the fields each template must offer the judge.
SINGLE_PROMPT_FIELDS: dict[str, tuple[str, ...]] = {
    "single-v1": ("question", "answer"),
    "single-math-v1": ("question", "answer", "ref_answer_1"),
    "single-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2"),
    "single-math-v1-multi-turn": (
        "question_1", "answer_1", "question_2", "answer_2", "ref_answer_1", "ref_answer_2",
    ),
}
RATING_FORMAT = "[[rating]]"
ROLES = ("questions", "judge_prompts", "references")


@dataclass(frozen=True)
class JudgeBenchData:
    """One judged benchmark's inputs, as FastChat's llm_judge reads them."""

    name: str  # "mt_bench" | "komt_bench"
    questions: list[dict[str, Any]]  # {question_id, category, turns[2]} (+ reference), file order
    judge_prompts: dict[str, dict[str, Any]]  # prompt name -> FastChat judge prompt record
    references: dict[int, dict[str, Any]]  # question_id -> GPT-4 answer record (choices[0].turns)
    source: dict[str, Any]  # kind, path, commit, per-file sha256: for the manifest
    fingerprint: str  # "sha256:..." over the three inputs (same data, same value, any source)


@dataclass(frozen=True)
class PinnedFile:
    """One file of a GitHub repository at a pinned commit, with the sha256 of its bytes."""

    role: str  # questions | judge_prompts | references
    repo: str  # owner/name on GitHub
    commit: str
    path: str  # inside the repository
    sha256: str
    env: str  # the variable that may replace the raw root

    @property
    def url(self) -> str:
        root = (os.environ.get(self.env) or _RAW_DEFAULTS[self.env]).rstrip("/")
        return f"{root}/{self.commit}/{self.path}"

    @property
    def cache_path(self) -> Path:
        return cache_dir() / "judge_data" / self.repo / self.commit / self.path


MT_BENCH_PINS: dict[str, PinnedFile] = {
    role: PinnedFile(role, FASTCHAT_REPO, FASTCHAT_COMMIT,
                     f"{FASTCHAT_DATA}/{MT_BENCH_FILES[key][0]}", MT_BENCH_FILES[key][2],
                     FASTCHAT_RAW_ENV)
    for role, key in (("questions", "mt_bench_questions"),
                      ("judge_prompts", "mt_bench_judge_prompts"),
                      ("references", "mt_bench_references"))
}
KOMT_PINS: dict[str, PinnedFile] = {
    role: PinnedFile(role, KOMT_REPO, KOMT_COMMIT, KOMT_REPO_PATHS[key],
                     KOMT_SOURCES[key].sha256, KOMT_RAW_ENV)
    for role, key in (("judge_prompts", "komt_bench_judge_prompts"),
                      ("references", "komt_bench_references"))
}


def _build_mirror_hint(data_dir: Path | None) -> str:
    target = data_dir if data_dir is not None else "DIR"
    return f"build the offline mirror with `kanana-eval data build-mirror {target}`"


# --------------------------------------------------------------------------- downloads


def _fetch_bytes(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataUnavailableError(
            f"cannot download {url} ({reason}): run offline with `--data-dir DIR`; "
            f"{_build_mirror_hint(None)}"
        ) from error


def fetch_pinned(pin: PinnedFile) -> Path:
    """The cached copy of `pin`, downloaded (once) and checked against its sha256.

    A cached file is hashed on every call; one that no longer matches is removed and fetched
    again. A download with other bytes is refused and leaves nothing in the cache.
    """
    target = pin.cache_path
    if target.is_file():
        if file_sha256(target) == pin.sha256:
            return target
        target.unlink()
    body = _fetch_bytes(pin.url)
    digest = hashlib.sha256(body).hexdigest()
    if digest != pin.sha256:
        raise DataUnavailableError(
            f"{pin.url} has sha256 {digest[:12]}..., not the pinned {pin.sha256[:12]}... "
            f"({pin.repo}@{pin.commit[:12]}): nothing was cached"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(body)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


# --------------------------------------------------------------------------- parsing


def read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(`path:line`, record) for each non-empty line; a bad line is a one-line error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataUnavailableError(f"cannot read {path}: {error}") from error
    rows: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataUnavailableError(f"{where}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise DataUnavailableError(f"{where}: not a JSON object")
        rows.append((where, record))
    return rows


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_question(where: str, record: dict[str, Any]) -> dict[str, Any]:
    if not _is_int(record.get("question_id")):
        raise DataUnavailableError(f"{where}: question_id is not an integer")
    if record.get("category") not in CATEGORIES:
        raise DataUnavailableError(
            f"{where}: category {record.get('category')!r} is none of {', '.join(CATEGORIES)}"
        )
    turns = record.get("turns")
    if not (isinstance(turns, list) and len(turns) == 2
            and all(isinstance(t, str) and t.strip() for t in turns)):
        raise DataUnavailableError(f"{where}: turns is not a list of two non-empty strings")
    return record


def check_questions(rows: Iterable[tuple[str, dict[str, Any]]],
                    origin: str) -> list[dict[str, Any]]:
    """The question records, each well formed, together 80 questions 81-160, 10 per category."""
    questions = [_check_question(where, record) for where, record in rows]
    ids = [q["question_id"] for q in questions]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise DataUnavailableError(f"{origin}: question_id {duplicates[0]} appears twice")
    if sorted(ids) != list(QUESTION_IDS):
        raise DataUnavailableError(
            f"{origin}: {len(ids)} questions, expected the 80 with question_id 81-160"
        )
    counts = Counter(q["category"] for q in questions)
    uneven = {c: counts[c] for c in CATEGORIES if counts[c] != QUESTIONS_PER_CATEGORY}
    if uneven:
        category, count = next(iter(uneven.items()))
        raise DataUnavailableError(
            f"{origin}: category {category} has {count} questions, expected "
            f"{QUESTIONS_PER_CATEGORY}"
        )
    return questions


def check_judge_prompts(rows: Iterable[tuple[str, dict[str, Any]]],
                        origin: str) -> dict[str, dict[str, Any]]:
    """name -> prompt record; the four single-answer prompts must be there and usable."""
    prompts: dict[str, dict[str, Any]] = {}
    where_of: dict[str, str] = {}
    for where, record in rows:
        name = record.get("name")
        if not isinstance(name, str) or not name:
            raise DataUnavailableError(f"{where}: judge prompt without a name")
        if name in prompts:
            raise DataUnavailableError(f"{where}: judge prompt {name} appears twice")
        for field in ("system_prompt", "prompt_template"):
            if not isinstance(record.get(field), str):
                raise DataUnavailableError(f"{where}: judge prompt {name} has no {field} text")
        prompts[name] = record
        where_of[name] = where
    for name, fields in SINGLE_PROMPT_FIELDS.items():
        if name not in prompts:
            raise DataUnavailableError(f"{origin}: judge prompt {name} is missing")
        record, where = prompts[name], where_of[name]
        if record.get("type") != "single" or record.get("output_format") != RATING_FORMAT:
            raise DataUnavailableError(
                f"{where}: {name} is not a single-answer prompt with output format {RATING_FORMAT}"
            )
        missing = [f for f in fields if "{" + f + "}" not in record["prompt_template"]]
        if missing:
            raise DataUnavailableError(f"{where}: {name} template lacks {{{missing[0]}}}")
    return prompts


def check_references(rows: Iterable[tuple[str, dict[str, Any]]], origin: str,
                     questions: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """question_id -> answer record; every math/reasoning/coding question needs two turns."""
    references: dict[int, dict[str, Any]] = {}
    for where, record in rows:
        question_id = record.get("question_id")
        choices = record.get("choices")
        if not _is_int(question_id):
            raise DataUnavailableError(f"{where}: question_id is not an integer")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)
                and isinstance(choices[0].get("turns"), list)):
            raise DataUnavailableError(f"{where}: no choices[0].turns list")
        if question_id in references:
            raise DataUnavailableError(f"{where}: question_id {question_id} appears twice")
        references[question_id] = record
    for question in questions:
        if question["category"] not in REFERENCE_CATEGORIES:
            continue
        record = references.get(question["question_id"])
        turns = record["choices"][0]["turns"] if record is not None else []
        if len(turns) < 2 or not all(isinstance(t, str) for t in turns[:2]):
            raise DataUnavailableError(
                f"{origin}: no two-turn reference answer for {question['category']} question "
                f"{question['question_id']}"
            )
    return references


# --------------------------------------------------------------------------- fingerprint


def questions_sha256(questions: list[dict[str, Any]]) -> str:
    """Digest of the question records' content (JSON, keys sorted), whatever file held them."""
    text = json.dumps(questions, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_fingerprint(questions_digest: str, prompts_sha256: str, references_sha256: str) -> str:
    """`sha256:` over the questions' content digest and the two files' sha256."""
    listing = (f"questions {questions_digest}\njudge_prompts {prompts_sha256}\n"
               f"references {references_sha256}\n")
    return FINGERPRINT_PREFIX + hashlib.sha256(listing.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- assembling


def _file_entry(path: Path, pin: PinnedFile, *, url: bool) -> dict[str, Any]:
    digest = file_sha256(path)
    entry: dict[str, Any] = {"repo_path": pin.path, "path": str(path), "sha256": digest,
                             "pinned_sha256": pin.sha256, "pinned": digest == pin.sha256}
    if url:
        entry["url"] = pin.url
    return entry


def _assemble(name: str, questions: list[dict[str, Any]], questions_entry: dict[str, Any],
              files: dict[str, Path], pins: dict[str, PinnedFile],
              source: dict[str, Any]) -> JudgeBenchData:
    """Validate the judge prompt and reference files and put everything together."""
    prompts = check_judge_prompts(read_jsonl(files["judge_prompts"]), str(files["judge_prompts"]))
    references = check_references(read_jsonl(files["references"]), str(files["references"]),
                                  questions)
    downloaded = source["kind"] != "mirror"
    entries = {role: _file_entry(files[role], pins[role], url=downloaded)
               for role in ("judge_prompts", "references")}
    digest = questions_sha256(questions)
    questions_entry = {**questions_entry, "content_sha256": digest}
    fingerprint = judge_fingerprint(digest, entries["judge_prompts"]["sha256"],
                                    entries["references"]["sha256"])
    return JudgeBenchData(
        name=name,
        questions=questions,
        judge_prompts=prompts,
        references=references,
        source={**source, "files": {"questions": questions_entry, **entries}},
        fingerprint=fingerprint,
    )


def _mirror_file(data_dir: Path, repo: str, pin: PinnedFile, what: str) -> Path:
    path = data_dir / repo / pin.path
    if not path.is_file():
        raise DataUnavailableError(
            f"the mirror {data_dir} has no {what} ({repo}/{pin.path}): "
            f"{_build_mirror_hint(data_dir)}"
        )
    return path


def _pinned_commit(entries: Iterable[dict[str, Any]], commit: str) -> str | None:
    return commit if all(entry["pinned"] for entry in entries) else None


def _load_mt_bench(data_dir: Path | None) -> JudgeBenchData:
    pins = MT_BENCH_PINS
    if data_dir is None:
        files = {role: fetch_pinned(pin) for role, pin in pins.items()}
        root = cache_dir() / "judge_data" / FASTCHAT_REPO / FASTCHAT_COMMIT
        source: dict[str, Any] = {"kind": "download", "repo": FASTCHAT_REPO,
                                  "commit": FASTCHAT_COMMIT, "path": str(root)}
    else:
        files = {role: _mirror_file(data_dir, FASTCHAT_REPO, pin, f"MT-Bench {role} file")
                 for role, pin in pins.items()}
        source = {"kind": "mirror", "repo": FASTCHAT_REPO, "path": str(data_dir / FASTCHAT_REPO),
                  "mirror_record": _mirror_record(data_dir, FASTCHAT_REPO)}
    questions = check_questions(read_jsonl(files["questions"]), str(files["questions"]))
    questions_entry = _file_entry(files["questions"], pins["questions"], url=data_dir is None)
    data = _assemble("mt_bench", questions, questions_entry, files, pins, source)
    if data_dir is not None:  # a mirror names the commit only when every file is the pinned one
        data.source["commit"] = _pinned_commit(data.source["files"].values(), FASTCHAT_COMMIT)
    return data


def _hub_questions(path: str) -> tuple[list[dict[str, Any]], Any]:
    """KoMT-Bench's train split as FastChat question records (empty `reference` dropped)."""
    import datasets  # noqa: PLC0415 - heavy: datasets, only when data is read or written

    try:
        table = datasets.load_dataset(path, split="train")
    except Exception as error:  # the hub client raises many kinds; each means "not here"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataUnavailableError(
            f"cannot load {path} ({reason}): run offline with `--data-dir DIR`; "
            f"{_build_mirror_hint(None)} (KoMT-Bench needs KANANA_SHARED_DATA)"
        ) from error
    rows = []
    for index, row in enumerate(table):
        record = {"question_id": row.get("question_id"), "category": row.get("category"),
                  "turns": row.get("turns")}
        if row.get("reference"):
            record["reference"] = row["reference"]
        rows.append((f"{path} train row {index}", record))
    return check_questions(rows, f"{path} (train)"), table


def _load_komt_bench(data_dir: Path | None) -> JudgeBenchData:
    pins = KOMT_PINS
    if data_dir is None:
        questions, table = _hub_questions(KOMT_HUB_ID)
        files = {role: fetch_pinned(pin) for role, pin in pins.items()}
        questions_entry: dict[str, Any] = {"dataset_id": KOMT_HUB_ID, "split": "train",
                                           "hub": hub_fingerprint(table)}
        source: dict[str, Any] = {
            "kind": "hub+download", "dataset_id": KOMT_HUB_ID, "repo": KOMT_REPO,
            "commit": KOMT_COMMIT,
            "path": str(cache_dir() / "judge_data" / KOMT_REPO / KOMT_COMMIT),
        }
        return _assemble("komt_bench", questions, questions_entry, files, pins, source)
    hub_folder = data_dir / KOMT_HUB_ID
    if not (hub_folder / "README.md").is_file():
        raise DataUnavailableError(
            f"the mirror {data_dir} has no {KOMT_HUB_ID} folder: {_build_mirror_hint(data_dir)} "
            f"with KANANA_SHARED_DATA set"
        )
    files = {role: _mirror_file(data_dir, KOMT_REPO, pin, f"KoMT-Bench {role} file")
             for role, pin in pins.items()}
    questions, _table = _hub_questions(str(hub_folder))
    questions_entry = {"dataset_id": KOMT_HUB_ID, "split": "train", "path": str(hub_folder),
                       "fingerprint": dataset_fingerprint(hub_folder)}
    source = {"kind": "mirror", "dataset_id": KOMT_HUB_ID, "repo": KOMT_REPO,
              "path": str(data_dir / KOMT_REPO),
              "mirror_record": {KOMT_HUB_ID: _mirror_record(data_dir, KOMT_HUB_ID),
                                KOMT_REPO: _mirror_record(data_dir, KOMT_REPO)}}
    data = _assemble("komt_bench", questions, questions_entry, files, pins, source)
    entries = [data.source["files"][role] for role in pins]
    data.source["commit"] = _pinned_commit(entries, KOMT_COMMIT)
    return data


def _mirror_record(data_dir: Path, dataset_id: str) -> dict[str, Any] | None:
    """The build record of a mirror folder (None for a folder not made by build-mirror)."""
    entry = mirror_info(data_dir, dataset_id)
    if entry is None:
        return None
    return {key: entry.get(key) for key in ("built_by", "source", "revision", "fingerprint")}


def load_judge_bench(name: str, data_dir: Path | None) -> JudgeBenchData:
    """Questions, judge prompts and references of `name`, from the mirror or the pinned sources."""
    loader = _LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown judged benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    return loader(Path(data_dir).expanduser().resolve() if data_dir is not None else None)


# The judged benchmarks' names (task.yaml scorer_options `benchmark`) -> their loader.
_LOADERS: dict[str, Callable[[Path | None], JudgeBenchData]] = {
    "mt_bench": _load_mt_bench,
    "komt_bench": _load_komt_bench,
}
BENCHMARKS = tuple(_LOADERS)
