"""Prefix reuse for log-likelihood requests: the plan, and agreement with lm-eval's own HFLM.

The planning functions are checked on hand-made token rows; the engine is checked against
plain lm-eval on the tiny random Llama (fast) and, marked slow, on two real models with 5-shot
MMLU through the runner: every request within 1e-4 and the same answer on every item.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from model_threads import one_thread

from kanana_eval.config.protocol import select_benchmarks
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.hf_fast import FastHFLM
from kanana_eval.engine.prefix_reuse import (
    _within_tokens,
    build_rows,
    common_prefix,
    fed_row,
    plan_groups,
)
from kanana_eval.pipeline.collect import collect_items
from kanana_eval.tasks.humaneval_plus.data import read_humaneval_plus
from kanana_eval.tasks.lm_eval_bridge import build_tasks

TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- planning
def _covered_once(groups: Sequence[Any], n: int) -> None:
    rows = sorted(i for g in groups for i in g.rows)
    assert rows == list(range(n)), "every row must be in exactly one group"


def test_fed_row_is_what_hflm_feeds_left_truncated():
    assert fed_row([1, 2, 3, 4, 5], [6, 7], max_length=100) == (1, 2, 3, 4, 5, 6)
    # (ctx + cont)[-(max_length + 1):][:-1]: the window keeps max_length fed tokens
    assert fed_row([1, 2, 3, 4, 5], [6, 7], max_length=4) == (3, 4, 5, 6)
    assert fed_row([1], [2], max_length=4) == (1,)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0


def test_build_rows_deduplicates_identical_fed_rows_and_keeps_the_lowest_limit():
    requests = [
        (("c", " A"), [1, 2, 3], [10]),  # one-token choices: the same fed row (1, 2, 3)
        (("c", " B"), [1, 2, 3], [11]),
        (("c", " A"), [1, 2, 3], [10]),  # an exact duplicate request
        (("c2", "x y"), [1, 2], [3, 12]),  # another split of the same fed row (1, 2, 3)
        (("d", " A"), [1, 2, 4], [10]),
    ]
    rows = build_rows(requests, max_length=100)
    assert [r.tokens for r in rows] == [(1, 2, 3), (1, 2, 4)]
    assert rows[0].requests == [0, 1, 2, 3]
    assert rows[0].limit == 1  # the 2-token continuation is scored from position 1
    assert rows[1].requests == [4] and rows[1].limit == 2


def test_build_rows_limit_is_measured_after_left_truncation():
    (row,) = build_rows([(("c", "x"), list(range(1, 11)), [20, 21, 22])], max_length=6)
    assert row.tokens == (7, 8, 9, 10, 20, 21)
    assert row.limit == 3  # positions 3, 4, 5 predict 20, 21, 22


def _subject_rows() -> tuple[list[tuple[int, ...]], list[int]]:
    """Two subjects: a shared 20-token instruction, then 40 few-shot tokens of their own."""
    instruction = tuple(range(1000, 1020))
    rows: list[tuple[int, ...]] = []
    limits: list[int] = []
    for subject in range(2):
        shots = tuple(range(2000 + 100 * subject, 2040 + 100 * subject))
        for question in range(5):
            stem = (3000 + 10 * question + subject, 7, 8)  # questions differ at their first token
            for choice in range(2):
                row = instruction + shots + stem + (4000 + choice,) * (choice + 1)
                rows.append(row)
                limits.append(len(row) - choice - 1)
    return rows, limits


def test_plan_groups_makes_one_group_per_subject():
    rows, limits = _subject_rows()
    groups = plan_groups(rows, limits)
    _covered_once(groups, len(rows))
    assert len(groups) == 2 and all(g.prefix == 60 for g in groups)
    for group in groups:
        subjects = {rows[i][20] for i in group.rows}
        assert len(subjects) == 1 and len(group.rows) == 10
        assert len({rows[i][:group.prefix] for i in group.rows}) == 1


def test_plan_groups_needs_min_prefix():
    shared = tuple(range(10))
    rows = [shared + (100 + i, 200 + i) for i in range(6)]
    limits = [len(r) - 1 for r in rows]
    (group,) = plan_groups(rows, limits, min_prefix=16)
    assert group.prefix == 0 and sorted(group.rows) == list(range(6))
    (group,) = plan_groups(rows, limits, min_prefix=8)
    assert group.prefix == 10 and sorted(group.rows) == list(range(6))


def test_plan_groups_prefix_is_capped_by_the_first_scored_position():
    shared = tuple(range(40))
    rows = [shared + (100 + i, 200 + i) for i in range(4)]
    limits = [41, 41, 41, 35]  # the last row scores from position 35 on
    (group,) = plan_groups(rows, limits)
    assert group.prefix == 35 and sorted(group.rows) == [0, 1, 2, 3]
    # a lower limit: three rows sharing 40 tokens save more than four sharing 25
    groups = plan_groups(rows, [41, 41, 41, 25])
    assert {g.prefix: sorted(g.rows) for g in groups} == {40: [0, 1, 2], 0: [3]}
    limits = [41, 41, 41, 3]  # a row scored almost whole stays out of the group
    groups = plan_groups(rows, limits)
    _covered_once(groups, 4)
    by_prefix = {g.prefix: sorted(g.rows) for g in groups}
    assert by_prefix == {40: [0, 1, 2], 0: [3]}


def test_plan_groups_edge_cases():
    assert plan_groups([], []) == []
    (group,) = plan_groups([tuple(range(50))], [49])
    assert group.prefix == 0 and group.rows == (0,)
    # the same long prefix twice is worth a group; unrelated rows stay loose
    rows = [tuple(range(30)) + (1,), tuple(range(30)) + (2,), (7,) * 31, (8,) * 31]
    groups = plan_groups(rows, [30, 30, 30, 30])
    _covered_once(groups, 4)
    assert {g.prefix: sorted(g.rows) for g in groups} == {30: [0, 1], 0: [2, 3]}


# ----------------------------------------------------------------------------- agreement (tiny)
MAX_LENGTH = 96  # short, so the long contexts below are left-truncated
INSTRUCTION = ("The following are multiple choice questions (with answers) about abstract "
               "algebra. ") * 2


def _tiny_requests(greedy: Sequence[tuple[str, str]]) -> list[Any]:
    """Requests with a long shared context, multi-token choices and over-long contexts."""
    contexts = []
    for subject in ("ducks", "code"):
        shots = ("Question: Janet's ducks lay 16 eggs per day. Answer: #### 18\n"
                 if subject == "ducks" else "def add(a, b):\n    return a + b\n")
        for question in range(3):
            contexts.append(f"{INSTRUCTION}{shots}Question {question}: {subject}? Answer:")
    choices = [" A", " B", " one two three", " one two four", " (C) four"]
    args = [(ctx, choice) for ctx in contexts for choice in choices]
    longer = INSTRUCTION * 6 + "A. one\nB. two\nAnswer:"  # ~190 tokens: truncated to MAX_LENGTH
    args += [(longer, " one two three"), (longer, " one two four"), (longer, " A"),
             (longer + " x", " A B C D"), (longer, " one two three")]  # the last: a duplicate
    # truncated rows that still share a prefix: same length, different from the 2nd token on
    args += [(longer, " A B C"), (longer, " A C D"), (longer, " A D B")]
    args += list(greedy)  # continuations the model picks itself
    return [Instance("loglikelihood", {}, arg, i) for i, arg in enumerate(args)]


@dataclass
class TinyCase:
    """A tiny model folder, lm-eval's HFLM on it, and the requests both are asked."""

    folder: Path
    plain: Any
    requests: list[Any]
    expected: list[tuple[float, bool]]


