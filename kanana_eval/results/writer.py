"""The one writer of run folders: `run`, `score` and `judge` all store results through it.

A run folder is written whole or not at all: every file goes into a hidden `.<run-id>.partial`
folder beside its final place, each record is checked against schema v1 on the way, and the
folder is renamed into place last. A reader never sees half a run.

A write killed on the way (kill -9, power loss) leaves its `.partial` folder behind. The writer
holds an exclusive lock on a file inside it until the rename, so the next write into the same
model folder can tell a dead writer's folder (lock free) from a live one (lock held) and removes
the dead one, saying so on stderr; nothing is left there forever.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from kanana_eval.core.errors import ResultsError
from kanana_eval.results.io import item_file, write_json, write_jsonl
from kanana_eval.results.records import Item, Manifest, Scores

LOCK_NAME = ".writing"  # inside a `.partial` folder, locked while its writer lives
# A `.partial` folder without its lock file is either a writer's first or last microseconds
# (between mkdir and lock, or unlock and rename) or a writer killed right there: stale after this.
UNLOCKED_GRACE_S = 60.0


def _is_stale(partial: Path) -> bool:
    try:
        fd = os.open(partial / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - partial.stat().st_mtime > UNLOCKED_GRACE_S
        except FileNotFoundError:  # renamed into place meanwhile
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its writer is alive
    finally:
        os.close(fd)
    return True


def remove_stale_partials(model_dir: Path) -> list[Path]:
    """Remove the `.partial` folders of killed writes in a model folder; return them."""
    removed = []
    for partial in sorted(Path(model_dir).glob(".*.partial")):
        if partial.is_dir() and _is_stale(partial):
            shutil.rmtree(partial, ignore_errors=True)
            # stderr, not logging: a library's logging config (dictConfig) can silence our loggers
            print(f"kanana-eval: removed {partial}, left by a write that was killed",
                  file=sys.stderr)
            removed.append(partial)
    return removed


def new_run_id(config_hash: str, when: float | None = None) -> str:
    """`<UTC time>-<config hash>`: sorts by time, and names what was asked for."""
    moment = datetime.fromtimestamp(when, timezone.utc) if when else datetime.now(timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{config_hash}"


def free_run_id(model_dir: Path, run_id: str) -> str:
    """`run_id`, or `run_id-2`, `-3`... when that folder is taken.

    Two runs of one config in the same second (a run and `judge RUN` started together, or two CI
    jobs) would otherwise get one id, and the second write would be refused.
    """
    candidate, n = run_id, 1
    while (model_dir / candidate).exists() or (model_dir / f".{candidate}.partial").exists():
        n += 1
        candidate = f"{run_id}-{n}"
    return candidate


class RunWriter:
    """Writes `<output_dir>/<model slug>/<run id>/` whole: items, scores.json, manifest.json."""

    def __init__(self, output_dir: Path, model_slug: str, run_id: str) -> None:
        self.final = Path(output_dir) / model_slug / run_id
        self.partial = self.final.parent / f".{run_id}.partial"

    def write(self, manifest: Manifest, scores: Scores, items: Mapping[str, Sequence[Item]], *,
              copy_items_from: Path | None = None) -> Path:
        """Store a run; `copy_items_from` first copies another run's items (re-judging)."""
        if manifest.run_id != self.final.name or scores.run_id != self.final.name:
            raise ValueError("manifest, scores and folder must share one run id")
        remove_stale_partials(self.final.parent)
        if self.partial.exists():
            raise ResultsError(f"another process is writing run {self.final} right now")
        try:
            self.partial.mkdir(parents=True)
        except OSError as exc:
            raise ResultsError(f"cannot create {self.partial}: {exc.strerror or exc}") from exc
        lock = os.open(self.partial / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if copy_items_from is not None:
                shutil.copytree(Path(copy_items_from) / "items", self.partial / "items")
            for benchmark, rows in items.items():
                write_jsonl(item_file(self.partial, benchmark), [i.to_json() for i in rows],
                            kind="item")
            write_json(self.partial / "scores.json", scores.to_json(), kind="scores")
            write_json(self.partial / "manifest.json", manifest.to_json(), kind="manifest")
            (self.partial / LOCK_NAME).unlink()
            if self.final.exists():  # the same run id: same inputs within one second
                shutil.rmtree(self.final)
            self.partial.rename(self.final)
        except BaseException:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise
        finally:
            os.close(lock)
        return self.final
