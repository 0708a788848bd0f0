"""Fingerprints that say which data a run used, so two results can be compared honestly.

`dataset_fingerprint(folder)` names the exact bytes of a dataset folder (a mirror built by
`kanana_eval.data.mirror`, a fixture, or a `huggingface-cli download --local-dir` copy): sha256 over
the sorted relative paths and the sha256 of each file's content. It ignores mtimes, permissions
and the `.cache/` folder that `huggingface-cli download --local-dir` keeps its own bookkeeping in
(timestamps and etags that change on every download).

`hub_fingerprint(dataset)` describes a `datasets.Dataset` that came from the hub: its
`_fingerprint` and, when it can be found, the commit the hub resolved. Best effort only: it never
raises, and a missing piece is simply left out.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.core.hashing import file_sha256

FINGERPRINT_PREFIX = "sha256:"
_IGNORED_TOP_DIRS = frozenset({".cache"})
_COMMIT = re.compile(r"[0-9a-f]{40}")
_AT_COMMIT = re.compile(r"@([0-9a-f]{40})")



def _data_files(folder: Path) -> list[tuple[str, Path]]:
    """(posix relative path, path) of every regular file under folder, sorted by that path."""
    files: list[tuple[str, Path]] = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[0] in _IGNORED_TOP_DIRS or not path.is_file():
            continue
        files.append((relative.as_posix(), path))
    files.sort(key=lambda item: item[0])
    return files


def dataset_fingerprint(path: Path) -> str:
    """`sha256:<hex>` of a dataset folder's relative file paths and contents (not mtimes)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataUnavailableError(f"cannot fingerprint '{folder}': not a folder")
    files = _data_files(folder)
    if not files:
        raise DataUnavailableError(f"cannot fingerprint '{folder}': it holds no files")
    digest = hashlib.sha256()
    for relative, file_path in files:
        digest.update(relative.encode("utf-8"))
        digest.update(b"\0")
        digest.update(file_sha256(file_path).encode("ascii"))
        digest.update(b"\n")
    return FINGERPRINT_PREFIX + digest.hexdigest()


def _revision_from(values: list[str]) -> str | None:
    """The first 40-hex commit found in hub URLs (`...@<sha>/...`) or cache paths (`/<sha>/`)."""
    for value in values:
        match = _AT_COMMIT.search(value)
        if match:
            return match.group(1)
    for value in values:
        for part in Path(value).parts:
            if _COMMIT.fullmatch(part):
                return part
    return None


def hub_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies a hub-loaded `datasets.Dataset`: fingerprint, config, split, revision.

    The resolved revision is looked for in `info.download_checksums` (hub URLs carry
    `@<commit>`) and then in the cache file paths (the datasets cache keeps one folder per
    commit). Anything that cannot be read is omitted.
    """
    record: dict[str, Any] = {"fingerprint": getattr(dataset, "_fingerprint", None)}
    try:
        record["num_rows"] = len(dataset)
    except TypeError:
        pass
    split = getattr(dataset, "split", None)
    if split is not None:
        record["split"] = str(split)
    info = getattr(dataset, "info", None)
    sources: list[str] = []
    if info is not None:
        for field in ("dataset_name", "config_name", "builder_name"):
            value = getattr(info, field, None)
            if value:
                record[field] = str(value)
        version = getattr(info, "version", None)
        if version is not None:
            record["version"] = str(version)
        checksums = getattr(info, "download_checksums", None) or {}
        sources.extend(str(url) for url in checksums)
    try:
        sources.extend(str(item.get("filename", "")) for item in dataset.cache_files or [])
    except (AttributeError, TypeError):
        pass
    revision = _revision_from(sources)
    if revision:
        record["revision"] = revision
    return {key: value for key, value in record.items() if value is not None}
