"""IFEval: for the same responses, our items and numbers equal lm-eval's `ifeval`.

A stand-in LM returns stored responses for every one of the 541 offline prompts; lm-eval runs
its own `ifeval` task (built by build_tasks from tasks/ifeval/task.yaml on the offline mirror), its
checker and its aggregations. Our items come from lm-eval's logged samples, our numbers from our
items; both must equal lm-eval's results, and each item's flags must equal lm-eval's
process_results on the raw offline file. Responses: the prompt itself, empty strings, responses
built from each prompt's instruction arguments (many followed, some broken) and hand-written
responses that follow every instruction of a few prompts.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lm_eval
import pytest
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.task_config import load_task
from kanana_eval.core.errors import ConfigError
from kanana_eval.data.punkt import ensure_punkt_tab
from kanana_eval.results.io import validate
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import mean_stderr
from kanana_eval.scoring.catalog import get_scorer
from kanana_eval.scoring.ifeval import METRICS, ifeval_aggregate, ifeval_item, ifeval_metrics
from kanana_eval.tasks.lm_eval_bridge import build_tasks

SPEC = BenchmarkSpec(id="ifeval@instruct", protocol="instruct", column="IFEval",
                     task=load_task("ifeval"), num_fewshot=0, metric="ifeval_strict_mean",
                     aggregation="ifeval")
SCORER = get_scorer("ifeval")


def items_from_samples(spec: BenchmarkSpec, subtask: str | None, samples: list) -> list[Item]:
    return SCORER.items_from_samples(spec, subtask, samples)

# Responses that follow every instruction of their prompt (checked against lm-eval below). The
# sentence counts need NLTK's English model: 1262 has 9 periods but 4 sentences.
GOLD = {
    1262: "<<Axle Weight and Road Wear>>\n\nDr. J. Smith of the U.S. Dept. of Transportation put "
          "it simply on Jan. 5. Heavier axles press harder on the pavement and wear it out faster. "
          "Road damage grows roughly with the fourth power of axle load.",
    1476: "Cognitive Services on Azure is stepping into the spotlight as Azure Applied AI "
          "Services, built by the Redmond, Wash. team with a bold new badge! "
          "Same power, fresh look.",
    3414: "I FROZE mid-stride when I was jogging. My legs went STIFF and my heart RACED. It felt "
          "like TIME stopped. Then I breathed and MOVED on.",
    1535: "dear hiring team at the beijing travel co. i am applying to be your tour guide. i know "
          "the hutongs, the forbidden city and the great wall well. thank you for your time.",
    1001: "Day the first: Tokyo doth greet thee with lanterns bright.\nDay the second: Kyoto and "
          "her temples call thee hence.\nDay the third: Osaka feeds thee well ere thou depart.",
}

FILLER = "Dr. Smith met Mr. Jones in Washington D.C. on Jan. 5 at 10 a.m. and they talked."


def crafted(doc: dict[str, Any]) -> str:
    """A response made from the prompt's instruction arguments; every 4th prompt skips one."""
    key = int(doc["key"])
    head: list[str] = []
    body: list[str] = []
    tail: list[str] = []
    flags: set[str] = set()
    for n, (inst, raw) in enumerate(zip(doc["instruction_id_list"], doc["kwargs"], strict=True)):
        kw = {k: v for k, v in (raw or {}).items() if v is not None}
        name = inst.split(":")[1]
        if n == 0 and key % 4 == 0:
            continue
        if name == "title":
            head.append("<<a plain title>>")
        elif name == "repeat_prompt":
            head.insert(0, kw.get("prompt_to_repeat", ""))
        elif name == "existence":
            body.append(" ".join(kw.get("keywords", [])) + ".")
        elif name == "frequency":
            body.append(" ".join([kw.get("keyword", "x")] * int(kw.get("frequency", 1))) + ".")
        elif name == "forbidden_words" and key % 3 == 0:
            body.append(f"{kw['forbidden_words'][0]} slipped in.")
        elif name == "letter_frequency":
            body.append(kw.get("letter", "a") * int(kw.get("let_frequency", 1)))
        elif name == "number_placeholders":
            body.append(" ".join(f"[slot{i}]" for i in range(int(kw.get("num_placeholders", 1)))))
        elif name == "number_bullet_lists":
            body.append("\n".join(f"* point {i}" for i in range(int(kw.get("num_bullets", 1)))))
        elif name == "number_highlighted_sections":
            body.append(" ".join(f"*part {i}*" for i in range(int(kw.get("num_highlights", 1)))))
        elif name == "multiple_sections":
            body.append("\n".join(f"{kw.get('section_spliter', 'Section')} {i + 1}\nText."
                                  for i in range(int(kw.get("num_sections", 1)))))
        elif name == "number_paragraphs":
            body.append("\n***\n".join(["A paragraph."] * int(kw.get("num_paragraphs", 1))))
        elif name == "nth_paragraph_first_word":
            first = kw.get("first_word", "so")
            body.append("\n\n".join([f"{first} it goes."] * int(kw.get("num_paragraphs", 1))))
        elif name == "number_sentences":  # "at least N" passes only if each FILLER is 1 sentence
            body.append(" ".join([FILLER] * int(kw.get("num_sentences", 1))))
        elif name == "number_words":
            body.append(" ".join(["word"] * int(kw.get("num_words", 1))))
        elif name == "capital_word_frequency":
            body.append(" ".join(["LOUD"] * int(kw.get("capital_frequency", 1))))
        elif name == "constrained_response":
            body.append("My answer is yes.")
        elif name == "two_responses":
            body.append("First answer.\n******\nSecond answer.")
        elif name == "postscript":
            tail.append(f"{kw.get('postscript_marker', 'P.S.')} see you.")
        elif name == "end_checker":
            tail.append(kw.get("end_phrase", "The end."))
        else:  # case, commas, quotation, JSON: applied to the whole text; language: left to chance
            flags.add(name)
    text = "\n\n".join(p for p in head + body + tail if p)
    if "english_lowercase" in flags:
        text = text.lower()
    if "english_capital" in flags:
        text = text.upper()
    if "no_comma" in flags:
        text = text.replace(",", "")
    if "json_format" in flags:
        text = json.dumps({"answer": text})
    if "quotation" in flags:
        text = f'"{text}"'
    return text


