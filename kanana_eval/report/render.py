"""Print table views as README HTML or Markdown through the jinja2 templates in reports/templates.

`render_readme_table` on reference data alone gives back the README's own markup byte for byte
(4-space indentation, hidden rows wrapped in `<!-- <tr> ... </tr> -->`, adjacent hidden rows in
one comment), so a regenerated table can be pasted into the README unchanged.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

import kanana_eval
from kanana_eval.core.errors import ResultsError
from kanana_eval.core.paths import resource_dir
from kanana_eval.report.formatting import format_number
from kanana_eval.report.heatmap import write_heatmaps
from kanana_eval.report.page import run_dashboard
from kanana_eval.report.tables import (
    DELTA_PREFIX,
    SMOKE_MARK,
    RunRow,
    TableView,
    ViewCell,
    ViewRow,
    build_table_view,
    load_run_row,
)
from kanana_eval.results.io import read_json
from kanana_eval.results.records import Scale
from kanana_eval.results.reference import (
    ReferenceDataError,
    ReferenceTable,
    get_reference_table,
    load_reference_tables,
)


@functools.lru_cache(maxsize=4)
def _env(template_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _render(template: str, **context: object) -> str:
    return _env(resource_dir("reports/templates")).get_template(template).render(**context)


# --------------------------------------------------------------------------- README HTML


def _wrap(open_tag: str, inner: Markup) -> Markup:
    name = open_tag[1:].split(" ", 1)[0].rstrip(">")
    return Markup(open_tag) + inner + Markup(f"</{name}>")


def _strong(inner: Markup, strong: bool) -> Markup:
    return _wrap("<strong>", inner) if strong else inner


def _html_text(text: str, kind: str) -> Markup:
    """README strings are HTML as printed; text from runs is escaped."""
    return Markup(text) if kind in ("reference", "group") else escape(text)


def _html_label(row: ViewRow) -> Markup:
    body = _html_text(row.name + row.marks, row.kind) + Markup(row.suffix)
    return _strong(body, row.strong)


def _html_cell(cell: ViewCell, kind: str) -> Markup:
    return _strong(_html_text(cell.display + cell.marks, kind), cell.bold)


def _html_grid(view: TableView) -> tuple[list[Markup], list[dict[str, object]]]:
    layout = view.table.layout
    if layout.orientation == "models_as_columns":
        if any(r.hidden or r.kind == "group" for r in view.rows):
            raise ReferenceDataError(
                f"table '{view.table.id}': a transposed table cannot show hidden or group rows"
            )
        header = [_wrap(layout.header_cell, Markup(layout.corner))]
        header += [_wrap(layout.header_cell, _html_label(r)) for r in view.rows]
        body = [
            {
                "open": "",
                "close": "",
                "cells": [_wrap(layout.label_cell, Markup(column.header))]
                + [_wrap(layout.value_cell, _html_cell(r.cells[i], r.kind)) for r in view.rows],
            }
            for i, column in enumerate(view.table.columns)
        ]
        return header, body
    header = [_wrap(layout.header_cell, Markup(layout.corner))]
    header += [_wrap(layout.header_cell, Markup(c.header)) for c in view.table.columns]
    body: list[dict[str, object]] = []
    for i, row in enumerate(view.rows):
        if row.kind == "group":
            assert layout.group_cell is not None  # checked when the table was loaded
            cells = [_wrap(layout.group_cell, Markup(row.name))]
        else:
            cells = [_wrap(layout.label_cell, _html_label(row))]
            cells += [_wrap(layout.value_cell, _html_cell(c, row.kind)) for c in row.cells]
        before = view.rows[i - 1].hidden if i > 0 else False
        after = view.rows[i + 1].hidden if i + 1 < len(view.rows) else False
        body.append(
            {
                "open": Markup("<!-- " if row.hidden and not before else ""),
                "close": Markup(" -->" if row.hidden and not after else ""),
                "cells": cells,
            }
        )
    return header, body


def render_view_html(view: TableView) -> str:
    """A built table view in README markup, from `<table>` to `</table>`."""
    header, body = _html_grid(view)
    return _render("readme_table.html.j2", header=header, body=body)


def render_readme_table(
    table: ReferenceTable, extra_rows: Sequence[RunRow] = (), *, with_deltas: bool = False
) -> str:
    """The table in README markup; run rows follow the published ones (see build_table_view)."""
    return render_view_html(build_table_view(table, extra_rows, with_deltas=with_deltas))


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>])")


def md_escape(text: str) -> str:
    """Plain text made safe inside a Markdown table cell."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_from_html(text: str) -> str:
    return md_escape(html.unescape(re.sub(r"<[^>]+>", "", text)))


