"""What `kanana-eval compare` hands to people and CI: terminal table, Markdown, JSON, JUnit XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

from kanana_eval.compare.gate import (
    BETTER,
    MCNEMAR,
    NOT_COMPARED,
    WORSE,
    BenchmarkResult,
    Comparison,
    ItemChange,
    Key,
)
from kanana_eval.results.records import Scale

JSON_FORMAT = "kanana-eval-compare"
JSON_VERSION = 1
TERMINAL_FLIPS = 10  # item ids listed per direction in the terminal
MARKDOWN_FLIPS = 50  # and in the Markdown summary; the JSON verdict lists them all


def rule_text(c: Comparison) -> str:
    """The rule in one sentence, with this comparison's alpha and number of benchmarks."""
    m = sum(1 for r in c.results if r.n_paired)
    return (f"worse = one-sided paired p-value, Holm-adjusted over {m} benchmark(s), below "
            f"alpha {c.alpha:g} AND a drop of at least the benchmark's minimum drop; better "
            "symmetrically; otherwise same")


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:+.2f}"


def _value(v: float | None, scale: str) -> str:
    """Fractions as percentages (the README's convention), judge scores as they are."""
    return _num(None if v is None else v * Scale(scale).points_per_unit)


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 1 else "1"


def _ci(r: BenchmarkResult) -> str:
    return "-" if math.isnan(r.ci_low) else f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]"


def _unit(r: BenchmarkResult) -> str:
    return "pt" if Scale(r.scale) is Scale.FRACTION else "score"


def _test_name(r: BenchmarkResult) -> str:
    return "McNemar" if r.method == MCNEMAR else "bootstrap"


def _row_cells(r: BenchmarkResult) -> list[str]:
    return [r.benchmark, _value(r.baseline_value, r.scale), _value(r.candidate_value, r.scale),
            _signed(r.diff), _ci(r), _p(r.p_worse_adj), _p(r.p_better_adj),
            f"{r.min_drop:g} {_unit(r)}", _test_name(r), str(r.n_paired), r.verdict.upper()]


def _headers(c: Comparison) -> list[str]:
    return ["benchmark", "baseline", "candidate", "Δ points", f"{c.confidence:.0%} CI",
            "p worse (Holm)", "p better (Holm)", "min drop", "test", "paired", "verdict"]


def _key(k: Key) -> str:
    return k[0] if k[1] is None else f"{k[0]} (turn {k[1]})"


def flip_words(r: BenchmarkResult) -> tuple[str, str]:
    """How the two lists of changed items read for this benchmark's kind of score."""
    if r.binary:
        return "passed before, fail now", "failed before, pass now"
    return "scored lower now", "scored higher now"


def _change(ch: ItemChange, binary: bool) -> str:
    return ch.label() if binary else f"{ch.label()}: {ch.baseline:g} → {ch.candidate:g}"


def pairing_notes(r: BenchmarkResult) -> list[str]:
    """Items that could not be paired, counted (never silently dropped)."""
    p = r.pairing
    if p is None:
        return []
    parts = [(len(p.only_baseline), "only in the baseline"),
             (len(p.only_candidate), "only in the candidate"),
             (len(p.unscored_baseline), "without a score in the baseline"),
             (len(p.unscored_candidate), "without a score in the candidate")]
    said = [f"{n} item(s) {what}" for n, what in parts if n]
    return [f"not paired: {', '.join(said)}"] if said else []


def general_notes(c: Comparison) -> list[str]:
    notes = []
    if c.smoke:
        which = [name for name, side in (("baseline", c.baseline), ("candidate", c.candidate))
                 if side is not None and side.smoke]
        notes.append(f"SMOKE RUN ({' and '.join(which)}): items cut by --limit or --max-gen-toks; "
                     "the verdict covers the paired items only and is no statement about the full "
                     "benchmarks")
    if c.only_in_baseline:
        notes.append("benchmarks only in the baseline (not compared): "
                     + ", ".join(c.only_in_baseline))
    if c.only_in_candidate:
        notes.append("benchmarks only in the candidate (not compared): "
                     + ", ".join(c.only_in_candidate))
    notes += c.warnings
    return notes


def summary_line(c: Comparison) -> str:
    if c.regressions:
        return f"REGRESSION in {', '.join(c.regressions)}"
    better = f" (better: {', '.join(c.improvements)})" if c.improvements else ""
    return f"no regression{better}"


