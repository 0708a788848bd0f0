"""The typed records and the JSON Schemas of result schema v1 describe the same files.

`results/records.py` is what the code builds, writes and reads back; `results/schemas/*.json` is
what every file on disk is checked against. These tests hold the two together: the same fields,
the same required fields, the same nulls and fixed values, and real files (the golden run made
before the restructuring) parse into the records and come back unchanged. The one writer,
`RunWriter`, writes schema-valid runs and never leaves a half-written one behind.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from golden_run import PLACEHOLDER
from pydantic import BaseModel
from run_builder import TestBenchmark, build_test_run, write_test_run

from kanana_eval.core.errors import ResultsError
from kanana_eval.results import writer as writer_module
from kanana_eval.results.io import (
    find_runs,
    item_file,
    read_json,
    read_jsonl,
    schema_validator,
    validate,
)
from kanana_eval.results.records import (
    SCHEMA_VERSION,
    BenchmarkRecord,
    DataRecord,
    Item,
    Manifest,
    ModelRecord,
    Scale,
    ScoreRow,
    Scores,
    ScoresModel,
    SubtaskScore,
    Verdict,
)
from kanana_eval.results.writer import RunWriter

GOLDEN = Path(__file__).parent / "golden" / "smollm2-limit2"

# Each record, the schema file it is part of, and where in that schema it is described.
# (`ProtocolFile` has no counterpart: the schema leaves `protocols` an open object.)
RECORDS: dict[str, tuple[type[BaseModel], str, tuple[str, ...]]] = {
    "item": (Item, "item", ()),
    "scores": (Scores, "scores", ()),
    "scores.model": (ScoresModel, "scores", ("properties", "model")),
    "scores row": (ScoreRow, "scores", ("properties", "scores", "items")),
    "scores row subtask": (SubtaskScore, "scores", ("properties", "scores", "items", "properties",
                                                    "subtasks", "additionalProperties")),
    "manifest": (Manifest, "manifest", ()),
    "manifest.model": (ModelRecord, "manifest", ("properties", "model")),
    "manifest benchmark": (BenchmarkRecord, "manifest", ("properties", "benchmarks",
                                                         "additionalProperties")),
    "manifest benchmark data": (DataRecord, "manifest", ("properties", "benchmarks",
                                                         "additionalProperties", "properties",
                                                         "data")),
}


def _schema(record: str) -> dict[str, Any]:
    _, kind, path = RECORDS[record]
    node = schema_validator(kind).schema
    for key in path:
        node = node[key]
    return node


def _model(record: str) -> type[BaseModel]:
    return RECORDS[record][0]


def _is_constant(prop: dict[str, Any]) -> bool:
    """A property with one allowed value (`const`, or an enum of one)."""
    return "const" in prop or len(prop.get("enum", ())) == 1


def _schema_values(prop: dict[str, Any]) -> set[Any] | None:
    """The values a schema property allows when they are listed (`const`/`enum`), else None."""
    if "const" in prop:
        return {prop["const"]}
    return set(prop["enum"]) if "enum" in prop else None


def _annotation_parts(annotation: Any) -> tuple[Any, ...]:
    """`X | None` and `Optional[X]` as (X, NoneType); anything else as itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _model_values(annotation: Any) -> set[Any] | None:
    """The values a Literal or Enum field may take (None when it may take any of its type)."""
    values: set[Any] = set()
    for part in _annotation_parts(annotation):
        if typing.get_origin(part) is typing.Literal:
            values |= set(typing.get_args(part))
        elif isinstance(part, type) and issubclass(part, enum.Enum):
            values |= {member.value for member in part}
        elif part is not type(None):
            return None
    return values


def _schema_nullable(prop: dict[str, Any]) -> bool:
    """Whether a file may hold null for this property."""
    kinds = prop.get("type")
    if kinds is None:  # const/enum/untyped: null only when listed
        return None in (_schema_values(prop) or set()) or not _schema_values(prop)
    return "null" in ([kinds] if isinstance(kinds, str) else kinds)


def _model_nullable(annotation: Any) -> bool:
    """Whether the record may hold None for this field."""
    return annotation is None or type(None) in _annotation_parts(annotation)


# ---------------------------------------------------------------------------------------------
# The same fields


@pytest.mark.parametrize("record", RECORDS)
def test_every_schema_property_is_a_model_field_and_every_field_a_property(record):
    assert set(_schema(record)["properties"]) == set(_model(record).model_fields)