def _md_text(text: str, kind: str) -> str:
    return _md_from_html(text) if kind in ("reference", "group") else md_escape(text)


def _md_bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold and text else text


def _md_label(row: ViewRow, include_hidden: bool) -> str:
    label = _md_bold(
        _md_text(row.name + row.marks, row.kind) + _md_from_html(row.suffix), row.strong
    )
    return f"{label} (hidden in README)" if row.hidden and include_hidden else label


def _md_cell(cell: ViewCell, kind: str) -> str:
    return _md_bold(_md_text(cell.display + cell.marks, kind), cell.bold)


def render_view_markdown(view: TableView, *, include_hidden: bool = False) -> str:
    """A built table view as a Markdown table (hidden README rows left out unless asked for)."""
    table = view.table
    rows = [r for r in view.rows if include_hidden or not r.hidden]
    if table.layout.orientation == "models_as_columns":
        header = [_md_from_html(table.layout.corner)] + [_md_label(r, include_hidden) for r in rows]
        body = [
            [_md_from_html(c.header)] + [_md_cell(r.cells[i], r.kind) for r in rows]
            for i, c in enumerate(table.columns)
        ]
    else:
        header = [_md_from_html(table.layout.corner)] + [
            _md_from_html(c.header) for c in table.columns
        ]
        body = []
        for row in rows:
            if row.kind == "group":
                body.append([_md_bold(_md_from_html(row.name), True)] + [""] * len(table.columns))
            else:
                body.append(
                    [_md_label(row, include_hidden)] + [_md_cell(c, row.kind) for c in row.cells]
                )
    return _render("markdown_table.md.j2", header=header, body=body).rstrip("\n")


def render_markdown_table(
    table: ReferenceTable,
    extra_rows: Sequence[RunRow] = (),
    *,
    with_deltas: bool = False,
    include_hidden: bool = False,
) -> str:
    """The table as Markdown: same rows as the README shows, then the run rows."""
    view = build_table_view(table, extra_rows, with_deltas=with_deltas)
    return render_view_markdown(view, include_hidden=include_hidden)


# --------------------------------------------------------------------------- report pages


def _select_tables(
    runs: Sequence[RunRow], tables: Sequence[ReferenceTable], wanted: Sequence[str] | None
) -> list[ReferenceTable]:
    if wanted is not None:
        chosen = [get_reference_table(table_id, tables) for table_id in wanted]
    elif not runs:
        chosen = list(tables)
    else:
        chosen = [t for t in tables if any(r.score(c.benchmark) for r in runs for c in t.columns)]
        if not chosen:  # benchmarks of no README table (a new one): their protocol's pages
            protocols = {s.benchmark.split("@")[1] for r in runs for s in r.scores}
            chosen = [t for t in tables if t.kind in protocols]
        if not chosen:
            raise ResultsError("the runs score no benchmark of any README table or protocol "
                               "page: nothing to report")
    return sorted(chosen, key=lambda t: (t.source.file, t.source.line))


def _footnote_text(line: str) -> str:
    """A README footnote line (`> \\* This model ...`) as plain text."""
    text = re.sub(r"^>\s?", "", line)
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!>|])", r"\1", text)


def _run_summary(run: RunRow) -> str:
    smoke = (
        f"smoke run{'' if run.limit is None else f' (--limit {run.limit})'}"
        if run.smoke
        else "full run"
    )
    folder = f", folder {run.run_dir}" if run.run_dir is not None else ""
    return f"run {run.run_id}: model {run.model}, {smoke}{folder}"


