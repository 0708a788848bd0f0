"""One supervisor, seen from the harness: start it, feed it, time its calls, read the verdicts.

A session is a fresh run folder, one `supervisor.py` process started by path in it, the header
and payload written to its stdin, and its `started` / `done` lines read against the clock (see
`supervisor.py` for that protocol). Afterwards every process of its tree is killed and the folder
deleted, whatever happened. `api.py` decides what runs; this module only runs it.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from kanana_eval.scoring.sandbox import boundary, isolation

Status = Literal["passed", "failed", "timeout", "error"]

QUOTA_DETAIL = "disk quota exceeded"  # detail prefix of a quota verdict (callers may test for it)
STARTUP_TIMEOUT_S = 30.0  # interpreter start-up, generous for a loaded machine; not program time
DETAIL_CHARS = 500
RESULT_LIMIT_BYTES = 256 * 1024 * 1024  # largest JSON value a call may return (evalplus' plus
# inputs of HumanEval/15 or /130 produce tens of MiB of outputs)
SUPERVISOR_PATH = str(Path(__file__).with_name("supervisor.py"))
_NONCE_CHARS = 32
_SETUP = b"setup: "  # proof prefix of a child the supervisor could not confine


@dataclass(frozen=True)
class ExecutionResult:
    """One verdict; `seconds` is program wall time (interpreter start excluded).

    `value` is what a `run_calls` function returned (JSON types), None otherwise.
    """

    status: Status
    seconds: float
    detail: str
    value: Any = None
    attempts: int = 1  # 2: it timed out once and was run again (the second verdict counts)


def run_session(
    header: dict[str, Any],
    payload: bytes,
    timeouts: list[float],
    memory_mb: int,
    env: dict[str, str],
    binds: dict[str, str] | None = None,
    unsafe: bool = False,
) -> list[ExecutionResult]:
    """One supervisor: start it in a fresh run folder, supervise its calls, kill all, delete all.

    Inside the isolation boundary (`boundary.py`) unless `unsafe`: then it runs as the harness's
    user with only the in-process confinement (rlimits, Landlock, quota). `binds` are host
    folders the supervisor must see read-only inside (host path -> path inside).
    Returns one result per finished call; the last one may be a timeout or a dead supervisor,
    after which the caller starts a new session for the calls left.
    """
    nonce = os.urandom(_NONCE_CHARS // 2).hex()
    header = {
        **header, "nonce": nonce, "size": header.get("size", len(payload)),
        "memory": memory_mb << 20,
        "fsize": isolation.FILE_SIZE_LIMIT_BYTES, "landlock": isolation.landlock_abi(),
        "quota": isolation.DISK_QUOTA_BYTES,
        "quota_files": isolation.DISK_QUOTA_FILES, "result_limit": RESULT_LIMIT_BYTES,
    }
    root = tempfile.mkdtemp(prefix="kanana-sandbox-")
    cgroups: list[str] = []
    try:
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        if unsafe:
            header.update(tmpfs=isolation.tmpfs_available(), mounted=False, pidns=False)
            argv = [sys.executable, "-I", "-B", SUPERVISOR_PATH]
            cwd, proc_env = work, {**_minimal_env(work), **env}
        else:
            cgroups = boundary.make_cgroups((memory_mb << 20) + boundary.MEMORY_HEADROOM)
            header.update(tmpfs=True, mounted=True, pidns=True,
                          nproc=0 if cgroups else boundary.PIDS_MAX)
            folder = os.path.dirname(SUPERVISOR_PATH)
            argv = boundary.command(
                [sys.executable, "-I", "-B", SUPERVISOR_PATH],
                binds={folder: folder, **(binds or {})},
                env={**_minimal_env(boundary.WORK), "PATH": "/usr/local/bin:/usr/bin:/bin", **env},
                quota_bytes=isolation.DISK_QUOTA_BYTES,
                cgroup_procs=[os.path.join(c, "cgroup.procs") for c in cgroups])
            cwd, proc_env = root, {"PATH": os.defpath}
        stderr_path = os.path.join(root, "stderr")
        try:
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=cwd,
                    env=proc_env,
                    start_new_session=True,
                )
        except OSError as exc:
            return [ExecutionResult("error", 0.0,
                                    f"cannot start the sandbox: {exc}"[:DETAIL_CHARS])]
        try:
            line = json.dumps(header).encode() + b"\n"
            return _supervise(proc, line + payload, nonce, timeouts, stderr_path,
                              kill_between=unsafe)
        finally:
            _kill_all(proc)
    finally:
        boundary.remove_cgroups(cgroups)
        _remove_tree(root)


def _minimal_env(work: str) -> dict[str, str]:
    """Only what a program needs: no inherited secrets (API keys, tokens), home and temp in work."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": work,
        "TMPDIR": work,
        "TMP": work,
        "TEMP": work,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # per-thread malloc arenas would eat the address-space limit
    }


