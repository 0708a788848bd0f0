"""Where things live: bundled data folders (source tree or installed wheel) and the user cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_SOURCE_ROOT = _PACKAGE_DIR.parent
_BUNDLED = _PACKAGE_DIR / "_bundled"


def resource_dir(name: str) -> Path:
    """Return a design-card folder (`protocols`, `results/reference`, `reports/templates`).

    A source checkout (or editable install) uses the repository's own folder; a wheel carries a
    copy under `kanana_eval/_bundled/`, so the installed CLI finds the same files.
    """
    bundled = _BUNDLED / name
    if bundled.is_dir():
        return bundled
    source = _SOURCE_ROOT / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"kanana-eval resource folder '{name}' is missing from this install")


def benchmarks_dir() -> Path:
    """`kanana_eval/tasks/`: one folder per benchmark (task.yaml, card, data plan)."""
    return _PACKAGE_DIR / "tasks"


def cache_dir() -> Path:
    """The per-user cache root: converted models, request caches, downloaded sources."""
    root = os.environ.get("KANANA_EVAL_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "kanana-eval"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path | None:
    """The offline benchmark data folder named by KANANA_SHARED_DATA, if set and present."""
    value = os.environ.get("KANANA_SHARED_DATA")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None
