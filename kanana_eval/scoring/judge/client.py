"""The LLM-judge HTTP layer of MT-Bench / KoMT-Bench: concurrent, retried, cached on disk.

FastChat's `gen_judgment.py` asks the judge one request at a time in a blocking loop and only
appends finished judgments to a JSONL file, so a crash, a Ctrl-C or a spent rate limit halfway
through 160+ paid GPT-4o calls means redoing (and re-paying) by hand. Here every reply is stored
in a SQLite cache the moment it arrives, keyed by (judge model, messages, temperature,
max_tokens, attempt); a rerun or resumed run answers cached keys without HTTP, so it never pays
twice, and identical requests in one batch are sent once.

Retries are the `openai` client's own (exponential backoff honouring `Retry-After`, on 408/409/
429/5xx, timeouts and connection errors). A request that still fails, or a non-retryable one
(401, 400), stops the batch: requests already in flight finish and are cached, queued ones are
skipped, and `JudgeError` says what failed, how much is done, and that rerunning resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

from kanana_eval.core.errors import KananaError

# USD per 1M tokens (input, output), OpenAI list prices for standard (non-batch) requests.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
}

LOCAL_DUMMY_KEY = "EMPTY"  # what vLLM and most local OpenAI-compatible servers accept
_SCHEMA = """CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)"""


class JudgeError(KananaError):
    """The judge API could not be used (no key, key rejected, requests failing after retries)."""


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach the judge.

    Defaults follow Kanana (gpt-4o-2024-08-06) and FastChat (temperature 0, 2048 tokens).
    """

    model: str = "gpt-4o-2024-08-06"
    # None: the openai client's default (OPENAI_BASE_URL or api.openai.com)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8  # max requests in flight
    max_retries: int = 6  # on 429 / 5xx / timeouts / connection errors
    timeout_s: float = 120.0
    temperature: float = 0.0  # FastChat: judge temperature 0
    max_tokens: int = 2048  # FastChat: max_tokens 2048 for OpenAI judges

    def describe(self) -> dict[str, Any]:
        """Everything for the manifest except secrets (the key's env var name, never its value)."""
        out = asdict(self)
        out["base_url"] = _redact_url(self.base_url)
        return out


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call; `attempt` 1 is the re-ask after an unparsable judgment (own cache key)."""

    messages: tuple[dict[str, str], ...]  # OpenAI chat messages (system + user)
    attempt: int = 0


@dataclass
class JudgeReply:
    """The judge's text, its token usage (as first paid for), and whether it was paid for now.

    `cached` is True for a reply read from the cache and for a repeat, within one batch, of a
    request sent once; so the usage of the non-cached replies is exactly what this call paid.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    key: str  # the cache key (sha256 hex)


