"""The one writer of run folders: `run`, `score` and `judge` all store results through it.

A run folder is written whole or not at all: every file goes into a hidden `.<run-id>.partial`
folder beside its final place, each record is checked against schema v1 on the way, and the
folder is renamed into place last. A reader never sees half a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from kanana_eval.results.io import item_file, write_json, write_jsonl
from kanana_eval.results.records import Item, Manifest, Scores


def new_run_id(config_hash: str, when: float | None = None) -> str:
    """`<UTC time>-<config hash>`: sorts by time, and names what was asked for."""
    moment = datetime.fromtimestamp(when, timezone.utc) if when else datetime.now(timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{config_hash}"


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
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        try:
            if copy_items_from is not None:
                shutil.copytree(Path(copy_items_from) / "items", self.partial / "items")
            for benchmark, rows in items.items():
                write_jsonl(item_file(self.partial, benchmark), [i.to_json() for i in rows],
                            kind="item")
            write_json(self.partial / "scores.json", scores.to_json(), kind="scores")
            write_json(self.partial / "manifest.json", manifest.to_json(), kind="manifest")
        except BaseException:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise
        if self.final.exists():  # the same run id: same inputs within one second
            shutil.rmtree(self.final)
        self.partial.rename(self.final)
        return self.final
