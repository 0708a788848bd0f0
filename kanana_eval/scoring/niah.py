"""Needle-in-a-haystack answers: exact match on the value (retrieval form) or contained (QA form).

The protocol says which form: without a chat template `retrieval` (base models: the prompt ends
so the model goes on with the value; the first number of the output must equal it), with one
`qa` (instruct models: a question in the chat template; the answer must contain the value
anywhere, digit groups like 1,234,567 read as one number). One
item per grid cell; a cell longer than the model's context is `unscored` (score null) and a cell
whose generation failed is `error`; both are left out of the mean and counted in the row.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.results.records import Item, SubtaskScore
from kanana_eval.scoring.base import Aggregate, AnswerPath, Scorer, mean_stderr, register

FORMS = ("retrieval", "qa")
_NUMBER = re.compile(r"\d+(?:[,\s]\d{3})*")


def _digits(text: str) -> str:
    return re.sub(r"[,\s]", "", text)


def first_number(output: str) -> str | None:
    """The first number of an output, thousands separators removed."""
    match = _NUMBER.search(output)
    return _digits(match.group(0)) if match else None


def verdict(form: str, output: str, value: str) -> tuple[str | None, bool]:
    """(the answer read from the output, whether it is right) for one cell."""
    if form == "retrieval":
        found = first_number(output)
        return found, found == value
    numbers = [_digits(m.group(0)) for m in _NUMBER.finditer(output)]
    return (value if value in numbers else (numbers[0] if numbers else None)), value in numbers


def form_of(spec: BenchmarkSpec) -> str:
    """`qa` when the protocol applies the chat template (instruct), else `retrieval` (base)."""
    return "qa" if load_protocol(spec.protocol).chat_template else "retrieval"


@register
class NeedleScorer(Scorer):
    """One item per NIAH grid cell; the mean over the cells that ran."""

    name = "niah"
    metrics: ClassVar[frozenset[str]] = frozenset({"acc"})
    aggregations: ClassVar[frozenset[str]] = frozenset({"micro"})
    answers = AnswerPath.GENERATED_GRID
    data_source = "generated"

    def cell_item(self, spec: BenchmarkSpec, *, item_id: str, language: str, prompt: str,
                  output: str, value: str, details: dict[str, Any]) -> Item:
        extracted, correct = verdict(form_of(spec), output, value)
        return Item(benchmark=spec.id, item_id=item_id, subtask=language, prompt=prompt,
                    output=output, extracted=extracted, target=value,
                    score=1.0 if correct else 0.0,
                    verdict="correct" if correct else ("wrong" if extracted else "no_answer"),
                    details=details)

    def aggregate(self, spec: BenchmarkSpec, items: Sequence[Item]) -> Aggregate:
        scored = [i for i in items if i.score is not None]
        by_language: dict[str, list[float]] = defaultdict(list)
        for item in scored:
            by_language[item.subtask or ""].append(float(item.score or 0.0))
        value, stderr = mean_stderr([float(i.score or 0.0) for i in scored])
        subtasks = {lang: SubtaskScore(value=mean_stderr(s)[0], n=len(s))
                    for lang, s in by_language.items()}
        return Aggregate(value, stderr, len(scored), subtasks)

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        return {"n_skipped": sum(1 for i in items if i.verdict == "unscored"),
                "n_failed": sum(1 for i in items if i.verdict == "error")}

    def paired_score(self, item: Item) -> float | None:
        return item.score