@dataclass
class _Clock:
    """Where the supervisor is: which call runs, since when, until when, where its stderr begins."""

    index: int = 0
    started: float | None = None
    deadline: float = 0.0
    stderr_from: int = 0


def _supervise(
    proc: subprocess.Popen[bytes], payload: bytes, nonce: str, timeouts: list[float],
    stderr_path: str, kill_between: bool,
) -> list[ExecutionResult]:
    """Feed the supervisor, then read its 'started i' / 'done i …' lines against the clock.

    Returns one result per finished call; the last one may be a timeout or a dead supervisor.
    Between calls the program's processes are killed: by the supervisor itself inside its PID
    namespace, or here (`kill_between`) when there is none.
    """
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.flush()
    except BrokenPipeError:
        return [ExecutionResult("error", 0.0, _detail(
            f"the sandbox supervisor exited at start (code {proc.wait()})", _tail(stderr_path)))]
    results: list[ExecutionResult] = []
    clock = _Clock(deadline=time.monotonic() + STARTUP_TIMEOUT_S)
    fd = proc.stdout.fileno()
    buffer = bytearray()  # a call's value may make a line of hundreds of MiB: no quadratic +=
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = clock.deadline - time.monotonic()
            if remaining <= 0:
                return [*results, _expired(clock, timeouts, stderr_path)]
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:  # EOF: the supervisor died before reporting
                return [*results, _supervisor_died(proc, clock, stderr_path,
                                                   wrapped=not kill_between)]
            buffer += chunk
            if b"\n" not in chunk:
                continue
            *lines, rest = bytes(buffer).split(b"\n")
            buffer = bytearray(rest)
            for line in lines:
                if line.startswith(b"started "):
                    clock.started = time.monotonic()
                    clock.deadline = clock.started + timeouts[clock.index]
                    # the supervisor's own count: this line may be read after the call's output
                    clock.stderr_from = int(line.split(b" ")[2])
                elif line.startswith(b"done "):
                    results.append(_finished(line, nonce, clock, stderr_path))
                    if len(results) == len(timeouts):
                        return results
                    if kill_between:  # nothing of call i outlives it into call i + 1
                        _kill_descendants(proc)
                    clock = _Clock(len(results), None, time.monotonic() + STARTUP_TIMEOUT_S)
                    try:
                        proc.stdin.write(b"next\n")
                        proc.stdin.flush()
                    except BrokenPipeError:  # it died: the EOF that follows says how
                        pass


def _expired(clock: _Clock, timeouts: list[float], stderr_path: str) -> ExecutionResult:
    """The clock ran out: before the call started (a broken sandbox) or during it (a timeout)."""
    if clock.started is None:
        return ExecutionResult("error", 0.0, _detail(
            f"the sandbox did not start within {STARTUP_TIMEOUT_S:g} s", _tail(stderr_path)))
    reason = f"no result after {timeouts[clock.index]:g} s"
    return ExecutionResult("timeout", time.monotonic() - clock.started,
                           _detail(reason, _tail(stderr_path, clock.stderr_from)))


def _supervisor_died(proc: subprocess.Popen[bytes], clock: _Clock,
                     stderr_path: str, wrapped: bool = False) -> ExecutionResult:
    """Killed by a signal: the program's doing, a failure; any other exit: the sandbox's error.

    `wrapped`: the process is bwrap, which exits with 128 + the signal that killed its command.
    """
    seconds = time.monotonic() - clock.started if clock.started is not None else 0.0
    code = proc.wait()
    if wrapped and 128 < code < 128 + 65:
        code = 128 - code
    tail = _tail(stderr_path, clock.stderr_from)
    if code < 0:
        return ExecutionResult("failed", seconds,
                               _detail(f"the sandbox supervisor was killed ({_signal(-code)})",
                                       tail))
    return ExecutionResult("error", seconds,
                           _detail(f"the sandbox supervisor failed (exit code {code})", tail))


