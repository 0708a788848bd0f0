"""`kanana-eval data build-mirror DIR`: write the planned datasets and the record, one by one.

The caller passes the plans (`kanana_eval.tasks.catalog.data_plans()`: every benchmark folder's
`PLANS`). Plans whose source is a PyPI package are always built; plans whose source is in the
shared data folder are skipped, with one line saying why, when KANANA_SHARED_DATA does not hold
it, and one asked for by name must be built or it is an error.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval import __version__
from kanana_eval.core.errors import DataUnavailableError, KananaError
from kanana_eval.core.paths import shared_data_dir
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
from kanana_eval.data.mirror.plan import DatasetPlan, MirrorError
from kanana_eval.data.mirror.record import (
    RECORD_NAME,
    RECORD_SCHEMA_VERSION,
    read_record,
    write_record,
)
from kanana_eval.data.mirror.writer import install, write_dataset
from kanana_eval.data.offline_sources import shared_source_path


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


def _resolve(plans: Sequence[DatasetPlan], names: Sequence[str] | None) -> list[DatasetPlan]:
    """The plans `names` select (hub ids or aliases, an alias may name several), in order."""
    if names is None:
        return list(plans)
    resolved: list[DatasetPlan] = []
    for name in names:
        matches = [plan for plan in plans if name == plan.dataset_id or name in plan.aliases]
        if not matches:
            aliases = sorted({alias for plan in plans for alias in plan.aliases})
            known = ", ".join([plan.dataset_id for plan in plans] + aliases)
            raise MirrorError(f"cannot mirror '{name}' offline (known: {known})")
        resolved += [plan for plan in matches if plan not in resolved]
    return resolved


def _skip_reason(plan: DatasetPlan) -> str | None:
    """Why a shared-data dataset cannot be built here, or None (always None for PyPI ones)."""
    if plan.shared is None:
        return None
    if shared_data_dir() is None:
        return "KANANA_SHARED_DATA does not name the shared data folder"
    try:
        shared_source_path(plan.shared)
    except DataUnavailableError as error:
        return str(error)
    return None


def _build_one(plan: DatasetPlan, out_dir: Path, record: dict[str, Any]) -> DatasetReport:
    """Write one dataset beside its final place, rename it in, and note it in the record."""
    contents = plan.prepare()
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out_dir))
    try:
        built = staging / "dataset"
        built.mkdir()
        counts = write_dataset(contents, built)
        fingerprint = dataset_fingerprint(built)
        install(built, out_dir / plan.dataset_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record["datasets"][plan.dataset_id] = {
        "built_by": f"kanana-eval {__version__}",
        "source": contents.source,
        "configs": contents.configs(),
        "splits": counts,
        "fingerprint": fingerprint,
        **contents.record_extra,
    }
    return DatasetReport(
        dataset_id=plan.dataset_id,
        path=out_dir / plan.dataset_id,
        fingerprint=fingerprint,
        source=contents.source_label,
        splits=counts,
        file_counts=contents.file_counts,
    )


def build_mirror(
    out_dir: Path, plans: Sequence[DatasetPlan], *, datasets: Sequence[str] | None = None
) -> MirrorReport:
    """Write the hub-layout folders `out_dir/<dataset id>` and the record `kanana_mirror.json`.

    `datasets` selects hub ids or aliases (a benchmark folder's name selects the datasets it
    owns, e.g. mmlu, mt_bench, komt_bench). None means all of them whose source is here: the
    shared-data ones are skipped (listed in the report's `skipped`) when KANANA_SHARED_DATA does
    not hold them, while one named explicitly must be built or it is an error. Each dataset is
    built in a temporary folder inside out_dir and renamed into place, so a failure leaves any
    earlier copy untouched.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    selected = _resolve(plans, datasets)
    skipped: dict[str, str] = {}
    if datasets is None:
        for plan in selected:
            reason = _skip_reason(plan)
            if reason is not None:
                skipped[plan.dataset_id] = reason
        selected = [plan for plan in selected if plan.dataset_id not in skipped]
    out_dir.mkdir(parents=True, exist_ok=True)
    record = read_record(out_dir)
    record["schema_version"] = RECORD_SCHEMA_VERSION
    reports: list[DatasetReport] = []
    record_path = out_dir / RECORD_NAME
    for plan in selected:
        reports.append(_build_one(plan, out_dir, record))
        record_path = write_record(out_dir, record)
    return MirrorReport(out_dir=out_dir, record_path=record_path, datasets=reports, skipped=skipped)


def main_build_mirror(
    out_dir: str, plans: Sequence[DatasetPlan], datasets: Sequence[str] | None = None
) -> int:
    """CLI hook for `kanana-eval data build-mirror DIR`: one summary line per dataset.

    After them, one line per reason for the datasets skipped (no KANANA_SHARED_DATA).
    """
    try:
        report = build_mirror(Path(out_dir), plans, datasets=datasets)
    except KananaError as error:
        print(f"kanana-eval: error: {error}", file=sys.stderr)  # the CLI's one-line format
        return error.exit_code
    for dataset in report.datasets:
        print(dataset.summary())
    for line in report.skip_lines():
        print(line)
    print(f"record: {report.record_path}")
    return 0