@pytest.fixture(scope="module", params=["tiny_llama", "varied_llama"])
def tiny(request: pytest.FixtureRequest) -> TinyCase:
    folder = request.getfixturevalue(request.param)
    plain = HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=1,
                 max_length=MAX_LENGTH)
    # The model's own greedy continuations, so is_greedy is True on some requests (those whose
    # text re-tokenizes to the same tokens: a random model also emits stray byte tokens).
    prompts = [INSTRUCTION + "Answer:", "def add(a, b):\n", INSTRUCTION * 3 + "Question:",
               "Question: Janet's ducks lay 16 eggs", "A. one\nB. two", "The following are",
               "Answer: #### 18", "You are an expert Python programmer"]
    generate = [Instance("generate_until", {}, (p, {"until": ["@@never@@"], "max_gen_toks": n}), i)
                for i, (p, n) in enumerate((p, n) for p in prompts for n in (1, 3))]
    with one_thread():
        outputs = plain.generate_until(generate)
        greedy = [(r.args[0], o) for r, o in zip(generate, outputs, strict=True) if o]
        requests = _tiny_requests(greedy)
        expected = plain.loglikelihood(requests)
    return TinyCase(folder, plain, requests, expected)


def _fast(folder: Path, **kwargs: Any) -> Any:
    return FastHFLM(str(folder), dtype="float32", device="cpu", max_length=MAX_LENGTH, **kwargs)


def _assert_agree(ours: Sequence[tuple[float, bool]], theirs: Sequence[tuple[float, bool]]) -> None:
    assert len(ours) == len(theirs)
    for i, ((a, ga), (b, gb)) in enumerate(zip(ours, theirs, strict=True)):
        assert abs(a - b) <= TOLERANCE, f"request {i}: {a} vs {b}"
        assert ga == gb, f"request {i}: is_greedy {ga} vs {gb}"


