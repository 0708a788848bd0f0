"""The README's published numbers as data: the stored tables, their loading and look-up.

`results/reference/<table-id>.json` stores one README table as printed (schema
`schemas/reference.v1.schema.json`), so reports can print the published table again byte for
byte and put a run's numbers beside it without ever re-reading the README. The files are made
once by `python -m kanana_eval.report.readme_extract --extract README.md` (the README parser
lives in the report layer: it proves each table re-renders) and then checked in; which tables,
benchmark ids and scales is `reference_specs.py`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from kanana_eval.core.errors import KananaError
from kanana_eval.core.paths import resource_dir

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "reference.v1.schema.json"
MARK_CHARS = "*†‡"
_BENCHMARK_ID = re.compile(r"^[a-z0-9_]+@[a-z0-9_]+$")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


class ReferenceDataError(KananaError):
    """Reference tables are missing or malformed, or a README table does not parse as expected."""


# --------------------------------------------------------------------------- stored format


@dataclass(frozen=True)
class Column:
    """One benchmark column: the header as printed, its benchmark id and display scale."""

    header: str
    benchmark: str
    scale: str  # "percent" | "fraction" | "judge_1_10" | "wb_score"


@dataclass(frozen=True)
class Cell:
    """A value cell as printed; `value` is None for text such as 'TBA' or '-'."""

    value: float | None
    display: str
    bold: bool
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameMarkup:
    """How a model name is printed around its text: bold, and what follows the marks."""

    strong: bool
    suffix: str = ""


@dataclass(frozen=True)
class Row:
    """One model: its cells in column order, and whether the README hides it in a comment."""

    name: str
    marks: tuple[str, ...]
    markup: NameMarkup
    hidden: bool
    group: str | None
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Layout:
    """The opening tags and orientation the README uses, so a table re-renders as printed."""

    orientation: str  # "models_as_rows" | "models_as_columns"
    corner: str
    header_cell: str
    label_cell: str
    value_cell: str
    group_cell: str | None


@dataclass(frozen=True)
class Section:
    """Where the table sits: the heading line above it and the heading path."""

    heading: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """Which README (by content hash) and line the table was extracted from."""

    file: str
    sha256: str
    line: int


@dataclass(frozen=True)
class ReferenceTable:
    """One README table as stored in `results/reference/<id>.json`."""

    id: str
    title: str
    kind: str
    section: Section
    layout: Layout
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    footnotes: tuple[str, ...]
    source: Source

    def column_index(self, benchmark: str) -> int | None:
        """Position of a benchmark's column, or None when the table has no such column."""
        for index, column in enumerate(self.columns):
            if column.benchmark == benchmark:
                return index
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in schema order (what `--extract` writes)."""
        return {
            "schema_version": 1,
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "section": {"heading": self.section.heading, "path": list(self.section.path)},
            "layout": {
                "orientation": self.layout.orientation,
                "corner": self.layout.corner,
                "header_cell": self.layout.header_cell,
                "label_cell": self.layout.label_cell,
                "value_cell": self.layout.value_cell,
                "group_cell": self.layout.group_cell,
            },
            "columns": [
                {"header": c.header, "benchmark": c.benchmark, "scale": c.scale}
                for c in self.columns
            ],
            "rows": [
                {
                    "name": r.name,
                    "marks": list(r.marks),
                    "markup": {"strong": r.markup.strong, "suffix": r.markup.suffix},
                    "hidden": r.hidden,
                    "group": r.group,
                    "cells": [
                        {
                            "value": c.value,
                            "display": c.display,
                            "bold": c.bold,
                            "marks": list(c.marks),
                        }
                        for c in r.cells
                    ],
                }
                for r in self.rows
            ],
            "footnotes": list(self.footnotes),
            "source": {
                "file": self.source.file,
                "sha256": self.source.sha256,
                "line": self.source.line,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceTable:
        """Build from the JSON form after schema validation, then check what a schema cannot."""
        _validator().validate(data)
        layout = data["layout"]
        table = cls(
            id=data["id"],
            title=data["title"],
            kind=data["kind"],
            section=Section(data["section"]["heading"], tuple(data["section"]["path"])),
            layout=Layout(
                orientation=layout["orientation"],
                corner=layout["corner"],
                header_cell=layout["header_cell"],
                label_cell=layout["label_cell"],
                value_cell=layout["value_cell"],
                group_cell=layout["group_cell"],
            ),
            columns=tuple(Column(c["header"], c["benchmark"], c["scale"]) for c in data["columns"]),
            rows=tuple(
                Row(
                    name=r["name"],
                    marks=tuple(r["marks"]),
                    markup=NameMarkup(r["markup"]["strong"], r["markup"]["suffix"]),
                    hidden=r["hidden"],
                    group=r["group"],
                    cells=tuple(
                        Cell(c["value"], c["display"], c["bold"], tuple(c["marks"]))
                        for c in r["cells"]
                    ),
                )
                for r in data["rows"]
            ),
            footnotes=tuple(data["footnotes"]),
            source=Source(data["source"]["file"], data["source"]["sha256"], data["source"]["line"]),
        )
        check_consistency(table)
        return table


def printed_value(display: str) -> float | None:
    """The number a cell prints ('61.90' -> 61.9); None for text such as 'TBA' or '-'."""
    return float(display) if _NUMBER.match(display) else None


def check_consistency(table: ReferenceTable) -> None:
    """What the schema cannot say: one column per benchmark, full rows, values as printed."""
    benchmarks = [c.benchmark for c in table.columns]
    if len(set(benchmarks)) != len(benchmarks):
        raise ReferenceDataError(
            f"reference table '{table.id}' lists a benchmark twice: {benchmarks}"
        )
    for row in table.rows:
        if len(row.cells) != len(table.columns):
            raise ReferenceDataError(
                f"reference table '{table.id}', row '{row.name}': {len(row.cells)} cells for "
                f"{len(table.columns)} columns"
            )
        for column, cell in zip(table.columns, row.cells, strict=True):
            if cell.value != printed_value(cell.display):
                raise ReferenceDataError(
                    f"reference table '{table.id}', row '{row.name}', {column.header}: value "
                    f"{cell.value} does not match the printed '{cell.display}'"
                )
        if row.group is not None and table.layout.group_cell is None:
            raise ReferenceDataError(
                f"reference table '{table.id}': row '{row.name}' has a group but the layout "
                "has no group_cell"
            )


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def load_reference_table(path: Path) -> ReferenceTable:
    """Load and validate one `<table-id>.json`; each problem is one ReferenceDataError line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReferenceDataError(f"cannot read reference table {path}: {exc}") from exc
    try:
        table = ReferenceTable.from_dict(data)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ReferenceDataError(
            f"{path.name} fails reference.v1 schema at {where}: {exc.message}"
        ) from exc
    if path.stem != table.id:
        raise ReferenceDataError(
            f"{path.name} holds table id '{table.id}': file name and id must match"
        )
    return table


