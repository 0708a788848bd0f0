"""The printed report: header, both workloads, memory by phase, projection, one-line summary.

Reads only the report's plain data (what `run.run_bench` returns and the history stores).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tools.bench.config import (
    RETRY_WINDOW_S,
    TARGET_GENERATION_SPEEDUP,
    TARGET_OURS_OVER_BOUND,
    TARGET_OURS_OVER_PLAIN,
)
from tools.bench.measure import GEN_SIDES, LL_LABELS, LL_SIDES, generation_labels
from tools.bench.niah import format_niah


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    all_rows = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                       for i, c in enumerate(r))
             for r in all_rows]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _loglik_row(side: str, figures: dict[str, Any], pieces: int) -> tuple[str, ...]:
    return (LL_LABELS[side], f"{figures['seconds']:.2f}", f"{figures['forward_s']:.2f}",
            f"{figures['over_plain']:.2f}x", f"{figures['tokens_fed']:,}",
            f"{figures['positions_computed']:,}", str(figures["forwards"]),
            f"{figures['requests_per_s']:.1f}", _fmt(figures["peak_rss_mib"], ".0f"),
            _fmt(figures["others_cores"], ".2f"), f"{figures['attempts']}/{pieces}")


def _bounds(ll: dict[str, Any]) -> list[str]:
    """The two compute-bound lines: what plain lm-eval fed, and what the reuse path needs."""
    sides = ll["sides"]
    reuse = sides["reuse"]
    return [
        f"compute bound, plain path: {sides['plain']['tokens_fed']:,} tokens fed / "
        f"{ll['forward_rate_tok_s']:.0f} tok/s (all-position logits, batch {ll['batch_size']} x "
        f"{ll['typical_length']}) = {ll['plain_bound_s']:.2f} s; plain lm-eval at "
        f"{ll['plain_over_plain_bound']:.2f}x",
        f"compute bound, reuse path: {ll['needed_tokens']:,} tokens needed (each subject's "
        f"distinct prefixes once) / {ll['forward_rate_last_logits_tok_s']:.0f} tok/s "
        f"(last-position logits) = {ll['reuse_bound_s']:.2f} s; ours (reuse) at "
        f"{ll['ours_over_reuse_bound']:.2f}x: {reuse['forward_s']:.2f} s inside forwards "
        f"({reuse['forward_s'] / ll['reuse_bound_s']:.2f}x the bound), "
        f"{reuse['seconds'] - reuse['forward_s']:.2f} s outside (lm-eval, tokenizing, "
        "planning)",
    ]


def _format_loglik(report: dict[str, Any]) -> list[str]:
    ll = report["loglikelihood"]
    w = ll["workload"]
    sides = ll["sides"]
    lines = [f"{w['name']}: 5-shot MMLU, {len(w['subjects'])} subjects "
             f"({', '.join(w['subjects'])}) x {w['questions_per_subject']} questions = "
             f"{ll['items']} items, {ll['requests']} log-likelihood requests, "
             f"batch {ll['batch_size']}"]
    rows = [_loglik_row(s, sides[s], len(w["subjects"])) for s in LL_SIDES]
    lines += _table(("side", "wall s", "in forward s", "vs plain", "tokens fed", "positions",
                     "forwards", "req/s", "peak RSS MiB", "others' CPU", "attempts/pieces"),
                    rows)
    lines += _bounds(ll)
    t = report["targets"]
    lines.append(f"{_mark(t['ours_over_plain']['pass'])} target ours (reuse) <= "
                 f"{TARGET_OURS_OVER_PLAIN}x plain lm-eval: {ll['ours_over_plain']:.2f}x")
    lines.append(f"{_mark(t['ours_over_reuse_bound']['pass'])} target ours (reuse) <= "
                 f"{TARGET_OURS_OVER_BOUND}x the reuse path's compute bound: "
                 f"{ll['ours_over_reuse_bound']:.2f}x")
    diff = ll["max_abs_ll_diff"]
    agree = ll["items"] - len(ll["disagreements"])
    lines.append(f"{_mark(ll['answers_agree'])} answers: all three sides chose the same answer "
                 f"on {agree}/{ll['items']} items; max |Δ log-likelihood| vs plain: reuse "
                 f"{_fmt(diff['reuse'], '.1e')}, no reuse {_fmt(diff['no_reuse'], '.1e')}")
    if ll["disagreements"]:
        lines.append(f"  differing items: {', '.join(ll['disagreements'][:10])}"
                     + (" ..." if len(ll["disagreements"]) > 10 else ""))
    return lines


def _generation_row(label: str, figures: dict[str, Any]) -> tuple[str, ...]:
    return (label, f"{figures['seconds']:.2f}", f"{figures['forward_s']:.2f}",
            f"{figures['seconds_per_prompt']:.2f}", f"{figures['tokens_fed']:,}",
            str(figures["forwards"]), f"{figures['output_chars']:,}",
            _fmt(figures["peak_rss_mib"], ".0f"), _fmt(figures["others_cores"], ".2f"),
            str(figures["attempts"]))


def _format_generation(report: dict[str, Any]) -> list[str]:
    gen = report["generation"]
    if gen is None:
        return ["generation: skipped (--humaneval-prompts 0)"]
    w = gen["workload"]
    labels = generation_labels(gen["batch_size"])
    sides = gen["sides"]
    lines = [f"{w['name']}: HumanEval 0-shot generation, greedy, until "
             f"{json.dumps(w['until'])}, max {w['max_gen_toks']} tokens"]
    rows = [_generation_row(labels[s], sides[s]) for s in GEN_SIDES]
    lines += _table(("side", "wall s", "in forward s", "s/prompt", "tokens fed", "forwards",
                     "chars out", "peak RSS MiB", "others' CPU", "attempts"), rows)
    lines.append(f"{_mark(report['targets']['generation_speedup']['pass'])} target batched >= "
                 f"{TARGET_GENERATION_SPEEDUP}x faster than batch 1: {gen['speedup']:.2f}x "
                 f"(plain lm-eval batch 1 / ours batch {gen['batch_size']}: "
                 f"{gen['speedup_vs_plain_b1']:.2f}x)")
    lines.append(f"{_mark(gen['outputs_identical'])} outputs byte-identical across the three "
                 f"sides on {gen['identical_prompts']}/{len(w['task_ids'])} prompts")
    if gen["mismatched"]:
        lines.append(f"  differing prompts: {', '.join(gen['mismatched'])}")
    return lines


def _format_memory(report: dict[str, Any]) -> list[str]:
    phases = report["memory"]["phases"]
    sources = sorted({p["peak_source"] for p in phases})
    note = ("VmHWM reset per phase through /proc/self/clear_refs" if sources == ["VmHWM"]
            else "ru_maxrss: the process's lifetime peak, not reset per phase")
    rows = [(p["phase"], str(p["pieces"]), f"{p['wall_s']:.1f}", _fmt(p["rss_start_mib"], ".0f"),
             f"{p['peak_rss_mib']:.0f}", _fmt(p["others_cores"], ".2f")) for p in phases]
    return [f"peak resident memory by phase ({note}); others' CPU = cores used by other "
            "processes meanwhile (/proc/stat minus this process):",
            *_table(("phase", "runs", "wall s", "RSS at start MiB", "peak MiB", "others' CPU"),
                    rows), *_format_estimates(report)]


def _format_estimates(report: dict[str, Any]) -> list[str]:
    """The batch planner's estimate against the measured peak of one batch per layout."""
    results = report["memory"].get("estimate_vs_peak") or []
    rows = [(r["case"], r["layout"], str(r["rows"]), str(r["estimate_mib"]),
             str(r["mean_peak_mib"]), str(r["peak_mib"]), _fmt(r["ratio"], ".2f"),
             _fmt(r["worst_ratio"], ".2f")) for r in results]
    return ["", "batch planner's memory estimate vs the measured peaks of one batch (VmHWM reset "
            "just before it; the tests hold SmolLM2 and Gemma-3-270m within 1.3x of the mean, "
            "and the highest within the planner's 2x margin):",
            *_table(("batch", "layout", "rows", "estimate MiB", "mean peak MiB",
                     "highest MiB", "estimate/mean", "estimate/highest"), rows)] if rows else []


