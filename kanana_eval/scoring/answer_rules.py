"""Read a final answer out of generated text and check it: `\\boxed{}` math, CoT letters, GSM8K.

Math answers are compared by rules, not strings: math-verify (HuggingFace) parses both sides to
SymPy and compares them (numbers, fractions, percentages, intervals, sets, equations, text).

Hangs. math-verify bounds every parse and every comparison with `signal.alarm` (Unix): the
alarm interrupts Python code, and on this machine SymPy stops within the limit even on answers
such as `9^{9^{9^9}}`, `(10^{100})!` or `2^{2^{33}}-1` (checked: about 5 s each, then "wrong").
A SIGALRM handler only works in the main thread, so `verify_math` refuses to run anywhere else
(math-verify itself would raise a ValueError). The runner builds items in the main thread after
lm-eval returns. What no alarm can stop is one C call that never returns to Python; we know of
no answer that does that. Worst case per item: 2 parses + 4 comparisons at PARSE_TIMEOUT_S /
VERIFY_TIMEOUT_S each.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from functools import cache

PARSE_TIMEOUT_S = 5  # math-verify's default, per parse
VERIFY_TIMEOUT_S = 5  # math-verify's default, per (gold, prediction) comparison

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced(text: str, start: int) -> str | None:
    """The content of the group opening at text[start] == '{', escaped braces skipped."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def last_boxed(text: str | None) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (nested braces kept), or of `\\boxed x`.

    None when there is no box, when the last box is empty or never closed (a cut-off answer is
    no answer: an earlier box is a draft, not the final answer).
    """
    if not text:
        return None
    matches = list(_BOX.finditer(text))
    if not matches:
        return None
    rest = matches[-1].end()
    stripped = text[rest:].lstrip()
    if stripped.startswith("{"):
        content = _braced(text, len(text) - len(stripped))
    else:  # `\boxed 5`: one token, up to a space or the closing `$`
        token = re.match(r"[^\s${}]+", stripped)
        content = token.group(0) if token else None
    if content is None or not content.strip():
        return None
    return content.strip()


@cache
def _configs() -> tuple[object, ...]:
    from math_verify import (  # noqa: PLC0415 - heavy: math-verify (sympy), only to verify
        ExprExtractionConfig,
        LatexExtractionConfig,
    )

    # The answer is handed over as `\boxed{...}`: LaTeX first with the box preferred, then a plain
    # expression (`1/2`, `0.5`) when the LaTeX parser finds nothing.
    return (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _parse(answer: str) -> list[object]:
    from math_verify import parse  # noqa: PLC0415 - heavy: math-verify (sympy), only to verify

    return parse(f"\\boxed{{{answer}}}", extraction_config=list(_configs()),
                 parsing_timeout=PARSE_TIMEOUT_S)


def verify_math(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer (a box's content) equals the gold answer, by math-verify's rules.

    Identical strings are equal without parsing. Must run in the main thread (see module doc).
    """
    if predicted is None or not predicted.strip() or not gold.strip():
        return False
    if _squeeze(predicted) == _squeeze(gold):
        return True
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("verify_math must run in the main thread: math-verify's timeouts use "
                           "signal.alarm, which other threads cannot set")
    from math_verify import verify  # noqa: PLC0415 - heavy: math-verify (sympy), only to verify

    gold_parsed, predicted_parsed = _parse(gold), _parse(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=VERIFY_TIMEOUT_S))


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


# Markup a model may put between the closing phrase and the letter: colon, spaces, bold/italics,
# an opening bracket, a `$`, or a LaTeX wrapper such as \boxed{ or \textbf{.
_GAP = r"(?:[\s:：*_`(\[{$]|\\(?:boxed|text|textbf|mathrm|mathbf)(?![A-Za-z]))*"


@cache
def _phrase_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(f"(?i:{pattern})")


def cot_letter(text: str | None, pattern: str, letters: Sequence[str]) -> str | None:
    """The choice letter after the LAST closing phrase (`pattern`, a regex matched ignoring case).

    "Therefore, the answer is: B", "**Therefore, the answer is: (B)**", "... is: $\\boxed{B}$"
    all give "B". None when the phrase is absent or the last one has no letter after it (an
    earlier phrase is a draft). Letters are matched in upper case only ("a" is a word).
    """
    if not text:
        return None
    phrases = list(_phrase_regex(pattern).finditer(text))
    if not phrases:
        return None
    choice = "|".join(re.escape(letter) for letter in letters)
    found = re.match(f"{_GAP}({choice})(?![A-Za-z])", text[phrases[-1].end():])
    return found.group(1) if found else None


def gsm8k_target(answer_text: str) -> str:
    """GSM8K's gold number: what follows the last `####` of the worked answer, commas dropped."""
    if "####" not in answer_text:
        raise ValueError("a GSM8K answer ends with '#### <number>'")
    return answer_text.rsplit("####", 1)[1].strip().replace(",", "")
