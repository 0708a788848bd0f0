"""google/IFEval for the offline mirror, from `ifeval/input_data.jsonl` of the shared data folder.

The hub repo's main branch holds one JSON Lines file, `ifeval_input_data.jsonl` (Google's
current input data, which this file is), and no Parquet, so the mirror copies the file byte for
byte under that name with a card whose `configs:` maps it to the `train` split.
"""

from __future__ import annotations

from typing import Any

from kanana_eval.data.mirror.plan import CopiedSplit, DatasetContents, DatasetPlan
from kanana_eval.data.mirror.provenance import shared_source_entry
from kanana_eval.data.offline_sources import (
    SharedSource,
    rows_with_source_line,
    shared_source_path,
)

DATASET_ID = "google/IFEval"
DATA_FILE = "ifeval_input_data.jsonl"  # the file name on the hub's main branch
SOURCE = SharedSource(
    "ifeval",
    "ifeval",
    "input_data.jsonl",
    541,
    "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
    "Apache-2.0",
)


def read_ifeval() -> list[dict[str, Any]]:
    """IFEval prompts (key, prompt, instruction_id_list, kwargs) in file order, with source_line."""
    rows = rows_with_source_line(shared_source_path(SOURCE))
    SOURCE.check_count(rows)
    return rows


def prepare() -> DatasetContents:
    """The source file itself as the `train` split; `datasets` infers the features."""
    source = shared_source_entry(SOURCE)
    rows = read_ifeval()
    copied = CopiedSplit("default", "train", shared_source_path(SOURCE), DATA_FILE, len(rows))
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=None,
        splits=[],
        copied=[copied],
        order_text=f"copied byte for byte as `{DATA_FILE}`, the hub's data file",
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


PLANS = (DatasetPlan(DATASET_ID, prepare, shared=SOURCE),)
