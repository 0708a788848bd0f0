"""The bench's vLLM part: our harness overhead over raw vLLM, and vLLM vs our hf path.

Overhead = our wall time for a workload (lm-eval's requests through kanana-eval's vLLM engine)
divided by raw vLLM's wall time for exactly the prompts and sampling parameters our run sent
(recorded on the way, replayed straight into the same `vllm.LLM`: no lm-eval, no us). The prefix
cache is emptied before each side so neither inherits the other's blocks. The target is 1.15 for
log-likelihood and for generation (docs/vllm.md#speed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kanana_eval.engine.build import EngineConfig, build_lm, vllm_installed
from tools.bench.workloads import HumanEvalWorkload, MMLUWorkload

TARGET_VLLM_OVERHEAD = 1.15


class _Recorder:
    """Stands in front of `vllm.LLM.generate` and keeps every (prompts, sampling params) call."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.calls: list[tuple[list[Any], Any]] = []
        self._generate = llm.generate

    def __enter__(self) -> _Recorder:
        def generate(prompts: Any, sampling_params: Any = None, **kwargs: Any) -> Any:
            self.calls.append((list(prompts), sampling_params))
            return self._generate(prompts, sampling_params=sampling_params, **kwargs)

        self.llm.generate = generate
        return self

    def __exit__(self, *_: Any) -> None:
        del self.llm.generate  # the class's method again


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _side(llm: Any, ours: Any) -> dict[str, Any]:
    """Ours (recorded), then raw vLLM on the recorded calls; each from an empty prefix cache."""
    llm.reset_prefix_cache()
    with _Recorder(llm) as recorder:
        ours_s, _ = _timed(ours)
    llm.reset_prefix_cache()

    def raw() -> None:
        for prompts, params in recorder.calls:
            llm.generate(prompts, sampling_params=params, use_tqdm=False)

    raw_s, _ = _timed(raw)
    prompts = sum(len(p) for p, _ in recorder.calls)
    return {"ours_s": round(ours_s, 3), "raw_vllm_s": round(raw_s, 3), "prompts": prompts,
            "overhead": round(ours_s / raw_s, 3) if raw_s > 0 else None,
            "target": TARGET_VLLM_OVERHEAD,
            "pass": raw_s > 0 and ours_s / raw_s <= TARGET_VLLM_OVERHEAD}


def measure_vllm(folder: Path, mmlu: MMLUWorkload, humaneval: HumanEvalWorkload | None,
                 hf_seconds: dict[str, float | None]) -> dict[str, Any] | None:
    """Both workloads on kanana-eval's vLLM engine and on raw vLLM; None without vLLM."""
    if not vllm_installed():
        return None
    lm = build_lm(EngineConfig(backend="vllm", model=str(folder), dtype="float32",
                               device="cpu", enforce_eager=True))
    try:
        llm = lm.model
        mmlu.run_ours(lm, mmlu.subjects[:1])  # warm-up: first-call costs stay out of the times
        report: dict[str, Any] = {"engine": lm.speed_record()}
        report["loglikelihood"] = _side(llm, lambda: mmlu.run_ours(lm))
        if humaneval is not None:
            report["generation"] = _side(llm, lambda: humaneval.run(lm))
    finally:
        lm.close()
    for work in ("loglikelihood", "generation"):
        hf = hf_seconds.get(work)
        if work in report and hf:
            report[work]["hf_ours_s"] = round(hf, 3)
            report[work]["vllm_over_hf"] = round(report[work]["ours_s"] / hf, 3)
    return report


def format_vllm(report: dict[str, Any] | None) -> list[str]:
    """The report's vLLM lines."""
    if report is None:
        return ["vLLM: not installed (make install installs it), part skipped"]
    lines = [f"vLLM {report['engine'].get('vllm_version')} ({report['engine'].get('build')}): "
             "harness overhead = ours / raw vLLM on the same prompts (target <= "
             f"{TARGET_VLLM_OVERHEAD})"]
    for work in ("loglikelihood", "generation"):
        side = report.get(work)
        if not side:
            continue
        verdict = "ok" if side["pass"] else "ABOVE TARGET"
        line = (f"  {work:13} ours {side['ours_s']:.2f} s, raw vLLM {side['raw_vllm_s']:.2f} s "
                f"({side['prompts']} prompts): overhead {side['overhead']} [{verdict}]")
        if "vllm_over_hf" in side:
            line += (f"; vLLM vs our hf path {side['ours_s']:.2f} s / {side['hf_ours_s']:.2f} s "
                     f"= {side['vllm_over_hf']} (information)")
        lines.append(line)
    return lines
