"""Checks made before any work: can the outputs be written, and is a stored run whole?

Both exist so a bad input costs nothing. An output location that cannot be written is refused
before a model is loaded (a run used to find out only after the whole model run), and a damaged
run folder is refused by every command that reads one (`report`, `compare`, `rerun`, `judge`,
`fastchat-export`) with one line naming the file, instead of being rendered or compared partly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from kanana_eval.core.errors import DataUnavailableError, ResultsError
from kanana_eval.results.io import item_file, load_run_records, read_text
from kanana_eval.results.records import Item, Manifest, Scores


def check_output_dir(path: Path, what: str = "output folder") -> None:
    """Refuse a folder that cannot be created or written, without creating anything.

    The nearest existing ancestor must be a folder this process may write into; a file (or a
    dangling link) anywhere on the way is refused, naming it.
    """
    _check_writable(Path(path), what, want_file=False)


def check_output_file(path: Path, what: str = "output file") -> None:
    """Refuse a file path that is a folder, or whose folder cannot be created or written."""
    _check_writable(Path(path), what, want_file=True)


def _check_writable(path: Path, what: str, *, want_file: bool) -> None:
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if existing == path and want_file:
        if path.is_dir():
            raise ResultsError(f"{what} {path} is a folder, not a file")
        if not os.access(path, os.W_OK):
            raise ResultsError(f"{what} {path} cannot be written: no write permission")
        existing = path.parent
    elif existing == path and not path.is_dir():
        raise ResultsError(f"{what} {path} is a file, not a folder")
    elif not existing.is_dir():
        raise ResultsError(f"{what} {path} cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ResultsError(f"{what} {path} cannot be written: no write permission on {existing}")


def check_input_dir(path: str | Path | None, what: str) -> None:
    """Refuse a given input folder (`--data-dir`) that is not there, before any model work."""
    if path is not None and not Path(path).is_dir():
        kind = "is not a folder" if Path(path).exists() else "does not exist"
        raise DataUnavailableError(f"{what} {path} {kind}")


def verify_run(run_dir: Path) -> tuple[Manifest, Scores]:
    """(manifest, scores) of a run folder that is whole; else one ResultsError naming the file.

    Whole means: manifest.json and scores.json are valid schema-v1 JSON of the same run and list
    the same benchmarks, and every benchmark's items file is there, readable, made of valid
    items of that benchmark, one per item the manifest says were scored (`n_scored`), and at
    least as many as the score's `n` counts. Items are checked with the typed record, which is
    ten times quicker than the JSON Schema on a 14k-item MMLU file.
    """
    run_dir = Path(run_dir)
    manifest, scores = load_run_records(run_dir)
    if manifest.run_id != scores.run_id:
        raise ResultsError(f"{run_dir / 'scores.json'} belongs to run {scores.run_id}, "
                           f"manifest.json to {manifest.run_id}: the folder mixes two runs")
    listed = [row.benchmark for row in scores.scores]
    extra = sorted(set(listed) ^ set(manifest.benchmarks))
    if extra:
        raise ResultsError(f"{run_dir / 'scores.json'} and manifest.json list different "
                           f"benchmarks ({', '.join(extra)} in only one)")
    for row in scores.scores:
        count = _count_items(item_file(run_dir, row.benchmark), row.benchmark)
        expected = manifest.benchmarks[row.benchmark].n_scored
        if "n_scored" in manifest.benchmarks[row.benchmark].model_fields_set and count != expected:
            raise ResultsError(f"{item_file(run_dir, row.benchmark)} holds {count} items, but "
                               f"manifest.json says {expected} were scored: items are missing "
                               "or added")
        if count < row.n:
            raise ResultsError(f"{item_file(run_dir, row.benchmark)} holds {count} items, fewer "
                               f"than the n={row.n} of scores.json")
    return manifest, scores


def _count_items(path: Path, benchmark: str) -> int:
    """How many valid items of `benchmark` the file holds; the first bad line is an error."""
    if not path.is_file():
        raise ResultsError(f"{path} is missing: the run folder is incomplete")
    seen: set[tuple[str, int | None]] = set()
    for number, line in enumerate(read_text(path, "items file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = Item.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{number} is not valid JSON (truncated or damaged?): "
                               f"{exc.msg}") from exc
        except ValidationError as exc:
            error = exc.errors()[0]
            where = "/".join(str(p) for p in error.get("loc", ())) or "(root)"
            raise ResultsError(f"{path}:{number} is not a valid item: {where}: "
                               f"{error.get('msg')}") from exc
        if item.benchmark != benchmark:
            raise ResultsError(f"{path}:{number} is an item of {item.benchmark}, not {benchmark}")
        if item.key in seen:
            raise ResultsError(f"{path}:{number} repeats item {item.item_id}"
                               + (f" turn {item.turn}" if item.turn else ""))
        seen.add(item.key)
    return len(seen)
