"""evalplus' tests split at the trust line: outputs made in the sandbox, judged outside it.

evalplus' `unsafe_execute` calls the solution and compares its output with the expected one in
the same process, so a solution can win every comparison without solving anything (an object
whose `__eq__` is always true; frames that reach the checker's locals). Here the two halves
run on either side of the sandbox:

* `collect_outputs` runs INSIDE the sandbox child. It is evalplus' loop without the comparison:
  evalplus' reliability_guard, the solution exec'd with its I/O swallowed, one call per input
  under a per-input limit, and each output encoded into tagged JSON of builtin types
  (`sandbox.rpc.encode`; any other object crosses as an opaque handle that equals only itself,
  so a `re.Match` is still "not None" for evalplus' not-None oracle). The expected outputs
  never enter the sandbox. The limit is wall time minus the time spent waiting for a CPU
  (`time_limit`), so load on the machine cannot fail a solution that evalplus passes on a quiet
  one.
* `judge` runs in the harness on that JSON only: `decode` rebuilds plain builtin values (never
  an object of the solution's), and evalplus' comparisons and special oracles, copied from
  `unsafe_execute`, decide pass or fail, stopping at the first failure as its fast_check does.

What the child sends is untrusted bytes: a solution may replace the encoder or write to the
proof pipe itself. Forging them gains nothing, because a pass still needs the expected values.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

from kanana_eval.scoring.sandbox import isolation
from kanana_eval.scoring.sandbox.rpc import decode, encode

STOP_TIME, STOP_ERROR = "time", "error"
WALL_FACTOR = isolation.WALL_FACTOR  # the sandbox's backstop factor, per input here


class _TimeLimit(Exception):
    """The per-input time limit ran out."""


_OPEN = open  # evalplus' reliability_guard sets builtins.open to None before the inputs run


def _run_delay() -> float:
    """Seconds this thread has waited for a CPU while runnable (/proc schedstat; 0 if absent)."""
    try:
        with _OPEN("/proc/thread-self/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """evalplus' time_limit, in time the machine's load cannot stretch.

    evalplus counts wall time (ITIMER_REAL). Here the clock is wall time minus the time the
    process waited for a CPU while it could run (the kernel's run delay): on a quiet machine the
    two are equal, so a solution that sleeps or computes too long fails as in evalplus; on a
    loaded one, waiting for a core no longer counts. The alarm re-arms itself until that time is
    used up, and gives up at WALL_FACTOR times the limit of wall time whatever the load.
    """
    start, delayed = time.monotonic(), _run_delay()

    def check(signum: int, frame: Any) -> None:
        wall = time.monotonic() - start
        used = wall - (_run_delay() - delayed)
        if used >= seconds or wall >= seconds * WALL_FACTOR:
            raise _TimeLimit("time limit")
        signal.setitimer(signal.ITIMER_REAL, max(seconds - used, 0.01))

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def collect_outputs(entry_point: str, code: str, inputs: list, limits: list[float],
                    memory_bytes: int) -> dict[str, Any]:
    """INSIDE the sandbox child: the solution's output on each input, encoded, until one fails.

    Returns {"outputs": [...], "stop": None | "time" | "error"}; a stop is the
    input after the last output (evalplus' fast_check stops there as well).
    """
    from evalplus.eval.utils import (  # noqa: PLC0415 - heavy: evalplus, in the child only
        reliability_guard,
        swallow_io,
    )

    reliability_guard(maximum_memory_bytes=memory_bytes)
    outputs: list[Any] = []
    handles: dict[int, Any] = {}  # objects that are not builtin values cross as opaque handles
    try:
        exec_globals: dict[str, Any] = {}
        with swallow_io():
            exec(code, exec_globals)  # noqa: S102 - the sandbox child exists for this
            fn = exec_globals[entry_point]
        for inp, limit in zip(inputs, limits, strict=True):
            with time_limit(limit), swallow_io():
                out = fn(*inp)
            outputs.append(encode(out, handles))
    except _TimeLimit:
        return {"outputs": outputs, "stop": STOP_TIME}
    except BaseException:  # noqa: BLE001 - evalplus counts any exception as a failed input
        return {"outputs": outputs, "stop": STOP_ERROR}
    return {"outputs": outputs, "stop": None}


def judge(dataset: str, entry_point: str, inputs: list, expected: list, atol: float,
          value: Any) -> tuple[bool, int, str | None]:
    """IN THE HARNESS: (all passed, inputs checked, stop) from the child's JSON value.

    evalplus' comparison block, input by input, on decoded builtin values; malformed JSON
    from the child is a failure.
    """
    if not (isinstance(value, dict) and isinstance(value.get("outputs"), list)
            and value.get("stop") in (None, STOP_TIME, STOP_ERROR)):
        return False, 0, STOP_ERROR
    outputs, stop = value["outputs"], value["stop"]
    if len(outputs) > len(inputs):
        return False, 0, STOP_ERROR
    for index, raw in enumerate(outputs):
        try:
            ok, atol = _matches(dataset, entry_point, inputs[index], decode(raw),
                                expected[index], atol)
        except Exception:  # noqa: BLE001 - evalplus: any exception while comparing is a fail
            ok = False
        if not ok:
            return False, index + 1, None
    if stop is not None:
        return False, len(outputs) + 1, stop
    return len(outputs) == len(inputs), len(outputs), None


def _matches(dataset: str, entry_point: str, inp: Any, out: Any, exp: Any,
             atol: float) -> tuple[bool, float]:
    """evalplus' `unsafe_execute` comparison of one output, its special oracles included.

    Returns the atol for the next inputs too: evalplus sets it to 1e-6 at the first float
    output and keeps it for the rest of the loop.
    """
    import numpy as np  # noqa: PLC0415 - heavy: numpy, only when comparing
    from evalplus.eval import is_floats  # noqa: PLC0415 - heavy: evalplus, only when comparing

    exact_match = out == exp
    oracle = _ORACLES.get(dataset)
    if oracle is not None:
        exact_match, final = oracle(entry_point, inp, out, exp, atol, exact_match)
        if final is not None:
            return final, atol
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        if type(out) is not type(exp):
            return False, atol
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False, atol
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
    return bool(exact_match), atol


def _mbpp_oracles(entry_point: str, inp: Any, out: Any, exp: Any, atol: float,
                  exact: bool) -> tuple[bool, bool | None]:
    """MBPP+'s special oracles in `unsafe_execute`: (exact match, None: compare on)."""
    from evalplus.eval import (  # noqa: PLC0415 - heavy: evalplus, only when comparing
        MBPP_OUTPUT_NOT_NONE_TASKS,
        MBPP_OUTPUT_SET_EQ_TASKS,
        _digit_distance_nums,
        _surface_Area,
    )

    if entry_point == "are_equivalent":  # Mbpp/164
        return True, None
    if entry_point == "sum_div":  # Mbpp/295
        return exact or out == 0, None
    if entry_point == "surface_Area":  # Mbpp/581
        return exact or abs(out - _surface_Area(*inp)) <= atol, None
    if entry_point == "digit_distance_nums":  # Mbpp/558
        return exact or out == _digit_distance_nums(*inp), None
    if entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
        return set(out) == set(exp), None
    if entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
        return (out == exp if isinstance(out, bool) else exp == (out is not None)), None
    return exact, None


def _humaneval_oracles(entry_point: str, inp: Any, out: Any, exp: Any, atol: float,
                       exact: bool) -> tuple[bool, bool | None]:
    """HumanEval+'s special oracle for find_zero, as evalplus 0.3.1 applies it."""
    if entry_point == "find_zero":
        # evalplus 0.3.1 `continue`s past its bookkeeping here, so the input never counts as
        # checked and untrusted_check fails the solution whatever it returns: we agree.
        return exact, False
    return exact, None


# evalplus' special oracles by dataset (its `if dataset == ...` branches)
_ORACLES = {"mbpp": _mbpp_oracles, "humaneval": _humaneval_oracles}
