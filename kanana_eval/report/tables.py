"""What goes into a report table: the published rows as stored, then one row per run.

This module decides content (which rows, which text in each cell, which notes) and knows no
markup; `render.py` prints the result as README HTML or Markdown. Runs are always added as new
rows, never merged into a published row, and a benchmark a run lacks stays an empty cell with
a note (never a zero); columns no protocol runs yet (LogicKor, WildBench, FunctionChatBench, the
embedding scores) get their own note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from kanana_eval.core.errors import ResultsError
from kanana_eval.report.formatting import format_delta, format_number
from kanana_eval.results.io import schema_validator
from kanana_eval.results.records import Scale
from kanana_eval.results.reference import (
    Column,
    PublishedCell,
    ReferenceTable,
    load_reference_tables,
    published_cells,
)
from kanana_eval.results.reference_specs import reference_only_columns

SMOKE_MARK = "§"
DELTA_PREFIX = "Δ vs "


@dataclass(frozen=True)
class RunScore:
    """One scores.json row, as much of it as a table cell needs."""

    benchmark: str
    value: float | None
    scale: Scale | None  # None when the file leaves it out
    n: int
    n_available: int | None

    def scale_for(self, column: Column) -> Scale:
        """The run's own scale; when scores.json omits it, judge columns hold judge scores."""
        if self.scale is not None:
            return self.scale
        return Scale.JUDGE_1_10 if column.scale == Scale.JUDGE_1_10.value else Scale.FRACTION


@dataclass(frozen=True)
class RunRow:
    """One run's scores, as an extra table row."""

    run_id: str
    model: str
    readme_rows: tuple[str, ...]
    smoke: bool
    limit: int | None
    scores: tuple[RunScore, ...]
    run_dir: Path | None = None

    @property
    def label(self) -> str:
        """Row name, plain text: `smollm2-135m (run 20261125T101500Z, smoke)`."""
        smoke = ", smoke" if self.smoke else ""
        return f"{self.model} (run {self.run_id}{smoke})"

    def score(self, benchmark: str) -> RunScore | None:
        """The run's score for a benchmark id, or None when the run did not score it."""
        return next((s for s in self.scores if s.benchmark == benchmark), None)


def load_run_row(run_dir: Path) -> RunRow:
    """Read `<run_dir>/scores.json` (scores.v1) into a RunRow; bad files raise ResultsError."""
    path = Path(run_dir) / "scores.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{run_dir} has no scores.json: not a finished run folder") from exc
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or not UTF-8 at all
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    try:
        schema_validator("scores").validate(data)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ResultsError(f"{path} fails scores.v1 schema at {where}: {exc.message}") from exc
    scores: list[RunScore] = []
    for entry in data["scores"]:
        score = RunScore(
            benchmark=entry["benchmark"],
            value=entry["value"],
            scale=Scale(entry["scale"]) if entry.get("scale") else None,
            n=entry["n"],
            n_available=entry.get("n_available"),
        )
        _check_score(path, score)
        if any(s.benchmark == score.benchmark for s in scores):
            raise ResultsError(f"{path} lists benchmark '{score.benchmark}' twice")
        scores.append(score)
    return RunRow(
        run_id=data["run_id"],
        model=data["model"]["name"],
        readme_rows=tuple(data["model"]["readme_rows"]),
        smoke=data["smoke"],
        limit=data.get("limit"),
        scores=tuple(scores),
        run_dir=Path(run_dir),
    )


def _check_score(path: Path, score: RunScore) -> None:
    if score.value is None:
        return
    top = (score.scale or Scale.FRACTION).top
    if not math.isfinite(score.value) or not 0.0 <= score.value <= top:
        raise ResultsError(
            f"{path}: {score.benchmark} value {score.value} is outside 0-{top:g} for its scale"
        )


# --------------------------------------------------------------------------- table view


@dataclass(frozen=True)
class ViewCell:
    """One cell's text as shown, before any markup."""

    display: str  # "" leaves the cell empty
    bold: bool = False
    marks: str = ""


@dataclass(frozen=True)
class ViewRow:
    """A body row. For kind "reference" and "group" the text is README HTML as printed;
    for "run" and "delta" it is plain text the renderer must escape."""

    kind: str  # "reference" | "group" | "run" | "delta"
    name: str
    marks: str = ""
    strong: bool = False
    suffix: str = ""
    hidden: bool = False
    cells: tuple[ViewCell, ...] = ()


@dataclass(frozen=True)
class TableView:
    """A table's content as shown: published rows, run rows, delta rows, and notes on them."""

    table: ReferenceTable
    rows: tuple[ViewRow, ...]
    notes: tuple[str, ...]  # plain text about the run rows: smoke, missing cells, deltas


