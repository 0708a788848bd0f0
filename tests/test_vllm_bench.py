"""The bench's vLLM part: raw vLLM replays exactly what our run sent, each side from a cold cache.

vLLM itself is not needed: a stand-in `LLM` records what reaches `generate`, which is what the
overhead ratio rests on (docs/vllm.md#speed).
"""

from __future__ import annotations

from typing import Any

from tools.bench.vllm_side import TARGET_VLLM_OVERHEAD, _side, format_vllm


class FakeLLM:
    """`generate` and `reset_prefix_cache`, as `vllm.LLM` has them; every event logged."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def generate(self, prompts: Any, sampling_params: Any = None, **_: Any) -> list[str]:
        self.events.append(("generate", (list(prompts), sampling_params)))
        return [f"out-{p}" for p in prompts]

    def reset_prefix_cache(self) -> bool:
        self.events.append(("reset", None))
        return True


def test_raw_vllm_replays_exactly_the_calls_our_run_made_each_from_an_empty_cache():
    llm = FakeLLM()

    def ours() -> None:  # what lm-eval's VLLM would do through our engine: two calls
        llm.generate([[1, 2, 3], [1, 2, 4]], sampling_params="loglikelihood-params")
        llm.generate([[5]], sampling_params=["gen-params"])

    side = _side(llm, ours)
    calls = [e for e in llm.events if e[0] == "generate"]
    assert calls[:2] == calls[2:]  # replayed: same prompts, same parameters, same order
    kinds = [e[0] for e in llm.events]
    assert kinds == ["reset", "generate", "generate", "reset", "generate", "generate"]
    assert "generate" not in vars(llm)  # the recorder is gone after the run
    assert side["prompts"] == 3 and side["target"] == TARGET_VLLM_OVERHEAD
    assert side["ours_s"] >= 0 and side["raw_vllm_s"] >= 0 and "overhead" in side


def test_the_report_says_when_vllm_is_missing_and_prints_each_ratio():
    assert format_vllm(None) == ["vLLM: not installed (make install installs it), part skipped"]
    side = {"ours_s": 2.2, "raw_vllm_s": 2.0, "prompts": 10, "overhead": 1.1, "pass": True,
            "hf_ours_s": 4.0, "vllm_over_hf": 0.55}
    lines = format_vllm({"engine": {"vllm_version": "0.32.0", "build": "cpu"},
                         "loglikelihood": side, "generation": {**side, "overhead": 1.3,
                                                               "pass": False}})
    assert "vLLM 0.32.0 (cpu)" in lines[0]
    assert "overhead 1.1 [ok]" in lines[1] and "= 0.55 (information)" in lines[1]
    assert "overhead 1.3 [ABOVE TARGET]" in lines[2]
