"""evalplus's checker inside our sandbox: verdicts, evalplus's formulas, data loading, caching.

Runs on the MBPP+ fixture (tests/fixtures/evalplus, schema of the v0.2.0 release); equality with
evalplus's own `evaluate` over whole sample files is tests/test_evalplus_fidelity.py.
"""

from __future__ import annotations

import gzip
import json
import os
import runpy
import subprocess
import sys
import urllib.error
from pathlib import Path

import evalplus.eval as ev
import pytest
from evalplus.eval import query_maximum_memory_bytes
from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
from evalplus.gen.util import trusted_exec

from kanana_eval.core.errors import ConfigError, DataUnavailableError, KananaError
from kanana_eval.data.evalplus_release import dataset_hash, load_problems
from kanana_eval.scoring.evalplus import execute as evalplus_exec
from kanana_eval.scoring.evalplus.execute import (
    PlusResult,
    check_solutions,
    evalplus_status,
    expected_outputs,
    join_timeout,
    time_limits,
)
from kanana_eval.scoring.sandbox import api, isolation, session
from kanana_eval.scoring.sandbox.api import ExecutionResult

FIXTURE = Path(__file__).parent / "fixtures" / "evalplus" / "MbppPlus-v0.2.0-fixture.jsonl.gz"
FIXTURE_TASKS = ["Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/6", "Mbpp/7", "Mbpp/14", "Mbpp/737"]


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    return load_problems("mbpp", version="v0.2.0", source=FIXTURE)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evalplus-scratch")


def _canonical(problem: dict) -> str:
    return problem["prompt"] + problem["canonical_solution"]


def _check(problems: dict, scratch: Path, *pairs: tuple[str, str], **kwargs) -> list[PlusResult]:
    return check_solutions("mbpp", problems, list(pairs), scratch_dir=scratch, workers=2, **kwargs)


# --- data ---------------------------------------------------------------------------------------


def test_fixture_loads_through_evalplus_with_its_input_deserialisation(problems):
    assert list(problems) == FIXTURE_TASKS
    assert problems["Mbpp/2"]["base_input"][0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # lists → tuples
    assert problems["Mbpp/3"]["base_input"] == [[2], [10], [35], [37]]
    for problem in problems.values():
        assert {"prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol",
                "contract", "assertion"} <= set(problem)


def test_fixture_file_is_what_its_script_writes(tmp_path):
    script = runpy.run_path(str(Path(__file__).parent / "fixtures" / "make_evalplus_fixture.py"))
    script["main"](tmp_path / "out.jsonl.gz")
    assert (tmp_path / "out.jsonl.gz").read_bytes() == FIXTURE.read_bytes()


def test_shared_humaneval_plus_release_loads(shared_data_dir):
    path = shared_data_dir / "humaneval_plus" / "HumanEvalPlus.jsonl.gz"
    loaded = load_problems("humaneval", version="v0.1.10", source=path)
    assert len(loaded) == 164
    assert loaded["HumanEval/0"]["entry_point"] == "has_close_elements"


def test_the_override_path_is_restored_after_loading():
    import evalplus.data.mbpp as mbpp  # noqa: PLC0415 - heavy: evalplus.data loads datasets

    before = mbpp.MBPP_OVERRIDE_PATH
    load_problems("mbpp", version="v0.2.0", source=FIXTURE)
    assert mbpp.MBPP_OVERRIDE_PATH == before


def test_missing_release_file_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataUnavailableError, match="release file not found") as info:
        load_problems("mbpp", version="v0.2.0", source=tmp_path / "nope.jsonl.gz")
    assert "\n" not in str(info.value)


def test_malformed_release_file_is_a_one_line_data_error(tmp_path):
    broken = tmp_path / "broken.jsonl.gz"
    with gzip.open(broken, "wt") as handle:
        handle.write(json.dumps({"task_id": "Mbpp/2", "prompt": "x"}) + "\n")
    with pytest.raises(DataUnavailableError) as info:
        load_problems("mbpp", version="v0.2.0", source=broken)
    assert "\n" not in str(info.value)
    not_gzip = tmp_path / "not.jsonl.gz"
    not_gzip.write_text("plain text")
    with pytest.raises(DataUnavailableError, match="BadGzipFile"):
        load_problems("mbpp", version="v0.2.0", source=not_gzip)


