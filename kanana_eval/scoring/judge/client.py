"""The LLM-judge HTTP layer of MT-Bench / KoMT-Bench: concurrent, retried, cached, interruptible.

FastChat's `gen_judgment.py` asks the judge one request at a time in a blocking loop and only
appends finished judgments to a JSONL file, so a crash, a Ctrl-C or a spent rate limit halfway
through 160+ paid GPT-4o calls means redoing (and re-paying) by hand. Here every reply is stored
in the shared judgment cache (`cache.py`) the moment it arrives, keyed by (server, judge prompt,
judge model, messages, temperature, max_tokens, attempt); a rerun, a resumed run or another
process answers stored keys without HTTP, so nobody pays twice, and identical requests in one
batch are sent once. Another process asking the same prompt at the same time is waited for
(a claim per prompt), not raced.

Retries: the `openai` client's own for 408/409/429/5xx, timeouts and connection errors
(exponential backoff honouring `Retry-After`); ours for a 200 whose body is not a chat completion
(bad JSON, plain text from a proxy), which the client would otherwise hand back as a string or a
traceback. A request that still fails, or a non-retryable one (401, 400), stops the batch:
requests already in flight finish and are cached, queued ones are skipped, and `JudgeError` says
what failed, how much is done, and that rerunning resumes. Ctrl-C does not wait: the workers are
daemon threads, so in-flight requests are abandoned and the process ends in well under a second;
what was answered before is in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

from kanana_eval.core.errors import KananaError
from kanana_eval.scoring.judge.cache import ClaimState, JudgmentCache, RowMeta, StoredReply

# USD per 1M tokens (input, output), OpenAI list prices for standard (non-batch) requests.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
}

LOCAL_DUMMY_KEY = "EMPTY"  # what vLLM and most local OpenAI-compatible servers accept
DEFAULT_SERVER = "https://api.openai.com/v1"  # the openai client's default base URL
KEY_VERSION = 2  # 1: no server or prompt in the key (the legacy table); bump on a format change
CLAIM_POLL_S = 0.2  # a worker finding only prompts other processes ask waits this long


class JudgeError(KananaError):
    """The judge API could not be used (no key, key rejected, requests failing after retries)."""


class MalformedReply(JudgeError):
    """An HTTP 200 whose body is not a chat completion (retried like a 5xx)."""


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
    max_retries: int = 6  # on 429 / 5xx / timeouts / connection errors / malformed 200s
    timeout_s: float = 120.0
    temperature: float = 0.0  # FastChat: judge temperature 0
    max_tokens: int = 2048  # FastChat: max_tokens 2048 for OpenAI judges

    def describe(self) -> dict[str, Any]:
        """Everything for the manifest except secrets (the key's env var name, never its value)."""
        out = asdict(self)
        out["base_url"] = _redact_url(self.base_url)
        out["server"] = server_of(self)
        return out


@dataclass(frozen=True)
class JudgeRequest:
    """One judge call; `attempt` 1 is the re-ask after an unparsable judgment (own cache key).

    `prompt`: the judge prompt's name, which carries its version (FastChat's `single-v1`).
    """

    messages: tuple[dict[str, str], ...]  # OpenAI chat messages (system + user)
    attempt: int = 0
    prompt: str = ""


@dataclass
class JudgeReply:
    """The judge's text, its token usage (as first paid for), and whether it was paid for now.

    `cached` is True for a reply read from the cache, answered by another process, and for a
    repeat, within one batch, of a request sent once; so the usage of the non-cached replies is
    exactly what this call paid.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    key: str  # the cache key (sha256 hex)


def server_of(config: JudgeConfig) -> str:
    """The judge server as it enters the cache key: the effective base URL, normalised, with
    any password redacted (so a key names the server, never a secret)."""
    url = config.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_SERVER
    parts = urlsplit(url.strip())
    normal = urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower(),
                                       path=parts.path.rstrip("/")))
    return _redact_url(normal) or normal


def _blob(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True, ensure_ascii=False,
                                     separators=(",", ":")).encode("utf-8")).hexdigest()


def cache_key(model: str, request: JudgeRequest, temperature: float, max_tokens: int, *,
              server: str) -> str:
    """sha256 of [version, server, judge prompt, model, messages, temperature, max_tokens,
    attempt]: the same prompt on another server, or under another prompt version, is asked."""
    return _blob(KEY_VERSION, server, request.prompt, model, [dict(m) for m in request.messages],
                 float(temperature), int(max_tokens), int(request.attempt))


def legacy_cache_key(model: str, request: JudgeRequest, temperature: float,
                     max_tokens: int) -> str:
    """The key before version 2: sha256 of [model, messages, temperature, max_tokens, attempt]."""
    return _blob(model, [dict(m) for m in request.messages], float(temperature), int(max_tokens),
                 int(request.attempt))


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
    raise JudgeError(f"the judge ({config.model}) needs an OpenAI API key: set "
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


def parse_completion(body: str) -> StoredReply:
    """The judgment text and usage of a chat-completion body; `MalformedReply` for anything else
    (a proxy's text page, truncated JSON, an error object sent with status 200)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedReply(f"not JSON: {_one_line(body, 80)!r}") from None
    if not isinstance(payload, dict):
        raise MalformedReply(f"a JSON {type(payload).__name__}, not a chat completion")
    if isinstance(payload.get("error"), dict):
        raise MalformedReply(f"an error object: {_one_line(str(payload['error']), 120)}")
    choices = payload.get("choices")
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(
        choices[0], dict) else None
    if not isinstance(message, dict):
        raise MalformedReply("no choices[0].message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"message content is a {type(content).__name__}, not text")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}

    def tokens(name: str) -> int:
        value = usage.get(name)
        return int(value) if isinstance(value, int | float) and value >= 0 else 0

    return StoredReply(content or "", tokens("prompt_tokens"), tokens("completion_tokens"))


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
    """A queued request not sent because another one already failed for good (or Ctrl-C)."""


class _Busy(Exception):
    """Another process holds the claim on this prompt: ask it later, or read its reply."""


_DONE = object()  # a worker's last message: it takes no more requests


class JudgeClient:
    """Sends judge requests `config.concurrency` at a time, caching every reply in `cache_path`."""

    def __init__(self, config: JudgeConfig, cache_path: Path) -> None:
        import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

        preflight(config)
        self.config = config
        self.server = server_of(config)
        self.cache_path = Path(cache_path)
        self._cache = JudgmentCache(self.cache_path)
        self._client = openai.OpenAI(base_url=config.base_url, api_key=_api_key(config),
                                     timeout=config.timeout_s, max_retries=config.max_retries)
        self._calls = 0
        self._calls_lock = threading.Lock()
        self._abort = threading.Event()
        self._busy = 0  # worker threads still running (after Ctrl-C: abandoned ones)
        # A claim outlives the longest a request can take: every try times out, plus backoff.
        self._claim_ttl_s = (config.max_retries + 1) * (config.timeout_s + 60.0)

    def api_calls(self) -> int:
        """Completions received over HTTP by this client (cache hits and failed tries excluded)."""
        with self._calls_lock:
            return self._calls

    def close(self) -> None:
        """Close the cache; the HTTP client only when no abandoned worker may still use it."""
        self._abort.set()
        self._cache.close()
        if self._busy == 0:
            self._client.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key(self, request: JudgeRequest) -> str:
        return cache_key(self.config.model, request, self.config.temperature,
                         self.config.max_tokens, server=self.server)

    def legacy_key(self, request: JudgeRequest) -> str:
        return legacy_cache_key(self.config.model, request, self.config.temperature,
                                self.config.max_tokens)

    def adopt_legacy(self, requests: Sequence[JudgeRequest]) -> int:
        """Adopt the legacy rows of these requests into the current cache (the caller checked
        that a manifest vouches for this server and prompt version); returns rows adopted."""
        pairs = [(self.key(r), self.legacy_key(r), self._meta(r)) for r in requests]
        return self._cache.adopt(pairs)

    def stored(self, requests: Sequence[JudgeRequest]) -> list[StoredReply | None]:
        """The stored reply of each request, None where there is none (no HTTP)."""
        found = self._cache.get_many(self.key(r) for r in requests)
        return [found.get(self.key(r)) for r in requests]

    def _meta(self, request: JudgeRequest) -> RowMeta:
        return RowMeta(self.server, request.prompt, self.config.model, request.attempt,
                       request.messages)

    def complete_many(self, requests: Sequence[JudgeRequest], *, progress: bool = True,
                      desc: str = "judge", force: Collection[int] = ()) -> list[JudgeReply]:
        """Replies in request order: cached ones without HTTP, the rest sent concurrently.

        `force`: indices of requests asked again although a reply is stored (`--rejudge`); the
        new reply replaces the stored one. One batch at a time per client.
        """
        keys = [self.key(r) for r in requests]
        forced = {keys[i] for i in force}
        replies: dict[str, JudgeReply] = {
            k: JudgeReply(s.text, s.prompt_tokens, s.completion_tokens, cached=True, key=k)
            for k, s in self._cache.get_many(keys).items() if k not in forced}
        todo = {k: r for k, r in zip(keys, requests, strict=True) if k not in replies}
        counts = Counter(keys)
        uses = {k: counts[k] for k in todo}
        with tqdm(total=len(requests), desc=desc, unit="judgment", disable=not progress,
                  initial=len(requests) - sum(uses.values())) as bar:
            if todo:
                self._send(todo, forced, replies, lambda k: bar.update(uses[k]), keys)
        return _in_order(keys, replies)

    def _send(self, todo: dict[str, JudgeRequest], forced: set[str],
              replies: dict[str, JudgeReply], advance: Callable[[str], None],
              keys: list[str]) -> None:
        """Run the uncached requests on daemon workers; on a lasting failure let the in-flight
        ones finish, then raise; on Ctrl-C (any BaseException here) return at once."""
        self._abort.clear()
        jobs = deque(todo.items())
        jobs_lock = threading.Lock()
        results: queue.Queue[Any] = queue.Queue()
        forced = set(forced)

        def work() -> None:
            try:
                while not self._abort.is_set():
                    with jobs_lock:
                        job = jobs.popleft() if jobs else None
                    if job is None:
                        return
                    try:
                        results.put((job[0], self._one(job[0], job[1], job[0] in forced)))
                    except _Busy:  # another process asks it: take other prompts meanwhile
                        with jobs_lock:
                            jobs.append(job)
                            forced.discard(job[0])  # its reply will be the fresh one
                        self._abort.wait(CLAIM_POLL_S)
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        results.put((job[0], exc))
            finally:
                with self._calls_lock:
                    self._busy -= 1
                results.put(_DONE)

        workers = min(self.config.concurrency, len(todo))
        with self._calls_lock:
            self._busy += workers
        for n in range(workers):
            threading.Thread(target=work, name=f"judge-{n}", daemon=True).start()
        failure: BaseException | None = None
        try:
            running = workers
            while running:
                try:
                    message = results.get(timeout=0.5)  # a timeout: Ctrl-C is seen at once
                except queue.Empty:
                    continue
                if message is _DONE:
                    running -= 1
                    continue
                key, outcome = message
                if isinstance(outcome, JudgeReply):
                    replies[key] = outcome
                    advance(key)
                elif not isinstance(outcome, _Skipped):
                    failure = failure or outcome
                    self._abort.set()
        except BaseException:
            self._abort.set()  # Ctrl-C: queued requests are not sent, in-flight ones abandoned
            raise
        if failure is not None:
            done = sum(1 for k in keys if k in replies)
            raise self._judge_error(failure, done, len(keys)) from failure

    def _one(self, key: str, request: JudgeRequest, force: bool) -> JudgeReply:
        """One request: claimed across processes, asked (retried), cached the moment it arrives.

        A reply another process stored meanwhile is returned as cached, unpaid; `_Busy` while
        another process holds the claim.
        """
        if self._abort.is_set():
            raise _Skipped
        state, stored = self._cache.claim(key, ttl_s=self._claim_ttl_s, force=force)
        if state is ClaimState.REPLY and stored is not None:
            return JudgeReply(stored.text, stored.prompt_tokens, stored.completion_tokens,
                              cached=True, key=key)
        if state is ClaimState.BUSY:
            raise _Busy
        try:
            answer = self._ask(request)
        except BaseException:
            self._abort.set()
            self._cache.release(key)
            raise
        self._cache.put(key, self._meta(request), answer)
        with self._calls_lock:
            self._calls += 1
        return JudgeReply(answer.text, answer.prompt_tokens, answer.completion_tokens,
                          cached=False, key=key)

    def _ask(self, request: JudgeRequest) -> StoredReply:
        """The HTTP call; a malformed 200 is retried with backoff like a server error."""
        for attempt in range(self.config.max_retries + 1):
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.config.model, messages=[dict(m) for m in request.messages],
                temperature=self.config.temperature, max_tokens=self.config.max_tokens, n=1)
            try:
                return parse_completion(raw.http_response.text)
            except MalformedReply:
                if attempt == self.config.max_retries:
                    raise
            if self._abort.wait(min(8.0, 0.25 * 2 ** attempt)):
                raise _Skipped
        raise AssertionError("unreachable")

    def _judge_error(self, exc: BaseException, done: int, total: int) -> BaseException:
        """One line: what failed, how much is safely cached, and how to resume."""
        import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

        if not isinstance(exc, openai.OpenAIError | KananaError):
            return exc  # a bug, not an API failure: raise it as is (completed replies are cached)
        if isinstance(exc, KananaError) and not isinstance(exc, JudgeError):
            return exc  # the cache's own one line (damaged, locked)
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
        elif isinstance(exc, MalformedReply):
            what = f"malformed reply (HTTP 200, {exc})"
        else:
            what = _one_line(str(exc))
        where = _redact_url(_effective_base_url(self.config)) or "api.openai.com"
        retried = f" after {self.config.max_retries} retries" if _retryable(exc) else ""
        return JudgeError(f"judge {self.config.model} at {where} failed{retried}: {what}; "
                          f"{done}/{total} judgments done and cached in {self.cache_path}; {again}")


def _retryable(exc: BaseException) -> bool:
    """Whether this error was retried (mirrors the openai client's `_should_retry` statuses)."""
    import openai  # noqa: PLC0415 - heavy: the OpenAI client, only when a judge is asked

    if isinstance(exc, MalformedReply):
        return True
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
