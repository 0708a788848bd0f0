"""MT-Bench / KoMT-Bench on the spine: questions → two-turn answers → LLM judge → items and a row.

The runner calls `answer_items` with its engine, then `judge_items` unless the run asked for
answers only; `kanana-eval judge RUN` calls `judge_items` again on a stored run's items, so a run
can be judged later or re-judged by another judge without regenerating. Judging follows FastChat's
single-answer grading (kanana_eval.scoring.judge.fastchat); an unparsable judgment is asked once
more (a separate cache entry) and, still unparsable, dropped from the score and counted; so is a
rating outside the protocol's 1-10 (FastChat would score it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.paths import cache_dir
from kanana_eval.data.judge_bench import JudgeBenchData, load_judge_bench
from kanana_eval.results.records import DataRecord, Item
from kanana_eval.scoring.judge.answers import GenerationSettings, TurnAnswer, generate_answers
from kanana_eval.scoring.judge.answers import first_turn_requests as pending_first_turns
from kanana_eval.scoring.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeError,
    JudgeRequest,
    estimate_cost_usd,
)
from kanana_eval.scoring.judge.fastchat import (
    NEED_REF_CATEGORIES,
    RATING_RANGE,
    LanguagePenalty,
    judge_tasks,
    read_rating,
)
from kanana_eval.tasks.limits import spread_limit

UNJUDGED, JUDGED, UNPARSABLE = "unjudged", "judged", "unparsable"


@dataclass(frozen=True)
class Rejudge:
    """`--rejudge`: stored judgments asked (and paid) again, bypassing the cache.

    `unparsable`: those whose stored judgment has no rating in range; `all`: every one; else
    question ids (`81,82`) or question:turn (`81:2`), the same in each judged benchmark.
    """

    text: str
    mode: str  # "unparsable" | "all" | "ids"
    ids: frozenset[tuple[int, int | None]] = frozenset()

    def covers(self, question_id: int, turn: int) -> bool:
        return (self.mode == "all" or (question_id, turn) in self.ids
                or (question_id, None) in self.ids)

    def check(self, benchmark: str, judgments: Sequence[tuple[int, int]]) -> None:
        """Refuse ids naming no judgment of the benchmark, before anything is asked."""
        if self.mode != "ids":
            return
        questions = {q for q, _ in judgments}
        unknown = [f"{q}" if t is None else f"{q}:{t}" for q, t in sorted(
                       self.ids, key=lambda x: (x[0], x[1] or 0))
                   if (q not in questions if t is None else (q, t) not in set(judgments))]
        if unknown:
            raise ConfigError(f"--rejudge {self.text}: {benchmark} has no judgment "
                              f"{', '.join(unknown)} (give question ids, or id:turn)")


def parse_rejudge(text: str) -> Rejudge:
    """`unparsable`, `all`, or comma-separated question ids / id:turn; ConfigError otherwise."""
    value = text.strip()
    if value in ("unparsable", "all"):
        return Rejudge(value, value)
    ids: set[tuple[int, int | None]] = set()
    for part in (p.strip() for p in value.split(",")):
        question, _, turn = part.partition(":")
        if not question.isdigit() or (turn and turn not in ("1", "2")):
            raise ConfigError(f"--rejudge takes unparsable, all, or question ids such as 81,82:2; "
                              f"got {text!r}")
        ids.add((int(question), int(turn) if turn else None))
    return Rejudge(value, "ids", frozenset(ids))


@dataclass(frozen=True)
class JudgeOptions:
    """How the judge stage runs: which judge, KoMT-Bench's optional language penalty, and which
    stored judgments to ask again."""

    client: JudgeConfig = dataclasses.field(default_factory=JudgeConfig)
    language_penalty: bool = False
    rejudge: Rejudge | None = None


def load_data(spec: BenchmarkSpec, data_dir: Path | None) -> JudgeBenchData:
    name = spec.task.scorer_options.get("benchmark")
    if not name:
        raise ConfigError(f"{spec.task.where}: needs scorer_options.benchmark")
    return load_judge_bench(name, data_dir)


def data_record(spec: BenchmarkSpec, data: JudgeBenchData) -> DataRecord:
    """The manifest's data entry: where questions, judge prompts and references came from."""
    return DataRecord(source=data.source.get("kind", "download"), dataset_id=spec.task.dataset_id,
                      path=data.source.get("path"), fingerprint=data.fingerprint,
                      revision=data.source.get("commit"), derived_fewshot=False,
                      files=data.source)


def plan_questions(data: JudgeBenchData, limit: int | None) -> dict[str, int]:
    """Questions per category under --limit, spread like every other benchmark's subtasks."""
    sizes: dict[str, int] = {}
    for question in data.questions:
        sizes[question["category"]] = sizes.get(question["category"], 0) + 1
    return spread_limit(sizes, limit)


def planned_questions(data: JudgeBenchData, plan: dict[str, int]) -> list[dict[str, Any]]:
    """The first `plan[category]` questions of each category, in file order."""
    taken: dict[str, int] = {}
    chosen = []
    for question in data.questions:
        category = question["category"]
        if taken.get(category, 0) < plan.get(category, 0):
            taken[category] = taken.get(category, 0) + 1
            chosen.append(question)
    return chosen


