"""Two-turn MT-Bench answers: the second turn sees the model's own first answer, each category is
sampled at FastChat's temperature, and every answer (sampled ones too) is kept for a resumed run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_llama import with_chat_template

from kanana_eval.scoring.judge.answers import GenerationSettings, generate_answers

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
]
SETTINGS = GenerationSettings(max_new_tokens=6, temperatures=(("writing", 0.7), ("math", 0.0)),
                              default_temperature=0.7)


@pytest.fixture(scope="module")
def chat_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a chat template, so the engine renders conversations."""
    return with_chat_template(tiny_llama, tmp_path_factory.mktemp("chat-llama"))


@pytest.fixture(scope="module")
def lm(chat_llama: Path) -> Any:
    from lm_eval.models.huggingface import HFLM  # noqa: PLC0415 - heavy: only the engine fixture

    return HFLM(pretrained=str(chat_llama), batch_size=2, device="cpu", dtype="float32")


def test_fastchat_temperatures_decide_sampling() -> None:
    assert SETTINGS.gen_kwargs("writing") == {"until": [], "max_gen_toks": 6, "do_sample": True,
                                              "temperature": 0.7}
    assert SETTINGS.gen_kwargs("math")["do_sample"] is False
    assert SETTINGS.temperature("unknown-category") == 0.7


def test_second_turn_prompt_carries_the_models_own_first_answer(lm: Any) -> None:
    answers = generate_answers(lm, QUESTIONS, SETTINGS, cache_path=None)
    assert [(a.question_id, a.turn) for a in answers] == [(81, 1), (81, 2), (111, 1), (111, 2)]
    first, second = answers[0], answers[1]
    assert first.prompt == lm.apply_chat_template([{"role": "user", "content": "Write a poem."}])
    assert second.prompt == lm.apply_chat_template([
        {"role": "user", "content": "Write a poem."},
        {"role": "assistant", "content": first.answer},
        {"role": "user", "content": "Make it shorter."}])
    assert answers[0].temperature == 0.7 and answers[2].temperature == 0.0
    assert all(a.answer == a.answer.strip() for a in answers)


class _NoModel:
    """Stands in for the engine once every answer is stored: it must never be asked."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm

    def apply_chat_template(self, history: list[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        return self.lm.apply_chat_template(history, add_generation_prompt=add_generation_prompt)

    def set_cache_hook(self, hook: Any) -> None:
        pass

    def generate_until(self, requests: list[Any]) -> list[str]:
        raise AssertionError(f"{len(requests)} answers were generated again")


def test_stored_answers_sampled_ones_included_are_reused(lm: Any, tmp_path: Path) -> None:
    cache = tmp_path / "lm"
    made = generate_answers(lm, QUESTIONS, SETTINGS, cache_path=cache, seed=1)
    again = generate_answers(_NoModel(lm), QUESTIONS, SETTINGS, cache_path=cache, seed=2)
    assert [a.answer for a in again] == [a.answer for a in made]
    assert [a.prompt for a in again] == [a.prompt for a in made]