@pytest.mark.parametrize("batch_size", [4, "auto"])
def test_tiny_prefix_reuse_agrees_with_hflm(tiny, batch_size, single_thread):
    reuse = _fast(tiny.folder, prefix_cache=True, batch_size=batch_size)
    _assert_agree(reuse.loglikelihood(tiny.requests), tiny.expected)
    record = reuse.speed_record()
    stats = record["loglikelihood"]
    assert record["prefix_cache"] is True and record["delegated_to_lm_eval"] == {}
    assert stats["requests"] == len(tiny.requests)
    assert stats["rows"] < len(tiny.requests)  # one forward per identical fed row
    assert stats["groups"] >= 3 and stats["grouped_rows"] >= 21
    assert stats["tokens_fed"] < stats["tokens_plain"]
    assert record["batching"]["mode"] == ("fixed" if batch_size == 4 else "memory")
    if batch_size == "auto":
        assert record["batching"]["chosen"]["loglikelihood"]["decisions"] >= 3


def test_padded_rows_project_only_their_scored_positions(tiny, single_thread):
    """The right-padded path (no prefix reuse, as for sliding-window models) sends the output
    projection one position per scored token, not every padded position of the batch: with a
    262k vocabulary those logits were the 22 GB that killed Gemma-3-270m's MMLU run."""
    lm = _fast(tiny.folder, prefix_cache=False, batch_size=4)
    projected: list[tuple[int, ...]] = []
    fed: list[tuple[int, ...]] = []
    head = lm.model.get_output_embeddings()
    hooks = [head.register_forward_hook(lambda _m, _a, out: projected.append(tuple(out.shape))),
             lm.model.register_forward_pre_hook(
                 lambda _m, a, k: fed.append(tuple(k["input_ids"].shape)), with_kwargs=True)]
    try:
        ours = lm.loglikelihood(tiny.requests)
    finally:
        for hook in hooks:
            hook.remove()
    _assert_agree(ours, tiny.expected)
    assert len(projected) == len(fed) and any(rows > 1 for rows, _ in fed)
    for (one, positions, _vocab), (rows, width) in zip(projected, fed, strict=True):
        assert one == 1 and positions < rows * width  # gathered, never the padded batch
    scored = sum(len(lm.tok_encode(r.args[1])) for r in tiny.requests)
    assert sum(p for _, p, _ in projected) <= scored


def test_logits_at_without_an_output_projection_module_indexes_the_full_logits(tiny,
                                                                               single_thread):
    """A model whose output projection cannot be hooked still gets the right logits."""
    lm = _fast(tiny.folder, prefix_cache=False, batch_size=4)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    rows, positions = torch.tensor([0, 0, 1]), torch.tensor([2, 3, 1])
    hooked, _ = lm.runner.logits_at(ids, rows, positions)
    full, _ = lm.runner.forward(ids)
    lm.model.get_output_embeddings = lambda: None
    plain, _ = lm.runner.logits_at(ids, rows, positions)
    assert hooked.shape == plain.shape == (3, full.shape[-1])
    assert torch.allclose(hooked, full[rows, positions], atol=1e-5)
    assert torch.equal(plain, full[rows, positions])


def test_tiny_contexts_are_really_truncated(tiny):
    """The over-long requests exceed max_length (else left truncation is untested)."""
    too_long = 0
    for request in tiny.requests:
        context, continuation = tiny.plain._encode_pair(*request.args)
        too_long += len(context) + len(continuation) > MAX_LENGTH + 1
    assert too_long >= 4


def test_tiny_without_reuse_agrees_and_feeds_more(tiny, single_thread):
    plain_path = _fast(tiny.folder, prefix_cache=False, batch_size=4)
    reuse = _fast(tiny.folder, prefix_cache=True, batch_size=4)
    _assert_agree(plain_path.loglikelihood(tiny.requests), tiny.expected)
    _assert_agree(reuse.loglikelihood(tiny.requests), tiny.expected)
    off, on = plain_path.speed_record()["loglikelihood"], reuse.speed_record()["loglikelihood"]
    assert plain_path.speed_record()["prefix_cache"] is False
    assert off["groups"] == 0 and off["tokens_fed"] == off["tokens_plain"]
    assert on["tokens_plain"] == off["tokens_plain"]
    assert on["tokens_fed"] < off["tokens_fed"] / 2


def test_tiny_request_order_does_not_matter(tiny, single_thread):
    order = list(reversed(range(len(tiny.requests))))
    ours = _fast(tiny.folder, batch_size=3).loglikelihood([tiny.requests[i] for i in order])
    _assert_agree(ours, [tiny.expected[i] for i in order])


