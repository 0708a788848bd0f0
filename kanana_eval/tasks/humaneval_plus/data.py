"""evalplus/HumanEvalPlus for the offline mirror: evalplus' v0.1.10 release file, as it is.

Not a hub dataset: with `--data-dir DIR`, evalplus' own loader reads
`DIR/evalplus/HumanEvalPlus/HumanEvalPlus-v0.1.10.jsonl.gz` (the name evalplus gives it), copied
byte for byte from `humaneval_plus/HumanEvalPlus.jsonl.gz` of the shared data folder.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data.mirror.plan import CopiedSplit, DatasetContents, DatasetPlan
from kanana_eval.data.mirror.provenance import shared_source_entry
from kanana_eval.data.offline_sources import SharedSource, shared_source_path

DATASET_ID = "evalplus/HumanEvalPlus"  # evalplus' release file, not a hub dataset
RELEASE_FILE = "HumanEvalPlus-v0.1.10.jsonl.gz"
SOURCE = SharedSource(
    "humaneval_plus",
    "humaneval_plus",
    "HumanEvalPlus.jsonl.gz",
    164,
    "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
    "Apache-2.0",
)


def read_humaneval_plus() -> list[dict[str, Any]]:
    """HumanEval+ v0.1.10 release records (gzipped JSON Lines), in file order."""
    path = shared_source_path(SOURCE)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as error:
        raise DataUnavailableError(f"cannot read {path}: {error}") from error
    SOURCE.check_count(rows)
    return rows


def prepare() -> DatasetContents:
    """The release file copied under evalplus' name, as the `test` split."""
    source = shared_source_entry(SOURCE)
    rows = read_humaneval_plus()
    copied = CopiedSplit("default", "test", shared_source_path(SOURCE), RELEASE_FILE, len(rows))
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=None,
        splits=[],
        copied=[copied],
        order_text=f"copied byte for byte as `{RELEASE_FILE}`, the name evalplus gives it",
        record_text="Provenance",
        record_extra={"derived_fewshot": False, "version": "v0.1.10",
                      "keys": {"first": rows[0]["task_id"], "last": rows[-1]["task_id"]}},
        card_notes=["Not a hub dataset: evalplus' release file, read by evalplus' own loader "
                    "(kanana_eval.evalplus_data), never by `datasets`."],
    )


PLANS = (DatasetPlan(DATASET_ID, prepare, shared=SOURCE),)