@pytest.mark.parametrize("record", RECORDS)
def test_the_schemas_required_fields_are_the_model_fields_without_a_default(record):
    """Constants (`schema_version`, `status`) are required in files and filled in by the model."""
    schema, model = _schema(record), _model(record)
    props = schema["properties"]
    constants = {name for name, prop in props.items() if _is_constant(prop)}
    without_default = {name for name, f in model.model_fields.items() if f.is_required()}
    assert set(schema.get("required", ())) == without_default | constants
    for name in constants:
        assert {model.model_fields[name].default} == _schema_values(props[name]), name


@pytest.mark.parametrize("record", RECORDS)
def test_fields_left_out_when_none_are_optional_and_written_nones_are_valid(record):
    """What the model writes as null the schema allows; what it leaves out the schema lets go."""
    schema, model = _schema(record), _model(record)
    omitted = model.OMIT_WHEN_NONE
    assert not omitted & set(schema.get("required", ()))
    for name, f in model.model_fields.items():
        prop = schema["properties"][name]
        if name not in omitted:
            assert _model_nullable(f.annotation) == _schema_nullable(prop), name
        elif _model_nullable(f.annotation):
            assert not _schema_nullable(prop), f"{name}: null is never written, only left out"


def _fixed_value_fields() -> list[Any]:
    """(record, field) of every property whose values are fixed, in the schema or the model."""
    cases = []
    for record in RECORDS:
        props, fields = _schema(record)["properties"], _model(record).model_fields
        for name in props:
            model_values = _model_values(fields[name].annotation)
            if _schema_values(props[name]) is None and model_values is None:
                continue
            cases.append(pytest.param(record, name, id=f"{record}.{name}"))
    return cases


@pytest.mark.parametrize(("record", "name"), _fixed_value_fields())
def test_fixed_values_agree(record, name):
    prop = _schema(record)["properties"][name]
    assert _model_values(_model(record).model_fields[name].annotation) == _schema_values(prop)


def test_verdicts_scales_and_model_sources_are_the_ones_written():
    """The values other modules rely on, named once more so that a change is seen."""
    item, row = _schema("item")["properties"], _schema("scores row")["properties"]
    assert set(typing.get_args(Verdict)) == set(item["verdict"]["enum"])
    assert {s.value for s in Scale} == set(row["scale"]["enum"]) == {"fraction", "judge_1_10"}
    assert set(_schema("manifest.model")["properties"]["source"]["enum"]) == {
        "hub", "local", "offline", "endpoint", "completions"}
    for kind in ("item", "scores", "manifest"):
        assert schema_validator(kind).schema["properties"]["schema_version"] == {
            "const": SCHEMA_VERSION}


# ---------------------------------------------------------------------------------------------
# Real files: the golden run, made before the restructuring


def _golden_files() -> list[Any]:
    files = [("manifest.json", Manifest, "manifest"), ("scores.json", Scores, "scores")]
    files += [(f"items/{p.name}", Item, "item") for p in sorted((GOLDEN / "items").iterdir())]
    return [pytest.param(name, model, kind, id=name) for name, model, kind in files]