def _side(c: Comparison, which: str) -> str:
    side = c.baseline if which == "baseline" else c.candidate
    if side is None:
        return which
    d = side.describe()
    return f"{d['model']} {d['run_id']}{' (smoke)' if d['smoke'] else ''}"


# ---------------------------------------------------------------------------------------------


def render_table(c: Comparison) -> str:
    """The terminal report: header, aligned table, notes, flipped items, one verdict line."""
    rows = [_headers(c)] + [_row_cells(r) for r in c.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"baseline:  {_side(c, 'baseline')}", f"candidate: {_side(c, 'candidate')}",
             f"rule: {rule_text(c)}", ""]
    for row in rows:
        cells = [cell.ljust(w) if i in (0, 8, 10) else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.append("points: percent points for accuracies and pass rates, score points (1-10) for "
                 "judged benchmarks")
    notes = general_notes(c) + [f"{r.benchmark}: {n}" for r in c.results
                                for n in r.notes + pairing_notes(r)]
    lines += [""] + [f"* {n}" for n in notes] if notes else []
    for r in c.results:
        lines += _terminal_flips(r)
    lines += ["", summary_line(c)]
    return "\n".join(lines) + "\n"


def _terminal_flips(r: BenchmarkResult) -> list[str]:
    out = []
    for items, words in zip((r.worse_items, r.better_items), flip_words(r), strict=True):
        if items:
            shown = ", ".join(_change(ch, r.binary) for ch in items[:TERMINAL_FLIPS])
            hidden = len(items) - TERMINAL_FLIPS
            more = f", ... ({hidden} more)" if hidden > 0 else ""
            out.append(f"{r.benchmark}: {len(items)} {words}: {shown}{more}")
    return out


def render_markdown(c: Comparison) -> str:
    """A CI job summary ($GITHUB_STEP_SUMMARY): verdict first, table, notes, flipped items."""
    status = "❌ " + summary_line(c) if c.regressions else "✅ " + summary_line(c)
    lines = [f"## Checkpoint comparison: {status}", "",
             f"- baseline: `{_side(c, 'baseline')}`", f"- candidate: `{_side(c, 'candidate')}`",
             f"- rule: {rule_text(c)}", ""]
    if c.smoke:
        lines += ["> ⚠️ " + general_notes(c)[0], ""]
    headers = _headers(c)
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in c.results:
        cells = _row_cells(r)
        cells[0] = f"`{cells[0]}`"
        cells[-1] = f"**{cells[-1]}**" if r.verdict in (WORSE, BETTER) else cells[-1]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Points: percent points for accuracies and pass rates, score points (1-10) for "
              "judged benchmarks."]
    notes = general_notes(c)[1 if c.smoke else 0:] + [
        f"`{r.benchmark}`: {n}" for r in c.results for n in r.notes + pairing_notes(r)]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    flips = [block for r in c.results for block in _markdown_flips(r)]
    if flips:
        lines += ["", "### Items that changed", ""] + flips
    return "\n".join(lines) + "\n"


def _markdown_flips(r: BenchmarkResult) -> list[str]:
    out = []
    for items, words in zip((r.worse_items, r.better_items), flip_words(r), strict=True):
        if not items:
            continue
        shown = ", ".join(f"`{_change(ch, r.binary)}`" for ch in items[:MARKDOWN_FLIPS])
        if len(items) > MARKDOWN_FLIPS:
            shown += f" … and {len(items) - MARKDOWN_FLIPS} more (all in the JSON verdict)"
        out += [f"<details><summary><code>{r.benchmark}</code>: {len(items)} {words}</summary>", "",
                shown, "", "</details>", ""]
    return out


# ---------------------------------------------------------------------------------------------


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _keys(keys: list[Key]) -> list[dict[str, Any]]:
    return [{"item_id": k[0], **({"turn": k[1]} if k[1] is not None else {})} for k in keys]


def _changes(items: list[ItemChange]) -> list[dict[str, Any]]:
    return [{"item_id": ch.item_id, **({"turn": ch.turn} if ch.turn is not None else {}),
             "baseline": ch.baseline, "candidate": ch.candidate} for ch in items]


