"""Answer extraction and rule-based verification: `\\boxed{}`, math-verify, CoT letters, GSM8K."""

from __future__ import annotations

import threading
import time

import pytest

from kanana_eval.scoring import answer_rules as answers
from kanana_eval.scoring.answer_rules import cot_letter, gsm8k_target, last_boxed, verify_math

MMLU_PHRASE = "Therefore,?\\s+the\\s+answer\\s+is"
KMMLU_PHRASE = "따라서,?\\s*정답은"


@pytest.mark.parametrize("text,expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{{1}{2}}", "{1}{2}"),  # nested braces kept whole
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces do not close the box
    ("draft \\boxed{1}, final \\boxed{2}", "2"),  # the last box
    ("$\\boxed 5$", "5"),
    ("\\fbox{7}", "7"),
    ("\\boxed{ 42 }", "42"),
])
def test_last_boxed_reads_the_last_box(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text", [
    "", None, "no box here", "\\boxed{5",  # cut off: no answer, not the draft before it
    "\\boxed{3} then \\boxed{}", "\\boxedcolor{red}",
])
def test_last_boxed_finds_no_answer(text):
    assert last_boxed(text) is None


@pytest.mark.parametrize("predicted,gold", [
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("\\dfrac{1}{2}", "\\frac12"),
    ("\\tfrac{3}{4}", "0.75"),
    ("10\\%", "10"),
    ("1,000", "1000"),  # thousands separators (GSM8K)
    ("1,234,567", "1234567"),
    ("\\$18", "18"),
    ("18 \\text{ dollars}", "18"),
    ("-3", "-3"),
    ("- 2", "-2"),
    ("(1,2]", "(1, 2]"),
    ("(-\\infty,-8)\\cup (8,\\infty)", "(-\\infty, -8) \\cup (8, \\infty)"),
    ("\\{2,1\\}", "\\{1,2\\}"),
    ("C", "\\text{(C)}"),
    ("\\text{(C)}", "\\text{(C)}"),
    ("Evelyn", "\\text{Evelyn}"),
    ("x=5", "5"),
    ("30^\\circ", "30"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("1.5", "\\frac{3}{2}"),
])
def test_equivalent_answers_verify(predicted, gold):
    assert verify_math(predicted, gold)


@pytest.mark.parametrize("predicted,gold", [
    ("3", "-3"),
    ("5", "6"),
    ("(1,2)", "(1,2]"),
    ("[1,2)", "(1,2]"),
    ("\\text{(D)}", "\\text{(C)}"),
    ("\\text{Bob}", "\\text{Evelyn}"),
    ("0.33", "\\frac{1}{3}"),
    ("(\\frac{\\pi}{2}, 3)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("12", "1,2"),
    ("", "5"),
    (None, "5"),
])
def test_different_answers_stay_wrong(predicted, gold):
    assert not verify_math(predicted, gold)


def test_verification_of_a_huge_power_gives_up_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(answers, "VERIFY_TIMEOUT_S", 1)  # math-verify's alarm, shortened
    start = time.time()
    assert not verify_math("9^{9^{9^{9}}}", "1")
    assert time.time() - start < 10


def test_verify_math_refuses_other_threads():
    errors: list[BaseException] = []

    def run() -> None:
        try:
            verify_math("0.5", "\\frac{1}{2}")
        except RuntimeError as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert errors and "main thread" in str(errors[0])


@pytest.mark.parametrize("text,expected", [
    ("Reasoning...\nTherefore, the answer is: B", "B"),
    ("**Therefore, the answer is: (B)**", "B"),
    ("Therefore, the answer is: **C**.", "C"),
    ("Therefore, the answer is: $\\boxed{D}$", "D"),
    ("Therefore, the answer is:\n\n**(A) Paris**", "A"),
    ("therefore the answer is D", "D"),
    ("Therefore, the answer is: A. On reflection... Therefore, the answer is: C", "C"),
])
def test_cot_letter_takes_the_letter_after_the_last_phrase(text, expected):
    assert cot_letter(text, MMLU_PHRASE, "ABCD") == expected


@pytest.mark.parametrize("text", [
    "", None, "The answer is B",
    "Therefore, the answer is: Because of ...",  # a word, not a letter
    "Therefore, the answer is: E",  # not a choice
    "Therefore, the answer is: b",  # lower case is read as a word
    "Therefore, the answer is: B. Wait. Therefore, the answer is: unclear",  # the last one counts
])
def test_cot_letter_without_a_letter_after_the_last_phrase_is_none(text):
    assert cot_letter(text, MMLU_PHRASE, "ABCD") is None


@pytest.mark.parametrize("text,expected", [
    ("풀이...\n따라서, 정답은: B", "B"),
    ("따라서 정답은 C입니다.", "C"),
    ("**따라서, 정답은: (D)**", "D"),
    ("정답은 A", None),
])
def test_cot_letter_reads_the_korean_closing_phrase(text, expected):
    assert cot_letter(text, KMMLU_PHRASE, "ABCD") == expected


@pytest.mark.parametrize("answer,expected", [
    ("She sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
    ("...\n#### 1,000", "1000"),
    ("...\n#### -5", "-5"),
])
def test_gsm8k_target_is_the_number_after_the_marks(answer, expected):
    assert gsm8k_target(answer) == expected


def test_gsm8k_target_without_marks_is_an_error():
    with pytest.raises(ValueError):
        gsm8k_target("no final line")
