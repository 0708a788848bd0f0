"""Published README numbers as data: the stored tables, their lookup, the README parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kanana_eval.paths import resource_dir
from kanana_eval.reference import (
    ReferenceDataError,
    ReferenceTable,
    Source,
    TableSpec,
    load_reference_table,
    load_reference_tables,
    main,
    parse_readme_tables,
    published_score,
    table_from_parsed,
)
from kanana_eval.report.render import render_readme_table

BASE_BENCHMARKS = [
    ("MMLU", "mmlu@base"),
    ("KMMLU", "kmmlu@base"),
    ("HAE-RAE", "haerae@base"),
    ("HumanEval", "humaneval@base"),
    ("MBPP", "mbpp@base"),
    ("GSM8K", "gsm8k@base"),
]


@pytest.fixture(scope="module")
def readme_text(shared_data_dir: Path) -> str:
    path = shared_data_dir.parent / "kanana-README.md"
    if not path.is_file():
        pytest.fail(f"{path} is missing next to KANANA_SHARED_DATA")
    return path.read_text(encoding="utf-8")


def _tables() -> dict[str, ReferenceTable]:
    return {t.id: t for t in load_reference_tables()}


def test_both_kanana_15_base_tables_are_stored_with_their_columns_and_rows():
    tables = {k: t for k, t in _tables().items() if t.kind == "base"}
    assert set(tables) == {"kanana-1.5-base", "kanana-1.5-base-open"}
    for table in tables.values():
        assert [(c.header, c.benchmark) for c in table.columns] == BASE_BENCHMARKS
        assert {c.scale for c in table.columns} == {"percent"}
    base = tables["kanana-1.5-base"]
    assert [(r.name, r.hidden) for r in base.rows] == [
        ("Kanana-Flag-1.5-32.5B", False),
        ("Kanana-Flag-32.5B", False),
        ("Kanana-Essence-1.5-9.8B", False),
        ("Kanana-Essence-9.8B", False),
        ("Kanana-1.5-8B", True),
        ("Kanana-8B", True),
        ("Kanana-Nano-1.5-3B", False),
        ("Kanana-1.5-2.1B", True),
        ("Kanana-Nano-2.1B", False),
    ]
    assert base.footnotes == ()
    open_ = tables["kanana-1.5-base-open"]
    first, _, kanana_8b, *_ = open_.rows
    assert (first.name, first.markup.suffix, first.marks) == (
        "Kanana-1.5-15.7B-A3B",
        " (<em>New!</em>)",
        (),
    )
    assert (kanana_8b.name, kanana_8b.marks) == ("Kanana-8B", ("*",))
    assert open_.footnotes == (
        "> \\* This model is not an open-sourced, just for comparison with Kanana-1.5-8B",
    )
    # Stored as printed: "61.90" keeps its display, the value is the number.
    flag = base.rows[0].cells[1]
    assert (flag.value, flag.display, flag.bold) == (61.9, "61.90", False)


def test_published_score_returns_the_cell_of_every_table_holding_the_row():
    cells = published_score("Kanana-1.5-8B", "mmlu@base")
    assert [(c.table_id, c.hidden, c.value, c.display) for c in cells] == [
        ("kanana-1.5-base", True, 64.24, "64.24"),
        ("kanana-1.5-base-open", False, 64.24, "64.24"),
    ]
    assert published_score("kanana-1.5-8b", "mbpp@base")[0].display == "57.80"  # any case
    [a3b] = published_score("Kanana-1.5-15.7B-A3B", "mbpp@base")
    assert (a3b.table_id, a3b.value, a3b.column) == ("kanana-1.5-base-open", 60.1, "MBPP")
    [starred] = published_score("Kanana-8B", "gsm8k@base", [_tables()["kanana-1.5-base-open"]])
    assert starred.row_marks == ("*",)
    assert published_score("SmolLM2-135M", "mmlu@base") == []
    assert published_score("Kanana-1.5-8B", "haerae@instruct") == []


def test_both_kanana_15_instruct_tables_are_stored_with_benchmark_ids_for_every_column():
    tables = {k: t for k, t in _tables().items() if t.kind == "instruct"}
    assert set(tables) == {"kanana-1.5-instruct", "kanana-1.5-instruct-open"}
    for table in tables.values():
        assert [c.benchmark for c in table.columns] == [
            "mt_bench@instruct", "komt_bench@instruct", "ifeval@instruct", "humaneval_plus@instruct",
            "mbpp_plus@instruct", "gsm8k@instruct", "math@instruct", "mmlu_cot@instruct",
            "kmmlu_cot@instruct", "functionchatbench@instruct"]
        assert [c.scale for c in table.columns][:2] == ["judge_1_10", "judge_1_10"]
    # The README's Kanana-1.5-8B instruct numbers, as printed.
    cells = {c.column: c.display for c in published_score("Kanana-1.5-8B", "ifeval@instruct")}
    assert cells == {"IFEval": "80.11"}
    [mt] = published_score("Kanana-1.5-8B", "mt_bench@instruct", [tables["kanana-1.5-instruct"]])
    assert mt.display == "7.76"


def test_published_score_rejects_a_malformed_benchmark_id():
    with pytest.raises(ReferenceDataError, match="not a benchmark id"):
        published_score("Kanana-1.5-8B", "MMLU")


def _stored_dict(table_id: str) -> dict:
    return json.loads((resource_dir("results/reference") / f"{table_id}.json").read_text("utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["rows"][0]["cells"][0].update(value="76.76"),
            "fails reference.v1 schema at rows/0/cells/0/value",
        ),
        (lambda d: d["rows"][0]["cells"].pop(), "5 cells for 6 columns"),
        (lambda d: d["columns"][1].update(benchmark="mmlu@base"), "lists a benchmark twice"),
        (lambda d: d["rows"][1].update(marks=["x"]), "fails reference.v1 schema at rows/1/marks/0"),
        (lambda d: d.update(id="other-id"), "file name and id must match"),
        (
            lambda d: d["rows"][0]["cells"][2].update(display="89.19"),
            "row 'Kanana-Flag-1.5-32.5B', HAE-RAE: value 89.18 does not match the printed '89.19'",
        ),
    ],
)
def test_loading_a_bad_reference_file_raises_one_clear_line(tmp_path, change, message):
    data = _stored_dict("kanana-1.5-base")
    change(data)
    path = tmp_path / "kanana-1.5-base.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReferenceDataError, match=re.escape(message)) as info:
        load_reference_table(path)
    assert "\n" not in str(info.value)


def test_an_empty_reference_folder_is_an_error(tmp_path):
    with pytest.raises(ReferenceDataError, match="no reference tables"):
        load_reference_tables(tmp_path)


SYNTHETIC_README = """\
# Release 2

