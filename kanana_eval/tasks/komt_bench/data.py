"""KoMT-Bench for the offline mirror: the hub dataset of the questions, and the repository files.

Two folders, both from `komt_bench/` of the shared data folder (byte copies of the KoMT-Bench
repository at `KOMT_COMMIT`, LGPL-3.0), both selected by the name `komt_bench`:

* `LGAI-EXAONE/KoMT-Bench` - the hub dataset of the questions (what the judge loads with
  `datasets`): the question file byte for byte as `raw/question_ko.jsonl` and a derived Parquet
  shard `data/train-00000-of-00001.parquet`.
* `LG-AI-EXAONE/KoMT-Bench` - the GitHub repository's files the judge reads (Korean judge
  prompts, Korean GPT-4 references, the questions and LICENSE) at their repository paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kanana_eval.core.paths import shared_data_dir
from kanana_eval.data.judge_bench import (
    check_judge_prompts,
    check_questions,
    check_references,
    read_jsonl,
)
from kanana_eval.data.judge_sources import (
    KOMT_BENCH_KEYS,
    KOMT_COMMIT,
    KOMT_REPO_PATHS,
    KOMT_SOURCES,
)
from kanana_eval.data.mirror.plan import SHARD_SUFFIX, DatasetContents, DatasetPlan, SplitPlan
from kanana_eval.data.offline_sources import verified_shared_source

HUB_ID = "LGAI-EXAONE/KoMT-Bench"  # the hub dataset (questions)
REPO_ID = "LG-AI-EXAONE/KoMT-Bench"  # the GitHub repository (judge prompts, references)
RAW_FILE = "raw/question_ko.jsonl"  # where the hub repo keeps the question file
FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question_id", "dtype": "int64"},
    {"name": "category", "dtype": "string"},
    {"name": "turns", "sequence": "string"},
    {"name": "reference", "sequence": "string"},
]


def _sources(keys: Sequence[str]) -> dict[str, Any]:
    """The record's source entry for KoMT-Bench files of the shared data folder (each pinned)."""
    root = shared_data_dir()
    files = {}
    for key in keys:
        _path, digest = verified_shared_source(KOMT_SOURCES[key])
        files[KOMT_SOURCES[key].display_path] = {
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


def _questions() -> tuple[Path, list[dict[str, Any]]]:
    path, _digest = verified_shared_source(KOMT_SOURCES["komt_bench_questions"])
    return path, check_questions(read_jsonl(path), str(path))


def prepare_hub() -> DatasetContents:
    """The hub dataset: the question file as it is, plus the Parquet shard `datasets` reads."""
    path, questions = _questions()
    rows = [
        {
            "question_id": q["question_id"],
            "category": q["category"],
            "turns": q["turns"],
            "reference": q.get("reference") or [],
        }
        for q in questions
    ]
    return DatasetContents(
        dataset_id=HUB_ID,
        source=_sources(["komt_bench_questions"]),
        source_label="shared data komt_bench/question_ko.jsonl",
        source_text="`komt_bench/question_ko.jsonl` of the shared data folder (KANANA_SHARED_DATA)",
        features_yaml=FEATURES_YAML,
        splits=[SplitPlan("default", "train", rows, folder="data")],
        files={RAW_FILE: path},
        record_text="Provenance",
        record_extra={
            "derived_fewshot": False,
            "derived": {
                "file": f"data/train{SHARD_SUFFIX}",
                "from": RAW_FILE,
                "note": "the question file's records; `reference` is [] where a question has none",
            },
            "index_note": "index i of train is line i+1 of raw/question_ko.jsonl",
        },
        card_notes=[
            f"`data/train{SHARD_SUFFIX}` is derived from `{RAW_FILE}` (the KoMT-Bench "
            "repository's question file, which the hub repo keeps under that name): the same "
            "records, `reference` (short human answers to 39 questions) an empty list where a "
            "question has none. The hub's shard name is not known here.",
            "The card adds a `configs:` block (the hub card has none). Licence: LGPL-3.0.",
        ],
    )


def prepare_repo() -> DatasetContents:
    """The repository's judge files at their paths, checked as the judge reads them."""
    _path, questions = _questions()
    paths = {key: verified_shared_source(KOMT_SOURCES[key])[0] for key in KOMT_BENCH_KEYS}
    prompts_path = paths["komt_bench_judge_prompts"]
    references_path = paths["komt_bench_references"]
    prompts = check_judge_prompts(read_jsonl(prompts_path), str(prompts_path))
    references = check_references(read_jsonl(references_path), str(references_path), questions)
    counts = {"question_ko.jsonl": len(questions), "judge_prompts_ko.jsonl": len(prompts),
              "gpt-4.jsonl": len(references)}  # and LICENSE
    return DatasetContents(
        dataset_id=REPO_ID,
        source=_sources(KOMT_BENCH_KEYS),
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
            "upstream": f"https://github.com/{REPO_ID}",
            "identical_to_upstream": True,
            "records": counts,
            "licence": "LGPL-3.0",
        },
    )


PLANS = (
    DatasetPlan(HUB_ID, prepare_hub, shared=KOMT_SOURCES["komt_bench_questions"]),
    DatasetPlan(REPO_ID, prepare_repo, shared=KOMT_SOURCES["komt_bench_judge_prompts"]),
)
