"""Values crossing the sandbox's trust line: builtin types only, decoded strictly, no object of
the program's ever compared on the trusted side."""

from __future__ import annotations

import json
import math

import pytest

from kanana_eval.scoring.sandbox.api import run_program
from kanana_eval.scoring.sandbox.rpc import Handle, NotPlain, decode, encode


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2 ** 80, 3 ** 5000, -(7 ** 3000), 1.5, "한국어", b"\x00\xff",
    [1, [2, (3,)]], (1, "a"),
    {1, 2}, frozenset({"x"}), {"k": [1.0], (1, 2): None}, 1 + 2j, float("inf"), -0.0,
])
def test_builtin_values_round_trip_exactly(value):
    back = decode(json.loads(json.dumps(encode(value), allow_nan=False)))
    assert back == value and type(back) is type(value)


def test_nan_round_trips_as_nan():
    assert math.isnan(decode(json.loads(json.dumps(encode(float("nan")), allow_nan=False))))


def test_subclasses_cross_as_their_base_value_without_their_methods():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    back = decode(encode(Liar(5)))
    assert type(back) is int and back == 5 and back != 6


def test_other_objects_are_refused_on_the_trusted_side_and_handles_on_the_program_side():
    class Anything:
        def __eq__(self, other):
            return True

    with pytest.raises(NotPlain):
        encode(Anything())
    handles: dict[int, object] = {}
    wire = encode(Anything(), handles)
    on_trusted_side = decode(wire)
    assert isinstance(on_trusted_side, Handle)
    assert on_trusted_side != 0 and on_trusted_side != on_trusted_side.number
    assert decode(wire, handles) is handles[1]  # back on the program's side: the object itself


@pytest.mark.parametrize("wire", [
    {"t": [1], "s": [2]}, {"q": []}, {"d": [[1]]}, {"c": [1, "x"]}, {"x": "nope"}, {"h": "1"},
    {"b": "***"},
])
def test_malformed_values_are_rejected(wire):
    with pytest.raises((ValueError, TypeError)):
        decode(wire)


def test_tests_see_the_candidate_only_through_values():
    """The split program: the tests' own process compares builtin values from the candidate."""
    tests = "def check(candidate):\n    assert candidate([1, 2]) == 3\ncheck(total)\n"
    assert run_program("def total(xs):\n    return sum(xs)\n", tests=tests).status == "passed"
    forged = ("import builtins\nbuiltins.AssertionError = None\n"
              "class A:\n    def __eq__(self, o):\n        return True\n"
              "def total(xs):\n    return A()\n")
    assert run_program(forged, tests=tests).status == "failed"
