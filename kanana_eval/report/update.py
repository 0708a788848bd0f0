"""`kanana-eval report --update README.md`: regenerate the tables between marker comments.

A README marks each table it wants kept current:

    <!-- kanana-eval:table kanana-1.5-base -->
    ...anything (replaced)...
    <!-- /kanana-eval:table -->

`format=markdown` after the table id asks for the Markdown table instead of the README's HTML.
Only the text between a marker pair changes; every other byte of the file stays as it was, and
the file is written atomically. A marker naming an unknown table, an unclosed or nested marker
is a one-line error and the file is left untouched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kanana_eval.core.errors import ResultsError
from kanana_eval.report.render import render_markdown_table, render_readme_table
from kanana_eval.report.tables import RunRow
from kanana_eval.results.reference import (
    ReferenceDataError,
    get_reference_table,
    load_reference_tables,
)

_OPEN = re.compile(r"<!--\s*kanana-eval:table\s+([A-Za-z0-9_.\-]+)((?:\s+\w+=\w+)*)\s*-->")
_CLOSE = re.compile(r"<!--\s*/kanana-eval:table\s*-->")


def _options(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split())


def update_text(text: str, runs: Sequence[RunRow]) -> tuple[str, list[str]]:
    """The README text with every marked table regenerated; and the table ids updated."""
    tables = load_reference_tables()
    out: list[str] = []
    updated: list[str] = []
    pos = 0
    while True:
        opening = _OPEN.search(text, pos)
        stray = _CLOSE.search(text, pos)
        if stray is not None and (opening is None or stray.start() < opening.start()):
            raise ResultsError(
                f"'<!-- /kanana-eval:table -->' at offset {stray.start()} closes no table"
            )
        if opening is None:
            break
        closing = _CLOSE.search(text, opening.end())
        nested = _OPEN.search(text, opening.end())
        if closing is None or (nested is not None and nested.start() < closing.start()):
            raise ResultsError(
                f"table marker '{opening.group(1)}' is not closed before the next one"
            )
        table_id, options = opening.group(1), _options(opening.group(2))
        try:
            table = get_reference_table(table_id, tables)
        except ReferenceDataError as exc:
            raise ResultsError(str(exc)) from exc
        fmt = options.get("format", "html")
        if fmt not in ("html", "markdown"):
            raise ResultsError(
                f"table marker '{table_id}': format must be html or markdown, not {fmt}"
            )
        shown = [r for r in runs if any(r.score(c.benchmark) for c in table.columns)]
        if fmt == "markdown":
            body = render_markdown_table(table, shown)
        else:
            body = render_readme_table(table, shown)
        out.append(text[pos:opening.end()])
        out.append("\n" + body.rstrip("\n") + "\n")
        pos = closing.start()
        out.append(text[pos:closing.end()])
        pos = closing.end()
        updated.append(table_id)
    out.append(text[pos:])
    return "".join(out), updated


def update_readme(path: Path, runs: Sequence[RunRow]) -> list[str]:
    """Rewrite the marked tables of `path` in place (atomically); return the table ids updated."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                           ) from exc
    new, updated = update_text(text, runs)
    if not updated:
        raise ResultsError(f"{path} has no '<!-- kanana-eval:table TABLE-ID -->' markers")
    if new != text:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            stream.write(new.encode("utf-8"))
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    return updated