def _typed_placeholders(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """The golden copy's placeholders for what varies between runs (timings, versions, the
    command) as empty values of the type the schema gives them; string placeholders stay."""
    props = schema_validator(kind).schema["properties"]
    empty = {"object": {}, "array": []}
    return {k: empty.get(str(props.get(k, {}).get("type")), v) if v == PLACEHOLDER else v
            for k, v in row.items()}


@pytest.mark.parametrize(("name", "model", "kind"), _golden_files())
def test_golden_files_parse_into_the_records_and_come_back_the_same(name, model, kind):
    path = GOLDEN / name
    rows = read_jsonl(path) if path.suffix == ".jsonl" else [read_json(path)]
    assert rows
    for row in map(_typed_placeholders, rows, [kind] * len(rows)):
        validate(kind, row)
        record = model.model_validate(row)
        assert record.to_json() == row
        # as text too: 1 == 1.0 in Python, not in a file compared byte for byte
        assert json.dumps(record.to_json(), sort_keys=True) == json.dumps(row, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# The one writer


def _benchmarks() -> dict[str, Any]:
    return {
        "gsm8k@base": [1.0, 0.0, 1.0],
        "mmlu@base": TestBenchmark(items=[1, 1, 0, 0], stderr=0.25,
                                   subtasks={"anatomy": (0.5, 2), "law": (0.5, 2)}),
        "mt_bench@instruct": [("81", 1, 7.0), ("81", 2, None), ("82", 1, 4.5)],
    }


def test_a_run_written_by_run_writer_is_valid_against_the_schemas(tmp_path):
    run = write_test_run(tmp_path, _benchmarks(), model="ckpt", smoke=True, limit=4)
    assert sorted(p.name for p in run.iterdir()) == ["items", "manifest.json", "scores.json"]
    manifest, scores = read_json(run / "manifest.json"), read_json(run / "scores.json")
    validate("manifest", manifest)
    validate("scores", scores)
    assert Manifest.model_validate(manifest).to_json() == manifest
    assert Scores.model_validate(scores).to_json() == scores
    for bench in _benchmarks():
        items = read_jsonl(item_file(run, bench))
        for item in items:
            validate("item", item)
            assert Item.model_validate(item).to_json() == item
    judged = read_jsonl(item_file(run, "mt_bench@instruct"))
    assert [i.get("turn") for i in judged] == [1, 2, 1]
    assert "turn" not in read_jsonl(item_file(run, "gsm8k@base"))[0]  # left out, not null


def _broken(part: str) -> dict[str, Any]:
    """The records of a run with one invalid record in `part` (its checks are skipped here)."""
    run = build_test_run(_benchmarks())
    manifest, scores, items = run.manifest, run.scores, dict(run.items)
    if part == "item":
        bad = items["mmlu@base"][1].model_copy(update={"verdict": "maybe"})
        items["mmlu@base"] = [items["mmlu@base"][0], bad, *items["mmlu@base"][2:]]
    elif part == "scores":
        row = scores.scores[0].model_copy(update={"benchmark": "gsm8k"})  # no protocol
        scores = scores.model_copy(update={"scores": [row, *scores.scores[1:]]})
    else:  # written last: items and scores.json are already in the hidden folder
        manifest = manifest.model_copy(update={"status": "partial"})
    return {"manifest": manifest, "scores": scores, "items": items}


@pytest.mark.parametrize("part", ["item", "scores", "manifest"])
def test_an_invalid_record_leaves_no_run_and_no_partial_folder(tmp_path, part):
    writer = RunWriter(tmp_path, "ckpt", "20260101T000000Z-00000000")
    with pytest.raises(ResultsError, match=f"{part} record fails schema v1"):
        writer.write(**_broken(part))
    assert list((tmp_path / "ckpt").iterdir()) == []
    assert find_runs(tmp_path, "ckpt") == []


def test_a_failed_rewrite_keeps_the_earlier_run_whole(tmp_path):
    first = write_test_run(tmp_path, {"gsm8k@base": [1.0, 1.0]})
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    with pytest.raises(ResultsError):
        RunWriter(tmp_path, "ckpt", first.name).write(**_broken("manifest"))
    after = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [first.name]


def test_readers_never_see_a_run_before_its_last_file_is_written(tmp_path, monkeypatch):
    run_id = "20260101T000000Z-00000000"
    final = tmp_path / "ckpt" / run_id
    seen = []
    real_write_json = writer_module.write_json

    def watching_write_json(path: Path, obj: Any, kind: str | None = None) -> None:
        seen.append((Path(path).name, final.exists(), find_runs(tmp_path, "ckpt")))
        real_write_json(path, obj, kind)

    monkeypatch.setattr(writer_module, "write_json", watching_write_json)
    run = build_test_run(_benchmarks(), run_id=run_id)
    written = RunWriter(tmp_path, "ckpt", run_id).write(run.manifest, run.scores, run.items)
    assert seen == [("scores.json", False, []), ("manifest.json", False, [])]
    assert written == final and find_runs(tmp_path, "ckpt") == [final]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [run_id]  # no .partial left


def test_records_of_different_runs_cannot_share_a_folder(tmp_path):
    run = build_test_run({"gsm8k@base": [1.0]}, run_id="20260101T000000Z-00000000")
    with pytest.raises(ValueError, match="one run id"):
        RunWriter(tmp_path, "ckpt", "20260102T000000Z-00000000").write(
            run.manifest, run.scores, run.items)
    assert not (tmp_path / "ckpt").exists()


def test_a_second_run_of_one_config_in_the_same_second_gets_its_own_folder(tmp_path):
    run_id = writer_module.new_run_id("0badc0de", when=1_767_225_600.0)
    model_dir = tmp_path / "ckpt"
    assert writer_module.free_run_id(model_dir, run_id) == run_id
    first = build_test_run({"gsm8k@base": [1.0]}, run_id=run_id)
    RunWriter(tmp_path, "ckpt", run_id).write(first.manifest, first.scores, first.items)
    second_id = writer_module.free_run_id(model_dir, run_id)
    assert second_id == f"{run_id}-2"
    second = build_test_run({"gsm8k@base": [0.0]}, run_id=second_id)
    RunWriter(tmp_path, "ckpt", second_id).write(second.manifest, second.scores, second.items)
    assert sorted(p.name for p in model_dir.iterdir()) == [run_id, second_id]
    (model_dir / f".{run_id}-3.partial").mkdir()  # a write in progress holds its id too
    assert writer_module.free_run_id(model_dir, run_id) == f"{run_id}-4"
