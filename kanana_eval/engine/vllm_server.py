"""vLLM's OpenAI-compatible server for one model: its command line, start, readiness, stop.

`kanana-eval serve MODEL` uses it, and so do the tests and the bench, so the server a user starts
is the one they measure. The server listens on 127.0.0.1 unless told otherwise: it has no
authentication, and an evaluation server has no reason to face the network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kanana_eval.core.errors import EngineError


@dataclass(frozen=True)
class ServeOptions:
    """What the server is started with; `extra` passes further vLLM options through unchanged."""

    model_path: str
    served_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str = "auto"
    max_model_len: int | None = None
    seed: int = 1234
    enforce_eager: bool = False
    tensor_parallel_size: int = 1
    extra: tuple[str, ...] = field(default_factory=tuple)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def server_command(opts: ServeOptions) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server ...`, with prefix caching on."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", opts.model_path, "--served-model-name", opts.served_name,
           "--host", opts.host, "--port", str(opts.port), "--dtype", opts.dtype,
           "--seed", str(opts.seed), "--enable-prefix-caching",
           "--tensor-parallel-size", str(opts.tensor_parallel_size)]
    if opts.max_model_len:
        cmd += ["--max-model-len", str(opts.max_model_len)]
    if opts.enforce_eager:
        cmd.append("--enforce-eager")
    return cmd + list(opts.extra)


def start_server(opts: ServeOptions, log_path: Path | None = None) -> subprocess.Popen:
    """Start the server in its own process group, so `stop_server` ends its engine processes."""
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the child keeps it open
    try:
        return subprocess.Popen(server_command(opts), stdout=out or None,
                                stderr=subprocess.STDOUT if out else None,
                                start_new_session=True, env={**os.environ})
    finally:
        if out:
            out.close()


def served_models(base_url: str, timeout: float = 2.0) -> list[str] | None:
    """The model ids `GET /models` lists, or None while the server does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:  # noqa: S310
            body = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return [str(m.get("id")) for m in body.get("data") or [] if isinstance(m, dict)]


def wait_ready(proc: subprocess.Popen, opts: ServeOptions, timeout: float = 900.0) -> None:
    """Until the server lists the model; one line if it exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(f"the vLLM server for '{opts.served_name}' exited with status "
                              f"{proc.returncode} before it was ready")
        models = served_models(opts.base_url)
        if models and opts.served_name in models:
            return
        time.sleep(1.0)
    raise EngineError(f"the vLLM server for '{opts.served_name}' was not ready within "
                      f"{timeout:.0f} s")


def stop_server(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """SIGINT (Ctrl-C) to the server, SIGKILL to its whole process group after `grace` seconds;
    the exit status. The server stops its engine processes itself on SIGINT (under a second
    here); vLLM 0.32's API server let SIGTERM pass without stopping, and an engine killed under
    it leaves it waiting on a dead engine, so both of those cost the whole grace period."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=grace)
    _signal_group(proc, signal.SIGKILL)  # engine processes left behind by the server
    return proc.returncode


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
