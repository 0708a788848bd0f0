"""Every scorer scores gold answers 100% and empty (or anti-gold) answers 0%.

An oracle LM stands in for the model and answers from the dataset itself, through the whole
real path: lm-eval's task configs with our overrides, lm-eval's request building and metrics,
our item records, and the sandbox for code. SmolLM2 scores near zero, so only this proves the
scoring is wired right.
"""

from __future__ import annotations

import pytest
from lm_eval.api.model import LM

from kanana_eval.config.protocol import load_protocol
from kanana_eval.pipeline.collect import collect_items, plan_limits
from kanana_eval.scoring.catalog import get_scorer
from kanana_eval.tasks.lm_eval_bridge import build_tasks

# What a perfect model would generate, per benchmark, read from the document itself.
GOLD_COMPLETION = {
    "humaneval@base": lambda doc: doc["canonical_solution"],
    "mbpp@base": lambda doc: doc["code"],
    "gsm8k@base": lambda doc: doc["answer"],  # a worked solution ending in "#### <number>"
}


class OracleLM(LM):
    """Ranks the gold choice first (or last, in 'empty' mode) and generates the gold solution."""

    def __init__(self, tasks: dict, mode: str) -> None:
        super().__init__()
        self.tasks, self.mode = tasks, mode

    def _gold_index(self, req) -> int:
        task = self.tasks[req.task_name]
        target = task.doc_to_target(req.doc)
        if isinstance(target, str):
            target = int(target) if target.isdigit() else task.doc_to_choice(req.doc).index(target)
        return target

    def loglikelihood(self, requests):
        out = []
        for req in requests:
            is_gold = req.idx == self._gold_index(req)
            good = is_gold if self.mode == "gold" else not is_gold
            out.append((0.0 if good else -10.0, good))
        return out

    def generate_until(self, requests):
        out = []
        for req in requests:
            bench = self.tasks[req.task_name].config.metadata["kanana_benchmark"]
            out.append(GOLD_COMPLETION[bench](req.doc) if self.mode == "gold" else "")
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


@pytest.fixture(scope="module")
def built_base(offline_mirror):
    specs = load_protocol("base").select(None)  # the README table (optional NIAH has its own tests)
    built = {s.id: build_tasks(s, offline_mirror) for s in specs}
    plan, _ = plan_limits(specs, built, limit=30)
    tasks = {bt.name: bt.task for s in specs for bt in built[s.id]}
    return specs, built, plan, tasks


@pytest.mark.parametrize("mode,expected", [("gold", 1.0), ("empty", 0.0)])
def test_every_base_scorer_on_gold_and_empty_answers(built_base, mode, expected):
    specs, built, plan, tasks = built_base
    items = collect_items(OracleLM(tasks, mode), specs, built, plan)
    for spec in specs:
        assert items[spec.id], f"{spec.id}: no items"
        agg = get_scorer(spec.task.scorer).aggregate(spec, items[spec.id])
        assert agg.value == expected, (spec.id, [(i.item_id, i.verdict) for i in items[spec.id]
                                                  if i.score != expected][:3])
    if mode == "gold":
        assert {i.verdict for i in items["humaneval@base"]} == {"passed"}
        assert all(i.extracted for i in items["gsm8k@base"])
    else:
        assert {i.verdict for i in items["gsm8k@base"]} == {"no_answer"}
        assert {i.verdict for i in items["mbpp@base"]} <= {"failed", "error"}


# ----------------------------------------------------------------------- the instruct protocol

INSTRUCT_GOLD = {
    # evalplus' HumanEval prompt is the signature + docstring, its canonical solution the body.
    "humaneval_plus@instruct": lambda doc: doc["prompt"] + doc["canonical_solution"] + "\n```\n",
    "mbpp_plus@instruct": lambda doc: doc["canonical_solution"] + "\n```\n",
    "gsm8k@instruct": lambda doc: (doc["answer"].split("####")[0] + "\\boxed{"
                                   + doc["answer"].split("####")[-1].strip() + "}"),
    "math@instruct": lambda doc: doc["solution"],
    "math500@instruct": lambda doc: doc["solution"],
    "mmlu_cot@instruct": lambda doc: ("Let me think step by step.\nTherefore, the answer is: "
                                      + "ABCD"[doc["answer"]]),
    "kmmlu_cot@instruct": lambda doc: ("단계별로 생각합니다.\n따라서, 정답은: "
                                       + "ABCD"[doc["answer"] - 1]),
}


