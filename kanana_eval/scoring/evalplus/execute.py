"""evalplus's base and plus tests, with the untrusted part inside kanana_eval's sandbox.

evalplus's `evaluate` calls `check_correctness` → `untrusted_check`, which forks a
multiprocessing child running `evalplus.eval.unsafe_execute`: the solution's calls AND the
comparisons with the expected outputs, in one process the solution can tamper with. Here that
loop is split at the trust line (`outputs.py`): the sandbox child only computes and encodes the
outputs (`collect_outputs`), the expected outputs never enter the sandbox, and the harness
compares decoded builtin values with evalplus's comparisons and special oracles (`judge`).
One supervisor per solution, a fresh child for the base tests and one for the plus tests.
What `untrusted_check` does in the parent is kept: the per-input limits max(min_time_limit,
gt_time_limit_factor × reference time), the budget min(EVALPLUS_TIMEOUT_PER_TASK or 60,
Σ limits) + 1 (+ 1 without fast_check) + 1, and the status mapping (no result from the child =
"timeout"; "pass" needs every input checked and passed). Two deliberate differences, so that a
verdict does not depend on load: the per-input limits count wall time minus the time spent
waiting for a CPU (`outputs.time_limit`; equal to evalplus' wall time on a quiet machine), the
budget is CPU seconds (RLIMIT_CPU; wall clock is the sandbox's backstop at 5× the budget), and a
call stopped by a time limit runs once more before it counts (`PlusResult.retried`). Expected
outputs and reference times are evalplus's `get_groundtruth`, computed in a subprocess
(`groundtruth.py`) and cached in our scratch folder, never in ~/.cache/evalplus. evalplus's
`evaluate` defaults are used: fast_check (stop at the first failing input), min_time_limit 1.0,
gt_time_limit_factor 4.0.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT
from filelock import FileLock
from tqdm import tqdm

from kanana_eval.core.errors import KananaError
from kanana_eval.data.evalplus_release import dataset_hash
from kanana_eval.scoring.evalplus.outputs import STOP_TIME, judge
from kanana_eval.scoring.sandbox.api import QUOTA_DETAIL, ExecutionResult, run_calls

DATASETS = ("humaneval", "mbpp")
FAST_CHECK = True  # evaluate(test_details=False), its default
DETAIL_CHARS = 500
_TARGET = "kanana_eval.scoring.evalplus.outputs:collect_outputs"
_GROUNDTRUTH = str(Path(__file__).with_name("groundtruth.py"))  # a program run by path


class EvalplusError(KananaError):
    """evalplus's ground truth could not be computed, or a solution list is malformed."""


@dataclass(frozen=True)
class PlusResult:
    """One solution's verdicts on the base and plus tests, as evalplus's evaluate reports them."""

    task_id: str
    base_status: str  # evalplus's "pass" / "fail" / "timeout"
    plus_status: str | None  # None when base_only
    seconds: float
    detail: str
    retried: tuple[str, ...] = ()  # "base" / "plus": stopped by a time limit once, run again

    @property
    def passed(self) -> bool:
        """evalplus's plus pass@1 criterion: base and plus tests both pass."""
        return self.base_status == "pass" and self.plus_status == "pass"


def expected_outputs(dataset: str, problems: dict[str, dict],
                     scratch_dir: Path) -> dict[str, dict]:
    """evalplus's `get_groundtruth` (outputs and reference times of the canonical solutions).

    Computed once per problem set in a subprocess (the canonical solutions are dataset code, not
    the harness's) and cached as `<scratch_dir>/<dataset>-<hash>.pkl`, evalplus's own file format.
    """
    _check_dataset(dataset)
    scratch_dir = Path(scratch_dir)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    key = f"{dataset}-{dataset_hash(problems)[:32]}-py{sys.version_info[0]}{sys.version_info[1]}"
    cache = scratch_dir / f"{key}.pkl"
    with FileLock(str(cache) + ".lock"):
        if not cache.is_file():
            _compute_groundtruth(dataset, problems, scratch_dir, key)
    with open(cache, "rb") as handle:  # our own file, written by evalplus's code above
        return pickle.load(handle)