RESPONSES: dict[str, Callable[[dict[str, Any]], str]] = {
    "prompt": lambda doc: doc["prompt"],
    "empty": lambda doc: "",
    "crafted": crafted,
    "gold": lambda doc: GOLD.get(int(doc["key"]), ""),
}


def drawn_at_random(doc: dict[str, Any]) -> bool:
    """Two prompts name no letter for letter_frequency ('#', '!'): lm-eval's checker then picks a
    random one on each call (from `random`, which simple_evaluate seeds), so a second check
    outside that run may differ."""
    return any(inst == "keywords:letter_frequency" and not str(kw.get("letter", "")).isalpha()
               for inst, kw in zip(doc["instruction_id_list"], doc["kwargs"], strict=True))


class StoredLM(LM):
    """Answers every generation request with a stored response for its document."""

    def __init__(self, respond: Callable[[dict[str, Any]], str]) -> None:
        super().__init__()
        self.respond = respond
        self.requests: list[Any] = []

    def generate_until(self, requests: list[Any]) -> list[str]:
        self.requests.extend(requests)
        return [self.respond(req.doc) for req in requests]

    def loglikelihood(self, requests: list[Any]) -> list[Any]:
        raise NotImplementedError

    def loglikelihood_rolling(self, requests: list[Any]) -> list[Any]:
        raise NotImplementedError


@pytest.fixture(scope="module")
def ifeval_task(offline_mirror: Path) -> Any:
    ensure_punkt_tab()  # before lm-eval's checker is imported by the task config
    (built,) = build_tasks(SPEC, offline_mirror)
    assert built.name == "ifeval@instruct" and built.subtask is None
    return built.task


@pytest.fixture(scope="module")
def runs(ifeval_task: Any) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]], StoredLM]]:
    """Plain lm-eval on every offline prompt, per response family: (results, samples, LM)."""
    out = {}
    for family, respond in RESPONSES.items():
        lm = StoredLM(respond)
        results = lm_eval.simple_evaluate(model=lm, tasks=[ifeval_task], log_samples=True,
                                          bootstrap_iters=0,
                                          task_manager=TaskManager(include_defaults=False))
        assert results is not None
        out[family] = (results["results"]["ifeval@instruct"],
                       list(results["samples"]["ifeval@instruct"]), lm)
    return out


@pytest.fixture(scope="module")
def raw_docs(shared_data_dir: Path) -> dict[int, dict[str, Any]]:
    path = shared_data_dir / "ifeval" / "input_data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["key"]: row for row in rows}


def test_only_two_prompts_have_random_checks(raw_docs):
    assert sorted(k for k, doc in raw_docs.items() if drawn_at_random(doc)) == [1122, 1129]


def test_task_is_lm_evals_ifeval_with_its_generation_settings(runs, raw_docs):
    _, samples, lm = runs["prompt"]
    assert len(samples) == len(lm.requests) == len(raw_docs) == 541
    for req in lm.requests:
        context, gen_kwargs = req.args
        assert context == req.doc["prompt"]  # 0-shot, the prompt as is
        assert gen_kwargs == {"until": [], "do_sample": False, "temperature": 0.0,
                              "max_gen_toks": 1280}


@pytest.mark.parametrize("family", list(RESPONSES))
def test_numbers_equal_lm_evals_ifeval_on_all_offline_prompts(runs, raw_docs, family):
    from lm_eval.tasks.ifeval.utils import (  # noqa: PLC0415 - heavy: needs NLTK data first
        process_results,
    )

    lm_results, samples, _ = runs[family]
    items = items_from_samples(SPEC, None, samples)
    assert sorted(int(i.item_id) for i in items) == sorted(raw_docs)
    for item in items:
        validate("item", item.to_json())
        doc = raw_docs[int(item.item_id)]
        if not drawn_at_random(doc):  # the offline file, unmirrored, checked again
            assert {m: item.details[m] for m in METRICS} == process_results(doc, [item.extracted])
    metrics = ifeval_metrics(items)
    for name in METRICS:
        assert metrics[name] == pytest.approx(lm_results[f"{name},none"], rel=0, abs=1e-12)
    agg = ifeval_aggregate(items)
    expected = (lm_results["prompt_level_strict_acc,none"]
                + lm_results["inst_level_strict_acc,none"]) / 2
    assert agg.value == pytest.approx(expected, rel=0, abs=1e-12)
    assert agg.n == 541
    assert SCORER.aggregate(SPEC, items) == agg  # what the runner calls
    assert sum(i.score for i in items) / 541 == metrics["prompt_level_strict_acc"]


