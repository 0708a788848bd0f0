"""Read the `<table>`s of a Markdown README, strictly, with their heading path and footnotes.

Only the markup: which rows, which cells (opening tag and inner HTML as printed), which rows
sit in an HTML comment. Turning a parsed table into stored reference data is
`readme_extract.py`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from kanana_eval.results.reference import ReferenceDataError


@dataclass(frozen=True)
class ParsedCell:
    """One `<th>` or `<td>`: its opening tag and inner HTML exactly as printed."""

    open_tag: str  # e.g. '<td align="center">'
    inner: str  # HTML between the opening and closing tag

    @property
    def tag(self) -> str:
        """'th' or 'td'."""
        return self.open_tag[1:3]


@dataclass(frozen=True)
class ParsedRow:
    """One `<tr>`, and whether (and in which comment) the README hides it."""

    cells: tuple[ParsedCell, ...]
    hidden: bool
    comment: int | None  # index of the HTML comment holding the row, per table
    line: int


@dataclass(frozen=True)
class ParsedTable:
    """One `<table>` with where it sits, its markup as printed and the footnotes after it."""

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
