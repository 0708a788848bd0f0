"""Generated answers checked by rules: `\\boxed{}` math (GSM8K/MATH 0-shot) and CoT letters.

Both read their parameters from the task config's `scorer_options`:

* `math_answer`: `target` (jinja over `doc`, the gold answer). The answer read from the output
  is the content of its last `\\boxed{}`; `answer_rules.verify_math` decides.
* `cot_letter`: `target` (jinja, the gold letter), `pattern` (regex of the closing phrase,
  matched ignoring case), `letters` (the choice letters, e.g. "ABCD"). The letter is the one
  after the last closing phrase.

Templates get two filters: `last_boxed` and `gsm8k_target`. An output with no answer scores 0
with verdict `no_answer`, so such items are counted, not dropped.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, ClassVar

import jinja2

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.task_config import TaskConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.results.records import Item
from kanana_eval.scoring.answer_rules import cot_letter, gsm8k_target, last_boxed, verify_math
from kanana_eval.scoring.base import Scorer, register, sample_item

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_JINJA.filters["last_boxed"] = last_boxed
_JINJA.filters["gsm8k_target"] = gsm8k_target


@cache
def _template(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


def _target(spec: BenchmarkSpec, doc: dict[str, Any]) -> str:
    try:
        value = _template(spec.task.scorer_options["target"]).render(doc=doc)
    except (jinja2.TemplateError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{spec.id}: scorer_options.target fails on a document: {exc!r}"
                          ) from exc
    if not value.strip():
        raise ConfigError(f"{spec.id}: scorer_options.target gives an empty gold answer")
    return value.strip()


def _answer_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any],
                 extracted: str | None, target: str, correct: bool, extractor: str) -> Item:
    return sample_item(spec, subtask, sample, output=sample["resps"][0][0], extracted=extracted,
                       target=target, score=1.0 if correct else 0.0,
                       verdict="correct" if correct else ("wrong" if extracted is not None
                                                          else "no_answer"),
                       details={"extractor": extractor})


class _RuleScorer(Scorer):
    """Shared checks: the `target` template (and a `pattern` regex) must compile."""

    def check(self, task: TaskConfig) -> None:
        super().check(task)
        try:
            _JINJA.from_string(task.scorer_options["target"])
            if "pattern" in task.scorer_options:
                re.compile(task.scorer_options["pattern"])
        except (jinja2.TemplateError, re.error) as exc:
            raise ConfigError(f"{task.where}: scorer_options: {exc}") from exc


@register
class MathAnswer(_RuleScorer):
    """The last `\\boxed{}` of the output, verified against the gold answer by math-verify."""

    name = "math_answer"
    metrics: ClassVar[frozenset[str]] = frozenset({"exact_match"})
    required_options = ("target",)

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        target = _target(spec, sample["doc"])
        extracted = last_boxed(sample["resps"][0][0])
        correct = extracted is not None and verify_math(extracted, target)
        return _answer_item(spec, subtask, sample, extracted, target, correct, "boxed")


@register
class CotLetter(_RuleScorer):
    """The letter after the last closing phrase ("Therefore, the answer is: X"), exact match."""

    name = "cot_letter"
    metrics: ClassVar[frozenset[str]] = frozenset({"acc"})
    required_options = ("target", "pattern", "letters")

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        options = spec.task.scorer_options
        target = _target(spec, sample["doc"])
        extracted = cot_letter(sample["resps"][0][0], options["pattern"], list(options["letters"]))
        return _answer_item(spec, subtask, sample, extracted, target, extracted == target,
                            "cot_letter")
