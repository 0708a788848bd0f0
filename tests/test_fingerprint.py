"""Dataset fingerprints follow the bytes and paths of a folder, never its timestamps."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint, hub_fingerprint
from kanana_eval.data.model_fingerprint import folder_fingerprint

FIXTURE = Path(__file__).parent / "fixtures" / "hub" / "HAERAE-HUB" / "KMMLU"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "KMMLU"
    shutil.copytree(FIXTURE, target)
    return target


def test_fingerprint_is_stable_and_ignores_mtimes(folder: Path) -> None:
    before = dataset_fingerprint(folder)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    for path in folder.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert dataset_fingerprint(folder) == before
    assert dataset_fingerprint(folder) == dataset_fingerprint(FIXTURE)


def test_one_changed_byte_changes_the_fingerprint(folder: Path) -> None:
    before = dataset_fingerprint(folder)
    target = folder / "data" / "Accounting-test.csv"
    data = bytearray(target.read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")
    target.write_bytes(bytes(data))
    assert dataset_fingerprint(folder) != before


def test_renaming_or_adding_a_file_changes_the_fingerprint(folder: Path) -> None:
    before = dataset_fingerprint(folder)
    (folder / "data" / "Accounting-dev.csv").rename(folder / "data" / "accounting-dev.csv")
    renamed = dataset_fingerprint(folder)
    assert renamed != before
    (folder / "extra.txt").write_text("")
    assert dataset_fingerprint(folder) not in {before, renamed}


def test_download_bookkeeping_in_dot_cache_is_ignored(folder: Path) -> None:
    before = dataset_fingerprint(folder)
    meta = folder / ".cache" / "huggingface" / "download" / "README.md.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text("etag and timestamp that change on every download")
    assert dataset_fingerprint(folder) == before


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="not a folder"):
        dataset_fingerprint(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailableError, match="holds no files"):
        dataset_fingerprint(tmp_path / "empty")


def test_hub_fingerprint_of_a_loaded_dataset(tmp_path: Path) -> None:
    dataset = datasets.load_dataset(
        str(FIXTURE), "Accounting", split="test", cache_dir=str(tmp_path / "cache")
    )
    record = hub_fingerprint(dataset)
    assert record["fingerprint"] == dataset._fingerprint
    assert record["num_rows"] == 3 and record["split"] == "test"
    assert record["config_name"] == "Accounting"
    assert "revision" not in record  # a local folder has no hub commit


def test_hub_fingerprint_reads_the_resolved_commit() -> None:
    url = f"hf://datasets/cais/mmlu@{COMMIT}/abstract_algebra/test-00000-of-00001.parquet"
    from_url = SimpleNamespace(
        _fingerprint="abc",
        split="test",
        info=SimpleNamespace(config_name="abstract_algebra", download_checksums={url: {}}),
        cache_files=[],
    )
    assert hub_fingerprint(from_url)["revision"] == COMMIT
    cached = f"/cache/cais___mmlu/abstract_algebra/0.0.0/{COMMIT}/mmlu-test.arrow"
    from_cache = SimpleNamespace(_fingerprint="abc", info=None, cache_files=[{"filename": cached}])
    record = hub_fingerprint(from_cache)
    assert record == {"fingerprint": "abc", "revision": COMMIT}


def test_hub_fingerprint_never_raises_on_odd_objects() -> None:
    assert hub_fingerprint(object()) == {}
    in_memory = datasets.Dataset.from_dict({"x": [1, 2]})
    assert hub_fingerprint(in_memory) == {"fingerprint": in_memory._fingerprint, "num_rows": 2}


def test_model_fingerprint_ignores_the_conversion_record_but_not_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "kanana_conversion.json").write_text('{"converted_at": "2026-12-07T05:52:30+00:00"}')
    first = folder_fingerprint(folder)
    (folder / "kanana_conversion.json").write_text('{"converted_at": "2026-12-07T05:54:56+00:00"}')
    assert folder_fingerprint(folder) == first
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert folder_fingerprint(folder) != first
