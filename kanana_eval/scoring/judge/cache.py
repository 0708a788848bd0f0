"""The judgment store every run and every process shares: SQLite replies plus per-prompt claims.

Why a store: a paid judge reply is kept the moment it arrives, so a crash, Ctrl-C or rate limit
never makes anyone pay for it again. Why claims: two `judge` processes on one cache would
otherwise both miss the same prompt and both pay for it. Before asking, a process claims the
prompt's key in one `BEGIN IMMEDIATE` transaction; another process finding a live claim waits
for the reply instead of asking. A claim dies with its owner (same host: the pid is gone) or
when it expires (a worst-case request time), so a killed process never blocks others for good.

Keys: table `replies` is keyed by the server, the judge prompt (name and version), the judge
model, messages, sampling and attempt (`client.cache_key`). Caches written before the server
was part of the key hold table `judgments`, keyed without it; those rows are never read as such
(another server under the same model name would be answered from them) but are adopted, once,
into `replies` when a stored run's manifest vouches that they came from this very server
(`adopt`). Any SQLite failure (a damaged page, a file that is not a database) is one line.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from kanana_eval.core.errors import KananaError

_REPLIES = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    prompt TEXT NOT NULL,
    model TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL,
    adopted_from TEXT
)"""
_CLAIMS = """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
)"""
LEGACY_TABLE = "judgments"  # the store before the server and prompt joined the key


class CacheError(KananaError):
    """The judgment cache cannot be read or written (damaged, not a database, locked too long)."""


class ClaimState(Enum):
    """What `claim` found: a stored reply, the right to ask, or another process asking."""

    REPLY = "reply"
    CLAIMED = "claimed"
    BUSY = "busy"


@dataclass(frozen=True)
class StoredReply:
    """A reply as stored: the judge's text and the usage it was first paid with."""

    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class RowMeta:
    """What a reply row records besides the reply: where and how it was asked."""

    server: str
    prompt: str
    model: str
    attempt: int
    messages: Sequence[dict[str, str]]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class JudgmentCache:
    """One connection behind a lock (the client's worker threads share it), autocommit mode."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False,
                                       isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc
        self._guarded(self._open)

    # ------------------------------------------------------------------ plumbing
    def _error(self, exc: BaseException) -> CacheError:
        text = " ".join(str(exc).split())
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return CacheError(f"the judge cache {self.path} stayed locked by another process for "
                              f"60 s ({text}); try again when it is done")
        return CacheError(f"the judge cache {self.path} is damaged or unreadable ({text}); move "
                          f"it aside and run again (its judgments will be asked again)")

    def _guarded(self, action, *args):  # noqa: ANN001, ANN202 - any cache operation
        """Run `action` under the lock; every SQLite failure becomes one `CacheError` line."""
        with self._lock:
            if self._closed:
                raise CacheError(f"the judge cache {self.path} is closed")
            try:
                return action(*args)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise self._error(exc) from exc

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(str(p) for p in problems[:3]))
        self._db.execute(_REPLIES)
        self._db.execute(_CLAIMS)

    # ------------------------------------------------------------------ replies
    def get_many(self, keys: Iterable[str]) -> dict[str, StoredReply]:
        """The stored replies of those keys that have one."""
        wanted = list(dict.fromkeys(keys))

        def read() -> dict[str, StoredReply]:
            found = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = self._db.execute(
                    f"SELECT key, text, prompt_tokens, completion_tokens FROM replies "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                found.update({k: StoredReply(t, p, c) for k, t, p, c in rows})
            return found

        return self._guarded(read)

    def claim(self, key: str, *, ttl_s: float, force: bool = False) -> tuple[ClaimState,
                                                                             StoredReply | None]:
        """Claim `key` to ask it, unless a reply is stored (and not `force`) or a live claim of
        another owner exists; one IMMEDIATE transaction, so two processes never both claim."""

        def attempt() -> tuple[ClaimState, StoredReply | None]:
            self._db.execute("BEGIN IMMEDIATE")
            if not force:
                row = self._db.execute("SELECT text, prompt_tokens, completion_tokens FROM "
                                       "replies WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self._db.execute("COMMIT")
                    return ClaimState.REPLY, StoredReply(*row)
            held = self._db.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                    (key,)).fetchone()
            if held is not None and held[0] != self.owner and self._live(*held[1:]):
                self._db.execute("COMMIT")
                return ClaimState.BUSY, None
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                             (key, self.owner, self._host, os.getpid(), time.time() + ttl_s))
            self._db.execute("COMMIT")
            return ClaimState.CLAIMED, None

        return self._guarded(attempt)

    def _live(self, host: str, pid: int, expires: float) -> bool:
        if expires < time.time():
            return False
        return host != self._host or _pid_alive(int(pid))

    def put(self, key: str, meta: RowMeta, reply: StoredReply) -> None:
        """Store a reply and drop this owner's claim on it, in one transaction."""
        row = (key, meta.server, meta.prompt, meta.model, meta.attempt,
               json.dumps(list(meta.messages), ensure_ascii=False), reply.text,
               reply.prompt_tokens, reply.completion_tokens, time.time(), None)

        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO replies VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))
            self._db.execute("COMMIT")

        self._guarded(write)

    def release(self, key: str) -> None:
        """Give up a claim (the request failed): another process may ask it now."""
        self._guarded(lambda: self._db.execute(
            "DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner)))

    # ------------------------------------------------------------------ legacy rows
    def adopt(self, pairs: Sequence[tuple[str, str, RowMeta]]) -> int:
        """Copy legacy rows (old key) to `replies` under their new key; returns rows adopted.

        The caller vouches that each legacy key was asked at `meta.server` (a manifest says so);
        a new key that already has a reply is left alone.
        """

        def copy() -> int:
            has_legacy = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (LEGACY_TABLE,)).fetchone()
            if not has_legacy or not pairs:
                return 0
            adopted = 0
            self._db.execute("BEGIN IMMEDIATE")
            for new_key, old_key, meta in pairs:
                old = self._db.execute(
                    f"SELECT text, prompt_tokens, completion_tokens, created FROM {LEGACY_TABLE} "
                    f"WHERE key = ?", (old_key,)).fetchone()
                if old is None:
                    continue
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new_key, meta.server, meta.prompt, meta.model, meta.attempt,
                     json.dumps(list(meta.messages), ensure_ascii=False), old[0], old[1], old[2],
                     old[3], old_key))
                adopted += cursor.rowcount
            self._db.execute("COMMIT")
            return adopted

        return self._guarded(copy)

    def close(self, wait_s: float = 2.0) -> None:
        """Drop this owner's claims and close; after Ctrl-C a worker may still hold the lock,
        so wait at most `wait_s` (an unreleased claim dies with the process anyway)."""
        if not self._lock.acquire(timeout=wait_s):
            return
        try:
            if self._closed:
                return
            try:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
            except sqlite3.Error:
                pass
            self._db.close()
            self._closed = True
        finally:
            self._lock.release()
