"""Result files are schema-checked on every write and written atomically."""

from __future__ import annotations

import json

import pytest

from kanana_eval.core.errors import ResultsError
from kanana_eval.results.io import read_jsonl, validate, write_json, write_jsonl

ITEM = {"schema_version": 1, "benchmark": "gsm8k@base", "item_id": "3", "prompt": "Q",
        "output": "A", "extracted": "18", "target": "18", "score": 1.0, "verdict": "correct"}


def test_valid_item_round_trips(tmp_path):
    write_jsonl(tmp_path / "items.jsonl", [ITEM, {**ITEM, "item_id": "4"}], kind="item")
    assert [r["item_id"] for r in read_jsonl(tmp_path / "items.jsonl", kind="item")] == ["3", "4"]


def test_invalid_record_is_refused_and_nothing_is_written(tmp_path):
    bad = {**ITEM, "verdict": "maybe"}
    with pytest.raises(ResultsError, match="item record fails schema v1 at verdict"):
        write_jsonl(tmp_path / "items.jsonl", [ITEM, bad], kind="item")
    assert list(tmp_path.iterdir()) == []


def test_benchmark_ids_carry_the_protocol():
    row = {"benchmark": "gsm8k", "protocol": "base", "column": "GSM8K", "metric": "exact_match",
           "value": 0.5, "stderr": 0.1, "n": 10}
    scores = {"schema_version": 1, "run_id": "r", "model": {"name": "m", "readme_rows": []},
              "protocols": ["base"], "smoke": False, "scores": [row]}
    with pytest.raises(ResultsError, match="scores/0/benchmark"):
        validate("scores", scores)
    validate("scores", {**scores, "scores": [{**row, "benchmark": "gsm8k@base"}]})


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_malformed_file_is_one_clear_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ResultsError, match="bad.jsonl:2 is not valid JSON"):
        read_jsonl(tmp_path / "bad.jsonl")
