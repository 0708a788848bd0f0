"""FunctionChat-Bench as a registered scorer: tool calls exact-matched, else judged by rubric.

Items come from the tool-calling chat (`AnswerPath.TOOL_CHAT`, kanana_eval.pipeline.tool_chat),
one per scored request (Dialog turn, Singlecall query x tool set, CallDecision line); exact match
scores call turns at once (`matching.exact_match`), the judge the rest (`judge.judge_items`).
Every sub-score is stored; the headline is the protocol's `aggregation`, one of `AGGREGATIONS`,
because the Kanana README does not say how its one FunctionChatBench number is made (see
docs/functionchat.md for how each candidate fits the nine published values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.results.records import Item, Scale, SubtaskScore
from kanana_eval.scoring.base import (
    Aggregate,
    AnswerPath,
    PairedTest,
    Scorer,
    mean_stderr,
    register,
)

UNJUDGED = "unjudged"
Scores = dict[str, list[float]]


def _subset_of(item: Item) -> str:
    return str((item.subtask or ":").split(":", 1)[0])


def _groups(items: Sequence[Item], key: Callable[[Item], str]) -> Scores:
    out: Scores = {}
    for item in items:
        if item.score is not None:
            out.setdefault(key(item), []).append(float(item.score))
    return out


def _mean_of(groups: Scores, names: Sequence[str] | None = None
             ) -> tuple[float | None, float | None]:
    """Mean of the groups' means, with the standard error of that mean (independent groups)."""
    chosen = [groups[n] for n in (names if names is not None else sorted(groups)) if n in groups]
    stats = [mean_stderr(g) for g in chosen if g]
    if not stats:
        return None, None
    value = sum(m for m, _ in stats if m is not None) / len(stats)
    if any(e is None for _, e in stats):
        return value, None
    return value, math.sqrt(sum(float(e) ** 2 for _, e in stats)) / len(stats)


def _prefixed(items: Sequence[Item], subset: str) -> Scores:
    return _groups([i for i in items if _subset_of(i) == subset], lambda i: str(i.subtask))


# name -> (description, function of the items giving (value, stderr)); README-cell candidates.
AGGREGATIONS: dict[str, tuple[str, Callable[[Sequence[Item]], tuple[float | None,
                                                                    float | None]]]] = {
    "subset_mean": ("mean of the Dialog, Singlecall and CallDecision pass rates",
                    lambda items: _mean_of(_groups(items, _subset_of))),
    "dialog_type_mean": ("mean of the four Dialog turn-type pass rates",
                         lambda items: _mean_of(_prefixed(items, "dialog"))),
    "calldecision_category_mean": ("mean of the four CallDecision category pass rates",
                                   lambda items: _mean_of(_prefixed(items, "calldecision"))),
    "dialog_singlecall_mean": ("mean of the Dialog and Singlecall pass rates",
                               lambda items: _mean_of(_groups(items, _subset_of),
                                                      ("dialog", "singlecall"))),
    "micro": ("pass rate over every item of the three subsets",
              lambda items: mean_stderr([float(i.score) for i in items if i.score is not None])),
}
DEFAULT_AGGREGATION = "subset_mean"  # [I]: fits all nine published values; see the docs


def sub_scores(items: Sequence[Item]) -> dict[str, float | None]:
    """Every sub-score: each subset's pass rate (micro, as the repository prints it) and every
    candidate aggregation, keyed by name."""
    out: dict[str, float | None] = {}
    for subset, scores in sorted(_groups(items, _subset_of).items()):
        out[subset] = mean_stderr(scores)[0]
    for name, (_text, function) in AGGREGATIONS.items():
        out[f"aggregation:{name}"] = function(items)[0]
    return out


@register
class FunctionChatScorer(Scorer):
    """Pass/fail per request; the headline aggregation is recorded as inferred."""

    name = "functionchat"
    metrics: ClassVar[frozenset[str]] = frozenset({"pass_rate"})
    aggregations: ClassVar[frozenset[str]] = frozenset(AGGREGATIONS)
    optional_options = ("version",)
    answers = AnswerPath.TOOL_CHAT
    needs_judge = True
    paired_test = PairedTest.BY_VALUES
    compare_note = ("requests paired by id: Dialog turn serial_num, Singlecall query x tool set, "
                    "CallDecision category/serial_num; ids carry the data version")
    data_source = "kakao/FunctionChat-Bench data files; exact match + LLM judge"
    scale = Scale.FRACTION

    def aggregate(self, spec: BenchmarkSpec, items: Sequence[Item]) -> Aggregate:
        """The protocol's aggregation over scored items; None while any item awaits the judge."""
        subtasks = {name: SubtaskScore(value=mean_stderr(scores)[0], n=len(scores))
                    for name, scores in sorted(_groups(items, lambda i: str(i.subtask)).items())}
        scored = sum(1 for i in items if i.score is not None)
        if any(i.verdict == UNJUDGED for i in items):
            return Aggregate(None, None, scored, subtasks)
        value, stderr = AGGREGATIONS[spec.aggregation][1](items)
        return Aggregate(value, stderr, scored, subtasks)

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        """Sub-scores, the aggregation used (marked inferred) and how outputs were read."""
        parses: dict[str, int] = {}
        for item in items:
            status = str((item.details or {}).get("parse", {}).get("status", "none"))
            parses[status] = parses.get(status, 0) + 1
        return {
            "metrics": sub_scores(items),
            "n_dropped": sum(1 for i in items if i.verdict == "unparsable"),
            "aggregation": {"name": spec.aggregation,
                            "description": AGGREGATIONS[spec.aggregation][0],
                            "inferred": True,
                            "note": "the Kanana README does not document how its single "
                                    "FunctionChatBench number aggregates; docs/functionchat.md"},
            "exact_match_passes": sum(1 for i in items
                                      if (i.details or {}).get("exact") == "pass"),
            "n_unjudged": sum(1 for i in items if i.verdict == UNJUDGED),
            "n_errors": sum(1 for i in items if i.verdict == "error"),
            "outputs_read_as": parses,
        }
