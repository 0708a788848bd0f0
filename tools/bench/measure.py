"""Timing the sides against each other and against the compute bound.

Every timed piece runs with the model already loaded and warmed up; what counts is the fastest
attempt of a piece (`RetryPolicy`) and, with repeats, the best total of a side.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.bench.config import BenchError
from tools.bench.probes import PhaseLog, TokenCounter
from tools.bench.workloads import HumanEvalWorkload, MMLUWorkload, RunOutput, batch_size_of

LL_SIDES = ("plain", "reuse", "no_reuse")
LL_LABELS = {"plain": "plain lm-eval", "reuse": "ours, prefix reuse", "no_reuse": "ours, no reuse"}
GEN_SIDES = ("ours_batched", "ours_b1", "plain_b1")


def generation_labels(batch_size: int) -> dict[str, str]:
    """How the report names each generation side."""
    return {"ours_batched": f"ours, batch {batch_size}", "ours_b1": "ours, batch 1",
            "plain_b1": "plain lm-eval, batch 1"}


def forward_throughput(model: Any, batch_size: int, length: int, *, min_seconds: float = 3.0,
                       min_forwards: int = 2, last_logits_only: bool = False) -> float:
    """Tokens per second of plain batched forwards (random ids, fixed shape), after a warm-up.

    `last_logits_only` projects only the last position onto the vocabulary (what prefix reuse
    needs for single-token answers); otherwise every position is, as lm-eval's HFLM does.
    The fastest of at least `min_forwards` counts (which also drops the first call's one-off
    costs), as the best run of each side does: on a shared machine a bound taken from an average
    would include other people's load.
    """
    import torch  # noqa: PLC0415 - heavy: torch loads only when a model is measured

    kwargs: dict[str, Any] = {}
    if last_logits_only and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(1, vocab, (batch_size, max(1, length)), generator=generator)
    fastest = float("inf")
    with torch.no_grad():
        forwards = 0
        started = time.perf_counter()
        while forwards < min_forwards or time.perf_counter() - started < min_seconds:
            t = time.perf_counter()
            model(ids, **kwargs)
            fastest = min(fastest, time.perf_counter() - t)
            forwards += 1
    return ids.numel() / fastest


def warm_up(model: Any, batch_size: int, length: int = 64) -> None:
    """One small forward, so no side pays first-call costs inside its timing."""
    import torch  # noqa: PLC0415 - heavy: torch loads only when a model is measured

    with torch.no_grad():
        model(torch.ones((batch_size, length), dtype=torch.long))


def _speed_stats(lm: Any, part: str) -> dict[str, Any] | None:
    """A copy of FastHFLM's counters for `part` (None for plain HFLM)."""
    record = getattr(lm, "speed_record", None)
    if record is None:
        return None
    stats = record().get(part)
    return dict(stats) if isinstance(stats, dict) else None