def test_families_cover_mixed_outcomes(runs):
    """The comparison means something: scores differ by family and strict differs from loose."""
    values = {family: ifeval_metrics(items_from_samples(SPEC, None, runs[family][1]))
              for family in ("prompt", "crafted")}
    for metrics in values.values():
        assert 0.05 < metrics["prompt_level_strict_acc"] < metrics["inst_level_strict_acc"] < 0.95
    assert (values["crafted"]["inst_level_strict_acc"]
            > values["prompt"]["inst_level_strict_acc"] + 0.1)
    crafted = items_from_samples(SPEC, None, runs["crafted"][1])
    assert any(i.details["prompt_level_loose_acc"] != i.details["prompt_level_strict_acc"]
               for i in items_from_samples(SPEC, None, runs["prompt"][1]) + crafted)
    sentence_items = [i for i in crafted
                      if "length_constraints:number_sentences" in i.details["instruction_id_list"]]
    assert {any(i.details["inst_level_strict_acc"]) for i in sentence_items} == {True, False}


def test_empty_responses_score_zero_at_every_level(runs):
    items = items_from_samples(SPEC, None, runs["empty"][1])
    assert {i.score for i in items} == {0.0}
    assert {i.verdict for i in items} == {"no_answer"}
    assert set(ifeval_metrics(items).values()) == {0.0}
    assert ifeval_aggregate(items).value == 0.0


def test_gold_responses_follow_every_instruction(runs):
    items = {int(i.item_id): i for i in items_from_samples(SPEC, None, runs["gold"][1])}
    gold = [items[key] for key in GOLD]
    for item in gold:
        assert item.score == 1.0 and item.verdict == "correct", item.item_id
        assert all(item.details["inst_level_strict_acc"]), item.item_id
    assert set(ifeval_metrics(gold).values()) == {1.0}
    assert ifeval_aggregate(gold).value == 1.0


def test_item_record_keeps_response_instructions_and_all_four_metrics(runs):
    sample = next(s for s in runs["crafted"][1] if len(s["doc"]["instruction_id_list"]) == 3)
    item = ifeval_item(SPEC, None, sample)
    assert item.item_id == str(sample["doc"]["key"])
    assert item.prompt == sample["doc"]["prompt"]
    assert item.output == item.extracted == sample["resps"][0][0]
    assert item.details["instruction_id_list"] == sample["doc"]["instruction_id_list"]
    for name in METRICS:
        assert item.details[name] == sample[name]
    assert item.score == float(sample["prompt_level_strict_acc"])


def test_sample_without_lm_evals_metrics_is_a_config_error(runs):
    sample = {k: v for k, v in runs["prompt"][1][0].items() if k != "inst_level_loose_acc"}
    with pytest.raises(ConfigError, match="inst_level_loose_acc"):
        ifeval_item(SPEC, None, sample)


def _item(flags: list[bool]) -> Item:
    return Item(benchmark="ifeval@instruct", item_id="1", prompt="p", output="o", extracted="o",
                target=None, score=float(all(flags)), verdict="correct" if all(flags) else "wrong",
                details={"prompt_level_strict_acc": all(flags), "inst_level_strict_acc": flags,
                         "prompt_level_loose_acc": all(flags), "inst_level_loose_acc": flags})


def test_stderr_is_the_mean_stderr_when_each_prompt_has_one_instruction():
    items = [_item([f]) for f in [True, False, True, True, False, True, False]]
    agg = ifeval_aggregate(items)
    value, stderr = mean_stderr([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    assert agg.value == pytest.approx(value, abs=1e-15)
    assert agg.stderr == pytest.approx(stderr, abs=1e-15)


def test_stderr_agrees_with_a_bootstrap_over_prompts(runs):
    items = items_from_samples(SPEC, None, runs["crafted"][1])
    agg = ifeval_aggregate(items)
    rng = random.Random(0)
    values = []
    for _ in range(2000):
        resample = [items[rng.randrange(len(items))] for _ in items]
        metrics = ifeval_metrics(resample)
        values.append((metrics["prompt_level_strict_acc"] + metrics["inst_level_strict_acc"]) / 2)
    mean = sum(values) / len(values)
    boot = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    assert agg.stderr == pytest.approx(boot, rel=0.1)


def test_no_items_give_no_value():
    agg = ifeval_aggregate([])
    assert (agg.value, agg.stderr, agg.n) == (None, None, 0)
    assert set(ifeval_metrics([]).values()) == {None}