@functools.lru_cache(maxsize=8)
def _load_dir(directory: Path) -> tuple[ReferenceTable, ...]:
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ReferenceDataError(f"no reference tables (*.json) in {directory}")
    tables = sorted(
        (load_reference_table(p) for p in paths), key=lambda t: (t.source.file, t.source.line)
    )
    return tuple(tables)


def load_reference_tables(directory: Path | None = None) -> list[ReferenceTable]:
    """Every stored README table, in README order (default folder: `results/reference`)."""
    folder = (directory or resource_dir("results/reference")).resolve()
    return list(_load_dir(folder))


def get_reference_table(
    table_id: str, tables: Sequence[ReferenceTable] | None = None
) -> ReferenceTable:
    """One table by id, with the known ids in the error when it does not exist."""
    tables = load_reference_tables() if tables is None else tables
    for table in tables:
        if table.id == table_id:
            return table
    known = ", ".join(t.id for t in tables)
    raise ReferenceDataError(f"no README table '{table_id}' (known: {known})")


@dataclass(frozen=True)
class PublishedCell:
    """One published number, with enough context to tell tables and hidden rows apart."""

    table_id: str
    row: str
    row_marks: tuple[str, ...]
    hidden: bool
    group: str | None
    benchmark: str
    column: str
    scale: str
    value: float | None
    display: str
    bold: bool
    marks: tuple[str, ...]


def published_cells(table: ReferenceTable, readme_row: str, benchmark: str) -> list[PublishedCell]:
    """The cells of one table for a row name (compared case-insensitively) and benchmark id."""
    index = table.column_index(benchmark)
    if index is None:
        return []
    wanted = readme_row.strip().casefold()
    column = table.columns[index]
    return [
        PublishedCell(
            table_id=table.id,
            row=row.name,
            row_marks=row.marks,
            hidden=row.hidden,
            group=row.group,
            benchmark=benchmark,
            column=column.header,
            scale=column.scale,
            value=row.cells[index].value,
            display=row.cells[index].display,
            bold=row.cells[index].bold,
            marks=row.cells[index].marks,
        )
        for row in table.rows
        if row.name.casefold() == wanted
    ]


def published_score(
    readme_row: str, benchmark: str, tables: Sequence[ReferenceTable] | None = None
) -> list[PublishedCell]:
    """Every published cell for a README row name and benchmark id, across all tables.

    Names compare case-insensitively because the 1.0 tables print `Kanana-Nano-2.1b` where the
    1.5 tables print `Kanana-Nano-2.1B`. Hidden rows are included (see `hidden`): the README
    keeps numbers there too. An empty list means the README publishes nothing for the pair.
    """
    if not _BENCHMARK_ID.match(benchmark):
        raise ReferenceDataError(f"'{benchmark}' is not a benchmark id like 'mmlu@base'")
    tables = load_reference_tables() if tables is None else tables
    return [cell for table in tables for cell in published_cells(table, readme_row, benchmark)]


# --------------------------------------------------------------------------- writing


def dumps_table(data: dict[str, Any]) -> str:
    """JSON text with one line per column and per cell, so a changed number is a one-line diff."""
    compact: dict[str, str] = {}

    def placeholder(item: Any) -> str:
        key = f"@@{len(compact)}@@"
        compact[key] = json.dumps(item, ensure_ascii=False, separators=(", ", ": "))
        return key

    shaped = dict(data)
    shaped["columns"] = [placeholder(c) for c in data["columns"]]
    shaped["rows"] = [
        {
            **row,
            "marks": placeholder(row["marks"]),
            "markup": placeholder(row["markup"]),
            "cells": [placeholder(c) for c in row["cells"]],
        }
        for row in data["rows"]
    ]
    text = json.dumps(shaped, indent=2, ensure_ascii=False)
    text = re.sub(r'"(@@\d+@@)"', lambda m: compact[m.group(1)], text)
    if json.loads(text) != data:  # a string that looks like a placeholder would break the trick
        raise ReferenceDataError("compact JSON layout changed the table content")
    return text + "\n"


def write_tables(tables: Sequence[ReferenceTable], out_dir: Path) -> list[Path]:
    """Write `<id>.json` files (validated against the schema first) and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in tables:
        data = table.to_dict()
        _validator().validate(data)
        path = out_dir / f"{table.id}.json"
        path.write_text(dumps_table(data), encoding="utf-8")
        paths.append(path)
    return paths
