"""Batched generation with per-row stopping gives lm-eval's batch-1 bytes, in request order.

FastHFLM (batch 4 and memory-chosen) against lm-eval's own HFLM at batch size 1, on one
`generate_until` call that mixes stop strings, token limits and generation-kwargs groups. The
tiny random Llama repeats its last token forever, which would hide a wrong position or mask, so
the same checks also run on a variant of it with untied, wider weights whose output depends on
the whole context. Marked slow: SmolLM2 on HumanEval prompts, and Gemma-3-270m (sliding-window
layers: decoded one row at a time).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from model_threads import one_thread
from transformers import AutoTokenizer, GenerationConfig

from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.batched_generation import Sampling, unsupported_config_fields
from kanana_eval.engine.hf_fast import FastHFLM
from kanana_eval.tasks.humaneval_plus.data import read_humaneval_plus

# lm-eval's humaneval.yaml generation_kwargs (max_gen_toks lowered to keep the test short).
HUMANEVAL_UNTIL = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]

PROMPTS = [
    "def add(a, b):\n",
    "Question: Janet's ducks lay 16 eggs",
    "A. one\nB. two",
    "대한민국의 수도는",
    "The following are",
    "0123456789",
    "You are an expert Python programmer",
    "Answer: #### 18",
    "assert add(2, 3) == 5",
    "[BEGIN] code [DONE]",
    "The following are multiple choice questions (with answers) about abstract algebra. " * 3,
]


def _hflm(folder: Path, batch_size: int | str = 1) -> Any:
    return HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=batch_size)


def _fast(folder: Path, batch_size: int | str) -> Any:
    return FastHFLM(str(folder), dtype="float32", device="cpu", batch_size=batch_size)


def _requests(args: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [Instance("generate_until", {}, (context, dict(kwargs)), i)
            for i, (context, kwargs) in enumerate(args)]


def _stop_inside(text: str, at: int) -> str | None:
    """A stop string that occurs in `text` around character `at` (from the model's own output)."""
    if len(text) < at + 3:
        return None
    piece = text[at:at + 3]
    return piece if piece.strip() else None


def _mixed_call(free: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One call's requests: stops that do occur, several token limits and kwargs groups.

    `free` is each prompt's batch-1 output with no stop string and 40 tokens: stops are cut
    from it, so they really occur.
    """
    args: list[tuple[str, dict[str, Any]]] = []
    for i, prompt in enumerate(PROMPTS):
        stop = _stop_inside(free[prompt], at=4 + 3 * (i % 5)) or "\n\n"
        kind = i % 4
        if kind == 0:  # a stop that occurs, greedy spelled out
            args.append((prompt, {"until": [stop], "max_gen_toks": 40, "do_sample": False}))
        elif kind == 1:  # two stops (one never seen), a lower limit
            args.append((prompt, {"until": ["@@never@@", stop], "max_gen_toks": 24}))
        elif kind == 2:  # a single-string `until`; temperature 0 is greedy too; the limit ends it
            args.append((prompt, {"until": "@@never@@", "max_gen_toks": 7, "temperature": 0.0}))
        else:  # a kwarg the loop does not reproduce: lm-eval's own path, in the same call
            args.append((prompt, {"until": [stop], "max_gen_toks": 16, "do_sample": False,
                                  "repetition_penalty": 1.0}))
    # greedy spelled with a warper setting greedy ignores: the same batch as the others
    args.append((PROMPTS[5], {"until": ["@@never@@"], "max_gen_toks": 12, "do_sample": False,
                              "top_k": 40}))
    # sampling that can only pick the argmax (top-k 1): the sampling path, deterministic
    args.append((PROMPTS[6], {"until": ["@@never@@"], "max_gen_toks": 12, "do_sample": True,
                              "temperature": 0.7, "top_k": 1}))
    # the same prompt twice with different limits, and a stop in the very first characters
    args.append((PROMPTS[1], {"until": ["@@never@@"], "max_gen_toks": 33}))
    first = free[PROMPTS[2]][:2]
    args.append((PROMPTS[2], {"until": [first if first.strip() else "\n"], "max_gen_toks": 20}))
    return args


Reference = tuple[list[Any], list[str], dict[str, str]]


@pytest.fixture(scope="module")
def mixed() -> dict[str, Reference]:
    """Per model fixture name: (requests, HFLM batch-1 outputs, free-running outputs)."""
    return {}


def _reference(mixed: dict[str, Reference], name: str, folder: Path) -> Reference:
    if name not in mixed:
        with one_thread():
            hflm = _hflm(folder)
            texts = hflm.generate_until(
                _requests([(p, {"until": [], "max_gen_toks": 40}) for p in PROMPTS]))
            free = dict(zip(PROMPTS, texts, strict=True))
            requests = _requests(_mixed_call(free))
            mixed[name] = (requests, hflm.generate_until(requests), free)
    return mixed[name]


@pytest.mark.parametrize("model", ["tiny_llama", "varied_llama"])
@pytest.mark.parametrize("batch_size", [4, "auto"])
def test_batched_generation_matches_hflm_batch_one(request, mixed, single_thread, model,
                                                   batch_size):
    folder = request.getfixturevalue(model)
    requests, expected, _ = _reference(mixed, model, folder)
    lm = _fast(folder, batch_size)
    got = lm.generate_until(requests)
    assert got == expected  # byte-identical, in request order
    record = lm.speed_record()
    assert record["delegated_to_lm_eval"] == {"generate_until_plain": 1}
    generation = record["generation"]
    assert generation["rows_padded_together"] is True and generation["max_active"] > 1
    assert generation["prompts"] == len(requests) - sum("repetition_penalty" in r.args[1]
                                                        for r in requests)
    assert record["batching"]["mode"] == ("fixed" if batch_size == 4 else "memory")
    if batch_size == "auto":
        assert record["batching"]["chosen"]["generate_until"]["decisions"] >= 1


def test_generation_stops_growing_its_batch_when_memory_gets_scarce(varied_llama, mixed,
                                                                   single_thread):
    """Memory is asked before each prompt joins: once it is gone the batch stays at one row,
    rows already decoding finish, and every output is still byte-identical."""
    requests, expected, _ = _reference(mixed, "varied_llama", varied_llama)
    lm = _fast(varied_llama, "auto")
    asked: list[int] = []

    def free(_device: str) -> int:
        asked.append(1)
        return 1 << 40 if len(asked) <= 3 else 0

    lm.planner.free_memory = free
    assert lm.generate_until(requests) == expected
    chosen = lm.speed_record()["batching"]["chosen"]["generate_until"]
    assert chosen["max"] > 1 and chosen["min"] == 1 and chosen["decisions"] > 3


def test_stops_really_cut_the_outputs(varied_llama, mixed, single_thread):
    """The stops chosen from the model's own text end rows early (else stopping is untested)."""
    requests, expected, free = _reference(mixed, "varied_llama", varied_llama)
    cut = 0
    for req, text in zip(requests, expected, strict=True):
        until = req.args[1]["until"]
        stops = [until] if isinstance(until, str) else until
        assert not any(s in text for s in stops)
        if req.args[1]["max_gen_toks"] == 40:  # the same 40 tokens as the free run, then cut
            (stop,) = stops
            assert stop in free[req.args[0]]
            assert text == free[req.args[0]].split(stop)[0]
            cut += len(text) < len(free[req.args[0]])
    assert cut >= 2
    assert len({len(text) for text in expected}) > 3, "outputs of several lengths"


def test_outputs_follow_request_order(varied_llama, mixed, single_thread):
    requests, expected, _ = _reference(mixed, "varied_llama", varied_llama)
    lm = _fast(varied_llama, 4)
    order = list(reversed(range(len(requests))))
    assert lm.generate_until([requests[i] for i in order]) == [expected[i] for i in order]


def test_a_row_ending_with_eos(varied_llama, single_thread):
    """The Janet prompt's greedy text ends with EOS: that row stops, the others go on."""
    args = [(p, {"until": ["@@never@@"], "max_gen_toks": 40}) for p in PROMPTS[:6]]
    requests = _requests(args)
    expected = _hflm(varied_llama).generate_until(requests)
    lm = _fast(varied_llama, 4)
    assert lm.generate_until(requests) == expected
    stats = lm.speed_record()["generation"]
    # one row ended with EOS (its 28th token); the other five ran to the 40-token limit
    assert stats["decoded_tokens"] + stats["prompts"] == 5 * 40 + 28, (
        "varied_llama no longer ends the Janet prompt with EOS: "
        "pick another seed in varied_llama.py")


def test_eos_from_a_generation_config_list(varied_llama, tmp_path, single_thread):
    """generation_config may list several EOS ids (Llama 3 does): any of them ends a row."""
    folder = tmp_path / "multi-eos"
    shutil.copytree(varied_llama, folder)
    free = _hflm(varied_llama).generate_until(
        _requests([(PROMPTS[4], {"until": [], "max_gen_toks": 12})]))[0]
    tokens = AutoTokenizer.from_pretrained(folder).encode(free, add_special_tokens=False)
    config_path = folder / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config["eos_token_id"] = [0, tokens[5]]  # the 6th token generated for PROMPTS[4]
    config_path.write_text(json.dumps(config))
    requests = _requests([(p, {"until": ["@@never@@"], "max_gen_toks": 12}) for p in PROMPTS[:6]])
    expected = _hflm(folder).generate_until(requests)
    assert len(expected[4]) < len(free)  # the extra EOS did end that row early
    assert _fast(folder, 4).generate_until(requests) == expected


# ----------------------------------------------------------------------------- real models (slow)
def _humaneval_prompts(shared_data_dir: Path, n: int) -> list[str]:
    return [row["prompt"] for row in read_humaneval_plus()[:n]]


@pytest.mark.slow
def test_smollm2_humaneval_batched_matches_batch_one(shared_data_dir, single_thread):
    folder = ensure_hf_folder("smollm2-135m-instruct")
    kwargs = {"until": HUMANEVAL_UNTIL, "max_gen_toks": 128, "do_sample": False}
    requests = _requests([(p, kwargs) for p in _humaneval_prompts(shared_data_dir, 8)])
    started = time.perf_counter()
    expected = _hflm(folder, 1).generate_until(requests)
    plain_s = time.perf_counter() - started
    lm = _fast(folder, "auto")
    started = time.perf_counter()
    got = lm.generate_until(requests)
    ours_s = time.perf_counter() - started
    assert got == expected
    record = lm.speed_record()
    assert record["delegated_to_lm_eval"] == {}
    assert record["generation"]["rows_padded_together"] is True
    assert record["generation"]["max_active"] > 1
    print(f"smollm2 humaneval x{len(requests)}: HFLM batch 1 {plain_s:.1f}s, "
          f"ours auto {ours_s:.1f}s")


@pytest.mark.slow
def test_gemma_sliding_window_decodes_one_row_at_a_time(shared_data_dir, single_thread):
    folder = ensure_hf_folder("gemma-3-270m")
    prompts = _humaneval_prompts(shared_data_dir, 6)
    # one prompt past Gemma-3-270m's 512-token sliding window, so the window really slides
    prompts = [prompts[0], prompts[1], "".join(prompts[2:6]) + prompts[0]]
    kwargs = {"until": HUMANEVAL_UNTIL, "max_gen_toks": 48, "do_sample": False}
    requests = _requests([(p, kwargs) for p in prompts])
    started = time.perf_counter()
    plain = _hflm(folder, 1)
    assert len(plain.tok_encode(prompts[2])) > 512
    expected = plain.generate_until(requests)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    lm = _fast(folder, 4)
    got = lm.generate_until(requests)
    ours_s = time.perf_counter() - started
    assert got == expected
    record = lm.speed_record()
    assert record["generation"]["rows_padded_together"] is False
    assert record["generation"]["max_active"] == 1
    assert record["delegated_to_lm_eval"] == {}
    print(f"gemma x{len(requests)}: HFLM batch 1 {plain_s:.1f}s, ours {ours_s:.1f}s")


# ----------------------------------------------------------------------------- units
def test_every_greedy_request_samples_alike():
    assert Sampling.from_kwargs({"do_sample": False, "top_k": 40, "top_p": 0.5}, None) == Sampling()
    assert Sampling.from_kwargs({}, None) == Sampling()


def test_sampling_takes_the_request_then_the_model_config_then_hf_defaults():
    config = GenerationConfig(top_p=0.9, temperature=0.6)
    sampling = Sampling.from_kwargs({"do_sample": True, "temperature": 0.5}, config)
    assert sampling == Sampling(do_sample=True, temperature=0.5, top_k=50, top_p=0.9, min_p=None)
    assert [type(w).__name__ for w in sampling.warpers()] == [
        "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    assert len(Sampling().warpers()) == 0


def test_generation_config_fields_the_loop_cannot_reproduce():
    assert unsupported_config_fields(None) == []
    assert unsupported_config_fields(GenerationConfig(eos_token_id=[1, 2], pad_token_id=0)) == []
    assert unsupported_config_fields(GenerationConfig(repetition_penalty=1.3)) == [
        "repetition_penalty"]
    assert unsupported_config_fields(GenerationConfig(no_repeat_ngram_size=3)) == [
        "no_repeat_ngram_size"]


def test_a_model_config_penalty_sends_generation_to_lm_eval(varied_llama, tmp_path, single_thread):
    """generation_config.repetition_penalty changes `generate`'s choice: lm-eval's path then."""
    folder = tmp_path / "penalty"
    shutil.copytree(varied_llama, folder)
    (folder / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.5,
                                                               "eos_token_id": 0}))
    requests = _requests([(p, {"until": ["@@never@@"], "max_gen_toks": 10}) for p in PROMPTS[:3]])
    expected = _hflm(folder).generate_until(requests)
    lm = _fast(folder, 4)
    assert lm.generate_until(requests) == expected
    assert lm.speed_record()["delegated_to_lm_eval"] == {"generate_until_plain": 1}
