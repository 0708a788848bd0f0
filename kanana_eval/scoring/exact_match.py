"""Exact match after a named lm-eval filter (GSM8K 5-shot, strict-match): lm-eval's own metric."""

from __future__ import annotations

from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import Scorer, register, sample_item


@register
class FilteredExactMatch(Scorer):
    """lm-eval's `exact_match` on the filtered response; no answer found is `no_answer`."""

    name = "filtered_exact_match"
    metrics: ClassVar[frozenset[str]] = frozenset({"exact_match"})

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        output = sample["resps"][0][0]
        extracted = sample["filtered_resps"][0]
        found = extracted not in (None, "", "[invalid]")
        score = float(sample["exact_match"])
        return sample_item(spec, subtask, sample, output=output,
                           extracted=extracted if found else None, target=str(sample["target"]),
                           score=score,
                           verdict=("correct" if score == 1.0
                                    else ("wrong" if found else "no_answer")),
                           details={"filter": sample["filter"]})
