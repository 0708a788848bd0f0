"""pass@1 by running the program (HumanEval, MBPP): prompt + completion + tests, in the sandbox.

lm-eval scores these through the hub `evaluate` metric `code_eval`, which cannot load offline and
runs code in-process; here the task's `program_template` builds the same program and
`scoring.sandbox` runs it, never in this process.

With the scorer option `tests_template` (the tests part, which must end the program), the
program is split at the trust line: the candidate runs in the sandbox child and the tests in
the supervisor, calling the candidate across a pipe with builtin values (`sandbox/rpc.py`), so
no candidate can make an assertion pass without computing the right value. `tests_at` in an
item's details is where the tests begin in its `program`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jinja2

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.task_config import TaskConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import ExecutionContext, Scorer, register, sample_item
from kanana_eval.scoring.sandbox.api import run_programs

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@register
class CodeExecution(Scorer):
    """A completion becomes a program; passed scores 1, anything else (failed, timeout) 0."""

    name = "code_execution"
    metrics: ClassVar[frozenset[str]] = frozenset({"pass@1"})
    runs_code = True
    optional_options = ("tests_template",)

    def check(self, task: TaskConfig) -> None:
        super().check(task)
        if not task.program_template:
            raise ConfigError(f"{task.where}: scorer 'code_execution' needs a program_template")
        try:
            _JINJA.from_string(task.program_template)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{task.where}: program_template: {exc}") from exc
        try:
            _JINJA.from_string(str(task.scorer_options.get("tests_template", "")))
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{task.where}: tests_template: {exc}") from exc

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        completion = sample["resps"][0][0]
        program = _JINJA.from_string(spec.task.program_template or "").render(
            doc=sample["doc"], completion=completion)
        details: dict[str, Any] = {"program": program}
        template = spec.task.scorer_options.get("tests_template")
        if template:
            tests = _JINJA.from_string(str(template)).render(doc=sample["doc"])
            if not program.endswith(tests):
                raise ConfigError(f"{spec.task.where}: tests_template must render the end of "
                                  f"program_template ({sample['doc'].get('task_id', '?')})")
            details["tests_at"] = len(program) - len(tests)
        return sample_item(spec, subtask, sample, output=completion, extracted=completion,
                           target=None, score=0.0, verdict="unscored", details=details)

    def execute(self, spec: BenchmarkSpec, items: list[Item], context: ExecutionContext) -> None:
        if not items:
            return
        limits = spec.execution or {}
        details = [item.details or {} for item in items]
        split = all("tests_at" in d for d in details)
        programs = [d["program"][:d["tests_at"]] if split else d["program"] for d in details]
        tests = [d["program"][d["tests_at"]:] for d in details] if split else None
        results = run_programs(programs, tests=tests,
                               timeout_s=float(limits.get("timeout_s", 3.0)),
                               memory_mb=int(limits.get("memory_mb", 2048)),
                               workers=context.workers, progress=context.progress,
                               unsafe=context.unsafe_exec)
        for item, result in zip(items, results, strict=True):
            item.verdict = result.status
            item.score = 1.0 if result.status == "passed" else 0.0
            item.add_details(execution_seconds=round(result.seconds, 3),
                             execution_detail=result.detail)
            if result.attempts > 1:  # recorded only when it happened: other items keep theirs
                item.add_details(execution_retried=True)
