"""Item builders for generated answers checked by rules: `\\boxed{}` math and CoT letters.

Both have the signature of kanana_eval.scoring's builders, (spec, subtask, sample) -> item, and
read their parameters from the task config's `scorer_options`:

* `math_answer`: `target` (jinja over `doc`, the gold answer). The answer read from the output
  is the content of its last `\\boxed{}`; kanana_eval.answers.verify_math decides.
* `cot_letter`: `target` (jinja, the gold letter), `pattern` (regex of the closing phrase,
  matched ignoring case), `letters` (the choice letters, e.g. "ABCD"). The letter is the one
  after the last closing phrase.

Templates get two filters: `last_boxed` and `gsm8k_target` (kanana_eval.answers). An output with
no answer scores 0 with verdict `no_answer`, so such items are counted, not dropped.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jinja2

from kanana_eval.config.protocol import BenchmarkSpec, TaskConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.scoring.answer_rules import cot_letter, gsm8k_target, last_boxed, verify_math
from kanana_eval.scoring.base import item_id

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_JINJA.filters["last_boxed"] = last_boxed
_JINJA.filters["gsm8k_target"] = gsm8k_target

REQUIRED_OPTIONS = {
    "math_answer": ("target",),
    "cot_letter": ("target", "pattern", "letters"),
}


def check_scorer_options(task: TaskConfig) -> None:
    """Fail at load time, not after hours of generation, on missing or unknown scorer options."""
    required = REQUIRED_OPTIONS.get(task.scorer)
    if required is None:
        return
    given = set(task.scorer_options)
    missing, unknown = set(required) - given, given - set(required)
    if missing or unknown:
        raise ConfigError(f"tasks/{task.name}.yaml: scorer '{task.scorer}' needs scorer_options "
                          f"{sorted(required)} (missing {sorted(missing)}, unknown {sorted(unknown)})")
    try:
        _JINJA.from_string(task.scorer_options["target"])
        if "pattern" in required:
            re.compile(task.scorer_options["pattern"])
    except (jinja2.TemplateError, re.error) as exc:
        raise ConfigError(f"tasks/{task.name}.yaml: scorer_options: {exc}") from exc


@cache
def _template(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


def _target(spec: BenchmarkSpec, doc: dict[str, Any]) -> str:
    template = spec.task.scorer_options.get("target")
    if not template:
        raise ConfigError(f"{spec.id}: scorer '{spec.task.scorer}' needs scorer_options.target")
    try:
        value = _template(template).render(doc=doc)
    except (jinja2.TemplateError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{spec.id}: scorer_options.target fails on a document: {exc!r}") from exc
    if not value.strip():
        raise ConfigError(f"{spec.id}: scorer_options.target gives an empty gold answer")
    return value.strip()


def _item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any], extracted: str | None,
          target: str, correct: bool, extractor: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "benchmark": spec.id,
        "item_id": item_id(spec, subtask, sample["doc_id"], sample["doc"]),
        "subtask": subtask,
        "prompt": sample["arguments"][0][0],
        "output": sample["resps"][0][0],
        "extracted": extracted,
        "target": target,
        "score": 1.0 if correct else 0.0,
        "verdict": "correct" if correct else ("wrong" if extracted is not None else "no_answer"),
        "details": {"extractor": extractor},
    }


def math_answer_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """The last `\\boxed{}` of the output, verified against the gold answer by math-verify."""
    target = _target(spec, sample["doc"])
    extracted = last_boxed(sample["resps"][0][0])
    correct = extracted is not None and verify_math(extracted, target)
    return _item(spec, subtask, sample, extracted, target, correct, "boxed")


def cot_letter_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """The letter after the last closing phrase ("Therefore, the answer is: X"), exact match."""
    options = spec.task.scorer_options
    for key in ("pattern", "letters"):
        if not options.get(key):
            raise ConfigError(f"{spec.id}: scorer 'cot_letter' needs scorer_options.{key}")
    target = _target(spec, sample["doc"])
    extracted = cot_letter(sample["resps"][0][0], options["pattern"], list(options["letters"]))
    return _item(spec, subtask, sample, extracted, target, extracted == target, "cot_letter")