def _derivation(row: dict[str, Any]) -> str:
    """How one benchmark's projected time was reached, in words."""
    if row["output_type"] == "multiple_choice":
        return (f"{_fmt(row['items'], ',')} items x {row['requests_per_item']} choices = "
                f"{_fmt(row['requests'], ',')} requests / {_fmt(row['rate'], '.1f')} req/s")
    if row["output_type"] == "generate_until":
        return (f"{_fmt(row['items'], ',')} prompts (max {row.get('max_gen_toks')} tok) x "
                f"{_fmt(row['rate'], '.2f')} s/prompt")
    return "not projected"


def _format_projection(report: dict[str, Any]) -> list[str]:
    proj = report["projection"]
    rows = [(r["benchmark"], _derivation(r), _duration(r["projected_s"]))
            for r in proj["benchmarks"]]
    lines = ["PROJECTION (not a measurement) of the full base protocol on this machine, from "
             "this run's rates: log-likelihood at the reuse path's MMLU requests/s, generation "
             "at ours-batched HumanEval seconds per prompt; item counts from each "
             "benchmark's card (../shared/PROTOCOL.md until it has one), choices from lm-eval's "
             "task configs, benchmarks from protocols/base.yaml",
             *_table(("benchmark", "derivation", "projected"), rows)]
    total = proj["total_s"]
    shown = (_duration(total) if total is not None
             else "n/a (partial " + _duration(proj["partial_total_s"]) + ")")
    lines.append(f"projected total: {shown}"
                 " (an estimate: code execution is not counted; Korean prompts tokenize longer "
                 "than MMLU's; a full MMLU subject shares its prefix over ~250 questions, not the "
                 "bench's few; MBPP/GSM8K prompts and token limits differ from HumanEval's)")
    return lines