def test_tiny_rolling_loglikelihood_goes_to_lm_eval(tiny, single_thread):
    request = Instance("loglikelihood_rolling", {}, (INSTRUCTION * 3,), 0)
    ours = _fast(tiny.folder, batch_size=4)
    (a,) = ours.loglikelihood_rolling([request])
    (b,) = tiny.plain.loglikelihood_rolling([request])
    assert abs(a - b) <= TOLERANCE
    assert ours.speed_record()["delegated_to_lm_eval"] == {"loglikelihood_plain": 1}


# ----------------------------------------------------------------------------- real models (slow)
MMLU_SUBJECTS = ("world_religions", "elementary_mathematics")  # the shortest 5-shot prompts
MMLU_QUESTIONS = 10


@pytest.fixture(scope="module")
def mmlu(offline_mirror: Path) -> Iterator[tuple[Any, list[Any]]]:
    spec = select_benchmarks(["base"], ["mmlu"])[0]
    assert spec.num_fewshot == 5
    built = build_tasks(spec, offline_mirror, only=[f"mmlu_{s}" for s in MMLU_SUBJECTS])
    yield spec, built


def _mmlu_items(lm: Any, spec: Any, built: list[Any]) -> list[dict[str, Any]]:
    """5-shot MMLU through the runner, as the bench's MMLUWorkload.run_ours does."""
    plan = {spec.id: {bt.name: MMLU_QUESTIONS for bt in built}}
    return collect_items(lm, [spec], {spec.id: built}, plan, cache_path=None)[spec.id]


@pytest.mark.slow
@pytest.mark.parametrize("model_key", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_real_model_mmlu_agrees_with_plain_lm_eval(model_key, mmlu, single_thread):
    spec, built = mmlu
    folder = str(ensure_hf_folder(model_key))
    started = time.perf_counter()
    ours_lm = FastHFLM(folder, dtype="float32", device="cpu", batch_size="auto", prefix_cache=True)
    ours = _mmlu_items(ours_lm, spec, built)
    ours_s = time.perf_counter() - started
    stats = ours_lm.speed_record()["loglikelihood"]
    assert stats["groups"] >= len(MMLU_SUBJECTS), "each subject's 5-shot prefix should be shared"
    assert stats["tokens_fed"] < stats["tokens_plain"] / 2
    started = time.perf_counter()
    theirs = _mmlu_items(HFLM(pretrained=folder, dtype="float32", device="cpu", batch_size=4),
                         spec, built)
    theirs_s = time.perf_counter() - started

    assert len(ours) == len(theirs) == len(MMLU_SUBJECTS) * MMLU_QUESTIONS
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        assert a.item_id == b.item_id
        assert len(a.loglikelihoods) == len(b.loglikelihoods) == 4
        for x, y in zip(a.loglikelihoods, b.loglikelihoods, strict=True):
            worst = max(worst, abs(x - y))
            assert abs(x - y) <= TOLERANCE, f"{a.item_id}: {x} vs {y}"
        assert a.output == b.output, a.item_id
        assert a.score == b.score
    accuracy = [sum(i.score for i in items) / len(items) for items in (ours, theirs)]
    assert accuracy[0] == accuracy[1]
    print(f"{model_key}: max |dll| {worst:.2e}, accuracy {accuracy[0]:.2f}, "
          f"ours {ours_s:.1f}s, plain lm-eval {theirs_s:.1f}s")


@pytest.mark.slow
def test_gemma_prefix_longer_than_its_sliding_window(shared_data_dir, single_thread):
    """Gemma-3-270m's local layers see 512 tokens: a 5-shot prefix can be longer (MMLU's longest
    subjects are), so the cached prefix holds only its window and the suffixes continue from it."""
    folder = str(ensure_hf_folder("gemma-3-270m"))
    prefix = "".join(row["prompt"] for row in read_humaneval_plus()[:6])
    args = [(f"{prefix}\n# Question {q}: which is right?\n# Answer:", choice)
            for q in range(2) for choice in (" A", " B", " the first one")]
    requests = [Instance("loglikelihood", {}, arg, i) for i, arg in enumerate(args)]
    plain = HFLM(pretrained=folder, dtype="float32", device="cpu", batch_size=4)
    assert len(plain.tok_encode(prefix)) > 600
    theirs = plain.loglikelihood(requests)
    ours_lm = FastHFLM(folder, dtype="float32", device="cpu", batch_size=4)
    _assert_agree(ours_lm.loglikelihood(requests), theirs)
    stats = ours_lm.speed_record()["loglikelihood"]
    assert stats["groups"] == 1 and stats["tokens_fed"] < stats["tokens_plain"] / 2


def test_packed_rows_stop_at_the_token_budget_but_always_take_one() -> None:
    assert _within_tokens([7, 8, 9], [40, 50, 60], 100) == [7, 8]
    assert _within_tokens([7, 8], [500, 10], 100) == [7]  # one row even above the budget
    assert _within_tokens([7, 8, 9], [1, 1, 1], 100) == [7, 8, 9]
