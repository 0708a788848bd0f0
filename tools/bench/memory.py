"""The batch planner's memory estimate against the peak a real forward reaches.

Each case is one batch of synthetic log-likelihood rows in one of the layouts the engine runs
(right-padded rows without a prefix, right-padded rows on a prefix cache longer than a sliding
window, suffixes packed on a prefix); the peak resident memory of that batch is read from the
kernel (VmHWM, reset just before the batch, after the prefix's own forward) and set against
what `BatchPlanner.estimate` said the batch would allocate. The same batch peaks up to 1.7x
apart from one process to the next (where glibc's allocator finds room), so two things are held
on SmolLM2 and Gemma-3-270m (tests/test_batch_memory.py), and `make bench` prints both: the
estimate within 1.3x of the mean peak (it is a good estimate), and the highest peak within what
the planner reserves for the estimate, estimate / DEFAULT_SAFETY (the batch is never the one that
kills the process).
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanana_eval.engine.batch_memory import DEFAULT_SAFETY, BatchPlanner, Layout, ModelShape
from kanana_eval.engine.model_runner import ModelRunner
from kanana_eval.engine.prefix_reuse import score_requests
from tools.bench.probes import _status_kib, reset_peak_rss

_MIB = 1 << 20
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `tools` imports from
ESTIMATE_TOLERANCE = 1.3  # estimate / mean measured peak must lie within [1/1.3, 1.3]


@dataclass(frozen=True)
class MemoryCase:
    """One batch: `rows` rows of `suffix` tokens (the last ones `spread` shorter) on `prefix`."""

    name: str
    prefix: int
    suffix: int
    rows: int
    spread: int = 0

    def requests(self, vocab: int, seed: int = 0) -> list[tuple[None, list[int], list[int]]]:
        """Four one-token answers per row, as MMLU asks them (the four share one fed row);
        token ids drawn below `vocab` (and below 20,000, ordinary text tokens)."""
        rng = random.Random(seed)
        low, high = min(100, vocab // 2), min(20000, vocab)
        shared = [rng.randrange(low, high) for _ in range(self.prefix)]
        out: list[tuple[None, list[int], list[int]]] = []
        for r in range(self.rows):
            length = self.suffix - (self.spread * r) // max(1, self.rows - 1)
            context = shared + [rng.randrange(low, high) for _ in range(length)]
            out += [(None, context, [low + c]) for c in range(4)]
        return out


# Loose rows as MMLU's subjects with one question each give them; 16 suffixes on a prefix past
# Gemma's 512-token window (packed for full-attention models), of equal length: the planner
# costs a packed batch at rows x its longest suffix, so unequal ones are over-estimated (safe,
# but not what is measured here). Large enough (200-500 MiB) that
# the allocator's run-to-run jitter (tens of MiB) stays well inside the tolerance.
DEFAULT_CASES = (
    MemoryCase("padded, no prefix", prefix=0, suffix=1200, rows=4, spread=100),
    MemoryCase("on a 600-token prefix", prefix=600, suffix=100, rows=16),
)


def _trim_heap() -> None:
    """Give freed heap pages back so the next peak starts from what is really live."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_case(model: Any, case: MemoryCase, *, dtype_bytes: int = 4) -> dict[str, Any]:
    """Run `case` on `model` (CPU, weights already resident) as one batch: estimate vs peak."""
    import torch  # noqa: PLC0415 - heavy: only when a model is measured

    runner = ModelRunner.for_model(model, torch.device("cpu"), softmax_dtype=torch.float32)
    shape = ModelShape.from_config(model.config)
    planner = BatchPlanner(shape, dtype_bytes=dtype_bytes, device="cpu")  # only its estimate
    seen: dict[str, Any] = {}

    def batch_size(prefix: int, suffix: int, kept: int) -> int:
        if "estimate" not in seen:  # the first (and only) batch: reset the mark just before it
            layout = Layout.PACKED if prefix and runner.can_pad_batches else Layout.PADDED
            seen.update(layout=layout.value, estimate=planner.estimate(
                layout, case.rows, cached_tokens=prefix, new_tokens=suffix, kept_logits=kept))
            _trim_heap()
            seen["resettable"] = reset_peak_rss()
            seen["start"] = _status_kib("VmRSS") or 0
        return case.rows

    score_requests(runner, case.requests(shape.vocab), max_length=1 << 16, batch_size=batch_size,
                   reuse=case.prefix > 0, min_prefix=16)
    if not seen.get("resettable"):
        raise RuntimeError("the peak-RSS mark cannot be reset here (/proc/self/clear_refs)")
    peak = ((_status_kib("VmHWM") or 0) - seen["start"]) * 1024
    estimate = int(seen["estimate"])
    return {"case": case.name, "layout": seen["layout"], "rows": case.rows,
            "estimate_mib": round(estimate / _MIB), "peak_mib": round(peak / _MIB),
            "ratio": round(estimate / peak, 2) if peak > 0 else None}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's runs as one row: every peak, their mean and highest, and the estimate's ratio
    to each (`ratio` to the mean, `worst_ratio` to the highest)."""
    peaks = [r["peak_mib"] for r in runs]
    mean, top = sum(peaks) / len(peaks), max(peaks)
    return {**runs[0], "peak_mib": top, "mean_peak_mib": round(mean),
            "ratio": round(runs[0]["estimate_mib"] / mean, 2) if mean > 0 else None,
            "worst_ratio": round(runs[0]["estimate_mib"] / top, 2) if top > 0 else None,
            "peaks_mib": peaks}


def measure_loaded(model: Any, cases: tuple[MemoryCase, ...] = DEFAULT_CASES, *,
                   repeats: int = 2) -> list[dict[str, Any]]:
    """Each case on an already loaded model (the bench's): estimate vs the peaks of `repeats`
    runs of its batch (`summarize`).

    DEFAULT_CASES' first (largest) batch runs once unmeasured, whichever cases are measured:
    the first batch of a process also allocates what stays for the process's life (kernel
    workspaces, measured ~35 MiB on SmolLM2), which no batch pays again and the planner's safety
    margin covers, and a batch after a larger one finds the heap as a run leaves it (the packed
    batch, warmed only by itself, peaked at a mean of 248 MiB over ten samples against 190). The
    same batch then peaks 10-30% apart from run to run (where the allocator finds room).
    """
    if cases:
        measure_case(model, DEFAULT_CASES[0])
    results = []
    for case in cases:
        results.append(summarize([measure_case(model, case) for _ in range(max(1, repeats))]))
    return results


def measure_model(folder: str, cases: tuple[MemoryCase, ...] = DEFAULT_CASES,
                  ) -> list[dict[str, Any]]:
    """Load the model at `folder` (fp32, CPU), make its weights resident, measure each case."""
    import torch  # noqa: PLC0415 - heavy: only when a model is measured
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 - heavy: loads transformers

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():  # the first forward pages the weights in: not part of any batch
        model(input_ids=torch.tensor([[5, 6, 7]]))
    return measure_loaded(model, cases)


def measure_model_in_processes(folder: str, processes: int = 5,
                               cases: tuple[MemoryCase, ...] = DEFAULT_CASES,
                               ) -> list[dict[str, Any]]:
    """`measure_model` of `cases` (of DEFAULT_CASES) in `processes` fresh interpreters; per case,
    every run's peak summarized.

    The same batch peaks up to 1.7x apart from one process to the next (SmolLM2's 4-row padded
    batch anywhere from 151 to 250 MiB, bimodal; Gemma's from 187 to 294 MiB), more than between
    repeats in one process. The highest of a few such samples is itself that noisy, so it is held
    to the planner's safety share, and the estimate's precision to the mean of all the samples.
    With the allocator's dynamic mmap threshold fixed (MALLOC_MMAP_THRESHOLD_) the same batches
    peak lower and do not vary: the spread is fragmentation, which a normal process meets.
    """
    code = ("import json, sys; from tools.bench.memory import DEFAULT_CASES, measure_model; "
            "cases = tuple(DEFAULT_CASES[int(i)] for i in sys.argv[2:]); "
            "print(json.dumps(measure_model(sys.argv[1], cases)))")
    chosen = [str(DEFAULT_CASES.index(case)) for case in cases]
    runs: list[list[dict[str, Any]]] = []
    for _ in range(max(1, processes)):
        out = subprocess.run([sys.executable, "-c", code, folder, *chosen], check=True,
                             capture_output=True, text=True, cwd=_PROJECT_ROOT).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return [summarize([{**r, "peak_mib": p} for r in per_case for p in r["peaks_mib"]])
            for per_case in zip(*runs, strict=True)]


def within_tolerance(result: dict[str, Any], tolerance: float = ESTIMATE_TOLERANCE,
                     safety: float = DEFAULT_SAFETY) -> bool:
    """True when the estimate is within `tolerance` times the mean peak, either way, and the
    highest peak fits in what the planner reserves for it (estimate / `safety`)."""
    ratio, worst = result["ratio"], result["worst_ratio"]
    return (ratio is not None and worst is not None and 1 / tolerance <= ratio <= tolerance
            and worst >= safety)