def _sections(
    runs: Sequence[RunRow], tables: Sequence[ReferenceTable], all_tables: Sequence[ReferenceTable]
) -> list[dict[str, object]]:
    sections = []
    for table in tables:
        shown = [r for r in runs if any(r.score(c.benchmark) for c in table.columns)]
        view = build_table_view(table, shown, with_deltas=True, reference_tables=all_tables)
        notes = list(dict.fromkeys(view.notes))
        notes += [
            f"Run {r.run_id} scores none of this table's benchmarks."
            for r in runs
            if r not in shown
        ]
        sections.append(
            {
                "id": table.id,
                "title": table.title,
                "path": " > ".join(table.section.path),
                "html": Markup(render_view_html(view)),
                "markdown": render_view_markdown(view),
                "footnotes": list(table.footnotes),
                "footnote_texts": [_footnote_text(f) for f in table.footnotes],
                "notes": notes,
            }
        )
    return sections


def _judge_cell(value: float | None) -> str:
    return "" if value is None else format_number(value, Scale.JUDGE_1_10, Scale.JUDGE_1_10)


def _judge_breakdowns(run_dirs: Sequence[Path]) -> list[dict[str, object]]:
    """Per run with judged benchmarks: judge score per MT-Bench category, per turn and overall."""
    breakdowns = []
    for run_dir in run_dirs:
        scores = read_json(Path(run_dir) / "scores.json", "scores")
        rows = [r for r in scores["scores"] if "judge" in r]
        if not rows:
            continue
        categories = list(dict.fromkeys(c for r in rows for c in r.get("subtasks") or {}))
        body = [[c] + [_judge_cell((r.get("subtasks") or {}).get(c, {}).get("value")) for r in rows]
                for c in categories]
        for label, key in (("turn 1", "turn_1"), ("turn 2", "turn_2")):
            body.append([label] + [_judge_cell((r.get("metrics") or {}).get(key)) for r in rows])
        body.append(["overall"] + [_judge_cell(r["value"]) for r in rows])
        judges = []
        for r in rows:
            judge = r["judge"]
            if judge.get("status") != "judged":
                judges.append(f"{r['column']}: not judged yet (kanana-eval judge RUN)")
                continue
            penalty = judge.get("language_penalty", {}).get("applied")
            judges.append(f"{r['column']}: judge {judge.get('model')}, {r.get('n_dropped', 0)} "
                          "judgment(s) dropped"
                          + (", language penalty applied" if penalty else ""))
        breakdowns.append({"run": scores["run_id"], "model": scores["model"]["name"],
                           "header": ["category"] + [r["column"] for r in rows], "rows": body,
                           "notes": judges})
    return breakdowns


def _dashboards(
    run_dirs: Sequence[Path], tables: Sequence[ReferenceTable], kind: str
) -> list[dict[str, object]]:
    """The per-run detail views of one page, leaving out runs with nothing of this kind."""
    dashboards = (run_dashboard(run_dir, tables, kind) for run_dir in run_dirs)
    return [d for d in dashboards if not d["empty"]]


def render_report(
    run_dirs: Sequence[Path], out_dir: Path, tables: Sequence[str] | None = None
) -> list[Path]:
    """Write `<kind>.html` and `<kind>.md` (kind: base, ...) for the runs; return the paths.

    Tables default to every README table sharing a benchmark with the runs (all tables when
    no run is given). Each run is a new row under the published ones, followed by a
    "Δ vs <README row>" row per name in the run's `model.readme_rows`.
    """
    runs = [load_run_row(Path(d)) for d in run_dirs]
    all_tables = load_reference_tables()
    chosen = _select_tables(runs, all_tables, tables)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    heatmaps = write_heatmaps(run_dirs, out_dir)  # NIAH grids: PNG + SVG beside the pages
    for kind in dict.fromkeys(t.kind for t in chosen):
        context = {
            "kind": kind,
            "version": kanana_eval.__version__,
            "runs": [_run_summary(r) for r in runs],
            "smoke_mark": SMOKE_MARK,
            "delta_prefix": DELTA_PREFIX,
            "sections": _sections(runs, [t for t in chosen if t.kind == kind], all_tables),
            "judge_breakdowns": _judge_breakdowns(run_dirs) if kind == "instruct" else [],
            "dashboards": _dashboards(run_dirs, [t for t in all_tables if t.kind == kind], kind),
            "heatmaps": [h for h in heatmaps if h["protocol"] == kind],
        }
        for suffix, template in (("html", "report.html.j2"), ("md", "report.md.j2")):
            path = out_dir / f"{kind}.{suffix}"
            path.write_text(_render(template, **context) + "\n", encoding="utf-8")
            written.append(path)
    return written
