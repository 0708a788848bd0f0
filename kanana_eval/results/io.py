"""Results are data: schema-checked JSON/JSONL, written atomically, read back by report/compare."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
from pydantic import ValidationError

from kanana_eval.config.registry import load_registry
from kanana_eval.core.errors import ResultsError
from kanana_eval.results.records import Item, Manifest, Scores

SCHEMA_VERSION = 1
RecordT = TypeVar("RecordT", Manifest, Scores)
_SCHEMAS = Path(__file__).with_name("schemas")


@cache
def schema_validator(kind: str) -> jsonschema.protocols.Validator:
    """The checked, cached validator of `schemas/<kind>.v1.schema.json`."""
    schema = json.loads((_SCHEMAS / f"{kind}.v{SCHEMA_VERSION}.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(kind: str, obj: Any) -> None:
    """Check one object against `schemas/<kind>.v1.schema.json` (manifest, scores, item)."""
    error = jsonschema.exceptions.best_match(schema_validator(kind).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ResultsError(f"{kind} record fails schema v{SCHEMA_VERSION} at {where}: "
                           f"{error.message}")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, kind: str | None = None) -> None:
    if kind:
        validate(kind, obj)
    _atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], kind: str | None = None) -> None:
    lines = []
    for row in rows:
        if kind:
            validate(kind, row)
        lines.append(json.dumps(row, ensure_ascii=False))
    _atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_text(path: Path, what: str = "") -> str:
    """A text input as UTF-8; a missing, unreadable or non-UTF-8 file is one ResultsError."""
    name = f"{what} {path}" if what else str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ResultsError(f"{name} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                           ) from exc
    except OSError as exc:
        raise ResultsError(f"cannot read {name}: {exc.strerror or exc}") from exc


def _validate_file(kind: str, obj: Any, where: str) -> None:
    try:
        validate(kind, obj)
    except ResultsError as exc:
        raise ResultsError(f"{where}: {exc}") from exc


def read_json(path: Path, kind: str | None = None) -> Any:
    """A JSON file, schema-checked when `kind` is given; every failure names the file."""
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON (truncated or damaged?): {exc}") from exc
    if kind:
        _validate_file(kind, obj, str(path))
    return obj


def read_jsonl(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """A JSON Lines file, each line schema-checked when `kind` is given; errors name path:line."""
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{lineno} is not valid JSON: {exc}") from exc
        if kind:
            _validate_file(kind, row, f"{path}:{lineno}")
        rows.append(row)
    return rows


def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, scores) of a finished run folder, both schema-checked."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a folder" if run_dir.exists() else "does not exist"
        raise ResultsError(f"run folder {run_dir} {what}")
    return (read_json(run_dir / "manifest.json", "manifest"),
            read_json(run_dir / "scores.json", "scores"))


def load_run_records(run_dir: Path) -> tuple[Manifest, Scores]:
    """(manifest, scores) of a finished run folder as typed records, both schema-checked."""
    manifest, scores = load_run(run_dir)
    return (_record(Manifest, manifest, Path(run_dir) / "manifest.json"),
            _record(Scores, scores, Path(run_dir) / "scores.json"))


def _record(model: type[RecordT], raw: Any, path: Path) -> RecordT:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ResultsError(f"{path}: {_first_error(exc)}") from exc


def read_items(path: Path) -> list[Item]:
    """A run's `items/<benchmark>.jsonl` as typed items, each schema-checked."""
    rows = read_jsonl(path, kind="item")
    try:
        return [Item.model_validate(row) for row in rows]
    except ValidationError as exc:
        raise ResultsError(f"{path}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = "/".join(str(p) for p in error.get("loc", ())) or "(root)"
    return f"{where}: {error.get('msg')}"


def item_file(run_dir: Path, benchmark: str) -> Path:
    return Path(run_dir) / "items" / f"{benchmark}.jsonl"


def find_runs(results_dir: Path, model: str) -> list[Path]:
    """Finished run folders of a model (registry key or slug), oldest first."""
    try:
        slugs = [ref.slug for ref in load_registry().resolve(model)]
    except Exception:  # an unknown name may still be a slug of a folder or hub id run
        slugs = [model]
    runs = []
    for slug in slugs:
        folder = Path(results_dir) / slug
        if folder.is_dir():
            runs += [p for p in folder.iterdir() if p.is_dir() and (p / "scores.json").is_file()
                     and not p.name.startswith(".")]
    return sorted(runs, key=lambda p: p.name)


def resolve_run_arg(value: str, results_dir: Path) -> list[Path]:
    """A run folder as given, or a model name standing for its latest run(s), one per checkpoint."""
    path = Path(value)
    if path.is_dir() and any((path / name).exists() for name in ("scores.json", "manifest.json")):
        return [path]  # a run folder, whole or damaged: the reader says what is wrong with it
    if path.exists() and not path.is_dir():
        raise ResultsError(f"{value} is a file, not a run folder")
    runs = find_runs(results_dir, value)
    if not runs:
        raise ResultsError(f"'{value}' is neither a run folder nor a model with runs in "
                           f"{results_dir}")
    latest: dict[str, Path] = {}
    for run in runs:
        latest[run.parent.name] = run
    return list(latest.values())
