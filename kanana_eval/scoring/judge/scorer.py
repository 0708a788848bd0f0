"""MT-Bench / KoMT-Bench as a registered scorer: two-turn answers judged 1-10 by an LLM.

The answers come from our two-turn chat (`stage.answer_items`), not from lm-eval; the judge
stage (`stage.judge_items`) fills score and verdict; this object tells everyone else how such
items aggregate (FastChat's show_result), which row fields they add and how `compare` pairs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.results.records import Item, Scale, SubtaskScore
from kanana_eval.scoring.base import Aggregate, AnswerPath, PairedTest, Scorer, register
from kanana_eval.scoring.judge.fastchat import summarize


@register
class LLMJudge(Scorer):
    """FastChat single-answer grading: mean judge score over judged turns, per turn and category."""

    name = "judge"
    scale = Scale.JUDGE_1_10
    metrics: ClassVar[frozenset[str]] = frozenset({"judge_score"})
    aggregations: ClassVar[frozenset[str]] = frozenset({"judge"})
    required_options = ("benchmark",)
    optional_options = ("language_penalty",)
    answers = AnswerPath.JUDGED_TURNS
    needs_judge = True
    paired_test = PairedTest.BOOTSTRAP
    paired_by_question = True
    compare_note = "judged turns paired by (item_id, turn); the bootstrap resamples whole questions"
    data_source = "LLM judge; data"

    def aggregate(self, spec: BenchmarkSpec, items: Sequence[Item]) -> Aggregate:
        summary = summarize(items)
        categories = {name: SubtaskScore(value=c["value"], n=c["n"])
                      for name, c in summary["categories"].items()}
        return Aggregate(summary["overall"], summary["stderr"], summary["n_judged"], categories)

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        """Per-turn means and the judgments without a readable score (dropped, as FastChat)."""
        summary = summarize(items)
        return {"metrics": {"turn_1": summary["turn_1"], "turn_2": summary["turn_2"]},
                "n_dropped": summary["n_unparsable"]}
