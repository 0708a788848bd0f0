"""The instruct answer-checked benchmarks score gold answers 100%, empty and wrong answers 0%.

Same method as test_scorers_gold_and_empty.py: an oracle LM answers from the dataset itself,
through lm-eval's task configs with our overrides, lm-eval's request building, and our item
builders (kanana_eval.scoring.answer_scorers). Data: the offline mirror with the hub fixtures
(KMMLU, MATH-500); MATH needs KANANA_SHARED_DATA.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from lm_eval.api.model import LM

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.task_config import load_task
from kanana_eval.core.errors import ConfigError
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
from kanana_eval.pipeline import collect as collect_module
from kanana_eval.pipeline.collect import collect_items, plan_limits
from kanana_eval.results.io import validate
from kanana_eval.scoring.answer_rules import _parse, gsm8k_target, last_boxed
from kanana_eval.scoring.catalog import get_scorer
from kanana_eval.tasks.lm_eval_bridge import build_tasks
from kanana_eval.tasks.math.data import read_math_test

FIXTURES_HUB = Path(__file__).parent / "fixtures" / "hub"
GENERATION = {"do_sample": False, "until": [], "max_gen_toks": 2048}
BENCHMARKS = {  # id -> (task, README column)
    "gsm8k_boxed@instruct": ("gsm8k_boxed", "GSM8K"),
    "math@instruct": ("math", "MATH"),
    "math500@instruct": ("math500", "MATH-500"),
    "mmlu_cot@instruct": ("mmlu_cot", "MMLU"),
    "kmmlu_cot@instruct": ("kmmlu_cot", "KMMLU"),
}
USER = "<|user|>\n"  # OracleLM's chat rendering: no system turn, the prompt is the user turn


def _spec(bench: str) -> BenchmarkSpec:
    task, column = BENCHMARKS[bench]
    return BenchmarkSpec(id=bench, protocol="instruct", column=column, task=load_task(task),
                         num_fewshot=0, metric="exact_match", aggregation="micro",
                         generation=dict(GENERATION))


def _gsm8k_gold(doc: dict) -> str:
    number = gsm8k_target(doc["answer"])
    shown = f"{int(number):,}" if number.lstrip("-").isdigit() else number  # 1000 -> "1,000"
    return f"{doc['answer'].split('####')[0]}So the answer is $\\boxed{{{shown}}}$."


# What a perfect model would generate, read from the document itself.
GOLD = {
    "gsm8k_boxed@instruct": _gsm8k_gold,
    "math@instruct": lambda doc: doc["solution"],  # a worked solution ending in a \boxed answer
    "math500@instruct": lambda doc: doc["solution"],
    "mmlu_cot@instruct":
        lambda doc: f"Step by step...\nTherefore, the answer is: {'ABCD'[doc['answer']]}",
    "kmmlu_cot@instruct":
        lambda doc: f"단계별로 풀면...\n따라서, 정답은: {'ABCD'[doc['answer'] - 1]}",
}
WRONG = {
    "gsm8k_boxed@instruct": lambda doc: f"$\\boxed{{{gsm8k_target(doc['answer'])}1}}$",
    "math@instruct": lambda doc: f"$\\boxed{{{last_boxed(doc['solution'])} + 1}}$",
    "math500@instruct": lambda doc: f"$\\boxed{{{last_boxed(doc['solution'])} + 1}}$",
    "mmlu_cot@instruct": lambda doc: f"Therefore, the answer is: {'BCDA'[doc['answer']]}",
    "kmmlu_cot@instruct": lambda doc: f"따라서, 정답은: {'BCDA'[doc['answer'] - 1]}",
}


class OracleLM(LM):
    """Generates the gold response, a wrong one, or nothing, per benchmark; has a chat template."""

    def __init__(self, tasks: dict, mode: str) -> None:
        super().__init__()
        self.tasks, self.mode = tasks, mode

    @property
    def tokenizer_name(self) -> str:
        return "oracle"

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        turns = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in chat_history)
        return turns + ("<|assistant|>\n" if add_generation_prompt else "")

    def generate_until(self, requests):
        out = []
        for req in requests:
            bench = self.tasks[req.task_name].config.metadata["kanana_benchmark"]
            answers = {"gold": GOLD, "wrong": WRONG}.get(self.mode)
            out.append(answers[bench](req.doc) if answers else "")
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@pytest.fixture(scope="module")
def built_instruct(offline_mirror):
    benches = [b for b in BENCHMARKS
               if b != "math@instruct" or (offline_mirror / "EleutherAI/hendrycks_math").is_dir()]
    specs = [_spec(b) for b in benches]
    built = {s.id: build_tasks(s, offline_mirror) for s in specs}
    plan, _ = plan_limits(specs, built, limit=40)
    tasks = {bt.name: bt.task for s in specs for bt in built[s.id]}
    return specs, built, plan, tasks


@pytest.fixture
def items_of(built_instruct, monkeypatch):
    """Items of every benchmark for an oracle mode, with the instruct protocol's chat template.

    The specs are built here, not read from protocols/instruct.yaml (which also names other
    tasks); the runner asks the protocol how to render prompts, so it gets instruct.yaml's
    answer: chat template on, no system prompt.
    """
    monkeypatch.setattr(collect_module, "load_protocol",
                        lambda name: SimpleNamespace(chat_template=True, system_prompt=None))
    specs, built, plan, tasks = built_instruct

    def run(mode: str) -> dict[str, list]:
        return collect_items(OracleLM(tasks, mode), specs, built, plan)

    return run


@pytest.mark.parametrize("mode,value,verdicts", [
    ("gold", 1.0, {"correct"}),
    ("empty", 0.0, {"no_answer"}),
    ("wrong", 0.0, {"wrong"}),
])
def test_answer_scorers_on_gold_empty_and_wrong_answers(items_of, built_instruct, mode, value,
                                                        verdicts):
    items = items_of(mode)
    for bench, bench_items in items.items():
        assert bench_items, f"{bench}: no items"
        spec = next(s for s in built_instruct[0] if s.id == bench)
        assert get_scorer(spec.task.scorer).aggregate(spec, bench_items).value == value, (
            bench, [(i.item_id, i.output[-80:], i.extracted, i.target)
                    for i in bench_items if i.score != value][:3])
        assert {i.verdict for i in bench_items} == verdicts, bench
        for item in bench_items:
            validate("item", item.to_json())
            assert (item.extracted is None) == (mode == "empty")


def test_math_full_test_set_is_in_the_run(shared_data_dir, built_instruct):
    specs, built, _, _ = built_instruct
    assert "math@instruct" in {s.id for s in specs}
    assert [bt.subtask for bt in built["math@instruct"]] == [
        "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
        "number_theory", "prealgebra", "precalculus"]
    assert sum(len(bt.task.eval_docs) for bt in built["math@instruct"]) == 5000


def test_gold_items_carry_dataset_ids_targets_and_prompts(items_of):
    items = {bench: {i.item_id: i for i in rows} for bench, rows in items_of("gold").items()}
    math500 = items["math500@instruct"]["test/precalculus/807.json"]
    assert math500.target == "\\left( 3, \\frac{\\pi}{2} \\right)"
    boxed = f"{USER}Put your final answer within \\boxed{{}}.\n\n"
    assert math500.prompt.startswith(f"{boxed}Convert the point")
    assert math500.prompt.endswith("<|end|>\n<|assistant|>\n")  # the question alone in the turn
    gsm8k = list(items["gsm8k_boxed@instruct"].values())
    assert all(i.prompt.startswith(boxed) for i in gsm8k)
    # "1,234" in the box, "1234" the target: equal by rule, not as strings
    assert any("," in i.extracted and "," not in i.target for i in gsm8k)
    mmlu = next(iter(items["mmlu_cot@instruct"].values()))
    assert mmlu.prompt.startswith(f"{USER}Answer the following multiple-choice question.")
    assert "Therefore, the answer is: X" in mmlu.prompt
    assert "\nA. " in mmlu.prompt and "\nD. " in mmlu.prompt
    assert "The following are multiple choice questions" not in mmlu.prompt
    kmmlu = next(i for i in items["kmmlu_cot@instruct"].values() if i.subtask == "Accounting")
    assert "따라서, 정답은: X" in kmmlu.prompt and kmmlu.target in "ABCD"
    if "math@instruct" in items:
        assert "algebra/0" in items["math@instruct"]


def test_tasks_are_zero_shot_generation_without_stop_sequences(built_instruct):
    _, built, _, _ = built_instruct
    for bench, tasks in built.items():
        for bt in tasks:
            config = bt.task.config
            assert config.output_type == "generate_until", bench
            assert config.num_fewshot == 0, bench
            assert config.generation_kwargs["until"] == [], bench
            assert config.generation_kwargs["max_gen_toks"] == 2048, bench
            assert config.generation_kwargs["do_sample"] is False, bench
            assert not config.description, bench


@pytest.mark.parametrize("task", ["gsm8k_boxed", "math", "math500", "mmlu_cot", "kmmlu_cot"])
def test_task_scorer_options_are_complete(task):
    task_config = load_task(task)
    get_scorer(task_config.scorer).check(task_config)


def test_missing_or_unknown_scorer_options_fail_at_load_time():
    task = load_task("mmlu_cot")
    for options in ({"target": "x"}, {**task.scorer_options, "extractor": "boxed"},
                    {**task.scorer_options, "pattern": "("}):
        with pytest.raises(ConfigError):
            get_scorer(task.scorer).check(dataclasses.replace(task, scorer_options=options))


def test_math_gold_answers_all_parse(shared_data_dir):
    """Every MATH gold answer parses, so a correct answer written differently can match it."""
    unparsed = [row["path"] for row in read_math_test() if not _parse(last_boxed(row["solution"]))]
    assert unparsed == []


def test_committed_math500_fixture_matches_its_generator(shared_data_dir, tmp_path):
    script = Path(__file__).parent / "fixtures" / "make_math500_fixture.py"
    env = {**os.environ, "KANANA_SHARED_DATA": str(shared_data_dir)}
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr.decode()
    dataset_id = "HuggingFaceH4/MATH-500"
    fixture = FIXTURES_HUB / dataset_id
    assert dataset_fingerprint(tmp_path / dataset_id) == dataset_fingerprint(fixture)
    rows = [json.loads(line) for line in (fixture / "test.jsonl").read_text().splitlines()]
    columns = ["problem", "solution", "answer", "subject", "level", "unique_id"]
    assert [list(r) for r in rows] == [columns] * 5
    assert all(r["answer"] == last_boxed(r["solution"]) and isinstance(r["level"], int)
               for r in rows)