def generation_settings(spec: BenchmarkSpec, system_prompt: str | None) -> Any:
    gen = spec.generation or {}
    try:
        return GenerationSettings(
            max_new_tokens=int(gen["max_gen_toks"]),
            temperatures=tuple((str(k), float(v)) for k, v in gen["category_temperatures"].items()),
            default_temperature=float(gen["default_temperature"]), system_prompt=system_prompt)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{spec.id}: generation needs max_gen_toks, category_temperatures and "
                          f"default_temperature ({exc!r})") from exc


def _item(spec: BenchmarkSpec, data: JudgeBenchData, answer: TurnAnswer) -> Item:
    reference = data.references.get(answer.question_id)
    target = None
    if reference is not None and answer.category in NEED_REF_CATEGORIES:
        turns = reference["choices"][0]["turns"]
        target = turns[answer.turn - 1] if answer.turn <= len(turns) else None
    return Item(benchmark=spec.id, item_id=str(answer.question_id), subtask=answer.category,
                turn=answer.turn, prompt=answer.prompt, output=answer.answer, extracted=None,
                target=target, score=None, verdict=UNJUDGED,
                details={"question_id": answer.question_id, "category": answer.category,
                         "temperature": answer.temperature})


def first_turn_requests(lm: Any, spec: BenchmarkSpec, data: JudgeBenchData, plan: dict[str, int], *,
                        system_prompt: str | None, cache_path: Path | None) -> list[Any]:
    """Turn-1 requests of the planned questions not answered yet (they can join an earlier pass)."""
    return pending_first_turns(lm, planned_questions(data, plan),
                               generation_settings(spec, system_prompt), cache_path=cache_path)


def answer_items(lm: Any, spec: BenchmarkSpec, data: JudgeBenchData, plan: dict[str, int], *,
                 system_prompt: str | None, cache_path: Path | None, seed: int,
                 ready: dict[str, str] | None = None) -> list[Item]:
    """Both turns of the planned questions, answered by `lm`; items not judged yet.

    `ready`: answers an earlier pass already made (`first_turn_requests` joined to it).
    """
    questions = planned_questions(data, plan)
    settings = generation_settings(spec, system_prompt)
    answers = generate_answers(lm, questions, settings, cache_path=cache_path, seed=seed,
                               ready=ready)
    return [_item(spec, data, a) for a in answers]


def judgment_cache() -> Path:
    """One judgment cache for every run and process, keyed by (server, judge prompt, judge model,
    request): nothing is paid twice, and another server is never answered from it."""
    return cache_dir() / "judgments" / "judgments.sqlite"


def _penalty(spec: BenchmarkSpec, options: JudgeOptions) -> LanguagePenalty | None:
    if (not options.language_penalty
            or spec.task.scorer_options.get("language_penalty") != "optional"):
        return None
    return LanguagePenalty()


def vouched_legacy_keys(record: dict[str, Any] | None, items: Sequence[Item],
                        config: JudgeConfig) -> set[str]:
    """Legacy cache keys a stored run vouches for: those its items name, when its judge record
    shows the same judge at the same server (as recorded) with the same sampling.

    Caches written before the server joined the key hold rows that any server under the same
    model name could have made; a manifest that names this server and these keys tells us which
    rows came from it, so they are adopted instead of paid again.
    """
    if not record or record.get("status") != "judged":
        return set()
    mine = config.describe()
    same = all(record.get(k) == mine[k] for k in ("model", "base_url", "temperature",
                                                  "max_tokens"))
    if not same or record.get("server", mine["server"]) != mine["server"]:
        return set()
    prompts = set(record.get("prompts") or ())
    return {str(judge["cache_key"]) for item in items
            if isinstance(judge := (item.details or {}).get("judge"), dict)
            and judge.get("cache_key") and judge.get("prompt_name") in prompts}


def judge_items(spec: BenchmarkSpec, items: Sequence[Item], data: JudgeBenchData,
                options: JudgeOptions, *, progress: bool = True,
                vouched: set[str] | None = None) -> dict[str, Any]:
    """Judge every item in place (score, verdict, details.judge); return the judge record.

    `vouched`: legacy cache keys a stored run vouches for (`vouched_legacy_keys`).
    """
    by_key = {(int((i.details or {})["question_id"]), int(i.turn or 0)): i for i in items}
    answers: dict[int, list[str]] = {}
    for (qid, _turn), item in sorted(by_key.items()):
        answers.setdefault(qid, []).append(item.output)
    questions = [q for q in data.questions if q["question_id"] in answers]
    tasks = [t for t in judge_tasks(questions, answers, data.judge_prompts, data.references)
             if (t.question_id, t.turn) in by_key]
    if options.rejudge is not None:
        options.rejudge.check(spec.id, [(t.question_id, t.turn) for t in tasks])
    with JudgeClient(options.client, judgment_cache()) as client:
        return _judge_with(client, spec, tasks, by_key, options, progress, vouched or set())