def _finished(line: bytes, nonce: str, clock: _Clock, stderr_path: str) -> ExecutionResult:
    """'done <i> <exit code> <stop 0/1/2> <base64 proof or ->' → verdict (and value for calls).

    The stop flag says why the supervisor ended the child: 1 its disk quota, 2 its time limit.
    """
    seconds = time.monotonic() - (clock.started or time.monotonic())
    _, _, code_text, quota, proof_text = line.split(b" ", 4)
    proof = b"" if proof_text == b"-" else base64.b64decode(proof_text)
    code = int(code_text)
    proven = proof[:_NONCE_CHARS] == nonce.encode()
    if proof.startswith(_SETUP):
        status = "error"
        reason = f"the sandbox could not confine the program: {proof[len(_SETUP):].decode()}"
    elif quota == b"1":
        status, reason = "failed", (f"{QUOTA_DETAIL} ({isolation.DISK_QUOTA_BYTES >> 20} MiB or "
                                    f"{isolation.DISK_QUOTA_FILES} files in its folder)")
    elif quota == b"2":
        status, reason = "timeout", "time limit reached"
    else:
        status, reason = _verdict(code, proven)
    value = None
    if status == "passed" and len(proof) > _NONCE_CHARS:
        try:
            value = json.loads(proof[_NONCE_CHARS + 1:])
        except ValueError:
            status, reason = "failed", "its result is not valid JSON"
    tail = "" if status == "passed" else _tail(stderr_path, clock.stderr_from)
    return ExecutionResult(status, seconds, _detail(reason, tail), value)


def _verdict(code: int, proven: bool) -> tuple[Status, str]:
    """Exit code plus nonce proof → status; exit 0 without the nonce means an early exit."""
    if code == 0 and proven:
        return "passed", ""
    if code == 0:
        return "failed", "exited with code 0 before its last statement"
    if code == -signal.SIGXCPU:
        return "timeout", "CPU time limit reached"
    if code < 0:
        return "failed", f"killed by {_signal(-code)}"
    return "failed", f"exit code {code}"


def _signal(number: int) -> str:
    """SIGKILL rather than 9, for the detail."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_descendants(proc: subprocess.Popen[bytes]) -> None:
    """Kill every descendant of the supervisor (the live subreaper keeps escapees in its tree)."""
    try:
        supervisor = psutil.Process(proc.pid)
        for _ in range(100):
            alive = [p for p in supervisor.children(recursive=True) if _running(p)]
            if not alive:
                break
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.002)  # let orphans of the killed reparent to the subreaper
    except psutil.NoSuchProcess:
        pass


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """Kill every descendant, then the supervisor's session, and reap the supervisor."""
    _kill_descendants(proc)
    # The supervisor is our un-reaped child, so its pid (= the group id) cannot be reused yet.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # BrokenPipeError flushing a pipe to a dead supervisor
                pass
    proc.wait()


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a killed zombie waits for its reaper, it needs no second kill)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tail(path: str, start: int = 0, limit: int = 4096) -> str:
    """The last `limit` bytes of stderr written since offset `start` (this call's own output)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(start, os.fstat(handle.fileno()).st_size - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _detail(reason: str, tail: str) -> str:
    """Reason first, then as much of the stderr tail (where the exception is) as fits."""
    if not tail:
        return reason[:DETAIL_CHARS]
    room = DETAIL_CHARS - len(reason) - 2
    if len(tail) > room:
        tail = "…" + tail[-(room - 1) :]
    return f"{reason}: {tail}" if reason else tail[-DETAIL_CHARS:]


def _remove_tree(path: str) -> None:
    """Delete the run folder even if the program made parts of it read-only."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        for folder, _, _ in os.walk(path):
            try:
                os.chmod(folder, 0o700)
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)