def _stats_delta(before: dict[str, Any] | None,
                 after: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the engine's counters grew by during one piece."""
    if before is None or after is None:
        return None
    # counters only: running maxima (max_active) and flags say nothing about one phase
    return {k: v - before.get(k, 0) for k, v in after.items()
            if isinstance(v, int) and not isinstance(v, bool) and not k.startswith("max_")}


@dataclass(frozen=True)
class RetryPolicy:
    """Run a piece again when other processes used more than `above` cores meanwhile.

    With torch's threads on every core, a little outside load stalls each parallel region
    (seen here: 0.8 cores of other load made a piece 4x slower), and the sides would be compared
    under different loads. The fastest attempt counts, for every side alike.
    """

    retries: int = 1
    above: float = 0.25
    until: float | None = None  # time.perf_counter() after which nothing is run again

    def again(self, attempts: int, elapsed: float, others_cpu_s: float | None) -> bool:
        """Whether a piece that took `elapsed` s while others used `others_cpu_s` runs again."""
        if (attempts > self.retries or others_cpu_s is None
                or others_cpu_s <= self.above * elapsed):
            return False
        return self.until is None or time.perf_counter() < self.until


def _timed(run: Callable[[Any], Any], lm: Any, phases: PhaseLog, name: str, part: str,
           retry: RetryPolicy | None = None) -> tuple[Any, dict[str, Any]]:
    """One piece of a side's work (model loaded): its output, and the fastest attempt's figures.

    Figures: wall time, what the model was fed (TokenCounter), the engine's own counters, the
    other processes' CPU seconds meanwhile, and how many attempts were made.
    """
    retry = retry or RetryPolicy(retries=0)
    best: dict[str, Any] | None = None
    out: Any = None
    for attempt in range(1 + max(0, retry.retries)):
        counter = TokenCounter().attach(lm.model)
        before = _speed_stats(lm, part)
        try:
            with phases.phase(name) as piece:
                started = time.perf_counter()
                out = run(lm)
                elapsed = time.perf_counter() - started
        finally:
            counter.detach()
        figures = {"seconds": elapsed, "tokens_fed": counter.tokens,
                   "rows_fed": len(counter.rows), "positions_computed": counter.positions,
                   "forwards": counter.forwards, "forward_s": counter.forward_seconds,
                   "others_cpu_s": piece["others_cpu_s"], "attempts": attempt + 1,
                   "engine_stats": _stats_delta(before, _speed_stats(lm, part))}
        if best is None or elapsed < best["seconds"]:
            best = figures
        best["attempts"] = attempt + 1
        if not retry.again(attempt + 1, elapsed, piece["others_cpu_s"]):
            break
    assert best is not None
    return out, best


def _add_figures(total: dict[str, Any] | None, piece: dict[str, Any]) -> dict[str, Any]:
    """Figures of two pieces of one side's work, added up (engine counters too)."""
    if total is None:
        return dict(piece)
    summed = {k: total[k] + piece[k] for k in ("seconds", "forward_s", "tokens_fed", "rows_fed",
                                                "positions_computed", "forwards", "attempts")}
    both_known = total["others_cpu_s"] is not None and piece["others_cpu_s"] is not None
    summed["others_cpu_s"] = total["others_cpu_s"] + piece["others_cpu_s"] if both_known else None
    a, b = total.get("engine_stats"), piece.get("engine_stats")
    summed["engine_stats"] = (
        {k: a.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
         for k, v in b.items()}
        if a is not None and b is not None else None)
    return summed


def _others_cores(figures: dict[str, Any]) -> float | None:
    """Cores other processes used during the attempts that count."""
    others = figures.get("others_cpu_s")
    if others is None or figures["seconds"] <= 0:
        return None
    return round(others / figures["seconds"], 2)


def _alternate(workload: MMLUWorkload, ours_lm: Any, plain_lm: Any, phases: PhaseLog,
               retry: RetryPolicy | None) -> tuple[dict[str, RunOutput], dict[str, Any]]:
    """One pass over the subjects, every side on each subject in turn (rotating who goes first).

    Returns each side's output and summed figures.
    """
    order = ("reuse", "no_reuse", "plain")
    outputs = {side: RunOutput(answers={}) for side in LL_SIDES}
    totals: dict[str, dict[str, Any] | None] = dict.fromkeys(LL_SIDES)
    for k, subject in enumerate(workload.subjects):
        for side in order[k % 3:] + order[:k % 3]:
            name = f"mmlu {LL_LABELS[side]}"
            if side == "plain":
                out, figures = _timed(lambda lm, s=subject: workload.run_plain(lm, [s]),
                                      plain_lm, phases, name, "loglikelihood", retry)
            else:
                ours_lm.prefix_cache = side == "reuse"
                out, figures = _timed(lambda lm, s=subject: workload.run_ours(lm, [s]),
                                      ours_lm, phases, name, "loglikelihood", retry)
            outputs[side].merge(out)
            totals[side] = _add_figures(totals[side], figures)
    return outputs, {side: totals[side] or {} for side in LL_SIDES}


def _agreement(outputs: dict[str, RunOutput]) -> tuple[list[str], list[str], dict[str, Any]]:
    """(item keys, keys the sides answer differently, max |log-likelihood diff| vs plain)."""
    plain = outputs["plain"]
    keys = sorted(set().union(*(o.answers for o in outputs.values())))
    disagreements = [k for k in keys
                     if len({repr(o.answers.get(k)) for o in outputs.values()}) != 1]
    max_diff: dict[str, float | None] = {}
    for side in ("reuse", "no_reuse"):
        ours = outputs[side]
        diffs = [abs(a - b) for k in keys
                 if k in ours.loglikelihoods and k in plain.loglikelihoods
                 for a, b in zip(ours.loglikelihoods[k], plain.loglikelihoods[k], strict=False)]
        max_diff[side] = max(diffs) if diffs else None
    return keys, disagreements, max_diff


def measure_loglikelihood(workload: MMLUWorkload, ours_lm: Any, plain_lm: Any, *,
                          batch_size: int, phases: PhaseLog, repeats: int = 1,
                          min_seconds: float = 3.0,
                          retry: RetryPolicy | None = None) -> dict[str, Any]:
    """The three sides, alternating subject by subject, `repeats` times; then both compute bounds.

    Alternating in small pieces (and rotating which side goes first) spreads a burst of load
    from other processes over all three sides instead of one, and a piece run under such load
    is run again (`retry`). A side's time is the sum of its pieces; with repeats, its best total.
    """
    if repeats < 1:
        raise BenchError(f"repeats must be >= 1, got {repeats}")
    outputs: dict[str, RunOutput] = {}
    totals: dict[str, list[dict[str, Any]]] = {side: [] for side in LL_SIDES}
    try:
        for _repeat in range(repeats):
            outputs, run_totals = _alternate(workload, ours_lm, plain_lm, phases, retry)
            for side in LL_SIDES:
                totals[side].append(run_totals[side])
    finally:
        ours_lm.prefix_cache = True
    sides: dict[str, dict[str, Any]] = {}
    for side in LL_SIDES:
        best = min(totals[side], key=lambda t: t["seconds"])
        phase = phases.get(f"mmlu {LL_LABELS[side]}")
        sides[side] = {**best, "runs_s": [round(t["seconds"], 3) for t in totals[side]],
                       "peak_rss_mib": phase["peak_rss_mib"], "others_cores": _others_cores(best)}
    plain = outputs["plain"]
    requests = sum(len(r) for r in plain.requests.values())
    if not sides["plain"]["tokens_fed"] or not requests:
        raise BenchError(f"{workload.name}: plain lm-eval fed the model no tokens")
    for side in LL_SIDES:
        sides[side]["requests"] = requests
        sides[side]["requests_per_s"] = requests / sides[side]["seconds"]
        sides[side]["over_plain"] = sides[side]["seconds"] / sides["plain"]["seconds"]
    keys, disagreements, max_diff = _agreement(outputs)

    with phases.phase("forward rate"):
        needed = workload.needed_tokens(plain_lm, plain)
        typical = max(1, round(sides["plain"]["tokens_fed"] / sides["plain"]["rows_fed"]))
        full_rate = forward_throughput(plain_lm.model, batch_size, typical,
                                       min_seconds=min_seconds)
        body_rate = forward_throughput(plain_lm.model, batch_size, typical,
                                       min_seconds=min_seconds, last_logits_only=True)
    plain_bound = sides["plain"]["tokens_fed"] / full_rate
    reuse_bound = needed / body_rate
    return {
        "workload": workload.describe(), "items": len(plain.answers), "requests": requests,
        "batch_size": batch_size, "repeats": repeats, "sides": sides,
        "needed_tokens": needed, "typical_length": typical,
        "forward_rate_tok_s": full_rate, "forward_rate_last_logits_tok_s": body_rate,
        "plain_bound_s": plain_bound,
        "plain_over_plain_bound": sides["plain"]["seconds"] / plain_bound,
        "reuse_bound_s": reuse_bound,
        "ours_over_reuse_bound": sides["reuse"]["seconds"] / reuse_bound,
        "ours_over_plain": sides["reuse"]["over_plain"],
        "answers_agree": bool(keys) and not disagreements, "disagreements": disagreements,
        "max_abs_ll_diff": max_diff,
    }


def measure_generation(workload: HumanEvalWorkload, ours_lm: Any, plain_lm: Any, *,
                       batch_size: int, phases: PhaseLog,
                       retry: RetryPolicy | None = None) -> dict[str, Any]:
    """Ours at `batch_size`, ours at 1, plain lm-eval at 1; outputs compared byte for byte."""
    plan = {"ours_batched": (ours_lm, batch_size), "ours_b1": (ours_lm, 1),
            "plain_b1": (plain_lm, 1)}
    labels = generation_labels(batch_size)
    outputs: dict[str, list[str]] = {}
    sides: dict[str, dict[str, Any]] = {}
    for side in GEN_SIDES:
        lm, size = plan[side]
        with batch_size_of(lm, size):
            outputs[side], figures = _timed(workload.run, lm, phases,
                                            f"humaneval {labels[side]}", "generation", retry)
        phase = phases.get(f"humaneval {labels[side]}")
        figures.update(peak_rss_mib=phase["peak_rss_mib"], others_cores=_others_cores(figures))
        figures["batch_size"] = size
        figures["seconds_per_prompt"] = figures["seconds"] / len(workload.requests)
        figures["output_chars"] = sum(len(text) for text in outputs[side])
        sides[side] = figures
    mismatched = [task_id for k, task_id in enumerate(workload.ids)
                  if len({outputs[side][k].encode() for side in GEN_SIDES}) != 1]
    return {
        "workload": workload.describe(), "batch_size": batch_size, "sides": sides,
        "speedup": sides["ours_b1"]["seconds"] / sides["ours_batched"]["seconds"],
        "speedup_vs_plain_b1": sides["plain_b1"]["seconds"] / sides["ours_batched"]["seconds"],
        "outputs_identical": not mismatched, "mismatched": mismatched,
        "identical_prompts": len(workload.ids) - len(mismatched),
    }
