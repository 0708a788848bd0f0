"""The full base protocol's wall time on this machine, projected from the rates a run measured.

Benchmarks come from protocols/base.yaml, requests per item from lm-eval's task config, and
item counts from each benchmark folder's card (`protocol_items`, the one place that reads them),
so adding a benchmark never means editing the bench.
"""

from __future__ import annotations

from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, select_benchmarks
from kanana_eval.tasks.catalog import load_card
from kanana_eval.tasks.lm_eval_bridge import leaf_task_names, task_config


def protocol_items(task_name: str) -> tuple[int, str]:
    """(items in the benchmark's full scored set, where that number comes from): its card."""
    card = load_card(task_name)
    return card.items, f"tasks/{task_name}/card.md ({card.source})"


def _leaves(spec: BenchmarkSpec) -> list[str]:
    """The benchmark's leaf lm-eval tasks (its own name when it has no lm-eval group)."""
    task = spec.task
    if task.lm_eval_task and task.lm_eval_folder:
        return leaf_task_names(task.lm_eval_task, task.lm_eval_folder)
    return [task.name]


def _project_one(spec: BenchmarkSpec, ll_requests_per_s: float | None,
                 gen_s_per_prompt: float | None) -> dict[str, Any]:
    """One benchmark's row: items, requests, the rate it is projected at, and the seconds."""
    items, source = protocol_items(spec.task.name)
    leaves = _leaves(spec)
    cfg = task_config(leaves[0], spec, None)
    kind = str(cfg.get("output_type"))
    row: dict[str, Any] = {"benchmark": spec.id, "items": items, "items_source": source,
                           "output_type": kind, "subtasks": len(leaves)}
    if kind == "multiple_choice" and isinstance(cfg.get("doc_to_choice"), list):
        choices = len(cfg["doc_to_choice"])
        row.update(requests_per_item=choices,
                   rate_from="reuse path, MMLU log-likelihood requests/s",
                   rate=ll_requests_per_s)
        row["requests"] = items * choices if items is not None else None
        row["projected_s"] = (row["requests"] / ll_requests_per_s
                              if row["requests"] is not None and ll_requests_per_s else None)
    elif kind == "generate_until":
        row.update(requests_per_item=1, requests=items, rate=gen_s_per_prompt,
                   rate_from="ours batched, HumanEval seconds per prompt",
                   max_gen_toks=(spec.generation or {}).get("max_gen_toks"))
        row["projected_s"] = (items * gen_s_per_prompt
                              if items is not None and gen_s_per_prompt is not None else None)
    else:
        row.update(requests_per_item=None, requests=None, rate=None, rate_from=None,
                   projected_s=None)
    return row


def project_protocol(ll_requests_per_s: float | None,
                     gen_s_per_prompt: float | None) -> dict[str, Any]:
    """Wall time of the whole base protocol here, projected from the rates this run measured.

    Log-likelihood benchmarks take the reuse path's MMLU rate and generation benchmarks
    HumanEval's batched seconds per prompt: a projection, not a measurement (Korean prompts
    tokenize longer, MBPP and GSM8K carry few-shot prompts and lower token limits, code
    execution is not counted).
    """
    rows = [_project_one(spec, ll_requests_per_s, gen_s_per_prompt)
            for spec in select_benchmarks(["base"], None)]
    known = [r["projected_s"] for r in rows if r["projected_s"] is not None]
    return {"kind": "projection", "protocol": "base", "benchmarks": rows,
            "total_s": sum(known) if len(known) == len(rows) else None,
            "partial_total_s": sum(known)}
