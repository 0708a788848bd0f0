"""HumanEval+ and MBPP+ as lm-eval generation tasks: evalplus' data, prompt, sanitizer and tests.

lm-eval has no task for evalplus' release files (its hub copies differ: HumanEval/32's test is
broken there, evalplus #253), so the task config is ours (`tasks/humaneval_plus.yaml`) and the
documents come from evalplus' own loader. Generation goes through the run's engine like every
other benchmark; the completion is sanitized with evalplus' `sanitize` and executed with
evalplus' checker inside kanana_eval's sandbox (kanana_eval.evalplus_exec).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError
from kanana_eval.data.evalplus_release import checked_options, load_task_problems


def _options(spec_or_options: BenchmarkSpec | dict[str, Any]) -> dict[str, Any]:
    options = (spec_or_options.task.scorer_options if isinstance(spec_or_options, BenchmarkSpec)
               else spec_or_options)
    return checked_options(options)


def sanitize_completion(completion: str, entry_point: str) -> str:
    """evalplus' own post-processing of a chat completion (codegen: `sanitize(impl, entrypoint)`)."""
    from evalplus.sanitize import sanitize

    return sanitize(completion, entrypoint=entry_point)


def evalplus_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """A completion, its sanitized solution, and no verdict yet (the sandbox gives it)."""
    from kanana_eval.scoring.base import item_id

    completion = sample["resps"][0][0]
    solution = sanitize_completion(completion, sample["doc"]["entry_point"])
    return {
        "schema_version": 1, "benchmark": spec.id,
        "item_id": item_id(spec, subtask, sample["doc_id"], sample["doc"]),
        "subtask": subtask, "prompt": sample["arguments"][0][0],
        "output": completion, "extracted": solution, "target": None,
        "score": 0.0, "verdict": "unscored",
        "details": {"solution": solution, "entry_point": sample["doc"]["entry_point"]},
    }


def score_items(spec: BenchmarkSpec, items: Sequence[dict[str, Any]], data_dir: Path | None,
                scratch_dir: Path, workers: int | None = None) -> None:
    """Run every solution against evalplus' base and plus tests (in place on the items).

    score = plus pass (base and plus tests all pass: the HumanEval+ / MBPP+ number);
    details.base_passed gives the original benchmark's pass@1 from the same run.
    """
    from kanana_eval.scoring.evalplus.execute import check_solutions

    if not items:
        return
    options = _options(spec)
    problems = load_task_problems(data_dir, spec.task.dataset_id, options)
    unknown = [i["item_id"] for i in items if i["item_id"] not in problems]
    if unknown:
        raise ConfigError(f"{spec.id}: task ids not in {options['dataset']}+ {options['version']}: "
                          f"{', '.join(unknown[:5])}")
    solutions = [(i["item_id"], i["details"]["solution"]) for i in items]
    results = check_solutions(options["dataset"], problems, solutions, scratch_dir=scratch_dir,
                              workers=workers, progress=True)
    for item, result in zip(items, results, strict=True):
        item["score"] = 1.0 if result.passed else 0.0
        item["verdict"] = ("passed" if result.passed else "error" if "sandbox error" in result.detail
                           else "timeout" if "timeout" in (result.base_status, result.plus_status)
                           else "failed")
        item["details"] = {**item["details"], "base_status": result.base_status,
                           "plus_status": result.plus_status,
                           "base_passed": result.base_status == "pass",
                           "execution_seconds": round(result.seconds, 3),
                           "execution_detail": result.detail}


def extra_metrics(items: Sequence[dict[str, Any]]) -> dict[str, float]:
    """pass@1 on the base tests alone, next to the plus number (the README reports plus)."""
    if not items:
        return {}
    base = sum(1.0 for i in items if i.get("details", {}).get("base_passed")) / len(items)
    plus = sum(float(i["score"]) for i in items) / len(items)
    return {"pass@1_base": base, "pass@1_plus": plus}


def release_fingerprint(options: dict[str, Any]) -> str:
    """evalplus' own hash of the release file it downloaded (it names its ground-truth cache)."""
    from evalplus.data import get_human_eval_plus_hash, get_mbpp_plus_hash

    options = _options(options)
    hasher = get_human_eval_plus_hash if options["dataset"] == "humaneval" else get_mbpp_plus_hash
    return f"evalplus:{hasher(version=options['version'])}"