def _header(report: dict[str, Any]) -> list[str]:
    """Model, machine, commit and how much other processes loaded the machine meanwhile."""
    m = report["machine"]
    git = report.get("git") or {}
    commit = ((git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "")
              if git else "n/a")
    busy = [p["others_cores"] for p in report["memory"]["phases"]
            if p.get("others_cores") is not None]
    return [f"kanana-eval bench ({report['schema']}): {report['model']['name']}, fp32 on CPU, "
            f"{m['torch_threads']} torch threads, {m['cpu_count']} CPUs ({m['cpu'] or 'cpu'}); "
            f"commit {commit}",
            f"load average at start {m['load_avg_start']}, at end {m.get('load_avg_end')}; "
            f"other processes used up to {max(busy, default=0.0):.2f} cores during a measured "
            f"phase; a piece timed while they used over {report['config']['retry_above']} cores "
            f"is run again (up to {report['config']['retries']}x, in the first "
            f"{RETRY_WINDOW_S / 60:.0f} minutes) and its fastest attempt counts; model and data "
            "loading are excluded from timings",
            ""]


def format_report(report: dict[str, Any]) -> str:
    """Everything the bench prints: header, both workloads, memory, projection, summary."""
    lines = _header(report)
    lines += _format_loglik(report) + [""] + _format_generation(report) + [""]
    lines += _format_memory(report) + [""] + _format_projection(report) + [""]
    lines += format_niah(report.get("niah")) + ([""] if report.get("niah") else [])
    t = report["targets"]
    summary = "; ".join(f"{name} {v['value']:.2f}x {_mark(v['pass'])}" for name, v in t.items())
    verdict = ("answers agree" if report["answers_agree"] else "ANSWERS DIFFER")
    if report["outputs_identical"] is not None:
        verdict += ", outputs identical" if report["outputs_identical"] else ", OUTPUTS DIFFER"
    lines.append(f"summary: {summary}; {verdict}; bench wall time {report['total_s']:.0f} s")
    return "\n".join(lines)
