"""Write one dataset in the hub's layout: Parquet shards, copied files, and the README card.

Also used by the schema-exact test fixtures of the benchmark folders, so a fixture's card and
shards are written exactly as the mirror writes its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kanana_eval import __version__
from kanana_eval.data.mirror.plan import DatasetContents, MirrorError
from kanana_eval.data.mirror.record import RECORD_NAME


def write_parquet(
    rows: list[dict[str, Any]], features_yaml: list[dict[str, Any]], path: Path
) -> int:
    """Write rows as one Parquet shard with the HF features embedded; return the Arrow bytes.

    The Arrow schema of a `datasets.Dataset` carries its features (ClassLabel names included)
    under the `huggingface` metadata key, as hub Parquet files do. pyarrow writes no timestamps,
    so the same rows give the same bytes.
    """
    import datasets  # noqa: PLC0415 - heavy: datasets, only when data is read or written
    import pyarrow.parquet as pq  # noqa: PLC0415 - heavy: pyarrow, only to write parquet

    features = datasets.Features._from_yaml_list(features_yaml)
    table = datasets.Dataset.from_list(rows, features=features).data.table
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return int(table.nbytes)


class _NoAliasDumper(yaml.SafeDumper):
    """Repeat shared YAML nodes in full (hub cards never use &anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_card(
    folder: Path,
    *,
    dataset_info: list[dict[str, Any]] | None,
    configs: list[dict[str, Any]],
    body: str,
) -> None:
    """README.md with the hub's YAML header (`dataset_info`, `configs`) and a markdown body."""
    header: dict[str, Any] = {}
    if dataset_info is not None:
        header["dataset_info"] = dataset_info
    header["configs"] = configs
    text = yaml.dump(header, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=1000)
    (folder / "README.md").write_text(f"---\n{text}---\n\n{body.strip()}\n", encoding="utf-8")


def card_configs(
    config_splits: dict[str, list[tuple[str, str]]], default: str | None
) -> list[dict[str, Any]]:
    """The `configs:` block: config -> [(split, data_files pattern)], in the given order."""
    blocks: list[dict[str, Any]] = []
    for config, files in config_splits.items():
        block: dict[str, Any] = {
            "config_name": config,
            "data_files": [{"split": split, "path": pattern} for split, pattern in files],
        }
        if config == default:
            block["default"] = True
        blocks.append(block)
    return blocks


@dataclass
class _Written:
    """One split as written: rows, Arrow bytes, bytes on disk, and its `data_files` path."""

    rows: int
    nbytes: int
    size: int
    pattern: str


def _copy_files(files: dict[str, Path], folder: Path) -> None:
    for relpath, source in files.items():
        target = folder / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _write_splits(contents: DatasetContents, folder: Path) -> dict[str, dict[str, _Written]]:
    """Every Parquet shard and copied split file; config -> split -> what was written."""
    written: dict[str, dict[str, _Written]] = {}
    for split in contents.splits:
        if contents.features_yaml is None:
            raise MirrorError(f"{contents.dataset_id}: Parquet splits need features")
        target = folder / split.relpath
        nbytes = write_parquet(split.rows, contents.features_yaml, target)
        written.setdefault(split.config, {})[split.split] = _Written(
            len(split.rows), nbytes, target.stat().st_size, split.pattern
        )
    for copied in contents.copied:
        target = folder / copied.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copied.source, target)
        size = target.stat().st_size
        written.setdefault(copied.config, {})[copied.split] = _Written(
            copied.rows, size, size, copied.relpath
        )
    return written


def _card_body(contents: DatasetContents) -> str:
    notes = "".join(f"\n- {note}" for note in contents.card_notes)
    return (
        f"# {contents.dataset_id} (kanana-eval offline mirror)\n\n"
        f"Same layout and features as the Hugging Face dataset repo `{contents.dataset_id}`, "
        f"built by kanana-eval {__version__} from {contents.source_text}, {contents.order_text}. "
        f"{contents.record_text}: `../{'../' * contents.dataset_id.count('/')}"
        f"{RECORD_NAME}`.\n" + (f"\nDifferences from the hub copy:{notes}\n" if notes else "")
    )


def write_dataset(contents: DatasetContents, folder: Path) -> dict[str, dict[str, int]]:
    """Write every shard, copied file and the README; return config -> split -> rows."""
    _copy_files(contents.files, folder)
    if not contents.card:
        return {}
    written = _write_splits(contents, folder)
    dataset_info = []
    config_splits: dict[str, list[tuple[str, str]]] = {}
    for config in contents.configs():
        splits = written[config]
        dataset_info.append(
            {
                "config_name": config,
                "features": contents.features_yaml,
                "splits": [
                    {"name": name, "num_bytes": item.nbytes, "num_examples": item.rows}
                    for name, item in splits.items()
                ],
                "download_size": sum(item.size for item in splits.values()),
                "dataset_size": sum(item.nbytes for item in splits.values()),
            }
        )
        config_splits[config] = [(name, item.pattern) for name, item in splits.items()]
    write_card(
        folder,
        dataset_info=dataset_info if contents.features_yaml is not None else None,
        configs=card_configs(config_splits, contents.default_config),
        body=_card_body(contents),
    )
    return {
        config: {name: item.rows for name, item in splits.items()}
        for config, splits in written.items()
    }


def install(built: Path, target: Path) -> None:
    """Put `built` at `target`, replacing an older copy; both live on the same filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash: Path | None = None
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
        os.replace(target, trash / "old")
    try:
        os.replace(built, target)
    except OSError:
        if trash is not None:  # put the older copy back before reporting the failure
            os.replace(trash / "old", target)
            shutil.rmtree(trash, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
