"""vLLM's OpenAI-compatible server, started by `kanana-eval serve`, as the endpoint and the judge.

One server (SmolLM2-135M-Instruct, float32, enforce_eager) for the module, started and stopped
inside it with every process it spawned. Through it: `--backend openai` log-likelihoods
(completions with echo and logprobs) and generations, generations through chat completions
(`--openai-api chat`, the server's template) equal to those; MT-Bench end to end with the same
server as a stand-in judge (`--judge-max-tokens 256`), its unparsable verdicts counted as the
protocol says;
and a server that dies mid-run (a relay in front of it stops answering after a few requests):
one clear line, the answered requests stay cached, and the same command resumes.
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from vllm_support import require_vllm, smollm2_folder

from kanana_eval.engine.vllm_server import served_models
from kanana_eval.results.io import read_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a server start on a loaded machine

NAME = "smollm2-135m-instruct"
def _cli() -> list[str]:
    """The kanana-eval script of the interpreter running the tests."""
    return [str(Path(sys.executable).with_name("kanana-eval"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc), to prove none is left behind."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kanana-eval serve` on a free port; afterwards it and its engine processes are gone."""
    require_vllm()
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen([*_cli(), "serve", NAME, "--port", str(port), "--enforce-eager"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    spawned: set[int] = set()
    try:
        deadline = time.monotonic() + 900
        while served_models(url) != [NAME]:
            spawned |= _descendants(proc.pid)
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kanana-eval serve did not start: {log.read_text()[-3000:]}")
            time.sleep(2)
        spawned |= _descendants(proc.pid)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "serving 'smollm2-135m-instruct' at" in log.read_text()
    time.sleep(1)
    left = [pid for pid in spawned if Path(f"/proc/{pid}").exists()
            and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert spawned and not left, f"processes left behind: {left}"
    assert served_models(url) is None


def _run(args: list[str], **kw: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, env=env, **kw)


def _our_lines(stderr: str) -> list[str]:
    """What kanana-eval itself printed to stderr (libraries' progress bars aside)."""
    return [line for line in stderr.splitlines() if line.startswith("kanana-eval:")]


def _only_run(out: Path) -> Path:
    (model_dir,) = [p for p in out.iterdir() if p.is_dir()]
    (run_dir,) = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    return run_dir


def _openai_args(url: str, out: Path, mirror: Path, benchmarks: str, limit: int) -> list[str]:
    return ["run", "--model", NAME, "--backend", "openai", "--base-url", url,
            "--tokenizer", str(smollm2_folder()), "--benchmarks", benchmarks,
            "--limit", str(limit), "--max-gen-toks", "32", "--data-dir", str(mirror),
            "--output-dir", str(out)]


@pytest.fixture(scope="module")
def completions_run(server: str, offline_mirror: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MMLU, GSM8K base and instruct through completions (the default API), 2 items each."""
    out = tmp_path_factory.mktemp("completions")
    done = _run([*_openai_args(server, out, offline_mirror,
                               "mmlu@base,gsm8k@base,gsm8k@instruct", 2), "--no-cache"])
    assert done.returncode == 0, done.stderr[-3000:]
    return _only_run(out)


def test_openai_backend_scores_loglikelihoods_and_generates_through_the_served_model(
        completions_run):
    run_dir = completions_run
    assert "openai_api" not in json.loads((run_dir / "manifest.json").read_text())["config"]
    mmlu = read_jsonl(run_dir / "items" / "mmlu@base.jsonl", kind="item")
    assert len(mmlu) == 2
    for item in mmlu:  # four choices, each a real log-probability from echo + logprobs
        assert len(item["loglikelihoods"]) == 4
        assert all(-200 < value < 0 for value in item["loglikelihoods"])
    for bench in ("gsm8k@base", "gsm8k@instruct"):
        items = read_jsonl(run_dir / "items" / f"{bench}.jsonl", kind="item")
        # SmolLM2 (an instruct model) ends some base-format answers at once: "" is its answer
        assert len(items) == 2 and any(item["output"].strip() for item in items)
    instruct = read_jsonl(run_dir / "items" / "gsm8k@instruct.jsonl", kind="item")
    assert all("<|im_start|>assistant" in item["prompt"] for item in instruct)


def test_chat_completions_send_messages_and_the_server_template_gives_the_same_answers(
        server, offline_mirror, completions_run, tmp_path):
    """`--openai-api chat`: the conversation goes to chat completions as messages, vLLM applies
    SmolLM2's template; greedy answers equal those of completions with our rendering. A base
    protocol's benchmark is refused in one line before any work."""
    done = _run([*_openai_args(server, tmp_path / "chat", offline_mirror, "gsm8k@instruct", 2),
                 "--openai-api", "chat", "--no-cache"])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = _only_run(tmp_path / "chat")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["engine"]["openai_api"] == manifest["config"]["openai_api"] == "chat"
    assert manifest["engine"]["chat_template"]["source"] == "server"
    chat = {i["item_id"]: i for i in read_jsonl(run_dir / "items" / "gsm8k@instruct.jsonl",
                                                kind="item")}
    completions = {i["item_id"]: i for i in read_jsonl(
        completions_run / "items" / "gsm8k@instruct.jsonl", kind="item")}
    assert len(chat) == 2 and set(chat) == set(completions)
    for key, item in chat.items():
        messages = json.loads(item["prompt"])  # the conversation as sent, not a rendered text
        assert messages[-1]["role"] == "user" and "<|im_start|>" not in item["prompt"]
        print(f"\n{key}: chat {item['output']!r}\n{key}: completions "
              f"{completions[key]['output']!r}")
        assert item["output"] == completions[key]["output"]
    refused = _run([*_openai_args(server, tmp_path / "base", offline_mirror, "mmlu@base", 2),
                    "--openai-api", "chat"])
    assert refused.returncode == 2
    (line,) = _our_lines(refused.stderr)
    assert "--openai-api chat" in line and "mmlu@base" in line


def test_mt_bench_end_to_end_with_the_served_model_as_judge(server, offline_mirror, tmp_path):
    args = _openai_args(server, tmp_path / "out", offline_mirror, "mt_bench", 2)
    done = _run([*args, "--judge-base-url", server, "--judge-model", NAME,
                 "--judge-max-tokens", "256"])
    run_dir = _only_run(tmp_path / "out")  # written whatever the judge said
    items = read_jsonl(run_dir / "items" / "mt_bench@instruct.jsonl", kind="item")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (row,) = [r for r in json.loads((run_dir / "scores.json").read_text())["scores"]
              if r["benchmark"] == "mt_bench@instruct"]
    judge = manifest["benchmarks"]["mt_bench@instruct"]["judge"]
    unparsable = [i for i in items if i["verdict"] == "unparsable"]
    rated = [i for i in items if i["verdict"] != "unparsable"]
    print(f"\nSmolLM2 as MT-Bench judge: {len(rated)} rated, {len(unparsable)} unparsable "
          f"of {len(items)}; judge record {json.dumps(judge)[:400]}")
    assert len(items) == 4  # 2 questions x 2 turns
    assert judge["model"] == NAME and judge["max_tokens"] == 256
    # The protocol: an unparsable judgment is asked once more, then dropped and counted.
    attempts = [i["details"]["judge"]["attempts"] for i in items]
    assert all(i["details"]["judge"]["attempts"] == 2 for i in unparsable)
    assert judge["api_calls"] == len(items) + attempts.count(2)
    assert judge["n_unparsable"] == len(unparsable) == row["n_dropped"]
    if rated:
        assert done.returncode == 0, done.stderr[-2000:]
        assert all(1 <= i["score"] <= 10 for i in rated)
    else:  # every verdict unparsable: the run is written, then one line and status 2
        assert done.returncode == 2
        (line,) = _our_lines(done.stderr)
        assert "unparsable" in line


class _Relay(BaseHTTPRequestHandler):
    """Forwards to the vLLM server; after `budget` completions it stops answering.

    The budgeted completions are delivered first: requests beyond the budget are held until then,
    and only then dropped. Otherwise a dropped request's failure could end the run while a
    budgeted answer is still on its way, and "answered" would count answers nobody received.
    """

    upstream = ""
    budget: int | None = None
    started = 0  # completions let through (counted when they start: requests run concurrently)
    answered = 0  # completions delivered to the client
    lock = threading.Lock()
    spent = threading.Event()  # set once the budgeted completions are delivered

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self, body: bytes | None) -> None:
        cls = type(self)
        completion = self.path.endswith("/completions")
        with cls.lock:
            dead = completion and cls.budget is not None and cls.started >= cls.budget
            if completion and not dead:
                cls.started += 1
        if dead:  # the server "died": the connection drops without an answer
            cls.spent.wait(timeout=600)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        request = urllib.request.Request(cls.upstream + self.path.removeprefix("/v1"), data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as r:  # noqa: S310
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        if completion:
            with cls.lock:
                cls.answered += 1
                if cls.budget is not None and cls.answered >= cls.budget:
                    cls.spent.set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._forward(None)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))


def _relay(port: int, upstream: str, budget: int | None) -> ThreadingHTTPServer:
    handler = type("Relay", (_Relay,), {"upstream": upstream, "budget": budget, "started": 0,
                                        "answered": 0, "lock": threading.Lock(),
                                        "spent": threading.Event()})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def _run_through_relay(port: int, upstream: str, budget: int | None,
                       args: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """`kanana-eval` with `args` through a relay on `port`; what it did and the answers the relay
    delivered."""
    relay = _relay(port, upstream, budget)
    try:
        return _run(args), relay.RequestHandlerClass.answered
    finally:
        relay.shutdown()
        relay.server_close()


def test_a_server_dying_mid_run_stops_with_one_line_and_the_same_command_resumes(
        server, offline_mirror, tmp_path):
    """The request cache is the user's (keyed by the endpoint URL, a fresh port here), and the
    converted model stays where every other test finds it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    args = _openai_args(url, tmp_path / "out", offline_mirror, "gsm8k@base", 8)
    died, before = _run_through_relay(port, server, 3, args)
    assert died.returncode == 2, died.stderr[-2000:]
    (line,) = _our_lines(died.stderr)
    assert line.startswith("kanana-eval: error: the endpoint") and url in line
    assert before == 3
    resumed, after = _run_through_relay(port, server, None, args)  # the server is back
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert after == 8 - before  # the answered requests came from the request cache
    items = read_jsonl(_only_run(tmp_path / "out") / "items" / "gsm8k@base.jsonl", kind="item")
    assert len(items) == 8
