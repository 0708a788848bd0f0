"""The mirror's record `DIR/kanana_mirror.json`: what was built, from which source, when derived.

Read by the builder (to update it), by the run (a benchmark's data entry names the record's
revision and whether its few-shot split was derived) and by the judge's data loader.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kanana_eval.data.mirror.plan import MirrorError

RECORD_NAME = "kanana_mirror.json"
RECORD_SCHEMA_VERSION = 1


def read_record(out_dir: Path) -> dict[str, Any]:
    """The record of a mirror folder; an empty one when the folder has none yet."""
    path = Path(out_dir) / RECORD_NAME
    if not path.is_file():
        return {"schema_version": RECORD_SCHEMA_VERSION, "datasets": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: bad JSON, or not UTF-8 at all
        raise MirrorError(f"cannot read mirror record {path}: {error}") from error
    if not isinstance(record, dict) or not isinstance(record.get("datasets"), dict):
        raise MirrorError(f"mirror record {path} has no 'datasets' mapping")
    return record


def write_record(out_dir: Path, record: dict[str, Any]) -> Path:
    """Replace the record atomically (a reader never sees half a file)."""
    path = Path(out_dir) / RECORD_NAME
    handle, tmp_name = tempfile.mkstemp(prefix=".kanana_mirror-", suffix=".json", dir=out_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=2, sort_keys=True, ensure_ascii=False)
        stream.write("\n")
    os.replace(tmp_name, path)
    return path


def mirror_info(data_dir: Path, dataset_id: str) -> dict[str, Any] | None:
    """The build record of `data_dir/dataset_id`, or None when that folder has no record.

    None means the folder was not made by `build_mirror` (for example a real hub download),
    so its splits are the hub's own and no few-shot items were derived.
    """
    record = read_record(Path(data_dir))
    entry = record["datasets"].get(dataset_id)
    if entry is None or not (Path(data_dir) / dataset_id).is_dir():
        return None
    return entry
