"""FunctionChat-Bench items: exact match first, then the rubric judge through the shared client.

`exact_items` settles what needs no judge (call turns that match, unreadable lines); `judge_items`
asks the judge for every other item through `JudgeClient` (concurrency, retries, the per-prompt
SQLite cache that never pays twice, the cost record), one user message holding the filled rubric,
temperature 0.1, as the repository's `fetch` does, and reads pass/fail from the judgment's last
lines. An unreadable judgment scores 0 (the repository counts it in no pass) and is counted.
`kanana-eval judge RUN` calls `judge_items` again on stored items: the judge needs only the data
version's files and the stored model message (`details.response`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kanana_eval.results.records import Item
from kanana_eval.scoring.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeRequest,
    estimate_cost_usd,
)
from kanana_eval.scoring.judge.stage import judgment_cache
from kanana_eval.scoring.tool_calls.matching import exact_match, read_verdict, rubric_prompt
from kanana_eval.scoring.tool_calls.scorer import UNJUDGED
from kanana_eval.tasks.functionchatbench.loader import FunctionChatData, ToolChatCase

JUDGE_TEMPERATURE = 0.1  # config/openai.cfg at both commits


def judge_config(data: FunctionChatData, base: JudgeConfig, model: str | None) -> JudgeConfig:
    """The run's judge settings with the version's model (unless overridden) and temperature."""
    return replace(base, model=model or data.rules.judge_model, temperature=JUDGE_TEMPERATURE,
                   max_tokens=data.rules.judge_max_tokens)


def settle(item: Item, case: ToolChatCase, data: FunctionChatData) -> None:
    """Score what needs no judge: a broken case (error), an exact-matched call (passed)."""
    if case.error:
        item.score, item.verdict = 0.0, "error"
        item.add_details(error=case.error)
        return
    response = (item.details or {}).get("response") or {}
    passed, message = exact_match(case, response, data.rules)
    if case.type_of_output == "call":
        item.add_details(exact="pass" if passed else "fail", exact_eval=message)
    if passed:
        item.score, item.verdict = 1.0, "passed"
    else:
        item.score, item.verdict = None, UNJUDGED


def judge_items(items: Sequence[Item], data: FunctionChatData, config: JudgeConfig, *,
                progress: bool = True, desc: str = "judge functionchat") -> dict[str, Any]:
    """Judge every unsettled item in place; return the judge record for the manifest."""
    cases = {case.item_id: case for case in data.cases}
    for item in items:
        settle(item, cases[item.item_id], data)
    pending = [i for i in items if i.verdict == UNJUDGED]
    prompts = [rubric_prompt(cases[i.item_id], (i.details or {}).get("response") or {},
                             data.rubrics, data.rules) for i in pending]
    requests = [JudgeRequest(({"role": "user", "content": p},)) for p in prompts]
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    calls, cached = 0, 0
    if requests:
        with JudgeClient(config, judgment_cache()) as client:
            replies = client.complete_many(requests, progress=progress, desc=desc)
            calls = client.api_calls()
        for item, prompt, reply in zip(pending, prompts, replies, strict=True):
            verdict = read_verdict(reply.text, data.rules)
            item.score = 1.0 if verdict == "pass" else 0.0
            item.verdict = {"pass": "passed", "fail": "failed"}.get(str(verdict), "unparsable")
            item.add_details(judge={"model": config.model, "rubric": cases[item.item_id]
                                    .type_of_output, "user_prompt": prompt,
                                    "judgment": reply.text, "verdict": verdict,
                                    "cache_key": reply.key})
            cached += int(reply.cached)
            if not reply.cached:
                usage["prompt_tokens"] += reply.prompt_tokens
                usage["completion_tokens"] += reply.completion_tokens
    return {"status": "judged", **config.describe(), "data_version": data.version,
            "rubrics": sorted(data.rubrics), "n_judgments": len(requests),
            "n_exact_passed": sum(1 for i in items if i.verdict == "passed"
                                  and (i.details or {}).get("exact") == "pass"),
            "n_unparsable": sum(1 for i in items if i.verdict == "unparsable"),
            "api_calls": calls, "cached_replies": cached, "usage": usage,
            "cost_usd": estimate_cost_usd(config.model, usage["prompt_tokens"],
                                          usage["completion_tokens"])}


def settle_only(items: Sequence[Item], data: FunctionChatData) -> dict[str, Any]:
    """`--no-judge`: exact matches scored now, the rest left for `kanana-eval judge RUN`."""
    cases = {case.item_id: case for case in data.cases}
    for item in items:
        settle(item, cases[item.item_id], data)
    return {"status": "not judged", "data_version": data.version,
            "n_exact_passed": sum(1 for i in items if i.verdict == "passed"),
            "n_unjudged": sum(1 for i in items if i.verdict == UNJUDGED),
            "note": "answers only: judge them with `kanana-eval judge RUN`"}


def target_text(case: ToolChatCase) -> str:
    """The ground truth as stored in an item's `target`."""
    return json.dumps(case.ground_truth, ensure_ascii=False)
