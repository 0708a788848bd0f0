"""What the HTML report page shows for each run beyond the README tables.

Per benchmark: the score with its error bar and n, the published number for the same model (the
registry's README row names) and the delta, flagged when it exceeds the run's 95% error bar;
per-category views (MMLU subjects, MT-Bench categories); a radar chart of the run against the
published Kanana models of the same table; and the stored items, browsable per benchmark.
Content only: numbers go through kanana_eval.report.formatting, markup is the template's.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from kanana_eval.report.formatting import (
    PERCENT,
    format_delta,
    format_number,
    run_display_scale,
)
from kanana_eval.results.io import read_json, read_jsonl
from kanana_eval.results.records import Scale
from kanana_eval.results.reference import ReferenceTable, published_cells

ITEMS_SHOWN = 300  # per benchmark on the page; the rest stay in items/<benchmark>.jsonl
TEXT_SHOWN = 600  # characters of prompt / output per item on the page
Z_95 = 1.96


@dataclass
class BenchmarkView:
    """One benchmark of a run as the page prints it (numbers already formatted)."""

    benchmark: str
    column: str
    value: str
    error_bar: str
    n: int
    n_available: int | None
    published: list[dict[str, str]] = field(default_factory=list)
    categories: list[tuple[str, str, int]] = field(default_factory=list)
    note: str = ""


def _run_scale(row: dict[str, Any]) -> Scale:
    """A scores.json row's scale; a row that leaves it out holds a fraction."""
    return Scale(row["scale"]) if row.get("scale") else Scale.FRACTION


def display_scale(row: dict[str, Any]) -> str:
    """The 1.5 conventions for new runs: percent with two decimals, judge scores with two."""
    return run_display_scale(_run_scale(row))


def _published(row: dict[str, Any], readme_rows: Sequence[str], tables: Sequence[ReferenceTable],
               value_text: str, error: float | None) -> list[dict[str, str]]:
    """Published cells for the model's README rows, with the delta and whether it is significant."""
    out = []
    for table in tables:
        for name in readme_rows:
            for cell in published_cells(table, name, row["benchmark"]):
                if cell.value is None:
                    continue
                delta = format_delta(value_text, cell.display, display_scale(row), cell.scale)
                flag = "same"
                if error is not None and abs(float(delta)) > error:
                    flag = "above" if float(delta) > 0 else "below"
                out.append({"table": table.title, "row": cell.row, "display": cell.display,
                            "delta": delta, "flag": flag})
    return out


def benchmark_views(
    scores: dict[str, Any], tables: Sequence[ReferenceTable]
) -> list[BenchmarkView]:
    """One view per scores.json row."""
    views = []
    readme_rows = scores["model"]["readme_rows"]
    for row in scores["scores"]:
        shown = display_scale(row)
        if row["value"] is None:
            views.append(BenchmarkView(row["benchmark"], row["column"], "", "", row["n"],
                                       row.get("n_available"),
                                       note="no score (not judged or no items)"))
            continue
        value = format_number(row["value"], _run_scale(row), shown)
        error = None
        error_text = ""
        if row.get("stderr") is not None:
            bar = Z_95 * row["stderr"]
            error_text = format_number(bar, _run_scale(row), shown)
            error = float(error_text)
        categories = [(name, format_number(sub["value"], _run_scale(row), shown), sub["n"])
                      for name, sub in sorted((row.get("subtasks") or {}).items())
                      if sub.get("value") is not None]
        if row.get("aggregation"):  # an inferred headline: every stored sub-score beside it
            categories = _sub_scores(row, shown) + categories
        views.append(BenchmarkView(
            row["benchmark"], row["column"], value, error_text, row["n"], row.get("n_available"),
            published=_published(row, readme_rows, tables, value, error), categories=categories))
    return views


def _sub_scores(row: dict[str, Any], shown: str) -> list[tuple[str, str, int]]:
    """A row's `metrics` (subset rates, candidate aggregations) with the items each counts."""
    subtasks = row.get("subtasks") or {}
    out = []
    for name, value in sorted((row.get("metrics") or {}).items()):
        if value is None:
            continue
        n = sum(int(sub["n"]) for key, sub in subtasks.items() if key.startswith(f"{name}:"))
        out.append((name, format_number(value, _run_scale(row), shown), n or row["n"]))
    return out


def _clip(text: str | None) -> str:
    text = "" if text is None else str(text)
    if len(text) <= TEXT_SHOWN:
        return text
    return text[:TEXT_SHOWN] + f"… [{len(text) - TEXT_SHOWN} more characters]"


def item_views(run_dir: Path, benchmark: str) -> tuple[list[dict[str, Any]], int]:
    """The first ITEMS_SHOWN items of a benchmark, texts clipped; and how many there are."""
    path = Path(run_dir) / "items" / f"{benchmark}.jsonl"
    if not path.is_file():
        return [], 0
    items = read_jsonl(path)
    shown = []
    for item in items[:ITEMS_SHOWN]:
        score = item.get("score")
        shown.append({
            "id": item["item_id"] + (f" (turn {item['turn']})" if item.get("turn") else ""),
            "subtask": item.get("subtask") or "", "verdict": item.get("verdict", ""),
            "score": "" if score is None else f"{score:g}",
            "prompt": _clip(item.get("prompt")), "output": _clip(item.get("output")),
            "extracted": _clip(item.get("extracted")), "target": _clip(item.get("target")),
        })
    return shown, len(items)