def _compute_groundtruth(dataset: str, problems: dict[str, dict], scratch_dir: Path,
                         key: str) -> None:
    """Run groundtruth.py in a fresh interpreter; move its cache file into place atomically."""
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=".groundtruth-") as work:
        problems_path = Path(work) / "problems.pkl"
        with open(problems_path, "wb") as handle:
            pickle.dump(problems, handle, protocol=pickle.HIGHEST_PROTOCOL)
        done = subprocess.run(
            [sys.executable, _GROUNDTRUTH, dataset, str(problems_path), work, key],
            cwd=work, capture_output=True, text=True, check=False)
        produced = Path(work) / f"{key}.pkl"
        if done.returncode != 0 or not produced.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EvalplusError(f"evalplus could not compute the {dataset}+ expected outputs "
                                f"(exit code {done.returncode}): {tail[0]}")
        os.replace(produced, scratch_dir / f"{key}.pkl")


def check_solutions(
    dataset: str,
    problems: dict[str, dict],
    solutions: Sequence[tuple[str, str]],
    *,
    scratch_dir: Path,
    workers: int | None = None,
    base_only: bool = False,
    progress: bool = False,
    unsafe: bool = False,
) -> list[PlusResult]:
    """Each (task_id, full program) against evalplus's base (and plus) tests; input order kept.

    `workers` defaults to evalplus's own: half the CPUs (its time limits assume an idle core).
    """
    _check_dataset(dataset)
    for index, pair in enumerate(solutions):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[1], str)):
            raise EvalplusError(f"solutions[{index}] must be a (task_id, source) pair")
        if pair[0] not in problems:
            raise EvalplusError(f"solutions[{index}]: {pair[0]!r} is not a {dataset}+ task")
    workers = workers if workers is not None else max(1, (os.cpu_count() or 1) // 2)
    if workers < 1:
        raise EvalplusError(f"workers must be at least 1, got {workers}")
    if not solutions:
        return []
    expected = expected_outputs(dataset, problems, scratch_dir)
    memory_mb = _memory_mb()
    with ThreadPoolExecutor(max_workers=min(workers, len(solutions))) as pool:
        futures = [
            pool.submit(_check_one, dataset, problems[task_id], source, expected[task_id],
                        base_only, memory_mb, unsafe)
            for task_id, source in solutions
        ]
        if progress:
            for _ in tqdm(as_completed(futures), total=len(futures), desc=f"{dataset}+ tests",
                          unit="sol"):
                pass
        return [future.result() for future in futures]


def _check_one(dataset: str, problem: dict[str, Any], solution: str, expected: dict[str, Any],
               base_only: bool, memory_mb: int, unsafe: bool) -> PlusResult:
    """`check_correctness` for one solution: base then plus, each an `untrusted_check`."""
    kinds = ("base",) if base_only else ("base", "plus")
    calls, timeouts = [], []
    for kind in kinds:
        limits = time_limits(expected[f"{kind}_time"])
        calls.append((problem["entry_point"], solution, problem[f"{kind}_input"], limits,
                      memory_mb << 20))
        timeouts.append(join_timeout(limits, FAST_CHECK))
    run = {"memory_mb": memory_mb, "preload": ("evalplus.eval",), "unsafe": unsafe,
           "env": {"EVALPLUS_MAX_MEMORY_BYTES": str(memory_mb << 20)}}
    results = run_calls(_TARGET, calls, timeouts_s=timeouts, **run)
    statuses, notes, retried = [], [], []
    for index, kind in enumerate(kinds):
        checked = _checked(dataset, problem, kind, expected, results[index])
        if checked[1] == STOP_TIME and results[index].attempts == 1:  # a time limit: once more
            again = run_calls(_TARGET, [calls[index]], timeouts_s=[timeouts[index]], **run)[0]
            results[index] = ExecutionResult(again.status, again.seconds, again.detail,
                                             again.value, 2)
            checked = _checked(dataset, problem, kind, expected, results[index])
        if results[index].attempts > 1:
            retried.append(kind)
        statuses.append(checked[0])
        if checked[0] != "pass":
            notes.append(_note(kind, checked[0], results[index], checked[1]))
    return PlusResult(
        task_id=problem["task_id"],
        base_status=statuses[0],
        plus_status=None if base_only else statuses[1],
        seconds=sum(r.seconds for r in results),
        detail="; ".join(notes)[:DETAIL_CHARS],
        retried=tuple(retried),
    )


def _checked(dataset: str, problem: dict[str, Any], kind: str, expected: dict[str, Any],
             result: ExecutionResult) -> tuple[str, str | None]:
    """(evalplus status, what stopped the child) for one kind of tests."""
    verdict = None
    if result.status == "passed":
        verdict = judge(dataset, problem["entry_point"], problem[f"{kind}_input"],
                        expected[kind], problem["atol"], result.value)
    return evalplus_status(result, verdict), (verdict[2] if verdict else None)


def _note(kind: str, status: str, result: ExecutionResult, stop: str | None) -> str:
    """'plus: fail' when the outputs were judged, with what stopped the child, else the sandbox."""
    if result.status == "passed":
        return f"{kind}: {status}" + (f" ({_STOPS[stop]})" if stop else "")
    prefix = "sandbox error: " if result.status == "error" else ""
    return f"{kind}: {status} ({prefix}{result.detail})"


_STOPS = {"time": "an input ran out of time",
          "error": "the solution raised an exception, loading or on an input"}


def time_limits(ref_time: Sequence[float], min_time_limit: float = DEFAULT_MIN_TIME_LIMIT,
                gt_time_limit_factor: float = DEFAULT_GT_TIME_LIMIT_FACTOR) -> list[float]:
    """untrusted_check: each input's limit from the canonical solution's time on it."""
    return [max(min_time_limit, gt_time_limit_factor * t) for t in ref_time]


def join_timeout(limits: Sequence[float], fast_check: bool = FAST_CHECK) -> float:
    """untrusted_check's wall clock for the whole child: `p.join(timeout=timeout + 1)`."""
    timeout = min(float(os.getenv("EVALPLUS_TIMEOUT_PER_TASK", 60)), sum(limits)) + 1
    if not fast_check:
        timeout += 1  # extra time for data collection
    return timeout + 1


def evalplus_status(result: ExecutionResult,
                   verdict: tuple[bool, int, str | None] | None) -> str:
    """untrusted_check's mapping of what its child left behind to "pass" / "fail" / "timeout".

    `verdict` is `outputs.judge` on the child's value (None when the child did not return).
    A child that died, hung or was killed leaves no status, which evalplus reports as
    "timeout"; a disk-quota kill is a failure.
    """
    from evalplus.eval import FAIL, PASS, TIMEOUT  # noqa: PLC0415 - heavy: evalplus, when used

    if result.detail.startswith(QUOTA_DETAIL):
        return FAIL
    if result.status != "passed" or verdict is None:
        return TIMEOUT
    return PASS if verdict[0] else FAIL


def _memory_mb() -> int:
    """evalplus's own address-space limit (4 GiB or RAM; EVALPLUS_MAX_MEMORY_BYTES)."""
    from evalplus.eval import (  # noqa: PLC0415 - heavy: evalplus, only when used
        query_maximum_memory_bytes,
    )

    limit = query_maximum_memory_bytes()
    if limit is None:
        limit = psutil.virtual_memory().total
    return max(64, int(limit) >> 20)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise EvalplusError(f"unknown evalplus dataset {dataset!r}: use 'humaneval' or 'mbpp'")
