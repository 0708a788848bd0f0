"""`joined`: requests from outside lm-eval ride along in the engine's next generation pass.

The engine here is a small but real lm-eval LM subclass that records every `generate_until`
call and answers deterministically from the request itself, so what was computed in which call
can be checked exactly, bare and under lm-eval's CachingLM.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM, CachingLM, hash_args

from kanana_eval.engine.generation_stage import joined


class RecordingLM(LM):
    """Answers `generate_until` with '<context> / <first stop>' and records each call's contexts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        self.calls.append([r.args[0] for r in requests])
        outputs = []
        for request in requests:
            context, gen_kwargs = request.args
            text = f"{context} / {gen_kwargs.get('until', ['-'])[0]}"
            self.cache_hook.add_partial("generate_until", request.args, text)
            outputs.append(text)
        return outputs

    def loglikelihood(self, requests: list[Instance],
                      disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return [(-1.0, False) for _ in requests]

    def loglikelihood_rolling(self, requests: list[Instance],
                              disable_tqdm: bool = False) -> list[float]:
        return [-1.0 for _ in requests]


def _requests(prefix: str, n: int, until: str = "\n") -> list[Instance]:
    return [Instance("generate_until", {},
                     (f"{prefix}{i}", {"until": [until], "max_gen_toks": 8}), i)
            for i in range(n)]


def _answer(request: Instance) -> str:
    return f"{request.args[0]} / {request.args[1]['until'][0]}"


def test_extra_requests_join_the_single_next_call():
    lm = RecordingLM()
    mine, extra = _requests("task-", 3), _requests("turn1-", 2, until="</s>")
    with joined(lm, extra) as stage:
        assert not stage.done
        out = lm.generate_until(mine)
        assert stage.done and stage.passes_joined == 1
    # one call, all of them
    assert lm.calls == [["task-0", "task-1", "task-2", "turn1-0", "turn1-1"]]
    assert out == [_answer(r) for r in mine]  # the caller's own outputs, in its order
    assert stage.outputs == {hash_args("generate_until", r.args): _answer(r) for r in extra}


def test_a_second_call_is_untouched():
    lm = RecordingLM()
    extra = _requests("turn1-", 2)
    with joined(lm, extra) as stage:
        lm.generate_until(_requests("a-", 1))
        second = _requests("b-", 2)
        assert lm.generate_until(second) == [_answer(r) for r in second]
    assert lm.calls == [["a-0", "turn1-0", "turn1-1"], ["b-0", "b-1"]]
    assert stage.passes_joined == 1 and len(stage.outputs) == 2


def test_the_method_is_restored_after_the_block():
    lm = RecordingLM()
    with joined(lm, _requests("x-", 1)):
        assert "generate_until" in vars(lm)
    assert "generate_until" not in vars(lm)
    assert lm.generate_until.__func__ is RecordingLM.generate_until
    lm.generate_until(_requests("after-", 1))
    assert lm.calls == [["after-0"]]


def test_the_method_is_restored_when_the_block_fails():
    lm = RecordingLM()
    with pytest.raises(RuntimeError), joined(lm, _requests("x-", 1)):
        raise RuntimeError("boom")
    assert "generate_until" not in vars(lm)


def test_nested_blocks_restore_what_each_found():
    lm = RecordingLM()
    with joined(lm, _requests("outer-", 1)) as outer:
        outer_method = vars(lm)["generate_until"]
        with joined(lm, _requests("inner-", 1)) as inner:
            lm.generate_until(_requests("t-", 1))
        assert vars(lm)["generate_until"] is outer_method
        lm.generate_until(_requests("u-", 1))
    assert lm.calls == [["t-0", "inner-0", "outer-0"], ["u-0"]]  # inner calls outer: both joined
    assert inner.passes_joined == outer.passes_joined == 1
    assert "generate_until" not in vars(lm)


def test_no_call_means_no_outputs():
    lm = RecordingLM()
    with joined(lm, _requests("turn1-", 2)) as stage:
        lm.loglikelihood([])
    assert stage.outputs == {} and not stage.done and lm.calls == []


def test_no_extra_requests_changes_nothing():
    lm = RecordingLM()
    with joined(lm, []) as stage:
        assert "generate_until" not in vars(lm) and stage.done
        lm.generate_until(_requests("a-", 1))
    assert lm.calls == [["a-0"]] and stage.outputs == {}


# ----------------------------------------------------------------------------- CachingLM
def test_under_caching_lm_the_wrapped_engine_gets_one_call(tmp_path: Path):
    """lm-eval's simple_evaluate(use_cache=...) wraps the engine; the runner joins the bare one."""
    lm = RecordingLM()
    cached = CachingLM(lm, str(tmp_path / "cache.db"))
    mine, extra = _requests("task-", 3), _requests("turn1-", 2)
    with joined(lm, extra) as stage:
        out = cached.generate_until(mine)
    assert lm.calls == [["task-0", "task-1", "task-2", "turn1-0", "turn1-1"]]
    assert out == [_answer(r) for r in mine]
    assert stage.outputs == {hash_args("generate_until", r.args): _answer(r) for r in extra}
    # the cache hook stored everything computed, the extra requests too
    for request in mine + extra:
        assert cached.dbdict[hash_args("generate_until", request.args)] == _answer(request)


def test_under_caching_lm_only_uncached_requests_are_computed(tmp_path: Path):
    lm = RecordingLM()
    db = str(tmp_path / "cache.db")
    mine = _requests("task-", 3)
    CachingLM(lm, db).generate_until(mine[:2])  # an earlier run cached two of them
    lm.calls.clear()
    extra = _requests("turn1-", 1)
    with joined(lm, extra) as stage:
        out = CachingLM(lm, db).generate_until(mine)
    assert lm.calls == [["task-2", "turn1-0"]]
    assert out == [_answer(r) for r in mine]
    assert list(stage.outputs.values()) == [_answer(extra[0])]


def test_under_caching_lm_a_fully_cached_call_computes_nothing(tmp_path: Path):
    """Every request cached: the engine is never called, so the caller runs its own pass."""
    lm = RecordingLM()
    db = str(tmp_path / "cache.db")
    mine = _requests("task-", 2)
    CachingLM(lm, db).generate_until(mine)
    lm.calls.clear()
    with joined(lm, _requests("turn1-", 1)) as stage:
        assert CachingLM(lm, db).generate_until(mine) == [_answer(r) for r in mine]
    assert lm.calls == [] and stage.outputs == {} and not stage.done


def test_joining_the_caching_wrapper_itself(tmp_path: Path):
    lm = RecordingLM()
    cached = CachingLM(lm, str(tmp_path / "cache.db"))
    mine, extra = _requests("task-", 2), _requests("turn1-", 1)
    with joined(cached, extra) as stage:
        assert cached.generate_until(mine) == [_answer(r) for r in mine]
    assert lm.calls == [["task-0", "task-1", "turn1-0"]]
    assert stage.outputs == {hash_args("generate_until", extra[0].args): _answer(extra[0])}
    assert "generate_until" not in vars(cached)
    cached.generate_until(_requests("z-", 1))  # CachingLM's own lookup again
    assert lm.calls[-1] == ["z-0"]


def test_outputs_key_matches_how_lm_eval_hashes_requests():
    """The key is lm-eval's own request hash, so any caller can look an answer up by its args."""
    lm = RecordingLM()
    request = Instance("generate_until", {}, ("q", {"until": ["\n"], "do_sample": False}), 0)
    with joined(lm, [request]) as stage:
        lm.generate_until([])
    key = hash_args("generate_until", ("q", {"until": ["\n"], "do_sample": False}))
    assert stage.outputs == {key: _answer(request)}