```python
# a comment in a code block, not a heading
```

## Performance

### Scores
<table>
    <tr>
        <th>Models</th>
        <th>MMLU</th>
        <th>GSM8K</th>
    </tr>
    <tr>
        <th colspan="8" height="30px">7b+ scale</th>
    </tr>
    <tr>
        <td><strong>Model-A (<em>New!</em>)</strong></td>
        <td align="center"><strong>70.10</strong></td>
        <td align="center">TBA</td>
    </tr>
    <!-- <tr>
        <td><strong>Model-B*</strong></td>
        <td align="center">60.00</td>
        <td align="center">50.00</td>
    </tr>
    <tr>
        <td><strong>Model-C†</strong></td>
        <td align="center">-</td>
        <td align="center">0.856</td>
    </tr> -->
    <tr>
        <th colspan="8" height="30px">2b+ scale</th>
    </tr>
    <tr>
        <td><strong>Model-D</strong></td>
        <td align="center">40.00</td>
        <td align="center">30.00</td>
    </tr>
</table>

> \\* not open

> † newer

<br>

#### Transposed
<table>
    <tr>
        <td align="center">Backbone</td>
        <td align="center">Model-A</td>
        <td align="center">Model-D</td>
    </tr>
    <tr>
        <td align="center">English</td>
        <td align="center">51.56</td>
        <td align="center"><strong>54.00</strong></td>
    </tr>
