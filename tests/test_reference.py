"""Published README numbers as data: the stored tables, their lookup, the README parser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kanana_eval.core.paths import resource_dir
from kanana_eval.report.readme_extract import main, table_from_parsed
from kanana_eval.report.readme_parser import parse_readme_tables
from kanana_eval.results.reference import (
    ReferenceDataError,
    ReferenceTable,
    Source,
    load_reference_table,
    load_reference_tables,
    published_score,
)
from kanana_eval.results.reference_specs import TABLE_SPECS, TableSpec, reference_only_columns

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


def test_all_eight_readme_tables_are_stored_in_readme_order():
    tables = load_reference_tables()
    assert [(t.id, t.kind) for t in tables] == [
        ("kanana-1.5-base", "base"),
        ("kanana-1.5-base-open", "base"),
        ("kanana-1.5-instruct", "instruct"),
        ("kanana-1.5-instruct-open", "instruct"),
        ("kanana-1.0-base", "base"),
        ("kanana-1.0-instruct-following", "instruct"),
        ("kanana-1.0-instruct-general", "instruct"),
        ("kanana-1.0-embedding", "embedding"),
    ]
    assert [t.id for t in tables] == [s.id for s in TABLE_SPECS]


def test_both_kanana_15_base_tables_are_stored_with_their_columns_and_rows():
    tables = {k: t for k, t in _tables().items() if t.kind == "base" and k.startswith("kanana-1.5")}
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
    tables = {k: t for k, t in _tables().items() if k.startswith("kanana-1.5-instruct")}
    assert set(tables) == {"kanana-1.5-instruct", "kanana-1.5-instruct-open"}
    for table in tables.values():
        assert [c.benchmark for c in table.columns] == [
            "mt_bench@instruct", "komt_bench@instruct", "ifeval@instruct",
            "humaneval_plus@instruct", "mbpp_plus@instruct", "gsm8k@instruct", "math@instruct",
            "mmlu_cot@instruct", "kmmlu_cot@instruct", "functionchatbench@instruct"]
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


def _printed_grid(readme: str, line: int) -> list[tuple[bool, list[tuple[str, str]]]]:
    """The README table starting at `line` as (hidden, [(opening tag, inner HTML), ...]) rows.

    Deliberately a second, naive parse (regexes only), independent of kanana_eval's parser.
    """
    lines = readme.split("\n")
    assert lines[line - 1].strip() == "<table>"
    text = "\n".join(lines[line - 1 :])
    body = text[: text.index("</table>")]
    rows, hidden = [], False
    for match in re.finditer(r"<!--|-->|<tr>(.*?)</tr>", body, re.S):
        if match.group(0) in ("<!--", "-->"):
            hidden = match.group(0) == "<!--"
        else:
            cells = re.findall(r"(<t[hd][^>]*>)(.*?)</t[hd]>", match.group(1), re.S)
            rows.append((hidden, cells))
    return rows


def _stored_text(text: str, marks: tuple[str, ...], bold: bool, suffix: str = "") -> str:
    inner = text + "".join(marks) + suffix
    return f"<strong>{inner}</strong>" if bold else inner


def _stored_grid(table: ReferenceTable) -> list[tuple[bool, list[tuple[str, str]]]]:
    """What the stored cells say the README prints, row by row, built here from the data."""
    layout = table.layout
    labels = [_stored_text(r.name, r.marks, r.markup.strong, r.markup.suffix) for r in table.rows]
    if layout.orientation == "models_as_columns":  # a hidden model would hide part of each row
        hidden = any(r.hidden or r.group is not None for r in table.rows)
        grid = [(hidden, [(layout.header_cell, h) for h in [layout.corner, *labels]])]
        for i, column in enumerate(table.columns):
            cells = [_stored_text(r.cells[i].display, r.cells[i].marks, r.cells[i].bold)
                     for r in table.rows]
            grid.append((hidden, [(layout.label_cell, column.header)]
                         + [(layout.value_cell, c) for c in cells]))
        return grid
    heads = [layout.corner, *(c.header for c in table.columns)]
    grid = [(False, [(layout.header_cell, h) for h in heads])]
    group = None
    for row, label in zip(table.rows, labels, strict=True):
        if row.group != group and row.group is not None:
            grid.append((row.hidden, [(layout.group_cell, row.group)]))
        group = row.group
        cells = [_stored_text(c.display, c.marks, c.bold) for c in row.cells]
        grid.append(
            (row.hidden, [(layout.label_cell, label)] + [(layout.value_cell, c) for c in cells])
        )
    return grid


def test_every_stored_cell_of_all_eight_tables_matches_the_readme(readme_text):
    """Value, display, bold, marks, hidden, group and order of every cell, against the README."""
    lines = readme_text.split("\n")
    tables = load_reference_tables()
    assert len(tables) == 8
    for table in tables:
        heading_line = max(i for i in range(table.source.line) if lines[i].startswith("#"))
        assert lines[heading_line] == table.section.heading
        printed = _printed_grid(readme_text, table.source.line)
        stored = _stored_grid(table)
        assert len(printed) == len(stored), table.id
        for number, (want, got) in enumerate(zip(printed, stored, strict=True)):
            assert want == got, (table.id, number)
        for row in table.rows:
            for cell in row.cells:
                numeric = re.fullmatch(r"\d+\.\d+", cell.display)
                expected = float(cell.display) if numeric else None
                assert cell.value == expected, (table.id, row.name)
        after = lines[heading_line + 1 :]
        assert all(f in after for f in table.footnotes)


def test_the_kanana_10_tables_keep_groups_quirks_and_inconsistencies_as_printed():
    tables = _tables()
    base = tables["kanana-1.0-base"]
    assert [(c.header, c.benchmark) for c in base.columns] == BASE_BENCHMARKS
    groups = list(dict.fromkeys(r.group for r in base.rows))
    assert groups == ["27b+ scale", "7b+ scale", "2b+ scale", "70b+ scale"]  # README order
    # colspan="8" on 6 and 7 benchmark columns alike: stored as printed, not "fixed".
    assert base.layout.group_cell == '<th colspan="8" height="30px">'
    following = tables["kanana-1.0-instruct-following"]
    assert len(following.columns) == 5
    assert following.layout.group_cell == base.layout.group_cell
    # Three-decimal judge scores and 0.856-style fractions keep their printed text.
    flag = following.rows[0]
    assert [(c.display, c.value, c.bold) for c in flag.cells] == [
        ("8.356", 8.356, False), ("9.524", 9.524, True), ("8.058", 8.058, True),
        ("54.14", 54.14, False), ("0.856", 0.856, True)]
    assert [c.scale for c in following.columns] == [
        "judge_1_10", "judge_1_10", "judge_1_10", "wb_score", "fraction"]
    # The best value is not always bold: the 70b+ rows are never bold.
    qwen72 = next(r for r in tables["kanana-1.0-instruct-general"].rows if r.name == "Qwen2.5-72b")
    assert qwen72.cells[0].display == "87.14" and not any(c.bold for c in qwen72.cells)
    # The README is not self-consistent across releases: both numbers are kept.
    [old] = published_score("Kanana-Essence-9.8b", "haerae@base", [base])
    [new] = published_score("Kanana-Essence-9.8B", "haerae@base", [tables["kanana-1.5-base"]])
    assert (old.display, new.display) == ("84.98", "84.97")
    emb = tables["kanana-1.0-embedding"]
    assert emb.layout.orientation == "models_as_columns" and emb.layout.corner == "Backbone"
    assert [c.header for c in emb.columns] == ["English", "Korean", "Avg."]
    assert [r.name for r in emb.rows][-1] == "Qwen-2.5-1.5b"  # spelled as printed


def test_kanana_10_columns_reuse_a_protocol_id_only_for_the_same_measurement():
    tables = _tables()
    general = tables["kanana-1.0-instruct-general"]
    assert [(c.header, c.benchmark) for c in general.columns] == [
        ("MMLU", "mmlu_cot@instruct"), ("KMMLU", "kmmlu_cot@instruct"),
        ("HAE-RAE", "haerae@instruct"), ("HumanEval+", "humaneval_plus@instruct"),
        ("MBPP+", "mbpp_plus@instruct"), ("GSM8K", "gsm8k@instruct"), ("MATH", "math@instruct")]
    # The evidence: Kanana-Nano-2.1B prints the same numbers under both releases' headers.
    for benchmark in ("mmlu_cot@instruct", "kmmlu_cot@instruct", "gsm8k@instruct", "math@instruct",
                      "humaneval_plus@instruct", "mbpp_plus@instruct"):
        cells = published_score("Kanana-Nano-2.1B", benchmark)
        assert {c.table_id for c in cells} == {
            "kanana-1.5-instruct", "kanana-1.5-instruct-open", "kanana-1.0-instruct-general"}
        assert len({c.display for c in cells}) == 1, benchmark
    # IFEval: one benchmark, printed as percent in 1.5 and as a fraction in 1.0.
    ifeval = {c.table_id: (c.display, c.scale) for c in published_score("Kanana-Nano-2.1b",
                                                                        "ifeval@instruct")}
    assert ifeval["kanana-1.5-instruct"] == ("71.97", "percent")
    assert ifeval["kanana-1.0-instruct-following"] == ("0.720", "fraction")


def test_reference_only_columns_are_those_no_protocol_runs():
    tables = _tables()
    only = {k: [c.header for c in reference_only_columns(t)] for k, t in tables.items()}
    assert only == {
        "kanana-1.5-base": [],
        "kanana-1.5-base-open": [],
        "kanana-1.5-instruct": [],
        "kanana-1.5-instruct-open": [],
        "kanana-1.0-base": [],
        "kanana-1.0-instruct-following": ["LogicKor", "WildBench"],
        "kanana-1.0-instruct-general": ["HAE-RAE"],
        "kanana-1.0-embedding": ["English", "Korean", "Avg."],
    }


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


def test_every_readme_table_has_a_spec(readme_text):
    """A table added to the README fails here until it gets a TableSpec (and is stored)."""
    paths = [p.path for p in parse_readme_tables(readme_text)]
    assert paths == [s.path for s in TABLE_SPECS]
