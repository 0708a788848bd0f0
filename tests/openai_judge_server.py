"""A real OpenAI-compatible `/v1/chat/completions` server that plays an LLM judge, for tests.

MT-Bench and KoMT-Bench are graded by `gpt-4o-2024-08-06` over the OpenAI API; tests cannot pay
for or reach it, so this server answers the same protocol on 127.0.0.1 with judgments that are
a pure function of the request, plus the faults a real API produces:

* `POST /v1/chat/completions`: an OpenAI `chat.completion` body (with `usage`) whose text ends in
  `Rating: [[r]]`, r = `expected_rating(messages)`; `rating_fn(messages) -> text` overrides it;
* `GET /v1/models` lists the judge model;
* faults: the first N requests fail with a status (429 carries `Retry-After`), requests holding a
  marker always fail, every request fails (`always_fail`), a wrong bearer key gets 401
  (`require_key`), chosen requests are delayed by `slow_s` (to exceed a client's timeout), and
  requests holding a marker get an unparsable judgment (no `[[x]]`), optionally only the first K;
* malformed 200s: requests holding `malformed_marker` (every request when it is None) get a
  status-200 body that is no chat completion, `malformed="json"` (cut-off JSON) or `"text"` (a
  proxy's plain-text page), optionally only the first K of them (`malformed_first`);
* `hold_until=N`: no request is answered until N are in flight at once (two clients surely
  overlap, whatever their start-up times);
* `POST /control` changes any of these knobs at run time (JSON object of constructor arguments,
  plus `"reset_stats": true`); `GET /control` returns the stats.

Tests use `JudgeServer(...)` as a context manager (port 0, `.url`, `.stats()`, `.configure()`);
as a process: `python tests/openai_judge_server.py --port 8000 [--fail-first 3 --fail-status 429]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from json_http_server import JsonHandler, LocalServer

Messages = Sequence[dict[str, Any]]
RatingFn = Callable[[Messages], str]
Reply = tuple[int, dict[str, Any], dict[str, str]]

JUDGE_MODEL = "gpt-4o-2024-08-06"
UNPARSABLE_TEXT = "The assistant's answer is hard to judge; I decline to give a score."

# Knobs that `configure` / `POST /control` may change (constructor arguments of the same name).
KNOBS = ("model", "rating_fn", "fail_first", "fail_status", "fail_marker", "always_fail",
         "retry_after_s", "require_key", "slow_s", "slow_first", "slow_marker",
         "unparsable_marker", "unparsable_first", "malformed", "malformed_marker",
         "malformed_first", "hold_until")
MALFORMED_BODIES = {"json": (b'{"id": "chatcmpl-cut", "choices": [{"index": 0, "mess',
                             "application/json"),
                    "text": (b"upstream connect error or disconnect/reset before headers",
                             "text/plain")}


class RawBody:
    """A reply body sent as is (not JSON-encoded): what a broken proxy answers with 200."""

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data, self.content_type = data, content_type


def user_text(messages: Messages) -> str:
    """The last user message's content: what a judgment is about (the system prompt is shared)."""
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def expected_rating(messages: Messages) -> int:
    """The rating (1-10) the default judge gives: a pure function of the user message."""
    digest = hashlib.sha256(user_text(messages).encode("utf-8")).hexdigest()
    return 1 + int(digest, 16) % 10


def default_judgment(messages: Messages) -> str:
    """A FastChat-style single-answer judgment ending in `Rating: [[r]]`."""
    return (f"The answer is relevant and mostly accurate, with room for more depth. "
            f"Rating: [[{expected_rating(messages)}]]")


def _all_text(messages: Messages) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    kinds = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None,
                      "code": kinds.get(status, str(status))}}
    return status, body, headers or {}


