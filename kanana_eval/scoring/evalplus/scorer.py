"""HumanEval+ and MBPP+ as lm-eval generation tasks: evalplus' data, prompt, sanitizer and tests.

lm-eval has no task for evalplus' release files (its hub copies differ: HumanEval/32's test is
broken there, evalplus #253), so the task config is ours (`tasks/humaneval_plus/task.yaml`) and the
documents come from evalplus' own loader. Generation goes through the run's engine like every
other benchmark; the completion is sanitized with evalplus' `sanitize` and executed with
evalplus' checker inside kanana_eval's sandbox (`scoring.evalplus.execute`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError
from kanana_eval.data.evalplus_release import checked_options, load_task_problems
from kanana_eval.results.records import DataRecord, Item
from kanana_eval.scoring.base import ExecutionContext, Scorer, register, sample_item
from kanana_eval.scoring.evalplus.execute import check_solutions


def sanitize_completion(completion: str, entry_point: str) -> str:
    """evalplus' own post-processing of a chat completion (codegen's
    `sanitize(impl, entrypoint)`)."""
    from evalplus.sanitize import (  # noqa: PLC0415 - heavy: evalplus.sanitize loads datasets
        sanitize,
    )

    return sanitize(completion, entrypoint=entry_point)


def release_fingerprint(options: dict[str, Any]) -> str:
    """evalplus' own hash of the release file it downloaded (it names its ground-truth cache)."""
    from evalplus.data import (  # noqa: PLC0415 - heavy: evalplus.data loads datasets
        get_human_eval_plus_hash,
        get_mbpp_plus_hash,
    )

    options = checked_options(options)
    hasher = {"humaneval": get_human_eval_plus_hash, "mbpp": get_mbpp_plus_hash}[options["dataset"]]
    return f"evalplus:{hasher(version=options['version'])}"


def _verdict(result: Any) -> str:
    if result.passed:
        return "passed"
    if "sandbox error" in result.detail:
        return "error"
    return "timeout" if "timeout" in (result.base_status, result.plus_status) else "failed"


@register
class EvalPlus(Scorer):
    """HumanEval+ / MBPP+: the sanitized solution against evalplus' base and plus tests.

    score = plus pass (base and plus tests all pass: the HumanEval+ / MBPP+ number);
    details.base_passed gives the original benchmark's pass@1 from the same run.
    """

    name = "evalplus"
    metrics: ClassVar[frozenset[str]] = frozenset({"pass@1"})
    required_options = ("dataset", "version", "release_file")
    runs_code = True
    data_source = "evalplus release"

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        completion = sample["resps"][0][0]
        solution = sanitize_completion(completion, sample["doc"]["entry_point"])
        return sample_item(spec, subtask, sample, output=completion, extracted=solution,
                           target=None, score=0.0, verdict="unscored",
                           details={"solution": solution,
                                    "entry_point": sample["doc"]["entry_point"]})

    def completion_text(self, row: dict[str, Any]) -> Any:
        """evalplus' samples format: `solution` as it is, `completion` after the prompt."""
        if "completion" in row and "solution" not in row and isinstance(row["completion"], str):
            return {"completion": row["completion"]}
        return super().completion_text(row)

    def items_from_completions(self, spec: BenchmarkSpec, docs: Sequence[tuple[str | None, dict]],
                               responses: dict[str, Any]) -> list[Item] | None:
        """evalplus' samples semantics, without lm-eval: the solution is the program."""
        items = []
        for subtask, doc in docs:
            given = responses[doc["task_id"]]
            solution = doc["prompt"] + given["completion"] if isinstance(given, dict) else given
            items.append(Item(benchmark=spec.id, item_id=doc["task_id"], subtask=subtask,
                              prompt=doc["prompt"], output=solution, extracted=solution,
                              target=None, score=0.0, verdict="unscored",
                              details={"solution": solution, "entry_point": doc["entry_point"]}))
        return items

    def execute(self, spec: BenchmarkSpec, items: list[Item], context: ExecutionContext) -> None:
        if not items:
            return
        options = checked_options(spec.task.scorer_options)
        problems = load_task_problems(context.data_dir, spec.task.dataset_id, options)
        unknown = [i.item_id for i in items if i.item_id not in problems]
        if unknown:
            raise ConfigError(f"{spec.id}: task ids not in {options['dataset']}+ "
                              f"{options['version']}: {', '.join(unknown[:5])}")
        solutions = [(i.item_id, (i.details or {})["solution"]) for i in items]
        results = check_solutions(options["dataset"], problems, solutions,
                                  scratch_dir=context.cache_dir / "evalplus",
                                  workers=context.workers, progress=context.progress,
                                  unsafe=context.unsafe_exec)
        for item, result in zip(items, results, strict=True):
            item.score = 1.0 if result.passed else 0.0
            item.verdict = _verdict(result)
            item.add_details(base_status=result.base_status, plus_status=result.plus_status,
                             base_passed=result.base_status == "pass",
                             execution_seconds=round(result.seconds, 3),
                             execution_detail=result.detail)
            if result.retried:  # recorded only when it happened: other items keep their details
                item.add_details(execution_retried=list(result.retried))

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        """pass@1 on the base tests alone, next to the plus number (the README reports plus)."""
        if not items:
            return {}
        base = sum(1.0 for i in items if (i.details or {}).get("base_passed")) / len(items)
        plus = sum(float(i.score or 0.0) for i in items) / len(items)
        return {"metrics": {"pass@1_base": base, "pass@1_plus": plus}}

    def release_data(self, spec: BenchmarkSpec) -> DataRecord:
        """Without a mirror evalplus downloads its own release file: its hash is the print."""
        options = spec.task.scorer_options
        return DataRecord(source="release", dataset_id=spec.task.dataset_id, path=None,
                          fingerprint=release_fingerprint(options),
                          revision=options.get("version"), derived_fewshot=False)