def _benchmark_json(r: BenchmarkResult) -> dict[str, Any]:
    p = r.pairing
    return {
        "benchmark": r.benchmark, "protocol": r.protocol, "column": r.column, "scale": r.scale,
        "unit": "percent points" if Scale(r.scale) is Scale.FRACTION else "score points",
        "method": r.method, "verdict": r.verdict,
        "baseline": {"value": r.baseline_value, "paired_mean": _finite(r.baseline_paired)},
        "candidate": {"value": r.candidate_value, "paired_mean": _finite(r.candidate_paired)},
        "n_paired": r.n_paired, "diff": _finite(r.diff),
        "ci": [_finite(r.ci_low), _finite(r.ci_high)],
        "p_worse": r.p_worse, "p_better": r.p_better,
        "p_worse_holm": r.p_worse_adj, "p_better_holm": r.p_better_adj,
        "min_drop": r.min_drop, "notes": r.notes,
        "unpaired": {
            "only_in_baseline": _keys(p.only_baseline) if p else [],
            "only_in_candidate": _keys(p.only_candidate) if p else [],
            "unscored_in_baseline": _keys(p.unscored_baseline) if p else [],
            "unscored_in_candidate": _keys(p.unscored_candidate) if p else [],
        },
        "flips": {"worse": _changes(r.worse_items), "better": _changes(r.better_items)},
    }


def to_json(c: Comparison) -> dict[str, Any]:
    """The machine-readable verdict (format `kanana-eval-compare`, version 1)."""
    return {
        "format": JSON_FORMAT, "version": JSON_VERSION,
        "verdict": "regression" if c.regressions else "no regression", "exit_code": c.exit_code,
        "rule": rule_text(c), "alpha": c.alpha, "confidence": c.confidence,
        "bootstrap": {"resamples": c.n_boot, "seed": c.seed},
        "baseline": c.baseline.describe() if c.baseline else None,
        "candidate": c.candidate.describe() if c.candidate else None,
        "smoke": c.smoke, "forced": c.forced, "notes": general_notes(c),
        "regressions": c.regressions, "improvements": c.improvements,
        "benchmarks_only_in_baseline": c.only_in_baseline,
        "benchmarks_only_in_candidate": c.only_in_candidate,
        "benchmarks": [_benchmark_json(r) for r in c.results],
    }


# ---------------------------------------------------------------------------------------------


def render_junit(c: Comparison) -> str:
    """JUnit XML: one test case per benchmark, failed when worse, skipped when not compared."""
    failures = len(c.regressions)
    skipped = sum(1 for r in c.results if r.verdict == NOT_COMPARED) + len(c.only_in_baseline)
    total = len(c.results) + len(c.only_in_baseline)
    counts = {"tests": str(total), "failures": str(failures), "errors": "0",
              "skipped": str(skipped)}
    root = ET.Element("testsuites", {"name": "kanana-eval compare", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "kanana-eval compare", **counts, "time": "0"})
    props = ET.SubElement(suite, "properties")
    for name, value in (("baseline", _side(c, "baseline")), ("candidate", _side(c, "candidate")),
                        ("alpha", f"{c.alpha:g}"), ("smoke", str(c.smoke).lower()),
                        ("rule", rule_text(c))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for r in c.results:
        classname = f"kanana-eval.{r.protocol or 'compare'}"
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": r.benchmark,
                                                 "time": "0"})
        line = _case_line(r)
        if r.verdict == WORSE:
            fail = ET.SubElement(case, "failure", {"message": line, "type": "regression"})
            fail.text = "\n".join([line, *r.notes, *pairing_notes(r), *_terminal_flips(r)])
        elif r.verdict == NOT_COMPARED:
            ET.SubElement(case, "skipped", {"message": "no paired items"})
        ET.SubElement(case, "system-out").text = "\n".join([line, *r.notes, *pairing_notes(r)])
    for b in c.only_in_baseline:
        case = ET.SubElement(suite, "testcase", {"classname": "kanana-eval.compare", "name": b,
                                                 "time": "0"})
        ET.SubElement(case, "skipped", {"message": "in the baseline run only: not compared"})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _case_line(r: BenchmarkResult) -> str:
    return (f"{r.verdict}: {_value(r.baseline_value, r.scale)} -> "
            f"{_value(r.candidate_value, r.scale)}, "
            f"paired difference {_signed(r.diff)} {_unit(r)} {_ci(r)} over {r.n_paired} items "
            f"({r.method}); Holm p worse {_p(r.p_worse_adj)}, better {_p(r.p_better_adj)}; "
            f"min drop {r.min_drop:g}")