def _request(task: Any, attempt: int) -> JudgeRequest:
    return JudgeRequest(task.messages(), attempt, prompt=task.prompt_name)


def _adopt(client: JudgeClient, tasks: list[Any], vouched: set[str]) -> int:
    """Adopt the legacy rows of both attempts of every task a stored run vouches for."""
    if not vouched:
        return 0
    chosen = [t for t in tasks if {client.legacy_key(_request(t, a)) for a in (0, 1)} & vouched]
    return client.adopt_legacy([_request(t, a) for t in chosen for a in (0, 1)])


def _chosen(client: JudgeClient, tasks: list[Any], rejudge: Rejudge | None) -> set[int]:
    """Indices of the tasks `--rejudge` asks again although a judgment is stored."""
    if rejudge is None:
        return set()
    if rejudge.mode == "unparsable":
        stored = client.stored([_request(t, 0) for t in tasks])
        return {i for i, reply in enumerate(stored)
                if reply is not None and read_rating(reply.text)[0] is None}
    return {i for i, t in enumerate(tasks) if rejudge.covers(t.question_id, t.turn)}


def _judge_with(client: JudgeClient, spec: BenchmarkSpec, tasks: list[Any],
                by_key: dict[tuple[int, int], Item], options: JudgeOptions,
                progress: bool, vouched: set[str]) -> dict[str, Any]:
    """Ask, re-ask the unparsable ones once, then write score, verdict and judgment per item."""
    penalty = _penalty(spec, options)
    adopted = _adopt(client, tasks, vouched)
    chosen = _chosen(client, tasks, options.rejudge)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    pending = list(enumerate(tasks))
    replies: dict[tuple[int, int], Any] = {}
    attempts: dict[tuple[int, int], int] = {}
    for attempt in (0, 1):  # FastChat drops an unparsable judgment; we ask once more first
        if not pending:
            break
        force = [n for n, (index, _task) in enumerate(pending) if index in chosen]
        got = client.complete_many([_request(t, attempt) for _, t in pending], force=force,
                                   progress=progress,
                                   desc=f"judge {spec.id}" + (" (re-ask)" if attempt else ""))
        for (_, task), reply in zip(pending, got, strict=True):
            replies[(task.question_id, task.turn)] = reply
            attempts[(task.question_id, task.turn)] = attempt + 1
            if not reply.cached:
                usage["prompt_tokens"] += reply.prompt_tokens
                usage["completion_tokens"] += reply.completion_tokens
        pending = [(i, t) for i, t in pending
                   if read_rating(replies[(t.question_id, t.turn)].text)[0] is None]
    out_of_range = 0
    for task in tasks:
        key = (task.question_id, task.turn)
        item, reply = by_key[key], replies[key]
        raw, rejected = read_rating(reply.text)
        out_of_range += rejected is not None
        score, applied = raw, None
        if raw is not None and penalty is not None:
            score, applied = penalty.apply(task.question_id, item.output, raw)
        item.score = score
        item.verdict = JUDGED if raw is not None else UNPARSABLE
        item.add_details(judge={
            "model": options.client.model, "prompt_name": task.prompt_name,
            "user_prompt": task.user_prompt, "judgment": reply.text, "attempts": attempts[key],
            "raw_score": raw, "rejected_rating": rejected, "penalty": applied,
            "cache_key": reply.key})
    n_cached = sum(1 for r in replies.values() if r.cached)
    return {
        "status": "judged", **options.client.describe(),
        "prompts": sorted({t.prompt_name for t in tasks}),
        "language_penalty": ({"applied": True, **penalty.describe()} if penalty is not None
                             else {"applied": False}),
        "valid_range": list(RATING_RANGE),
        "n_judgments": len(tasks),
        "n_unparsable": sum(1 for t in tasks
                            if by_key[(t.question_id, t.turn)].verdict == UNPARSABLE),
        "n_out_of_range": out_of_range,
        "api_calls": client.api_calls(), "cached_replies": n_cached,
        "adopted_legacy_replies": adopted,
        "rejudge": (None if options.rejudge is None
                    else {"mode": options.rejudge.text, "asked_again": len(chosen)}),
        "usage": usage, "cost_usd": estimate_cost_usd(options.client.model, usage["prompt_tokens"],
                                                      usage["completion_tokens"]),
    }


def require_ratings(judges: dict[str, dict[str, Any]], run_dir: Path) -> None:
    """A run whose every judgment of a benchmark is unparsable has no score: fail in one line
    (after the run is written, so nothing is lost) instead of a silent n/a."""
    for bench, record in judges.items():
        total = int(record.get("n_judgments") or 0)
        if total and record.get("n_unparsable") == total:
            low, high = record.get("valid_range", RATING_RANGE)
            raise JudgeError(
                f"{bench}: none of the {total} judgments has a rating in {low:g}-{high:g} "
                f"(judge {record.get('model')} at {record.get('server')}); the run is written to "
                f"{run_dir}, its judgments are in items/; fix the judge, then ask again with "
                f"--rejudge unparsable")


def not_judged_record() -> dict[str, Any]:
    return {"status": "not judged", "note": "answers only: judge them with `kanana-eval judge RUN`"}