# --------------------------------------------------------------------------- radar chart


# 0-100 on every axis: percent as is, a run scale (or the display scale of the same name)
# stretched from 0-top (fractions ×100, judge scores ×10).
_AXIS_FACTOR = {PERCENT: 1.0, **{scale.value: 100.0 / scale.top for scale in Scale}}


def _axis_value(value: float | None, scale: str | Scale) -> float | None:
    """0-100 on every axis: percent as is, 0-1 fractions ×100, judge scores ×10.

    Scales with no 0-100 reading (WildBench's WB-Score runs from -100 to 100) stay off the chart.
    """
    factor = _AXIS_FACTOR.get(scale.value if isinstance(scale, Scale) else scale)
    if value is None or factor is None or not math.isfinite(value):
        return None
    return factor * value


def radar_series(
    scores: dict[str, Any], table: ReferenceTable
) -> tuple[list[str], list[dict[str, Any]]]:
    """Axes = the table's columns the run scored; series = the run and the table's Kanana rows."""
    run = {r["benchmark"]: r for r in scores["scores"] if r["value"] is not None}
    columns = [c for c in table.columns if c.benchmark in run]
    if len(columns) < 3:  # a radar needs three axes
        return [], []
    series = [{"name": f"{scores['model']['name']} (this run)", "run": True,
               "values": [_axis_value(run[c.benchmark]["value"], _run_scale(run[c.benchmark]))
                          for c in columns]}]
    for row in table.rows:
        if row.hidden or "kanana" not in row.name.casefold():
            continue
        values = [_axis_value(row.cells[table.columns.index(c)].value, c.scale) for c in columns]
        if any(v is not None for v in values):
            series.append({"name": row.name, "run": False, "values": values})
    return [c.header for c in columns], series


_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def radar_svg(axes: Sequence[str], series: Sequence[dict[str, Any]], size: int = 420) -> str:
    """An inline SVG radar chart (no script, no external file)."""
    if not axes:
        return ""
    centre, radius = size / 2, size / 2 - 70
    n = len(axes)

    def point(i: int, value: float) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * i / n
        r = radius * max(0.0, min(value, 100.0)) / 100
        return centre + r * math.cos(angle), centre + r * math.sin(angle)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 320}" height="{size}" '
             f'role="img" aria-label="radar chart">']
    for level in (25, 50, 75, 100):
        ring = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, level) for i in range(n)))
        parts.append(f'<polygon points="{ring}" fill="none" stroke="#ccc"/>')
    for i, name in enumerate(axes):
        x, y = point(i, 100)
        lx, ly = point(i, 116)
        parts.append(f'<line x1="{centre:.1f}" y1="{centre:.1f}" x2="{x:.1f}" y2="{y:.1f}" '
                     'stroke="#ccc"/>')
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="11" text-anchor="middle">'
                     f"{html.escape(name)}</text>")
    for k, s in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = [point(i, v) for i, v in enumerate(s["values"]) if v is not None]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        width = 3 if s["run"] else 1.5
        parts.append(f'<polygon points="{coords}" fill="{colour}" fill-opacity="0.08" '
                     f'stroke="{colour}" stroke-width="{width}"/>')
        ly = 20 + 18 * k
        parts.append(f'<rect x="{size + 10}" y="{ly - 10}" width="12" height="12" '
                     f'fill="{colour}"/>')
        parts.append(f'<text x="{size + 28}" y="{ly}" font-size="12">'
                     f'{html.escape(s["name"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def run_dashboard(run_dir: Path, tables: Sequence[ReferenceTable],
                  protocol: str | None = None) -> dict[str, Any]:
    """Everything the page shows for one run (only the benchmarks of `protocol` when given)."""
    scores = read_json(Path(run_dir) / "scores.json", "scores")
    if protocol is not None:
        scores = {**scores, "scores": [r for r in scores["scores"] if r["protocol"] == protocol]}
    kinds = {}
    for table in tables:  # one radar per README table the run shares three columns with
        axes, series = radar_series(scores, table)
        if axes:
            kinds[table.title] = Markup(radar_svg(axes, series))  # built from escaped parts
    benchmarks = []
    for view in benchmark_views(scores, tables):
        items, total = item_views(Path(run_dir), view.benchmark)
        benchmarks.append({"view": view, "item_rows": items, "n_items": total})
    return {"model": scores["model"]["name"], "empty": not scores["scores"],
            "run_id": scores["run_id"], "smoke": scores["smoke"], "run_dir": str(run_dir),
            "benchmarks": benchmarks, "radars": kinds, "items_shown": ITEMS_SHOWN}
