"""The NIAH QA form's optional 1-10 judge prompt (gkamradt's rubric in the project's words).

gkamradt's LLMNeedleHaystackTester grades an answer against the needle on a 1-10 scale with a
GPT judge; its prompt is not ours to copy, so `judge_prompt.md` states the same idea (rate the
answer only against the hidden fact) in our words, ending in FastChat's `Rating: [[N]]` format so
the MT-Bench rating reader parses it. Its sha256 is recorded with every judged run: a change of
wording is a change of judge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

PROMPT_FILE = Path(__file__).with_name("judge_prompt.md")
PROMPT_NAME = "niah-needle-1-10-v1"  # enters the judgment cache key with the text itself


@dataclass(frozen=True)
class JudgePrompt:
    """The template text and its sha256 (the manifest records both name and hash)."""

    text: str
    sha256: str

    def render(self, *, question: str, needle: str, answer: str) -> str:
        return Template(self.text).substitute(question=question.strip(), needle=needle.strip(),
                                              answer=answer.strip() or "(empty answer)")


def load_judge_prompt() -> JudgePrompt:
    text = PROMPT_FILE.read_text(encoding="utf-8")
    return JudgePrompt(text, hashlib.sha256(text.encode("utf-8")).hexdigest())
