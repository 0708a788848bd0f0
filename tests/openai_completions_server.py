"""A real OpenAI-compatible `/v1/completions` server over a local transformers model folder.

It implements the part of the protocol that lm-eval's `LocalCompletionsAPI` uses, the way vLLM
answers it, so `--backend openai` can be tested end to end on 127.0.0.1 without a GPU:

* `GET /v1/models` lists the served name with its `max_model_len` (as vLLM does);
* `POST /v1/completions` takes `prompt` as text, token ids, or a batch of either;
  - `echo` + `logprobs=k`: the prompt's per-token logprobs (first entry `null`), each position's
    top-k alternatives plus the actual token in `top_logprobs` (lm-eval decides is_greedy from
    them), followed by the `max_tokens` generated tokens (lm-eval asks for 1 and drops it);
  - otherwise greedy decoding for `max_tokens`, stopping at EOS or at the first `stop` string,
    which is cut from the text (OpenAI semantics); only `temperature` 0 is served.

`FailingApp` answers every request with one status, for testing how clients fail.
Run it as a process (tests do, with `--port 0`; it prints `serving NAME at URL`):
`python tests/openai_completions_server.py MODEL_DIR --name my/model --port 8000`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from json_http_server import LocalServer
from transformers import AutoModelForCausalLM, AutoTokenizer

Reply = tuple[int, dict[str, Any]]


class RequestError(Exception):
    """A request the server refuses, answered as an OpenAI-style error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> Reply:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": None, "code": status}}


