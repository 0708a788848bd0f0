"""Extract the README's tables into `results/reference/<id>.json`, proving each re-renders.

    python -m kanana_eval.report.readme_extract --extract README.md [--out DIR]

Each table named in `reference_specs.TABLE_SPECS` is parsed (`readme_parser.py`), turned into
stored form keeping everything as printed, and rendered back through `report.render`: a table
that would not print again byte for byte is refused, so the stored data misses nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from kanana_eval.core.errors import KananaError
from kanana_eval.core.paths import resource_dir
from kanana_eval.report.readme_parser import ParsedRow, ParsedTable, parse_readme_tables
from kanana_eval.report.render import render_readme_table
from kanana_eval.results.reference import (
    MARK_CHARS,
    Cell,
    Column,
    Layout,
    NameMarkup,
    ReferenceDataError,
    ReferenceTable,
    Row,
    Section,
    Source,
    check_consistency,
    printed_value,
    write_tables,
)
from kanana_eval.results.reference_specs import TABLE_SPECS, TableSpec

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
    return Cell(printed_value(display), display, bold, tuple(match.group("marks")))


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
                    f"README line {parsed_row.line}: {len(parsed_row.cells)} cells, "
                    f"expected {len(columns) + 1}"
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
    check_consistency(table)
    return table


def extract_tables(text: str, file_name: str = "kanana-README.md") -> list[ReferenceTable]:
    """Build every table of TABLE_SPECS from README text, proving each re-renders byte for byte."""
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
                f"table '{spec.id}' does not re-render as printed: "
                "the stored format misses something"
            )
        tables.append(table)
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kanana_eval.report.readme_extract --extract README.md [--out DIR]`."""
    parser = argparse.ArgumentParser(
        prog="python -m kanana_eval.report.readme_extract",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