class JudgeApp:
    """Deterministic judgments with configurable faults; thread-safe (the server is threaded)."""

    def __init__(self, *, model: str = JUDGE_MODEL, rating_fn: RatingFn | None = None,
                 fail_first: int = 0, fail_status: int = 500, fail_marker: str | None = None,
                 always_fail: int | None = None, retry_after_s: float = 0.0,
                 require_key: str | None = None, slow_s: float = 0.0,
                 slow_first: int | None = None, slow_marker: str | None = None,
                 unparsable_marker: str | None = None,
                 unparsable_first: int | None = None, malformed: str | None = None,
                 malformed_marker: str | None = None,
                 malformed_first: int | None = None, hold_until: int | None = None) -> None:
        self.model = model
        self.rating_fn: RatingFn = default_judgment
        self.fail_first, self.fail_status, self.fail_marker = 0, 500, None
        self.always_fail: int | None = None
        self.retry_after_s = 0.0
        self.require_key: str | None = None
        self.slow_s, self.slow_first, self.slow_marker = 0.0, None, None
        self.unparsable_marker: str | None = None
        self.unparsable_first: int | None = None
        self.malformed: str | None = None
        self.malformed_marker: str | None = None
        self.malformed_first: int | None = None
        self.hold_until: int | None = None
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # wakes slow requests when the server shuts down
        self.configure(rating_fn=rating_fn, fail_first=fail_first, fail_status=fail_status,
                       fail_marker=fail_marker, always_fail=always_fail,
                       retry_after_s=retry_after_s, require_key=require_key, slow_s=slow_s,
                       slow_first=slow_first, slow_marker=slow_marker,
                       unparsable_marker=unparsable_marker, unparsable_first=unparsable_first,
                       malformed=malformed, malformed_marker=malformed_marker,
                       malformed_first=malformed_first, hold_until=hold_until)
        self.reset_stats()

    # ------------------------------------------------------------------ configuration
    def configure(self, **knobs: Any) -> None:
        """Change fault knobs (constructor names); `rating_fn=None` restores the default."""
        unknown = set(knobs) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown judge server knobs: {sorted(unknown)}")
        if knobs.get("malformed") not in (None, *MALFORMED_BODIES):
            raise ValueError(f"malformed must be one of {sorted(MALFORMED_BODIES)}")
        with self._lock:
            for name, value in knobs.items():
                if name == "rating_fn" and value is None:
                    value = default_judgment
                setattr(self, name, value)

    def reset_stats(self) -> None:
        """Forget every count (the fault counters too: `fail_first` counts from here again)."""
        with self._lock:
            self._seq = 0
            self._in_flight = 0
            self._max_in_flight = 0
            self._by_status: Counter[int] = Counter()
            self._by_user: Counter[str] = Counter()
            self._params: Counter[tuple[Any, ...]] = Counter()
            self._unparsable_seen = 0
            self._malformed_seen = 0
            self._released.clear()
            self._models_requests = 0

    def stats(self) -> dict[str, Any]:
        """Counts so far: requests per status, max concurrent, per user message, sampling params."""
        with self._lock:
            return {
                "requests": self._seq,
                "by_status": dict(self._by_status),
                "max_concurrent": self._max_in_flight,
                "in_flight": self._in_flight,
                "by_user_message": dict(self._by_user),
                "params": [{"model": m, "temperature": t, "max_tokens": k, "n": n, "count": c}
                           for (m, t, k, n), c in self._params.items()],
                "models_requests": self._models_requests,
                "malformed_sent": self._malformed_seen,
            }

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            with self._lock:
                self._models_requests += 1
            listing = [{"id": self.model, "object": "model", "created": 0,
                        "owned_by": "kanana-eval-tests"}]
            return 200, {"object": "list", "data": listing}, {}
        if path == "/control":
            return self._control(method, body)
        if method == "POST" and path == "/v1/chat/completions":
            try:
                payload = json.loads(body or b"{}")
            except json.JSONDecodeError as exc:
                return _error(400, f"the request body is not JSON: {exc}")
            if not isinstance(payload, dict):
                return _error(400, "the request body must be a JSON object")
            return self._chat(payload, headers.get("authorization", ""))
        return _error(404, f"no route {method} {path}")

    def _control(self, method: str, body: bytes) -> Reply:
        if method == "GET":
            return 200, self.stats(), {}
        try:
            knobs = json.loads(body or b"{}")
            if not isinstance(knobs, dict):
                raise ValueError("the control body must be a JSON object")
            reset = bool(knobs.pop("reset_stats", False))
            knobs.pop("rating_fn", None)  # a callable cannot travel over HTTP
            self.configure(**knobs)
        except (ValueError, json.JSONDecodeError) as exc:
            return _error(400, str(exc))
        if reset:
            self.reset_stats()
        return 200, self.stats(), {}

    # ------------------------------------------------------------------ chat completions
    def _chat(self, payload: dict[str, Any], authorization: str) -> Reply:
        messages = payload.get("messages")
        text = user_text(messages) if isinstance(messages, list) else ""
        with self._lock:
            self._seq += 1
            number = self._seq
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self.hold_until is not None and self._in_flight >= self.hold_until:
                self._released.set()
            self._by_user[text] += 1
        try:
            status, body, headers = self._answer(number, payload, authorization)
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            self._by_status[status] += 1
        return status, body, headers

    def _answer(self, number: int, p: dict[str, Any], authorization: str) -> Reply:
        messages = p.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and "role" in m for m in messages):
            return _error(400, "messages must be a non-empty list of {role, content} objects")
        with self._lock:
            self._params[(p.get("model"), p.get("temperature"), p.get("max_tokens"),
                          p.get("n"))] += 1
        everything = _all_text(messages)
        if self.hold_until is not None:  # wait (60 s at most) for that many requests at once
            self._released.wait(60)
        if self.slow_s > 0 and self._is_slow(number, everything):
            self.stopping.wait(self.slow_s)
        if self.require_key is not None and authorization != f"Bearer {self.require_key}":
            return _error(401, "Incorrect API key provided. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.")
        failure = self._failure(number, everything)
        if failure is not None:
            return _error(failure, f"the judge test server fails request {number} on purpose",
                          self._retry_headers())
        if p.get("model") != self.model:
            return _error(404, f"The model `{p.get('model')}` does not exist.")
        if int(p.get("n") or 1) != 1:
            return _error(400, "only n=1 is served")
        if self._is_malformed(everything):
            data, content_type = MALFORMED_BODIES[str(self.malformed)]
            return 200, RawBody(data, content_type), {}
        reply = self._judgment(messages, everything)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        completion_tokens = len(reply.split())
        return 200, {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "system_fingerprint": "fp_kanana_tests",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, {}

    def _is_malformed(self, everything: str) -> bool:
        if self.malformed is None:
            return False
        if self.malformed_marker is not None and self.malformed_marker not in everything:
            return False
        with self._lock:
            if self.malformed_first is not None and self._malformed_seen >= self.malformed_first:
                return False
            self._malformed_seen += 1
            return True

    def _is_slow(self, number: int, everything: str) -> bool:
        if self.slow_marker is not None and self.slow_marker not in everything:
            return False
        return self.slow_first is None or number <= self.slow_first

    def _failure(self, number: int, everything: str) -> int | None:
        if self.always_fail is not None:
            return int(self.always_fail)
        if number <= self.fail_first:
            return int(self.fail_status)
        if self.fail_marker is not None and self.fail_marker in everything:
            return int(self.fail_status)
        return None

    def _retry_headers(self) -> dict[str, str]:
        """`Retry-After` in seconds as OpenAI sends it, and in ms so tests can wait < 1 s."""
        seconds = max(0.0, float(self.retry_after_s))
        return {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(int(seconds * 1000))}

    def _judgment(self, messages: Messages, everything: str) -> str:
        if self.unparsable_marker is not None and self.unparsable_marker in everything:
            with self._lock:
                self._unparsable_seen += 1
                seen = self._unparsable_seen
            if self.unparsable_first is None or seen <= self.unparsable_first:
                return UNPARSABLE_TEXT
        return self.rating_fn(messages)


class JudgeHandler(JsonHandler):
    """JSON replies as every test server sends them, plus `RawBody` replies sent byte for byte."""

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = self.server.app.handle(  # type: ignore[attr-defined]
                method, self.path, headers, body)
        except Exception as exc:  # noqa: BLE001 - a server bug is still answered, as a 500
            status, payload, extra = _error(500, f"{type(exc).__name__}: {exc}")
        if isinstance(payload, RawBody):
            data, content_type = payload.data, payload.content_type
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class JudgeServer(LocalServer):
    """A `JudgeApp` served on 127.0.0.1 from a daemon thread; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **app_args: Any) -> None:
        super().__init__(JudgeApp(**app_args), host, port, name="judge-test-server")
        self.httpd.RequestHandlerClass = JudgeHandler

    @property
    def url(self) -> str:
        return self.base_url

    def stats(self) -> dict[str, Any]:
        return self.app.stats()

    def configure(self, **knobs: Any) -> None:
        self.app.configure(**knobs)

    def reset_stats(self) -> None:
        self.app.reset_stats()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=JUDGE_MODEL, help="the judge model name served")
    parser.add_argument("--fail-first", type=int, default=0, help="fail the first N requests")
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--fail-marker", default=None, help="always fail requests containing it")
    parser.add_argument("--always-fail", type=int, default=None,
                        help="answer every request with it")
    parser.add_argument("--retry-after-s", type=float, default=0.0)
    parser.add_argument("--require-key", default=None, help="401 unless `Bearer KEY` is sent")
    parser.add_argument("--slow-s", type=float, default=0.0)
    parser.add_argument("--slow-first", type=int, default=None)
    parser.add_argument("--slow-marker", default=None)
    parser.add_argument("--unparsable-marker", default=None)
    parser.add_argument("--unparsable-first", type=int, default=None)
    args = vars(parser.parse_args(argv))
    server = JudgeServer(port=args.pop("port"), **args)
    server.serve_in_foreground(f"serving judge {server.app.model} at {server.url}")


if __name__ == "__main__":
    main()