</table>
"""


def test_parser_reads_headings_hidden_blocks_groups_and_footnotes():
    scores, transposed = parse_readme_tables(SYNTHETIC_README)
    assert scores.path == ("Release 2", "Performance", "Scores")
    assert scores.heading == "### Scores"
    assert scores.line == 10
    assert scores.markup.startswith("<table>") and scores.markup.endswith("</table>")
    assert [c.inner for c in scores.header.cells] == ["Models", "MMLU", "GSM8K"]
    assert [(r.hidden, r.comment) for r in scores.rows] == [
        (False, None),
        (False, None),
        (True, 0),
        (True, 0),
        (False, None),
        (False, None),
    ]
    assert scores.footnotes == ("> \\* not open", "> † newer")
    assert transposed.path == ("Release 2", "Performance", "Scores", "Transposed")
    assert transposed.footnotes == ()


def test_table_from_parsed_keeps_what_is_printed():
    scores, transposed = parse_readme_tables(SYNTHETIC_README)
    spec = TableSpec(
        "t",
        "T",
        "base",
        scores.path,
        {"MMLU": ("mmlu@base", "percent"), "GSM8K": ("gsm8k@base", "percent")},
    )
    table = table_from_parsed(scores, spec, Source("README.md", "0" * 64, scores.line))
    assert table.layout.group_cell == '<th colspan="8" height="30px">'
    a, b, c, d = table.rows
    assert (a.name, a.markup.suffix, a.group, a.cells[0].bold, a.cells[0].value) == (
        "Model-A",
        " (<em>New!</em>)",
        "7b+ scale",
        True,
        70.1,
    )
    assert (a.cells[1].value, a.cells[1].display) == (None, "TBA")
    assert (b.marks, b.hidden, c.marks, c.hidden) == (("*",), True, ("†",), True)
    assert (c.cells[0].value, c.cells[0].display, c.cells[1].value) == (None, "-", 0.856)
    assert (d.group, d.hidden) == ("2b+ scale", False)
    spec_t = TableSpec(
        "e",
        "E",
        "embedding",
        transposed.path,
        {"English": ("english@embedding", "percent")},
        "models_as_columns",
    )
    emb = table_from_parsed(transposed, spec_t, Source("README.md", "0" * 64, transposed.line))
    assert [r.name for r in emb.rows] == ["Model-A", "Model-D"]
    assert [(r.cells[0].display, r.cells[0].bold) for r in emb.rows] == [
        ("51.56", False),
        ("54.00", True),
    ]
    assert emb.layout.corner == "Backbone"


def test_table_from_parsed_needs_a_benchmark_id_for_every_column():
    scores, _ = parse_readme_tables(SYNTHETIC_README)
    spec = TableSpec("t", "T", "base", scores.path, {"MMLU": ("mmlu@base", "percent")})
    with pytest.raises(ReferenceDataError, match="no benchmark id for column 'GSM8K'"):
        table_from_parsed(scores, spec, Source("README.md", "0" * 64, 1))


@pytest.mark.parametrize(
    "body",
    [
        "<tr><td>x</td></tr><p>stray</p>",
        "<tr><td>x</td>",
        "<tr><td>x</td></tr><!-- <tr><td>y</td></tr>",
        "<td>x</td>",
    ],
)
def test_parser_refuses_markup_it_cannot_store(body):
    with pytest.raises(ReferenceDataError, match="README line"):
        parse_readme_tables(f"# H\n<table>\n{body}\n</table>\n")


def test_every_stored_cell_matches_the_readme(readme_text):
    parsed = {p.path: p for p in parse_readme_tables(readme_text)}
    for table in load_reference_tables():
        source = parsed[table.section.path]
        assert source.heading == table.section.heading
        assert table.footnotes == source.footnotes
        assert [c.inner for c in source.header.cells] == [table.layout.corner] + [
            c.header for c in table.columns
        ]
        assert len(source.rows) == len(table.rows)  # the two 1.5 base tables have no group rows
        for stored, printed in zip(table.rows, source.rows, strict=True):
            label = stored.name + "".join(stored.marks) + stored.markup.suffix
            if stored.markup.strong:
                label = f"<strong>{label}</strong>"
            assert printed.cells[0].inner == label
            assert printed.hidden == stored.hidden
            assert stored.group is None
            for cell, printed_cell in zip(stored.cells, printed.cells[1:], strict=True):
                text = cell.display + "".join(cell.marks)
                assert printed_cell.inner == (f"<strong>{text}</strong>" if cell.bold else text)
                assert cell.value == (
                    float(cell.display) if re.fullmatch(r"\d+\.\d+", cell.display) else None
                )


def test_extract_script_writes_exactly_the_checked_in_files(readme_text, tmp_path):
    readme = tmp_path / "kanana-README.md"
    readme.write_text(readme_text, encoding="utf-8")
    assert main(["--extract", str(readme), "--out", str(tmp_path / "out")]) == 0
    stored = resource_dir("results/reference")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(p.name for p in stored.glob("*.json"))
    for name in written:
        assert (tmp_path / "out" / name).read_bytes() == (stored / name).read_bytes(), name


def test_extract_script_fails_in_one_line_when_a_table_is_missing(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(SYNTHETIC_README, encoding="utf-8")
    assert main(["--extract", str(readme), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: table 'kanana-1.5-base': 0 README tables under Kanana 1.5 > Performance"
    )
    assert not (tmp_path / "out").exists()


def test_the_format_reproduces_all_eight_readme_tables(readme_text):
    """The later tables (instruct, Kanana 1.0 scale groups, transposed embedding) fit the format:
    built with placeholder benchmark ids, each re-renders exactly as printed."""
    parsed = parse_readme_tables(readme_text)
    assert len(parsed) == 8
    for i, table in enumerate(parsed):
        transposed = table.path[-1] == "Embedding Model Performance"
        heads = (
            [r.cells[0].inner for r in table.rows]
            if transposed
            else [c.inner for c in table.header.cells[1:]]
        )
        columns = {
            h: (re.sub(r"[^a-z0-9]+", "_", h.lower()).strip("_") + "@x", "percent") for h in heads
        }
        orientation = "models_as_columns" if transposed else "models_as_rows"
        spec = TableSpec(f"t{i}", "t", "base", table.path, columns, orientation)
        stored = table_from_parsed(table, spec, Source("README.md", "0" * 64, table.line))
        assert render_readme_table(stored) == table.markup, table.path
