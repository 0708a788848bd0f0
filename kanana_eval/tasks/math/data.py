"""EleutherAI/hendrycks_math for the offline mirror, from the original MATH release's test set.

Source: `math/test/<subject>/<n>.json` of the shared data folder (5,000 problems, 7 subjects,
pinned by the `tree_sha256` its PROVENANCE.md gives). Item order is the hub's: the loading script
the hub converted read `sorted(pathlib.Path(dir).iterdir())`, i.e. file names sorted as strings
(1.json, 10.json, 100.json, ...), so index i here is index i of the hub's test split.
"""

from __future__ import annotations

import json
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data.mirror.plan import DatasetContents, DatasetPlan, SplitPlan
from kanana_eval.data.mirror.provenance import shared_source_entry
from kanana_eval.data.offline_sources import SharedSource, shared_source_path

DATASET_ID = "EleutherAI/hendrycks_math"
SOURCE = SharedSource(
    "math",
    "math",
    "test",
    5000,
    "d847ae62d6843fb5844d160b2e0dd81c731df52c47693f0345a1cc5d70460fe2",
    "MIT",
)
# Problems per subject folder of the MATH test split (original release, math/PROVENANCE.md).
TEST_SUBJECTS: dict[str, int] = {
    "algebra": 1187,
    "counting_and_probability": 474,
    "geometry": 479,
    "intermediate_algebra": 903,
    "number_theory": 540,
    "prealgebra": 871,
    "precalculus": 546,
}
_FIELDS = ("problem", "level", "type", "solution")
FEATURES_YAML: list[dict[str, Any]] = [{"name": name, "dtype": "string"} for name in _FIELDS]


def read_math_test() -> list[dict[str, Any]]:
    """The 5,000 MATH test problems: subjects alphabetically, files in `sorted(iterdir())` order.

    That order (by file name as a string: 1.json, 10.json, 100.json, ...) is the order of
    EleutherAI/hendrycks_math, whose loading script read `sorted(pathlib.Path(dir).iterdir())`
    before the hub converted it to Parquet. Each row keeps the four fields of the file plus
    `subject` (the folder) and `path` (`test/<subject>/<n>.json`, the id MATH-500 uses).
    """
    root = shared_source_path(SOURCE)
    rows: list[dict[str, Any]] = []
    for subject, expected in TEST_SUBJECTS.items():
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
            if not isinstance(record, dict) or set(record) != set(_FIELDS):
                raise DataUnavailableError(f"{path} does not hold exactly {', '.join(_FIELDS)}")
            rows.append(
                {
                    **{name: record[name] for name in _FIELDS},
                    "subject": subject,
                    "path": f"test/{subject}/{path.name}",
                }
            )
    SOURCE.check_count(rows)
    return rows


def prepare() -> DatasetContents:
    """One config per subject, split `test` only; the record keeps every item's original path."""
    source = shared_source_entry(SOURCE)
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in read_math_test():
        by_subject.setdefault(row["subject"], []).append(row)
    splits = [
        SplitPlan(subject, "test", [{name: row[name] for name in _FIELDS} for row in items])
        for subject, items in by_subject.items()
    ]
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source.record,
        source_label=source.label,
        source_text=source.text,
        features_yaml=FEATURES_YAML,
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


PLANS = (DatasetPlan(DATASET_ID, prepare, aliases=("hendrycks_math",), shared=SOURCE),)
