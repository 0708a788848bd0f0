"""The isolation boundary around each supervisor: bubblewrap namespaces and a pids/memory cgroup.

Stdlib only (like `isolation.py`), so the non-root self-test can run it with any Python 3.

Every supervisor (and so every program) starts inside `bwrap` (bubblewrap, a tool made for
unprivileged sandboxes) with:

* new user, PID, network, IPC, UTS and cgroup namespaces: no network at all (its loopback is its
  own and empty, so a judge or vLLM server on the host's 127.0.0.1 is unreachable), no harness
  process visible in its /proc, uid/gid 65534 inside and no capabilities, and no further user
  namespace (`--disable-userns`: a nested one would give it capabilities to mount with);
* an empty environment (`--clearenv`, then only PATH, HOME/TMPDIR=/tmp and thread counts);
* a root of its own holding read-only binds of only what a Python program needs: /usr and the
  library folders, this interpreter's prefix and venv, the sandbox's own folder and, for
  trusted functions (`run_calls`), the packages that hold them under /kanana-lib; nothing of
  the harness's working folders, home or secrets;
* a private /tmp, a tmpfs capped at the disk quota, as its working folder;
* `--die-with-parent` and `--new-session`: it dies with the harness and cannot reach its
  terminal.

Process count and memory bind as root through a cgroup per supervisor (v1 `pids` + `memory`,
or v2 `pids.max` + `memory.max`), which the harness creates and removes. Without a writable
cgroup a non-root harness falls back to RLIMIT_NPROC, which binds any uid but 0 (set inside the
new user namespace, it counts that namespace's processes only). Root without cgroups, or a
machine without bwrap or user namespaces, has no boundary: `missing()` names what is absent and
the run refuses code execution unless the user passed `--unsafe-exec`.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

SANDBOX_UID = 65534  # "nobody" inside the user namespace
WORK = "/tmp"  # the program's folder inside the boundary: a tmpfs capped at the disk quota
LIB = "/kanana-lib"  # where the packages of trusted functions are bound read-only
PIDS_MAX = 256  # processes and threads of one supervisor, program included
MEMORY_HEADROOM = 512 << 20  # the supervisor's own memory on top of the program's limit
PROBE_TIMEOUT_S = 30.0
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
_PREFIX = "kanana-sandbox-"


def bwrap_path() -> str | None:
    """The bubblewrap binary: $KANANA_BWRAP, then PATH."""
    return os.environ.get("KANANA_BWRAP") or shutil.which("bwrap")


def python_roots() -> list[str]:
    """The folders this interpreter needs: its installation, its venv and its executable's."""
    roots: list[str] = []
    for place in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable))):
        place = os.path.realpath(place)
        if place and place not in roots and not any(place.startswith(r + os.sep) for r in roots):
            roots.append(place)
    return roots


def command(argv: list[str], *, binds: dict[str, str], env: dict[str, str], quota_bytes: int,
            cgroup_procs: list[str]) -> list[str]:
    """The argv that runs `argv` inside the boundary (and first in the cgroups, if any).

    `binds` maps host paths to paths inside, bound read-only on top of the system and Python.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        raise OSError("bubblewrap (bwrap) is not installed")
    args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--clearenv",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
            "--hostname", "sandbox",
            # first, so that binds beneath /tmp (a checkout in /tmp, a test's folder) stay
            "--size", str(quota_bytes), "--tmpfs", WORK]
    for path in _SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    for root in python_roots():
        args += ["--ro-bind", root, root]
    if os.path.realpath(sys.executable) != sys.executable:  # a venv's bin/python symlink
        args += ["--ro-bind", os.path.dirname(sys.executable),
                 os.path.dirname(sys.executable)]
    for host, inside in binds.items():
        args += ["--ro-bind", host, inside]
    args += ["--proc", "/proc", "--dev", "/dev", "--chdir", WORK]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--", *argv]
    return in_cgroups(args, cgroup_procs)


def in_cgroups(argv: list[str], cgroup_procs: list[str]) -> list[str]:
    """`argv`, started by a shell that first joins the cgroups (so all it forks is in them)."""
    if not cgroup_procs:
        return argv
    joins = " ".join(shlex.quote(p) for p in cgroup_procs)
    script = f'for f in {joins}; do echo $$ > "$f" || exit 97; done; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *argv]


# --- cgroups -------------------------------------------------------------------------------------


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every cgroup mount."""
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if rest and rest[0] in ("cgroup", "cgroup2"):
                    found.append((fields[4], rest[0], rest[-1]))
    except OSError:
        pass
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and '' for the v2 hierarchy."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


@functools.cache
def cgroup_parents() -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """('v1' or 'v2', ((parent folder, its limit files' prefix), ...)) where limits can be set.

    v1 needs a `pids` and a `memory` hierarchy; v2 one folder with both controllers delegated.
    """
    mounts, own = _mounts(), _own_paths()
    v1 = {}
    for point, kind, options in mounts:
        for name in ("pids", "memory"):
            if kind == "cgroup" and name in options.split(",") and name in own:
                v1[name] = os.path.join(point, own[name].lstrip("/"))
    if len(v1) == 2 and all(os.access(p, os.W_OK) for p in v1.values()):
        return "v1", (("pids", v1["pids"]), ("memory", v1["memory"]))
    for point, kind, _ in mounts:
        if kind == "cgroup2" and "" in own:
            parent = os.path.join(point, own[""].lstrip("/"))
            try:
                with open(os.path.join(parent, "cgroup.controllers"), encoding="ascii") as handle:
                    available = handle.read().split()
            except OSError:
                continue
            if {"pids", "memory"} <= set(available) and os.access(parent, os.W_OK):
                return "v2", (("v2", parent),)
    return None


