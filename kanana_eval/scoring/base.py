"""Turn lm-eval's logged samples into schema-v1 item records, and items into a score.

Adapters never run models or write files: lm-eval computed the responses (and, for
log-likelihood and exact-match tasks, the per-item metric); here each sample becomes one item
record. Code items get their program here and their verdict from kanana_eval.scoring.sandbox.runner.
"""

from __future__ import annotations

import importlib
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def item_id(spec: BenchmarkSpec, subtask: str | None, doc_id: int, doc: dict[str, Any]) -> str:
    """The dataset's own id, so that two runs can be paired item by item."""
    try:
        return str(spec.task.item_id.format(subtask=subtask, doc_id=doc_id, doc=doc))
    except (KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{spec.id}: item_id template {spec.task.item_id!r} fails: {exc!r}") from exc


def _base(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "benchmark": spec.id,
        "item_id": item_id(spec, subtask, sample["doc_id"], sample["doc"]),
        "subtask": subtask,
        "prompt": sample["arguments"][0][0],
    }


def multiple_choice_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """Log-likelihood acc: lm-eval's own `acc`, with every choice's log-likelihood kept."""
    choices = [str(args[1]) for args in sample["arguments"]]
    lls = [float(resp[0]) for resp in sample["filtered_resps"]]
    best = max(range(len(lls)), key=lambda i: (lls[i], -i))  # first maximum, as np.argmax
    target = sample["target"]
    if isinstance(target, int) and 0 <= target < len(choices):
        target_text = choices[target].strip()
    else:
        target_text = str(target).strip()
    score = float(sample["acc"])
    return {
        **_base(spec, subtask, sample),
        "output": choices[best].strip(),
        "extracted": choices[best].strip(),
        "target": target_text,
        "score": score,
        "verdict": "correct" if score == 1.0 else "wrong",
        "choices": choices,
        "loglikelihoods": lls,
    }


def exact_match_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """Exact match after a named lm-eval filter (GSM8K's strict-match); lm-eval's own metric."""
    output = sample["resps"][0][0]
    extracted = sample["filtered_resps"][0]
    found = extracted not in (None, "", "[invalid]")
    score = float(sample["exact_match"])
    return {
        **_base(spec, subtask, sample),
        "output": output,
        "extracted": extracted if found else None,
        "target": str(sample["target"]),
        "score": score,
        "verdict": "correct" if score == 1.0 else ("wrong" if found else "no_answer"),
        "details": {"filter": sample["filter"]},
    }


def code_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """A generated completion and the program that tests it; the verdict comes from the sandbox."""
    completion = sample["resps"][0][0]
    if not spec.task.program_template:
        raise ConfigError(f"{spec.id}: a code_execution task needs a program_template")
    program = _JINJA.from_string(spec.task.program_template).render(doc=sample["doc"], completion=completion)
    return {
        **_base(spec, subtask, sample),
        "output": completion,
        "extracted": completion,
        "target": None,
        "score": 0.0,
        "verdict": "unscored",
        "details": {"program": program},
    }


def _lazy(module: str, name: str) -> Callable[..., dict[str, Any]]:
    """A builder from another module, imported on first use (each pulls its own libraries)."""
    def build(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
        return getattr(importlib.import_module(module), name)(spec, subtask, sample)

    return build


# scorer name -> (lm-eval filter whose samples it reads, or None for "the only one"; builder)
_BUILDERS: dict[str, tuple[str | None, Callable[..., dict[str, Any]]]] = {
    "multiple_choice": ("none", multiple_choice_item),
    "filtered_exact_match": (None, exact_match_item),
    "code_execution": (None, code_item),
    "ifeval": (None, _lazy("kanana_eval.scoring.ifeval", "ifeval_item")),
    "math_answer": (None, _lazy("kanana_eval.scoring.answer_scorers", "math_answer_item")),
    "cot_letter": (None, _lazy("kanana_eval.scoring.answer_scorers", "cot_letter_item")),
    "evalplus": (None, _lazy("kanana_eval.scoring.evalplus.scorer", "evalplus_item")),
}


def items_from_samples(spec: BenchmarkSpec, subtask: str | None, samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item record per document, taken from the samples of the filter the scorer reads."""
    if spec.task.scorer not in _BUILDERS:
        raise ConfigError(f"{spec.id}: unknown scorer '{spec.task.scorer}'")
    default_filter, build = _BUILDERS[spec.task.scorer]
    wanted = spec.task.filter or default_filter
    filters = sorted({s["filter"] for s in samples})
    if wanted is None:
        if len(filters) > 1:
            raise ConfigError(f"{spec.id}: several filters {filters}; name one in the task config")
        wanted = filters[0] if filters else None
    chosen = [s for s in samples if s["filter"] == wanted]
    if samples and not chosen:
        raise ConfigError(f"{spec.id}: lm-eval produced no '{wanted}' filter (has {filters})")
    return [build(spec, subtask, s) for s in sorted(chosen, key=lambda s: s["doc_id"])]


def apply_execution(items: list[dict[str, Any]], results: Sequence[Any]) -> None:
    """Write sandbox verdicts into code items (in place): passed scores 1, anything else 0."""
    for item, result in zip(items, results, strict=True):
        item["verdict"] = result.status
        item["score"] = 1.0 if result.status == "passed" else 0.0
        item["details"] = {**item.get("details", {}), "execution_seconds": round(result.seconds, 3),
                           "execution_detail": result.detail}


@dataclass(frozen=True)
class Aggregate:
    value: float | None
    stderr: float | None
    n: int
    subtasks: dict[str, dict[str, Any]]


def mean_stderr(scores: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and its standard error (sample std, ddof=1, over sqrt n) as lm-eval reports it."""
    n = len(scores)
    if n == 0:
        return None, None
    mean = sum(scores) / n
    if n < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in scores) / (n - 1)
    return mean, math.sqrt(var / n)


def aggregate(items: Sequence[dict[str, Any]], how: str = "micro") -> Aggregate:
    """micro: every item counts once (lm-eval's size-weighted group mean); macro: subtask mean."""
    if how == "judge":  # MT-Bench: FastChat's show_result over judged turns, per category too
        from kanana_eval.scoring.judge.fastchat import summarize

        summary = summarize(items)
        return Aggregate(summary["overall"], summary["stderr"], summary["n_judged"],
                         summary["categories"])
    by_sub: dict[str, list[float]] = defaultdict(list)
    for item in items:
        by_sub[item.get("subtask") or ""].append(float(item["score"]))
    subtasks = {}
    for name, scores in by_sub.items():
        if name:
            subtasks[name] = {"value": mean_stderr(scores)[0], "n": len(scores)}
    if how == "ifeval":  # the README's IFEval: mean of prompt- and instruction-level strict acc
        from kanana_eval.scoring.ifeval import ifeval_aggregate

        return ifeval_aggregate(items)
    scores = [float(i["score"]) for i in items]
    if how == "micro":
        value, stderr = mean_stderr(scores)
    elif how == "macro":
        means = [s["value"] for s in subtasks.values()] or [mean_stderr(scores)[0]]
        value, stderr = (sum(means) / len(means) if means else None), None
    else:
        raise ConfigError(f"unknown aggregation '{how}'")
    return Aggregate(value, stderr, len(items), subtasks)


def row_extras(spec: BenchmarkSpec, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a scores.json row adds to the headline number: other metrics and failure counts."""
    extras: dict[str, Any] = {}
    if spec.task.scorer == "ifeval" and items:
        from kanana_eval.scoring.ifeval import ifeval_metrics

        extras["metrics"] = ifeval_metrics(items)
    elif spec.task.scorer == "evalplus" and items:
        from kanana_eval.scoring.evalplus.scorer import extra_metrics

        extras["metrics"] = extra_metrics(items)
    if spec.generation is not None:
        extras["n_no_answer"] = sum(1 for i in items if i["verdict"] == "no_answer")
        extras["n_truncated"] = sum(1 for i in items if i.get("truncated"))
    return extras
