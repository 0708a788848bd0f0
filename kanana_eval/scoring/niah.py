"""Needle-in-a-haystack answers: exact match on the value (retrieval form) or contained (QA form).

The protocol says which form: without a chat template `retrieval` (base models: the prompt ends
so the model goes on with the value; the first number of the output must equal it), with one
`qa` (instruct models: a question in the chat template; the answer must contain the value
anywhere, digit groups like 1,234,567 read as one number). One
item per grid cell; a cell longer than the model's context is `unscored` (score null) and a cell
whose generation failed is `error`; both are left out of the mean and counted in the row.

`--niah-judge` adds gkamradt's kind of score to the QA form (`judge_cells`): every answered cell
is rated 1-10 against its needle by the MT-Bench judge client (cached, retried), stored per item
as `judge_score` beside the contains-value score, which stays the benchmark's value; the row's
`judge_score` holds the mean per language grid and overall. An unparsable judgment is counted and
left out; a judge that fails leaves every answer and contains-value score as it was.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.results.records import Item, SubtaskScore
from kanana_eval.scoring.base import Aggregate, AnswerPath, Scorer, mean_stderr, register
from kanana_eval.scoring.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeError,
    JudgeRequest,
    estimate_cost_usd,
)
from kanana_eval.scoring.judge.fastchat import RATING_RANGE, read_rating
from kanana_eval.scoring.judge.stage import judgment_cache
from kanana_eval.tasks.niah.generator import Needle
from kanana_eval.tasks.niah.judge_prompt import PROMPT_FILE, PROMPT_NAME, load_judge_prompt

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
        fields: dict[str, Any] = {"n_skipped": sum(1 for i in items if i.verdict == "unscored"),
                                  "n_failed": sum(1 for i in items if i.verdict == "error")}
        summary = judge_summary(items)
        if summary is not None:
            fields["judge_score"] = summary
        return fields

    def paired_score(self, item: Item) -> float | None:
        return item.score


def _judged(item: Item) -> bool:
    return isinstance((item.details or {}).get("judge"), dict)


def judge_summary(items: Sequence[Item]) -> dict[str, Any] | None:
    """The mean 1-10 judge score per language grid and overall (None when nothing was judged);
    unparsable judgments are counted and left out. Read from the items, so any re-aggregation
    of stored items gives the same row."""
    judged = [i for i in items if _judged(i)]
    if not judged:
        return None
    rated = [i for i in judged if i.judge_score is not None]
    value, stderr = mean_stderr([float(i.judge_score or 0.0) for i in rated])
    by_language: dict[str, list[float]] = defaultdict(list)
    for item in rated:
        by_language[item.subtask or ""].append(float(item.judge_score or 0.0))
    languages = sorted({i.subtask or "" for i in judged})
    models = sorted({str((i.details or {})["judge"].get("model")) for i in judged})
    return {"value": value, "stderr": stderr, "scale": "judge_1_10", "models": models,
            "n": len(rated),
            "n_unparsable": len(judged) - len(rated),
            "languages": {lang: {"value": mean_stderr(by_language[lang])[0],
                                 "n": len(by_language[lang])} for lang in languages}}


def judge_cells(spec: BenchmarkSpec, items: Sequence[Item], needles: dict[str, Needle],
                config: JudgeConfig, *, progress: bool = True) -> dict[str, Any]:
    """Rate every answered cell 1-10 against its needle, in place; return the judge record.

    Sets `item.judge_score` (None when the judgment has no rating in 1-10) and `details.judge`
    (the judgment, cache key). A judge that cannot be used or fails after its retries touches no
    item: the record says `not judged` and why; replies that arrived are in the judgment cache,
    so the next run asks only the rest.
    """
    prompt = load_judge_prompt()
    answered = [i for i in items if i.verdict not in ("unscored", "error")]
    requests = []
    for item in answered:
        needle = needles[item.subtask or ""]
        text = prompt.render(question=needle.text(form_of(spec)), needle=needle.text("needle"),
                             answer=item.output)
        requests.append(JudgeRequest(({"role": "user", "content": text},), prompt=PROMPT_NAME))
    record: dict[str, Any] = {**config.describe(), "prompts": [PROMPT_NAME],
                              "prompt_file": PROMPT_FILE.name, "prompt_sha256": prompt.sha256,
                              "valid_range": list(RATING_RANGE), "n_judgments": len(requests)}
    try:
        with JudgeClient(config, judgment_cache()) as client:
            replies = client.complete_many(requests, progress=progress, desc=f"judge {spec.id}")
            calls = client.api_calls()
    except JudgeError as exc:
        return {"status": "not judged", **record, "error": str(exc).splitlines()[0]}
    usage = {"prompt_tokens": sum(r.prompt_tokens for r in replies if not r.cached),
             "completion_tokens": sum(r.completion_tokens for r in replies if not r.cached)}
    for item, reply in zip(answered, replies, strict=True):
        raw, rejected = read_rating(reply.text)
        item.judge_score = raw
        item.add_details(judge={"model": config.model, "prompt_name": PROMPT_NAME,
                                "judgment": reply.text, "rejected_rating": rejected,
                                "verdict": "judged" if raw is not None else "unparsable",
                                "cache_key": reply.key})
    return {"status": "judged", **record,
            "n_unparsable": sum(1 for i in answered if i.judge_score is None),
            "api_calls": calls, "cached_replies": sum(1 for r in replies if r.cached),
            "usage": usage, "cost_usd": estimate_cost_usd(config.model, usage["prompt_tokens"],
                                                          usage["completion_tokens"])}