def cache_key(model: str, request: JudgeRequest, temperature: float, max_tokens: int) -> str:
    """sha256 of canonical JSON [model, messages, temperature, max_tokens, attempt]."""
    blob = json.dumps([model, [dict(m) for m in request.messages], float(temperature),
                       int(max_tokens), int(request.attempt)],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def estimate_cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """List-price cost of the tokens, or None for a model without a known price."""
    price = PRICES_PER_MTOK.get(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def _redact_url(url: str | None) -> str | None:
    """A base URL without the password a user may have embedded in it."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _effective_base_url(config: JudgeConfig) -> str | None:
    return config.base_url or os.environ.get("OPENAI_BASE_URL") or None


def _api_key(config: JudgeConfig) -> str:
    """The key in `config.api_key_env`; a dummy for a custom base URL (local servers need none)."""
    key = os.environ.get(config.api_key_env, "").strip()
    if key:
        return key
    if _effective_base_url(config):
        return LOCAL_DUMMY_KEY
    raise JudgeError(f"the MT-Bench judge ({config.model}) needs an OpenAI API key: set "
                     f"{config.api_key_env}, or give a judge base URL for a local "
                     f"OpenAI-compatible server")


def preflight(config: JudgeConfig) -> None:
    """Fail before any model work if the judge cannot possibly be called (no network here)."""
    if config.concurrency < 1:
        raise JudgeError(f"judge concurrency must be >= 1, got {config.concurrency}")
    if config.max_retries < 0:
        raise JudgeError(f"judge max_retries must be >= 0, got {config.max_retries}")
    if config.timeout_s <= 0:
        raise JudgeError(f"judge timeout must be > 0 s, got {config.timeout_s}")
    _api_key(config)


class _Cache:
    """The SQLite reply store: one connection behind a lock, WAL, one commit per reply."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._db:
                self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JudgeError(f"the judge cache {path} cannot be opened: {exc}") from exc

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[str, int, int]]:
        """Cached (text, prompt_tokens, completion_tokens) of those keys that are stored."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, tuple[str, int, int]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, text, prompt_tokens, completion_tokens FROM judgments "
                    f"WHERE key IN ({marks})", chunk)
                found.update({k: (t, p, c) for k, t, p, c in rows})
        return found

    def put(self, key: str, model: str, request: JudgeRequest, reply: JudgeReply) -> None:
        row = (key, model, request.attempt, json.dumps(list(request.messages), ensure_ascii=False),
               reply.text, reply.prompt_tokens, reply.completion_tokens, time.time())
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _in_order(keys: Sequence[str], replies: dict[str, JudgeReply]) -> list[JudgeReply]:
    """One reply object per request; a repeat of a key answered in this batch counts as cached,
    so summing the usage of non-cached replies gives exactly what was paid."""
    seen: set[str] = set()
    out = []
    for k in keys:
        reply = replies[k]
        out.append(replace(reply, cached=reply.cached or k in seen))
        seen.add(k)
    return out


class _Skipped(Exception):
    """A queued request not sent because another one already failed for good."""


class JudgeClient:
    """Sends judge requests `config.concurrency` at a time, caching every reply in `cache_path`."""

    def __init__(self, config: JudgeConfig, cache_path: Path) -> None:
        import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

        preflight(config)
        self.config = config
        self.cache_path = Path(cache_path)
        self._cache = _Cache(self.cache_path)
        self._client = openai.OpenAI(base_url=config.base_url, api_key=_api_key(config),
                                     timeout=config.timeout_s, max_retries=config.max_retries)
        self._calls = 0
        self._calls_lock = threading.Lock()
        self._abort = threading.Event()

    def api_calls(self) -> int:
        """Completions received over HTTP by this client (cache hits and failed tries excluded)."""
        with self._calls_lock:
            return self._calls

    def close(self) -> None:
        self._client.close()
        self._cache.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key(self, request: JudgeRequest) -> str:
        return cache_key(self.config.model, request, self.config.temperature,
                         self.config.max_tokens)

    def complete_many(self, requests: Sequence[JudgeRequest], *, progress: bool = True,
                      desc: str = "judge") -> list[JudgeReply]:
        """Replies in request order: cached ones without HTTP, the rest sent concurrently.

        One batch at a time per client (the abort flag is per client).
        """

        keys = [self.key(r) for r in requests]
        replies: dict[str, JudgeReply] = {
            k: JudgeReply(text, p, c, cached=True, key=k)
            for k, (text, p, c) in self._cache.get_many(keys).items()}
        todo = {k: r for k, r in zip(keys, requests, strict=True) if k not in replies}
        counts = Counter(keys)
        uses = {k: counts[k] for k in todo}
        with tqdm(total=len(requests), desc=desc, unit="judgment", disable=not progress,
                  initial=len(requests) - sum(uses.values())) as bar:
            if todo:
                self._send(todo, replies, lambda k: bar.update(uses[k]), len(requests), keys)
        return _in_order(keys, replies)

    def _send(self, todo: dict[str, JudgeRequest], replies: dict[str, JudgeReply],
              advance: Callable[[str], None], total: int, keys: list[str]) -> None:
        """Run the uncached requests; on a lasting failure drain in-flight ones, then raise."""
        self._abort.clear()
        failure: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(todo)),
                                  thread_name_prefix="judge")
        try:
            futures: dict[Future[JudgeReply], str] = {
                pool.submit(self._one, k, r): k for k, r in todo.items()}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    replies[key] = future.result()
                    advance(key)
                except _Skipped:
                    continue
                except BaseException as exc:  # noqa: BLE001 - kept, raised once the rest is cached
                    failure = failure or exc
        finally:
            self._abort.set()  # on Ctrl-C too: queued requests are not sent
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            done = sum(1 for k in keys if k in replies)
            raise self._judge_error(failure, done, total) from failure

    def _one(self, key: str, request: JudgeRequest) -> JudgeReply:
        """One request (retried inside the openai client), cached the moment it arrives."""
        if self._abort.is_set():
            raise _Skipped
        try:
            response = self._client.chat.completions.create(
                model=self.config.model, messages=[dict(m) for m in request.messages],
                temperature=self.config.temperature, max_tokens=self.config.max_tokens, n=1)
            if not response.choices:
                raise JudgeError(f"the judge {self.config.model} answered without any choice")
        except BaseException:
            self._abort.set()
            raise
        usage = response.usage
        reply = JudgeReply(text=response.choices[0].message.content or "",
                           prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                           completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                           cached=False, key=key)
        self._cache.put(key, self.config.model, request, reply)
        with self._calls_lock:
            self._calls += 1
        return reply

    def _judge_error(self, exc: BaseException, done: int, total: int) -> BaseException:
        """One line: what failed, how much is safely cached, and how to resume."""
        import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

        if not isinstance(exc, openai.OpenAIError | JudgeError):
            return exc  # a bug, not an API failure: raise it as is (completed replies are cached)
        again = "run the same command again to resume"
        if isinstance(exc, openai.AuthenticationError):
            what = (f"the judge API rejected the key in ${self.config.api_key_env} "
                    f"(HTTP 401: {_api_message(exc)})")
            again = f"set a valid key in ${self.config.api_key_env} and {again}"
        elif isinstance(exc, openai.APIStatusError):
            what = f"HTTP {exc.status_code}: {_api_message(exc)}"
        elif isinstance(exc, openai.APITimeoutError):
            what = f"no reply within {self.config.timeout_s:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            what = f"cannot connect ({type(cause).__name__}: {_one_line(str(cause))})"
        else:
            what = _one_line(str(exc))
        where = _redact_url(_effective_base_url(self.config)) or "api.openai.com"
        retried = f" after {self.config.max_retries} retries" if _retryable(exc) else ""
        return JudgeError(f"judge {self.config.model} at {where} failed{retried}: {what}; "
                          f"{done}/{total} judgments done and cached in {self.cache_path}; {again}")


def _retryable(exc: BaseException) -> bool:
    """Whether the openai client retried this error (mirrors its `_should_retry` statuses)."""
    import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # timeouts are connection errors too


def _api_message(exc: Any) -> str:
    """The server's own error message (OpenAI puts it in body.error.message)."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return _one_line(str(message or getattr(exc, "message", "") or exc))


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."
