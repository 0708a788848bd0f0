"""Two-turn answers for MT-Bench / KoMT-Bench through the run's engine, as FastChat makes them.

FastChat's `gen_model_answer` asks turn 1, appends the model's own answer to the conversation,
then asks turn 2; each turn is sampled at its category's temperature (writing/roleplay 0.7,
stem/humanities 0.1, the rest greedy) with at most 1024 new tokens, and the answer is stripped.
Here the conversation is rendered with the model's own chat template (the lm-eval LM's
`apply_chat_template`) and every turn of every question goes through the engine in one batch per
turn; turn 1 can join the protocol's first generation pass (`first_turn_requests`). Each answer
is stored on disk the moment it is made (lm-eval's cache hook), sampled ones included: lm-eval's
CachingLM never caches sampled generations, but an answer is one draw, kept as FastChat keeps
its answer file, so a killed run resumes without regenerating or redrawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlitedict import SqliteDict

# FastChat llm_judge/common.py `temperature_config`; other categories get 0.7 there.
CATEGORY_TEMPERATURES: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
    "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
MAX_NEW_TOKENS = 1024


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are sampled; recorded per benchmark in the manifest."""

    max_new_tokens: int = MAX_NEW_TOKENS
    temperatures: tuple[tuple[str, float], ...] = tuple(CATEGORY_TEMPERATURES.items())
    default_temperature: float = DEFAULT_TEMPERATURE
    system_prompt: str | None = None

    def temperature(self, category: str) -> float:
        return dict(self.temperatures).get(category, self.default_temperature)

    def gen_kwargs(self, category: str) -> dict[str, Any]:
        """lm-eval generation arguments: FastChat samples when temperature >= 1e-4."""
        temperature = self.temperature(category)
        sample = temperature >= 1e-4
        return {"until": [], "max_gen_toks": self.max_new_tokens, "do_sample": sample,
                "temperature": temperature if sample else 0.0}


@dataclass
class TurnAnswer:
    """One turn of one question: the rendered prompt the model saw and its stripped answer."""

    question_id: int
    turn: int
    category: str
    prompt: str
    answer: str
    temperature: float


def _history(question: dict[str, Any], answers: Sequence[str], turn: int,
             system_prompt: str | None) -> list[dict[str, str]]:
    """The chat up to `turn` (1-based): earlier turns carry the model's own answers."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for index in range(turn):
        messages.append({"role": "user", "content": question["turns"][index]})
        if index < turn - 1:
            messages.append({"role": "assistant", "content": answers[index]})
    return messages


def _turn_requests(lm: Any, asked: Sequence[dict[str, Any]], answers: dict[int, list[str]],
                   turn: int, settings: GenerationSettings) -> tuple[list[str], list[Any]]:
    """(rendered prompts, lm-eval generate_until requests) of `turn` for the questions `asked`."""
    from lm_eval.api.instance import Instance  # noqa: PLC0415 - heavy: lm-eval, only for a run

    prompts = [lm.apply_chat_template(
                   _history(q, answers[q["question_id"]], turn, settings.system_prompt),
                   add_generation_prompt=True) for q in asked]
    requests = [Instance(request_type="generate_until", doc=q,
                         arguments=(prompt, settings.gen_kwargs(q["category"])), idx=0,
                         metadata=(f"judge_turn{turn}", q["question_id"], 1))
                for q, prompt in zip(asked, prompts, strict=True)]
    return prompts, requests


def first_turn_requests(lm: Any, questions: Sequence[dict[str, Any]], settings: GenerationSettings,
                        *, cache_path: Path | None = None) -> list[Any]:
    """Turn-1 requests not answered yet: they need no earlier answer, so they can join the
    protocol's first generation pass (`generation_stage`) instead of waiting for their own."""
    from lm_eval.api.model import hash_args  # noqa: PLC0415 - heavy: lm-eval, only for a run

    _prompts, requests = _turn_requests(lm, questions, {q["question_id"]: [] for q in questions}, 1,
                                        settings)
    done = _stored_keys(cache_path)
    return [r for r in requests if hash_args("generate_until", r.args) not in done]


def generate_answers(lm: Any, questions: Sequence[dict[str, Any]], settings: GenerationSettings,
                     *, cache_path: Path | None = None, seed: int = 1234,
                     ready: dict[str, str] | None = None) -> list[TurnAnswer]:
    """Both turns of every question, turn by turn; returns question order, turn 1 before turn 2.

    `ready` holds answers already generated in an earlier pass (keyed by lm-eval's `hash_args`);
    they are stored like fresh ones and not asked again.
    """
    import torch  # noqa: PLC0415 - heavy: torch, only for a model

    store = _AnswerStore(lm, cache_path, ready or {})
    torch.manual_seed(seed)  # sampled categories: reproducible on the same engine and batch size
    answers: dict[int, list[str]] = {q["question_id"]: [] for q in questions}
    results: list[TurnAnswer] = []
    n_turns = max((len(q["turns"]) for q in questions), default=0)
    for turn in range(1, n_turns + 1):
        asked = [q for q in questions if len(q["turns"]) >= turn]
        prompts, requests = _turn_requests(lm, asked, answers, turn, settings)
        outputs = store.generate(requests)
        for q, prompt, output in zip(asked, prompts, outputs, strict=True):
            text = str(output).strip()
            answers[q["question_id"]].append(text)
            results.append(TurnAnswer(q["question_id"], turn, q["category"], str(prompt), text,
                                      settings.temperature(q["category"])))
    order = {q["question_id"]: i for i, q in enumerate(questions)}
    return sorted(results, key=lambda a: (order[a.question_id], a.turn))


def _answer_db_path(cache_path: Path) -> Path:
    return Path(f"{cache_path}_judge_answers.db")


def _stored_keys(cache_path: Path | None) -> set[str]:
    if cache_path is None or not _answer_db_path(cache_path).is_file():
        return set()

    with SqliteDict(str(_answer_db_path(cache_path)), flag="r") as db:
        return set(db.keys())


class _AnswerStore:
    """Answers already made are read back; new ones are written as each request finishes."""

    def __init__(self, lm: Any, cache_path: Path | None, ready: dict[str, str]) -> None:
        from lm_eval.api.model import CacheHook  # noqa: PLC0415 - heavy: lm-eval, only for a run

        self.lm, self.db, self.ready = lm, None, ready
        if cache_path is not None:

            path = _answer_db_path(cache_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = SqliteDict(str(path), autocommit=True)
            hook = CacheHook(None)
            hook.dbdict = self.db
            lm.set_cache_hook(hook)

    def generate(self, requests: list[Any]) -> list[str]:
        from lm_eval.api.model import hash_args  # noqa: PLC0415 - heavy: lm-eval, only for a run

        keys = [hash_args("generate_until", r.args) for r in requests]
        db: dict[str, str] | Any = self.db if self.db is not None else {}
        for key in keys:
            if key in self.ready and key not in db:
                db[key] = self.ready[key]
        missing = [r for r, k in zip(requests, keys, strict=True) if k not in db]
        if missing:
            for request, output in zip(missing, self.lm.generate_until(missing), strict=True):
                db[hash_args("generate_until", request.args)] = output
        return [db[k] for k in keys]