class ChatOracleLM(OracleLM):
    """The oracle behind a chat template of its own, as an instruct engine is."""

    tokenizer_name = "oracle-chat"

    def chat_template(self, chat_template=False):
        return "oracle-template"

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in chat_history)
        return text + ("<assistant>" if add_generation_prompt else "")

    def generate_until(self, requests):
        out = []
        for req in requests:
            bench = self.tasks[req.task_name].config.metadata["kanana_benchmark"]
            gold = INSTRUCT_GOLD.get(bench) or GOLD_COMPLETION[bench]
            out.append(gold(req.doc) if self.mode == "gold" else "")
        return out


@pytest.fixture(scope="module")
def built_instruct(offline_mirror):
    protocol = load_protocol("instruct")
    specs = [b for b in protocol.benchmarks if b.id in INSTRUCT_GOLD]  # IFEval: test_ifeval_scoring
    built = {s.id: build_tasks(s, offline_mirror) for s in specs}
    plan, _ = plan_limits(specs, built, limit=8)
    tasks = {bt.name: bt.task for s in specs for bt in built[s.id]}
    return specs, built, plan, tasks, offline_mirror


@pytest.mark.parametrize("mode,expected", [("gold", 1.0), ("empty", 0.0)])
def test_every_instruct_scorer_on_gold_and_empty_answers(built_instruct, mode, expected):
    specs, built, plan, tasks, mirror = built_instruct
    assert {s.id for s in specs} == set(INSTRUCT_GOLD)
    items = collect_items(ChatOracleLM(tasks, mode), specs, built, plan, data_dir=mirror)
    for spec in specs:
        assert items[spec.id], f"{spec.id}: no items"
        agg = get_scorer(spec.task.scorer).aggregate(spec, items[spec.id])
        assert agg.value == expected, (spec.id, [(i.item_id, i.verdict, i.details)
                                                  for i in items[spec.id]
                                                  if i.score != expected][:2])
        # the chat template rendered every prompt
        assert all(i.prompt.startswith("<user>") for i in items[spec.id])
    if mode == "gold":
        assert {i.verdict for i in items["humaneval_plus@instruct"]} == {"passed"}
        assert all(i.details["base_status"] == i.details["plus_status"] == "pass"
                   for i in items["mbpp_plus@instruct"])
    else:
        assert {i.verdict for i in items["gsm8k@instruct"]} == {"no_answer"}
        assert {i.verdict for i in items["humaneval_plus@instruct"]} <= {"failed", "timeout"}


def test_one_model_runs_the_same_lm_eval_leaf_in_two_protocols_without_mixing_them(offline_mirror):
    """gsm8k@base and gsm8k@instruct both build lm-eval's `gsm8k`: their samples stay apart."""
    specs = [b for p in ("base", "instruct") for b in load_protocol(p).benchmarks
             if b.id.startswith("gsm8k@")]
    built = {s.id: build_tasks(s, offline_mirror) for s in specs}
    assert [bt.name for s in specs for bt in built[s.id]] == ["gsm8k", "gsm8k@instruct"]
    plan, _ = plan_limits(specs, built, limit=3)
    tasks = {bt.name: bt.task for s in specs for bt in built[s.id]}
    items = collect_items(ChatOracleLM(tasks, "gold"), specs, built, plan)
    values = [get_scorer(s.task.scorer).aggregate(s, items[s.id]).value for s in specs]
    assert values == [1.0, 1.0]  # gsm8k@base, gsm8k@instruct
    assert all(i.prompt.startswith("Question:") for i in items["gsm8k@base"])  # 5-shot, no template
    assert all(i.prompt.startswith("<user>Put your final answer") for i in items["gsm8k@instruct"])