def build_table_view(
    table: ReferenceTable,
    extra_rows: Sequence[RunRow] = (),
    *,
    with_deltas: bool = False,
    reference_tables: Sequence[ReferenceTable] | None = None,
) -> TableView:
    """The published rows in README order (group rows where the group changes), then each run.

    With `with_deltas`, each run row is followed by one "Δ vs <README row>" row per name in
    the run's `model.readme_rows`: run minus published, in points, from the printed numbers.
    The published number comes from this table when it has the row, else from another table.
    """
    rows: list[ViewRow] = []
    group: str | None = None
    for row in table.rows:
        if row.group is not None and row.group != group:
            rows.append(ViewRow("group", row.group))
        group = row.group
        cells = tuple(ViewCell(c.display, c.bold, "".join(c.marks)) for c in row.cells)
        rows.append(
            ViewRow(
                "reference",
                row.name,
                "".join(row.marks),
                row.markup.strong,
                row.markup.suffix,
                row.hidden,
                cells,
            )
        )
    notes: list[str] = []
    for run in extra_rows:
        run_row, run_notes = _run_view_row(table, run)
        rows.append(run_row)
        notes.extend(run_notes)
        if with_deltas:
            others = load_reference_tables() if reference_tables is None else reference_tables
            for name in run.readme_rows:
                delta, delta_note = _delta_row(table, run, run_row, name, others)
                if delta is not None:
                    rows.append(delta)
                notes.append(delta_note)
    return TableView(table, tuple(rows), tuple(notes))


def _run_view_row(table: ReferenceTable, run: RunRow) -> tuple[ViewRow, list[str]]:
    cells: list[ViewCell] = []
    missing: list[str] = []
    unrunnable: list[str] = []
    reference_only = {c.benchmark for c in reference_only_columns(table)}
    for column in table.columns:
        score = run.score(column.benchmark)
        if score is None or score.value is None:
            cells.append(ViewCell(""))
            if column.benchmark in reference_only:
                unrunnable.append(column.header)
            else:
                missing.append(column.header)
        else:
            cells.append(
                ViewCell(format_number(score.value, score.scale_for(column), column.scale))
            )
    notes = []
    if run.smoke:
        limit = f" to {run.limit} items per benchmark" if run.limit is not None else ""
        notes.append(
            f"{SMOKE_MARK} Smoke run {run.run_id}: limited{limit}; its numbers are not comparable "
            "with the published ones."
        )
    if missing:
        notes.append(
            f"Run {run.run_id} has no score for {', '.join(missing)}: those cells are left empty."
        )
    if unrunnable:
        notes.append(
            f"{', '.join(unrunnable)}: published numbers only, kanana-eval cannot run "
            f"{'this benchmark' if len(unrunnable) == 1 else 'these benchmarks'} yet; "
            f"run {run.run_id}'s cells are left empty."
        )
    mark = SMOKE_MARK if run.smoke else ""
    return ViewRow("run", run.label, marks=mark, cells=tuple(cells)), notes


def _published_row(
    table: ReferenceTable, name: str, others: Sequence[ReferenceTable]
) -> dict[str, PublishedCell]:
    """Per benchmark: this table's cell for the row if printed, else another table's."""
    found: dict[str, PublishedCell] = {}
    for column in table.columns:
        candidates = published_cells(table, name, column.benchmark)
        if not any(c.value is not None for c in candidates):
            candidates = [
                c
                for t in others
                if t.id != table.id
                for c in published_cells(t, name, column.benchmark)
            ]
        numbered = sorted((c for c in candidates if c.value is not None), key=lambda c: c.hidden)
        if numbered:
            found[column.benchmark] = numbered[0]
    return found


def _delta_row(
    table: ReferenceTable,
    run: RunRow,
    run_row: ViewRow,
    name: str,
    others: Sequence[ReferenceTable],
) -> tuple[ViewRow | None, str]:
    published = _published_row(table, name, others)
    if not published:
        return (
            None,
            f"The README publishes no {table.title} numbers for '{name}', "
            f"so no Δ row for run {run.run_id}.",
        )
    cells = []
    for column, run_cell in zip(table.columns, run_row.cells, strict=True):
        cell = published.get(column.benchmark)
        if cell is None or not run_cell.display:
            cells.append(ViewCell(""))
        else:
            cells.append(
                ViewCell(format_delta(run_cell.display, cell.display, column.scale, cell.scale))
            )
    sources = sorted({c.table_id for c in published.values()})
    return (
        ViewRow("delta", f"{DELTA_PREFIX}{name}", cells=tuple(cells)),
        f"{DELTA_PREFIX}{name}: run {run.run_id} minus the published number, in points as printed "
        f"(published in {', '.join(sources)}).",
    )