class CompletionsApp:
    """Completions from one causal LM, one request at a time (torch is not re-entrant here)."""

    def __init__(self, folder: Path, name: str, max_model_len: int | None = None) -> None:
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        # transformers renamed `past_key_values` to `cache` (argument and output) after 5.19
        params = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.max_model_len = int(max_model_len or self.model.config.max_position_embeddings)
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos) if isinstance(eos, list) else {eos}
        self._lock = threading.Lock()
        self._count = 0

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            return 200, self.models()
        if method == "POST" and path == "/v1/completions":
            try:
                payload = json.loads(body or b"{}")
                if not isinstance(payload, dict):
                    raise RequestError(400, "the request body must be a JSON object")
                return 200, self.completions(payload)
            except json.JSONDecodeError as exc:
                return _error(400, f"the request body is not JSON: {exc}")
            except RequestError as exc:
                return _error(exc.status, str(exc))
        return _error(404, f"no route {method} {path}")

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": self.name, "object": "model", "created": 0, "owned_by": "kanana-eval-tests",
            "root": self.name, "max_model_len": self.max_model_len,
        }]}

    # ------------------------------------------------------------------ completions
    def completions(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("model") != self.name:
            raise RequestError(404, f"The model `{p.get('model')}` does not exist.")
        if int(p.get("n", 1)) != 1:
            raise RequestError(400, "only n=1 is served")
        if float(p.get("temperature", 1.0) or 0.0) != 0.0:
            raise RequestError(400, "only greedy decoding (temperature 0) is served")
        max_tokens = 16 if p.get("max_tokens") is None else int(p["max_tokens"])
        if max_tokens < 0:
            raise RequestError(400, "max_tokens must be >= 0")
        echo = bool(p.get("echo", False))
        k = p.get("logprobs")
        k = None if k is None else int(k)
        stop = p.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [s for s in stop if s]
        prompts = self._prompts(p.get("prompt"))
        for ids, _ in prompts:
            if len(ids) + max_tokens > self.max_model_len:
                raise RequestError(
                    400, f"This model's maximum context length is {self.max_model_len} "
                         f"tokens. However, you requested {len(ids) + max_tokens} tokens "
                         f"({len(ids)} in the prompt, {max_tokens} for the completion).")
        with self._lock:
            self._count += 1
            choices = [self._complete(i, ids, text, max_tokens, stop, echo, k)
                       for i, (ids, text) in enumerate(prompts)]
            number = self._count
        completion_tokens = sum(c.pop("_generated") for c in choices)
        prompt_tokens = sum(len(ids) for ids, _ in prompts)
        return {"id": f"cmpl-{number}", "object": "text_completion", "created": int(time.time()),
                "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def _prompts(self, prompt: Any) -> list[tuple[list[int], str]]:
        """Text, token ids, or a batch of either, as (token ids, prompt text) pairs."""
        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt
                                       and isinstance(prompt[0], int)):
            batch: list[Any] = [prompt]
        elif isinstance(prompt, list) and prompt:
            batch = prompt
        else:
            raise RequestError(
                400, "prompt must be a string, token ids, or a non-empty list of them")
        out: list[tuple[list[int], str]] = []
        for one in batch:
            if isinstance(one, str):
                ids = self.tokenizer(one, add_special_tokens=True).input_ids
                text = one
            elif isinstance(one, list) and all(isinstance(t, int) and 0 <= t < len(self.tokenizer)
                                               for t in one):
                ids, text = list(one), self.tokenizer.decode(one)
            else:
                raise RequestError(
                    400, "every prompt must be a string or a list of valid token ids")
            if not ids:
                raise RequestError(400, "a prompt must have at least one token")
            out.append((ids, text))
        return out

    def _token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def _top(self, row: Any, k: int, actual: int) -> dict[str, float]:
        """Top-k alternatives of one position plus the actual token (vLLM returns both)."""
        values, ids = torch.topk(row, k)
        top: dict[str, float] = {}
        for t, v in [*zip(ids.tolist(), values.tolist(), strict=True),
                     (actual, float(row[actual]))]:
            key = self._token(t)
            top[key] = max(v, top.get(key, v))
        return top

    def _complete(self, index: int, ids: list[int], text: str, max_tokens: int,
                  stop: Sequence[str], echo: bool, k: int | None) -> dict[str, Any]:
        tokens: list[int] = []
        token_logprobs: list[float | None] = []
        top_logprobs: list[dict[str, float] | None] = []
        with torch.inference_mode():
            out = self.model(torch.tensor([ids]), use_cache=True)
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)
            if echo:
                tokens, token_logprobs, top_logprobs = list(ids), [None], [None]
                for pos in range(1, len(ids)):
                    token_logprobs.append(float(logp[pos - 1, ids[pos]]))
                    top_logprobs.append(self._top(logp[pos - 1], k, ids[pos]) if k else None)
            past, row = getattr(out, self.cache_arg), logp[-1]
            generated: list[int] = []
            finish, completion = "length", ""
            for step in range(max_tokens):
                tok = int(torch.argmax(row))
                if tok in self.eos_ids:
                    finish = "stop"
                    break
                generated.append(tok)
                tokens.append(tok)
                token_logprobs.append(float(row[tok]))
                top_logprobs.append(self._top(row, k, tok) if k else None)
                completion = self.tokenizer.decode(generated, skip_special_tokens=True)
                cuts = [completion.find(s) for s in stop if s in completion]
                if cuts:
                    completion, finish = completion[:min(cuts)], "stop"
                    break
                if step + 1 < max_tokens:
                    out = self.model(torch.tensor([[tok]]), use_cache=True,
                                     **{self.cache_arg: past})
                    past = getattr(out, self.cache_arg)
                    row = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        choice: dict[str, Any] = {"index": index, "text": (text if echo else "") + completion,
                                  "logprobs": None, "finish_reason": finish,
                                  "_generated": len(generated)}
        if k is not None:
            offsets, at = [], 0
            for t in tokens:
                offsets.append(at)
                at += len(self._token(t))
            choice["logprobs"] = {"tokens": [self._token(t) for t in tokens],
                                  "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                                  "text_offset": offsets}
        return choice


class FailingApp:
    """Answers every request with `status`, optionally except `GET /v1/models` (listing `name`)."""

    def __init__(self, status: int = 500, models_ok: bool = False,
                 name: str = "failing/model") -> None:
        self.status, self.models_ok, self.name = status, models_ok, name
        self.requests = 0
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests += 1
        if self.models_ok and method == "GET" and path.rstrip("/") == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.name, "object": "model"}]}
        return _error(self.status, "the test server fails on purpose")


class CompletionsServer(LocalServer):
    """`app` served over HTTP on 127.0.0.1 from a daemon thread; use as a context manager."""

    def __init__(self, app: CompletionsApp | FailingApp, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(app, host, port, name="openai-test-server")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--name", default=None, help="served model name (default: the folder name)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    app = CompletionsApp(args.model_dir, args.name or args.model_dir.name, args.max_model_len)
    server = CompletionsServer(app, port=args.port)
    server.serve_in_foreground(f"serving {app.name} at {server.base_url}")  # read by tests (port 0)


if __name__ == "__main__":
    main()
