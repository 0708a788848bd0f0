"""The README's published numbers as data: load, look up, and extract them from the README.

`results/reference/<table-id>.json` stores one README table as printed (schema
`schemas/reference.v1.schema.json`), so reports can print the published table again byte for
byte and put a run's numbers beside it without ever re-reading the README. The files are made
once by `python -m kanana_eval.reference --extract README.md` and then checked in; which tables,
benchmark ids and scales is `reference_specs.py`.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from kanana_eval.core.errors import KananaError
from kanana_eval.core.paths import resource_dir
from kanana_eval.results.reference_specs import TABLE_SPECS, TableSpec

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "reference.v1.schema.json"
MARK_CHARS = "*†‡"
_BENCHMARK_ID = re.compile(r"^[a-z0-9_]+@[a-z0-9_]+$")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


class ReferenceDataError(KananaError):
    """Reference tables are missing or malformed, or a README table does not parse as expected."""


# --------------------------------------------------------------------------- stored format


@dataclass(frozen=True)
class Column:
    header: str
    benchmark: str
    scale: str  # "percent" | "fraction" | "judge_1_10" | "wb_score"


@dataclass(frozen=True)
class Cell:
    value: float | None
    display: str
    bold: bool
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameMarkup:
    strong: bool
    suffix: str = ""


@dataclass(frozen=True)
class Row:
    name: str
    marks: tuple[str, ...]
    markup: NameMarkup
    hidden: bool
    group: str | None
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Layout:
    orientation: str  # "models_as_rows" | "models_as_columns"
    corner: str
    header_cell: str
    label_cell: str
    value_cell: str
    group_cell: str | None


@dataclass(frozen=True)
class Section:
    heading: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    file: str
    sha256: str
    line: int


@dataclass(frozen=True)
class ReferenceTable:
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
        _check_consistency(table)
        return table


def _check_consistency(table: ReferenceTable) -> None:
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
            printed = float(cell.display) if _NUMBER.match(cell.display) else None
            if cell.value != printed:
                raise ReferenceDataError(
                    f"reference table '{table.id}', row '{row.name}', {column.header}: value "
                    f"{cell.value} does not match the printed '{cell.display}'"
                )
        if row.group is not None and table.layout.group_cell is None:
            raise ReferenceDataError(
                f"reference table '{table.id}': row '{row.name}' has a group but the layout has no group_cell"
            )


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def load_reference_table(path: Path) -> ReferenceTable:
    """Load and validate one `<table-id>.json`; every problem becomes one ReferenceDataError line."""
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


# --------------------------------------------------------------------------- README parser


@dataclass(frozen=True)
class ParsedCell:
    open_tag: str  # e.g. '<td align="center">'
    inner: str  # HTML between the opening and closing tag

    @property
    def tag(self) -> str:
        return self.open_tag[1:3]


@dataclass(frozen=True)
class ParsedRow:
    cells: tuple[ParsedCell, ...]
    hidden: bool
    comment: int | None  # index of the HTML comment holding the row, per table
    line: int


@dataclass(frozen=True)
class ParsedTable:
    heading: str
    path: tuple[str, ...]
    line: int
    markup: str  # from `<table>` to `</table>` inclusive, as printed
    header: ParsedRow
    rows: tuple[ParsedRow, ...]
    footnotes: tuple[str, ...]


_HEADING = re.compile(r"^(#{1,6}) +(.*?)\s*$")
_TOKEN = re.compile(r"<!--|-->|<tr>|</tr>|(<(t[hd])(?: [^<>]*)?>)(.*?)</\2>", re.S)


def parse_readme_tables(text: str) -> list[ParsedTable]:
    """Every `<table>` of a Markdown README with its heading path and the footnotes after it.

    Strict on purpose: anything inside a table other than rows, cells, whitespace and HTML
    comments around rows raises, so a README change cannot slip into the data unnoticed.
    """
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset)

    lines = text.split("\n")
    tables: list[ParsedTable] = []
    stack: list[tuple[int, str, str]] = []  # (level, text, line as printed)
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (heading := _HEADING.match(line)):
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2), line.rstrip()))
        elif not in_fence and line.strip() == "<table>":
            start = line_starts[i] + line.index("<table>")
            close = text.find("</table>", start)
            if close < 0:
                raise ReferenceDataError(f"README line {i + 1}: <table> is never closed")
            end = close + len("</table>")
            if not stack:
                raise ReferenceDataError(f"README line {i + 1}: table has no heading above it")
            header, *rows = _parse_rows(text, start + len("<table>"), close, line_of)
            i = line_of(end)  # index of the line after the one holding </table>
            tables.append(
                ParsedTable(
                    heading=stack[-1][2],
                    path=tuple(s[1] for s in stack),
                    line=line_of(start),
                    markup=text[start:end],
                    header=header,
                    rows=tuple(rows),
                    footnotes=_footnotes(lines, i),
                )
            )
            continue
        i += 1
    return tables


def _parse_rows(text: str, start: int, stop: int, line_of: Callable[[int], int]) -> list[ParsedRow]:
    rows: list[ParsedRow] = []
    cells: list[ParsedCell] | None = None
    in_comment = False
    comments = -1
    row_line = 0
    pos = start
    for token in _TOKEN.finditer(text, start, stop):
        gap = text[pos : token.start()]
        if gap.strip():
            raise ReferenceDataError(
                f"README line {line_of(pos)}: unexpected table markup {gap.strip()[:40]!r}"
            )
        pos = token.end()
        kind = token.group(0)
        if kind == "<!--":
            if in_comment or cells is not None:
                raise ReferenceDataError(
                    f"README line {line_of(token.start())}: comment inside a row or nested comment"
                )
            in_comment, comments = True, comments + 1
        elif kind == "-->":
            if not in_comment or cells is not None:
                raise ReferenceDataError(f"README line {line_of(token.start())}: stray comment end")
            in_comment = False
        elif kind == "<tr>":
            if cells is not None:
                raise ReferenceDataError(f"README line {line_of(token.start())}: <tr> inside a row")
            cells, row_line = [], line_of(token.start())
        elif kind == "</tr>":
            if cells is None:
                raise ReferenceDataError(
                    f"README line {line_of(token.start())}: </tr> without <tr>"
                )
            rows.append(
                ParsedRow(tuple(cells), in_comment, comments if in_comment else None, row_line)
            )
            cells = None
        else:
            if cells is None:
                raise ReferenceDataError(
                    f"README line {line_of(token.start())}: cell outside a row"
                )
            cells.append(ParsedCell(token.group(1), token.group(3)))
    if text[pos:stop].strip() or cells is not None or in_comment:
        raise ReferenceDataError(f"README line {line_of(pos)}: table ends inside a row or comment")
    if not rows or rows[0].hidden:
        raise ReferenceDataError(f"README line {line_of(start)}: table has no visible header row")
    return rows


def _footnotes(lines: list[str], first: int) -> tuple[str, ...]:
    """The `>` lines after a table, blank lines between them allowed, until any other line."""
    notes: list[str] = []
    for line in lines[first:]:
        if line.startswith(">"):
            notes.append(line)
        elif line.strip():
            break
    return tuple(notes)


# --------------------------------------------------------------------------- extraction


_NAME = re.compile(rf"^(?P<name>[^<]*?)(?P<marks>[{MARK_CHARS}]*)(?P<suffix>\s*\(?<.*)?$", re.S)
_CELL_TEXT = re.compile(rf"^(?P<display>.*?)(?P<marks>[{MARK_CHARS}]*)$", re.S)
_STRONG = re.compile(r"^<strong>(.*)</strong>$", re.S)


def _unwrap_strong(inner: str) -> tuple[bool, str]:
    match = _STRONG.match(inner)
    return (True, match.group(1)) if match else (False, inner)


def parse_name(inner: str) -> tuple[str, tuple[str, ...], NameMarkup]:
    """Split a printed name cell into name, marks and markup ('<strong>Kanana-8B*</strong>')."""
    strong, text = _unwrap_strong(inner)
    match = _NAME.match(text)
    if not match or not match.group("name").strip():
        raise ReferenceDataError(f"cannot read a model name from {inner!r}")
    return (
        match.group("name"),
        tuple(match.group("marks")),
        NameMarkup(strong, match.group("suffix") or ""),
    )


def parse_cell(inner: str) -> Cell:
    """A value cell as printed: '<strong>90.47</strong>' -> 90.47, bold; 'TBA' and '-' -> None."""
    bold, text = _unwrap_strong(inner)
    match = _CELL_TEXT.match(text)
    assert match is not None  # the pattern matches every string
    display = match.group("display")
    value = float(display) if _NUMBER.match(display) else None
    return Cell(value, display, bold, tuple(match.group("marks")))


def _one(tags: Iterable[str], what: str, table_id: str) -> str:
    found = sorted(set(tags))
    if len(found) != 1:
        raise ReferenceDataError(
            f"table '{table_id}': {what} cells use {found or 'no'} opening tags, expected one"
        )
    return found[0]


def _is_group(row: ParsedRow) -> bool:
    """A scale-group row: one header cell spanning the table (`27b+ scale`)."""
    return len(row.cells) == 1 and row.cells[0].tag == "th"


def _column(spec: TableSpec, header: str) -> Column:
    if header not in spec.columns:
        raise ReferenceDataError(
            f"table '{spec.id}': no benchmark id for column '{header}' in its TableSpec"
        )
    benchmark, scale = spec.columns[header]
    return Column(header, benchmark, scale)


def table_from_parsed(parsed: ParsedTable, spec: TableSpec, source: Source) -> ReferenceTable:
    """Turn one parsed README table into stored form, keeping everything as printed."""
    corner, *heads = parsed.header.cells
    header_cell = _one((c.open_tag for c in parsed.header.cells), "header", spec.id)
    data_rows = [r for r in parsed.rows if not _is_group(r)]
    label_cell = _one((r.cells[0].open_tag for r in data_rows), "label", spec.id)
    value_cell = _one((c.open_tag for r in data_rows for c in r.cells[1:]), "value", spec.id)
    group_tags = [r.cells[0].open_tag for r in parsed.rows if _is_group(r)]
    group_cell = _one(group_tags, "group", spec.id) if group_tags else None
    rows: list[Row] = []
    if spec.orientation == "models_as_rows":
        columns = tuple(_column(spec, c.inner) for c in heads)
        group: str | None = None
        for parsed_row in parsed.rows:
            if _is_group(parsed_row):
                group = parsed_row.cells[0].inner
                continue
            if len(parsed_row.cells) != len(columns) + 1:
                raise ReferenceDataError(
                    f"README line {parsed_row.line}: {len(parsed_row.cells)} cells, expected {len(columns) + 1}"
                )
            name, marks, markup = parse_name(parsed_row.cells[0].inner)
            cells = tuple(parse_cell(c.inner) for c in parsed_row.cells[1:])
            rows.append(Row(name, marks, markup, parsed_row.hidden, group, cells))
    else:
        if group_tags or any(r.hidden for r in parsed.rows):
            raise ReferenceDataError(
                f"table '{spec.id}': transposed tables cannot have groups or hidden rows"
            )
        columns = tuple(_column(spec, r.cells[0].inner) for r in parsed.rows)
        for index, head in enumerate(heads, start=1):
            name, marks, markup = parse_name(head.inner)
            cells = tuple(parse_cell(r.cells[index].inner) for r in parsed.rows)
            rows.append(Row(name, marks, markup, False, None, cells))
    layout = Layout(spec.orientation, corner.inner, header_cell, label_cell, value_cell, group_cell)
    table = ReferenceTable(
        id=spec.id,
        title=spec.title,
        kind=spec.kind,
        section=Section(parsed.heading, parsed.path),
        layout=layout,
        columns=columns,
        rows=tuple(rows),
        footnotes=parsed.footnotes,
        source=source,
    )
    _check_consistency(table)
    return table


def extract_tables(text: str, file_name: str = "kanana-README.md") -> list[ReferenceTable]:
    """Build every table of TABLE_SPECS from README text, proving each re-renders byte for byte."""
    from kanana_eval.report.render import render_readme_table  # report imports this module

    parsed = parse_readme_tables(text)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    tables = []
    for spec in TABLE_SPECS:
        matches = [p for p in parsed if p.path == spec.path]
        if len(matches) != 1:
            raise ReferenceDataError(
                f"table '{spec.id}': {len(matches)} README tables under {' > '.join(spec.path)}"
            )
        table = table_from_parsed(matches[0], spec, Source(file_name, sha, matches[0].line))
        if render_readme_table(table) != matches[0].markup:
            raise ReferenceDataError(
                f"table '{spec.id}' does not re-render as printed: the stored format misses something"
            )
        tables.append(table)
    return tables


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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kanana_eval.reference --extract README.md [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m kanana_eval.reference", description=__doc__)
    parser.add_argument("--extract", type=Path, required=True, metavar="README.md")
    parser.add_argument("--out", type=Path, default=None, help="default: results/reference")
    args = parser.parse_args(argv)
    try:
        text = args.extract.read_text(encoding="utf-8")
        tables = extract_tables(text, args.extract.name)
        for path in write_tables(tables, args.out or resource_dir("results/reference")):
            print(path)
    except (OSError, KananaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