def test_offline_without_a_source_is_a_one_line_data_error(monkeypatch, tmp_path):
    """evalplus's own download path, with its cache empty and the network failing."""
    import evalplus.data.utils as utils  # noqa: PLC0415 - heavy: evalplus.data loads datasets

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(utils, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(utils.wget, "download", offline)
    monkeypatch.setattr("evalplus.data.mbpp.MBPP_OVERRIDE_PATH", None)
    with pytest.raises(DataUnavailableError, match="offline") as info:
        load_problems("mbpp", version="v0.2.0")
    assert "\n" not in str(info.value)


def test_versions_and_datasets_are_checked():
    with pytest.raises(ConfigError, match="v0.1.10 only"):
        load_problems("humaneval", version="v0.1.9")
    with pytest.raises(ConfigError, match="unknown evalplus dataset"):
        load_problems("apps", version="v1")


def test_dataset_hash_is_stable_and_content_sensitive(problems):
    again = load_problems("mbpp", version="v0.2.0", source=FIXTURE)
    assert dataset_hash(again) == dataset_hash(problems)
    changed = {**again, "Mbpp/3": {**again["Mbpp/3"], "plus_input": [[1]]}}
    assert dataset_hash(changed) != dataset_hash(problems)
    code = (f"from kanana_eval.data.evalplus_release import load_problems, dataset_hash\n"
            f"print(dataset_hash(load_problems('mbpp', version='v0.2.0', "
            f"source={str(FIXTURE)!r})))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == dataset_hash(problems)


# --- expected outputs ---------------------------------------------------------------------------


def test_expected_outputs_are_evalplus_groundtruth_cached_in_scratch(problems, scratch,
                                                                     monkeypatch):
    import evalplus.data.utils as utils  # noqa: PLC0415 - heavy: evalplus.data loads datasets

    home_cache = Path(utils.CACHE_DIR)
    before = sorted(home_cache.iterdir()) if home_cache.is_dir() else None
    expected = expected_outputs("mbpp", problems, scratch)
    assert sorted(expected) == sorted(problems)
    for task_id, problem in problems.items():
        for kind in ("base", "plus"):  # what get_groundtruth computes, recomputed here
            output_not_none = problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS
            outputs = trusted_exec(problem["prompt"] + problem["canonical_solution"],
                                   problem[f"{kind}_input"], problem["entry_point"],
                                   output_not_none=output_not_none)
            assert expected[task_id][kind] == outputs, (task_id, kind)
            assert len(expected[task_id][f"{kind}_time"]) == len(outputs)
    assert expected["Mbpp/737"]["base"] == [True, False, True]  # the output-not-None oracle
    assert [p.suffix for p in scratch.glob("mbpp-*.pkl")] == [".pkl"]
    assert (sorted(home_cache.iterdir()) if home_cache.is_dir() else None) == before

    def no_subprocess(*_args, **_kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(evalplus_exec.subprocess, "run", no_subprocess)
    assert expected_outputs("mbpp", problems, scratch) == expected


def test_a_failing_groundtruth_is_a_one_line_error(problems, tmp_path):
    broken = {"Mbpp/3": {**problems["Mbpp/3"], "canonical_solution": "raise ValueError('x')\n"}}
    with pytest.raises(KananaError, match="could not compute") as info:
        expected_outputs("mbpp", broken, tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.glob("*.pkl")) == []


# --- evalplus's formulas ------------------------------------------------------------------------


class _FakeProcess:
    """Stands in for multiprocessing.Process inside evalplus.eval.untrusted_check."""

    seen: dict = {}
    outcome: tuple = (3, [], 0)  # stat, details, progress the "child" leaves behind

    def __init__(self, target, args):
        self.args = args

    def start(self):
        stat, details, progress = _FakeProcess.outcome
        self.args[-3].value = stat
        for i, value in enumerate(details):
            self.args[-2][i] = value
        self.args[-1].value = progress
        _FakeProcess.seen["limits"] = list(self.args[5])

    def join(self, timeout=None):
        _FakeProcess.seen["join"] = timeout

    def is_alive(self):
        return False


@pytest.fixture
def fake_untrusted_check(monkeypatch):
    monkeypatch.setattr(ev.multiprocessing, "Process", _FakeProcess)
    return ev.untrusted_check


@pytest.mark.parametrize("ref_time", [[0.001, 0.01], [0.3, 0.5, 2.0], [10.0] * 20])
@pytest.mark.parametrize("fast_check", [True, False])
def test_time_limits_and_wall_clock_equal_untrusted_checks(fake_untrusted_check, ref_time,
                                                           fast_check):
    _FakeProcess.outcome = (0, [True] * len(ref_time), len(ref_time))
    fake_untrusted_check("mbpp", "", [[1]] * len(ref_time), "f", [1] * len(ref_time), 0, ref_time,
                         fast_check=fast_check)
    assert time_limits(ref_time) == _FakeProcess.seen["limits"]
    assert join_timeout(time_limits(ref_time), fast_check) == _FakeProcess.seen["join"]


@pytest.mark.parametrize(
    ("status", "verdict", "expected"),
    [
        ("passed", (True, 3, None), "pass"),  # every output judged equal
        ("passed", (False, 2, None), "fail"),  # an output differs
        ("passed", (False, 1, "time"), "fail"),  # evalplus: a per-input time limit is a fail
        ("passed", (False, 1, "error"), "fail"),  # an input raised
        ("failed", None, "timeout"),  # evalplus: a child that left no status is a timeout
        ("timeout", None, "timeout"),
    ],
)
def test_status_mapping_follows_untrusted_check(status, verdict, expected):
    assert evalplus_status(ExecutionResult(status, 0.1, ""), verdict) == expected


def test_a_disk_quota_kill_is_a_failure_not_a_timeout():
    result = ExecutionResult("failed", 0.1, api.QUOTA_DETAIL + " (64 MiB or 4096 files)")
    assert evalplus_status(result, None) == "fail"
    assert evalplus_status(ExecutionResult("failed", 0.1, "killed by SIGKILL"), None) == "timeout"


# --- verdicts -----------------------------------------------------------------------------------


def test_canonical_solutions_pass_base_and_plus_in_input_order(problems, scratch):
    pairs = [(task_id, _canonical(problems[task_id])) for task_id in reversed(FIXTURE_TASKS)]
    results = _check(problems, scratch, *pairs, progress=True)
    assert [r.task_id for r in results] == list(reversed(FIXTURE_TASKS))
    assert [(r.base_status, r.plus_status, r.passed, r.detail) for r in results] == [
        ("pass", "pass", True, "")] * len(FIXTURE_TASKS)


def test_wrong_and_plus_only_wrong_solutions(problems, scratch):
    wrong = "def is_not_prime(n):\n    return n % 2 == 0\n"
    misses_one = "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, n))\n"  # n = 1
    set_order = ("def similar_elements(a, b):\n"
                 "    return tuple(sorted(set(a) & set(b), reverse=True))\n")
    results = _check(problems, scratch, ("Mbpp/3", wrong), ("Mbpp/3", misses_one),
                     ("Mbpp/2", set_order))
    assert [(r.base_status, r.plus_status, r.passed) for r in results] == [
        ("fail", "fail", False), ("pass", "fail", False), ("pass", "pass", True)]
    assert results[1].detail == "plus: fail"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nos._exit(0)\n", ("timeout", "timeout")),  # evalplus: no status = timeout
        ("import sys\nsys.exit(0)\n", ("fail", "fail")),  # SystemExit is caught by evalplus
        ("exit(0)\n", ("fail", "fail")),  # evalplus's guard sets exit = None
        ("def is_not_prime(n:\n", ("fail", "fail")),
        ("def other(n):\n    return True\n", ("fail", "fail")),
        ("def is_not_prime(n):\n    while True:\n        pass\n", ("fail", "fail")),  # 1 s CPU
        ("block = bytearray(64 * 1024 ** 3)\n", ("fail", "fail")),  # MemoryError
    ],
    ids=["os._exit", "sys.exit", "exit", "syntax", "no-entry-point", "per-input-limit", "memory"],
)
def test_broken_solutions_get_evalplus_statuses(problems, scratch, source, expected):
    (result,) = _check(problems, scratch, ("Mbpp/3", source))
    assert (result.base_status, result.plus_status) == expected
    assert not result.passed and result.detail
    assert result.retried == (("base", "plus") if "while True" in source else ())


def test_a_solution_that_never_returns_times_out_at_the_budget_once_retried(
        problems, scratch, monkeypatch):
    # It swallows the per-input alarm, so the call's own clock (evalplus' budget, shortened here)
    # ends it. Each kind of tests times out, runs again, times out.
    monkeypatch.setattr(evalplus_exec, "join_timeout", lambda limits, fast_check=True: 0.3)
    source = ("import time\ndef is_not_prime(n):\n    while True:\n        try:\n"
              "            time.sleep(10)\n        except BaseException:\n            pass\n")
    (result,) = _check(problems, scratch, ("Mbpp/3", source))
    assert (result.base_status, result.plus_status) == ("timeout", "timeout")
    assert "timed out once and was run again; time limit reached" in result.detail
    assert result.retried == ("base", "plus")
    assert 0.6 <= result.seconds < 20.0  # the last attempts of base and plus


def test_base_only_runs_no_plus_tests(problems, scratch):
    misses_one = "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, n))\n"
    (result,) = _check(problems, scratch, ("Mbpp/3", misses_one), base_only=True)
    assert (result.base_status, result.plus_status, result.passed) == ("pass", None, False)


def test_solutions_never_run_in_the_harness_process(problems, scratch, tmp_path):
    marker = tmp_path / "ran-here.txt"
    source = (
        "import os\n"
        f"HARNESS = {os.getpid()}\n"
        "def is_not_prime(n):\n"
        "    assert os.getpid() != HARNESS and os.getppid() != HARNESS\n"
        "    if n == 1:\n        return True\n"
        "    return any(n % i == 0 for i in range(2, int(n ** 0.5) + 1))\n"
    )
    escape = f"import posix\nposix.open({str(marker)!r}, posix.O_CREAT | posix.O_WRONLY)\n"
    results = _check(problems, scratch, ("Mbpp/3", source), ("Mbpp/3", escape + source))
    assert (results[0].base_status, results[0].plus_status) == ("pass", "pass")
    if isolation.landlock_abi():
        assert results[1].base_status == "fail" and not marker.exists()


def test_a_broken_sandbox_is_reported_not_hidden(problems, scratch, monkeypatch, tmp_path):
    (tmp_path / "supervisor.py").write_text("import sys\nsys.exit(5)\n")
    monkeypatch.setattr(session, "SUPERVISOR_PATH", str(tmp_path / "supervisor.py"))
    (result,) = _check(problems, scratch, ("Mbpp/3", _canonical(problems["Mbpp/3"])))
    assert (result.base_status, result.plus_status) == ("timeout", "timeout")
    assert "sandbox error" in result.detail


def test_the_memory_limit_is_evalplus_own():
    assert evalplus_exec._memory_mb() == query_maximum_memory_bytes() >> 20


def test_bad_arguments_raise_one_line_errors(problems, scratch):
    with pytest.raises(KananaError, match="unknown evalplus dataset"):
        check_solutions("apps", problems, [], scratch_dir=scratch)
    with pytest.raises(KananaError, match="not a mbpp\\+ task"):
        _check(problems, scratch, ("Mbpp/999", "pass"))
    with pytest.raises(KananaError, match="pair"):
        _check(problems, scratch, ("Mbpp/3", None))  # type: ignore[arg-type]
    with pytest.raises(KananaError, match="workers"):
        check_solutions("mbpp", problems, [], scratch_dir=scratch, workers=0)
    assert check_solutions("mbpp", problems, [], scratch_dir=scratch) == []