def make_cgroups(memory_bytes: int, pids: int = PIDS_MAX) -> list[str]:
    """Fresh cgroup folders with the pids and memory limits set; [] when there are none."""
    found = cgroup_parents()
    if found is None:
        return []
    made: list[str] = []
    try:
        for kind, parent in found[1]:
            folder = _mkdir(parent)
            made.append(folder)
            limits = {"pids": {"pids.max": pids},
                      "memory": {"memory.limit_in_bytes": memory_bytes},
                      "v2": {"pids.max": pids, "memory.max": memory_bytes,
                             "memory.swap.max": 0}}[kind]
            for name, value in limits.items():
                path = os.path.join(folder, name)
                if name == "memory.swap.max" and not os.path.exists(path):
                    continue
                with open(path, "w", encoding="ascii") as handle:
                    handle.write(str(value))
    except OSError:
        remove_cgroups(made)
        raise
    return made


def _mkdir(parent: str) -> str:
    """A uniquely named cgroup folder (a plain mkdir: cgroupfs has no O_EXCL files to race)."""
    for _ in range(100):
        folder = os.path.join(parent, _PREFIX + os.urandom(6).hex())
        try:
            os.mkdir(folder)
            return folder
        except FileExistsError:
            continue
    raise OSError("cannot name a cgroup folder")


def remove_cgroups(folders: list[str]) -> None:
    """Kill whatever is left in the cgroups, then remove them, nested ones first (a harness
    killed mid-run leaves its sandboxes' cgroups inside an outer one)."""
    for folder in folders:
        try:
            nested = [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            nested = []
        remove_cgroups(nested)
        for _ in range(200):
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                _kill_members(folder)
                time.sleep(0.01)


def _kill_members(folder: str) -> None:
    try:
        with open(os.path.join(folder, "cgroup.procs"), encoding="ascii") as handle:
            pids = [int(p) for p in handle.read().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


# --- what this machine gives ---------------------------------------------------------------------


@functools.cache
def probe() -> tuple[str, ...]:
    """What is missing for the boundary on this machine (empty: everything is there).

    bwrap is run once with a trivial program, and a cgroup is made and removed, because their
    presence alone does not prove they work (a container may refuse user namespaces).
    """
    if not sys.platform.startswith("linux"):
        return ("Linux namespaces (not Linux)",)
    missing = []
    if bwrap_path() is None:
        missing.append("bubblewrap (apt-get install bubblewrap)")
    else:
        try:
            done = subprocess.run(
                command([sys.executable, "-I", "-S", "-c", "pass"], binds={}, env={},
                        quota_bytes=1 << 20, cgroup_procs=[]),
                capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, env={})
            if done.returncode != 0:
                tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
                missing.append(f"user namespaces for bubblewrap ({tail[0]})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            missing.append(f"a working bubblewrap ({exc})")
    if pids_mechanism() is None:
        missing.append("a writable pids+memory cgroup (needed as root: RLIMIT_NPROC does not "
                       "bind uid 0)")
    return tuple(missing)


def pids_mechanism() -> str | None:
    """How the process count is capped: a cgroup, RLIMIT_NPROC for a non-root uid, or not."""
    found = cgroup_parents()
    if found is not None:
        try:
            remove_cgroups(make_cgroups(256 << 20))
            return f"cgroup {found[0]} pids.max {PIDS_MAX}"
        except OSError:
            pass
    if os.getuid() != 0:
        return f"RLIMIT_NPROC {PIDS_MAX} (non-root uid, per user namespace)"
    return None


_SELFTEST = """
import os, resource, socket, sys, time
limit = int(sys.argv[2])
if limit:  # the non-root fallback, as the supervisor sets it in its child
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print("network: REACHED the host's loopback")
except OSError:
    print("network: none")
print("visible processes:", sum(p.isdigit() for p in os.listdir("/proc")))
print("secret in environment:", "KANANA_SELFTEST_SECRET" in os.environ)
made = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        made += 1
except OSError:
    pass
print("forks before refusal:", made)
"""


def selftest() -> int:
    """Run a probe program inside the boundary as this user; 0 if every limit held.

    Prints one line per finding (or per missing feature), so a non-root user sees either a
    working boundary or exactly what this machine lacks.
    """
    gaps = probe()
    for gap in gaps:
        print("missing:", gap)
    if gaps:
        return 1
    listener = socket.create_server(("127.0.0.1", 0))
    cgroups = make_cgroups(256 << 20)
    nproc = 0 if cgroups else PIDS_MAX
    argv = command([sys.executable, "-I", "-S", "-c", _SELFTEST, str(listener.getsockname()[1]),
                    str(nproc)], binds={}, env={}, quota_bytes=1 << 20,
                   cgroup_procs=[os.path.join(c, "cgroup.procs") for c in cgroups])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                              env={"KANANA_SELFTEST_SECRET": "x", "PATH": os.defpath})
    finally:
        remove_cgroups(cgroups)
        listener.close()
    print(done.stdout.strip())
    lines = done.stdout.splitlines()
    forks = [int(line.split()[-1]) for line in lines if line.startswith("forks")]
    ok = ("network: none" in lines and "secret in environment: False" in lines
          and forks and forks[0] <= PIDS_MAX)
    print(f"processes capped by: {pids_mechanism()}")
    print("boundary: complete" if ok else "boundary: FAILED " + done.stderr.strip()[-300:])
    return 0 if ok else 1


if __name__ == "__main__":  # the self-test: what is missing, one line each, exit 1 if anything
    sys.exit(selftest())
