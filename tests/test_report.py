"""Rendering README tables from reference data, with run rows added from scores.json files."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from run_builder import TestBenchmark as RunBenchmark
from run_builder import write_test_run

from kanana_eval.core.errors import ResultsError
from kanana_eval.report import (
    build_table_view,
    load_run_row,
    render_markdown_table,
    render_readme_table,
    render_report,
)
from kanana_eval.report.formatting import ScaleError, format_delta, format_number
from kanana_eval.report.readme_extract import table_from_parsed
from kanana_eval.report.readme_parser import parse_readme_tables
from kanana_eval.results.reference import (
    ReferenceDataError,
    ReferenceTable,
    Source,
    get_reference_table,
)
from kanana_eval.results.reference_specs import TableSpec

HEADINGS = {  # table id -> (release heading, table heading), as the README prints them
    "kanana-1.5-base": ("\n# Kanana 1.5\n", "\n### Base Model Evaluation\n"),
    "kanana-1.5-base-open": ("\n# Kanana 1.5\n", "\n#### Open-source Base Model Evaluation\n"),
    "kanana-1.5-instruct": ("\n# Kanana 1.5\n", "\n### Instruct Model Evaluation\n"),
    "kanana-1.5-instruct-open": (
        "\n# Kanana 1.5\n",
        "\n#### Open-source Instruct Model Evaluation\n",
    ),
    "kanana-1.0-base": ("\n# Kanana 1.0\n", "\n### Base Model Evaluation\n"),
    "kanana-1.0-instruct-following": (
        "\n# Kanana 1.0\n",
        "\n#### Instruction-following Benchmarks\n",
    ),
    "kanana-1.0-instruct-general": ("\n# Kanana 1.0\n", "\n#### General Benchmarks\n"),
    "kanana-1.0-embedding": ("\n# Kanana 1.0\n", "\n### Embedding Model Performance\n"),
}


@pytest.fixture(scope="module")
def readme_text(shared_data_dir: Path) -> str:
    path = shared_data_dir.parent / "kanana-README.md"
    if not path.is_file():
        pytest.fail(f"{path} is missing next to KANANA_SHARED_DATA")
    return path.read_text(encoding="utf-8")


def _readme_table_markup(text: str, release: str, heading: str) -> str:
    """The exact README substring from <table> to </table> under a heading of one release."""
    start = text.index(heading, text.index(release))
    begin = text.index("<table>", start)
    return text[begin : text.index("</table>", begin) + len("</table>")]


HEADERS = {  # benchmark id -> README column, as the runner records it
    "mmlu@base": "MMLU",
    "kmmlu@base": "KMMLU",
    "haerae@base": "HAE-RAE",
    "humaneval@base": "HumanEval",
    "mbpp@base": "MBPP",
    "gsm8k@base": "GSM8K",
}
DEFAULT_SCORES = {
    "mmlu@base": 0.6424,
    "kmmlu@base": 0.5,
    "haerae@base": 0.0,
    "mbpp@base": None,
    "gsm8k@base": 0.03125,
}


def write_run(
    root: Path,
    *,
    smoke: bool = True,
    scores: dict[str, float | None] | None = None,
    readme_rows: tuple[str, ...] = ("Kanana-1.5-8B",),
    run_id: str = "20261125T101500Z",
) -> Path:
    """A small run folder written by the package's RunWriter; returns the run folder.

    Each benchmark has 20 of 100 items scored and the given value (None: no score); MT-Bench and
    KoMT-Bench are judged (1-10 scale), every other benchmark a fraction.
    """
    scores = DEFAULT_SCORES if scores is None else scores
    benchmarks = {
        b: RunBenchmark(
            items=[None] * 20, value=v, column=HEADERS.get(b, b.split("@")[0]), n_available=100
        )
        for b, v in scores.items()
    }
    return write_test_run(
        root,
        benchmarks,
        model="smollm2-135m",
        registry_key="smollm2-135m",
        readme_rows=readme_rows,
        run_id=run_id,
        smoke=smoke,
        limit=20 if smoke else None,
    )


def edit_scores(run: Path, change: Callable[[dict], object]) -> None:
    """Change a stored scores.json by hand (what RunWriter refuses to write)."""
    data = json.loads((run / "scores.json").read_text())
    change(data)
    (run / "scores.json").write_text(json.dumps(data))


@pytest.mark.parametrize("table_id", sorted(HEADINGS))
def test_reference_data_alone_reproduces_the_readme_table_byte_for_byte(readme_text, table_id):
    expected = _readme_table_markup(readme_text, *HEADINGS[table_id])
    assert render_readme_table(get_reference_table(table_id)) == expected


def _with_cell(table: ReferenceTable, row: int, col: int, display: str) -> ReferenceTable:
    cells = list(table.rows[row].cells)
    cells[col] = dataclasses.replace(cells[col], value=float(display), display=display)
    rows = list(table.rows)
    rows[row] = dataclasses.replace(rows[row], cells=tuple(cells))
    return dataclasses.replace(table, rows=tuple(rows))


def _cell_line(table: ReferenceTable, row: int, col: int) -> int:
    """Line of a value cell in README markup: <table>, a header row, then one line per cell
    between <tr> and </tr>; a scale-group row takes 3 lines; transposed tables swap the roles."""
    if table.layout.orientation == "models_as_columns":
        width = len(table.rows)
        return 1 + (width + 3) + (width + 3) * col + 2 + row
    width = len(table.columns)
    groups = len({r.group for r in table.rows[: row + 1] if r.group is not None})
    return 1 + (width + 3) + (width + 3) * row + 3 * groups + 2 + col


@pytest.mark.parametrize(
    ("table_id", "row", "col"),
    [
        ("kanana-1.5-base", 2, 3),
        ("kanana-1.5-base", 5, 0),
        ("kanana-1.5-base-open", 4, 5),
        ("kanana-1.0-base", 13, 2),
        ("kanana-1.0-instruct-following", 0, 4),
        ("kanana-1.0-instruct-general", 17, 6),
        ("kanana-1.0-embedding", 2, 0),
    ],
)
def test_changing_one_stored_value_changes_exactly_that_cell(table_id, row, col):
    table = get_reference_table(table_id)
    changed_table = _with_cell(table, row, col, "99.99")
    old = table.rows[row].cells[col].display
    before = render_readme_table(table).split("\n")
    after = render_readme_table(changed_table).split("\n")
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [_cell_line(table, row, col)]
    cell = '        <td align="center">{}</td>'
    text = "<strong>{}</strong>" if table.rows[row].cells[col].bold else "{}"
    assert before[changed[0]] == cell.format(text.format(old))
    assert after[changed[0]] == cell.format(text.format("99.99"))
    md_before = render_markdown_table(table, include_hidden=True).split("\n")
    md_after = render_markdown_table(changed_table, include_hidden=True).split("\n")
    md_changed = [i for i, (a, b) in enumerate(zip(md_before, md_after, strict=True)) if a != b]
    assert len(md_changed) == 1
    cells_before, cells_after = (md[md_changed[0]].split(" | ") for md in (md_before, md_after))
    position = (row if table.layout.orientation == "models_as_columns" else col) + 1
    pairs = zip(cells_before, cells_after, strict=True)
    assert [i for i, (a, b) in enumerate(pairs) if a != b] == [position]
    assert cells_after[position].strip(" |*") == "99.99"


def test_a_run_folder_renders_as_an_extra_row(tmp_path):
    run = load_run_row(write_run(tmp_path / "run"))
    table = get_reference_table("kanana-1.5-base-open")
    html = render_readme_table(table, [run])
    published = render_readme_table(table)
    assert html.startswith(published.removesuffix("</table>"))
    assert html.removeprefix(published.removesuffix("</table>")) == (
        "    <tr>\n"
        "        <td>smollm2-135m (run 20261125T101500Z, smoke)§</td>\n"
        '        <td align="center">64.24</td>\n'
        '        <td align="center">50.00</td>\n'
        '        <td align="center">0.00</td>\n'
        '        <td align="center"></td>\n'
        '        <td align="center"></td>\n'
        '        <td align="center">3.13</td>\n'
        "    </tr>\n"
        "</table>"
    )
    notes = build_table_view(table, [run]).notes
    assert any(n.startswith("§ Smoke run 20261125T101500Z: limited to 20 items") for n in notes)
    assert (
        "Run 20261125T101500Z has no score for HumanEval, MBPP: those cells are left empty."
        in notes
    )


def test_a_full_run_has_no_smoke_mark_and_text_is_escaped(tmp_path):
    run_dir = write_run(tmp_path / "run", smoke=False)
    edit_scores(run_dir, lambda d: d.update(run_id="<b>x</b>"))  # not a folder name RunWriter takes
    run = load_run_row(run_dir)
    html = render_readme_table(get_reference_table("kanana-1.5-base"), [run])
    assert "<td>smollm2-135m (run &lt;b&gt;x&lt;/b&gt;)</td>" in html
    assert "§" not in html


def test_delta_rows_compare_with_the_published_row_of_the_runs_model(tmp_path):
    run = load_run_row(write_run(tmp_path / "run", scores={"mmlu@base": 0.65, "gsm8k@base": 0.6}))
    table = get_reference_table("kanana-1.5-base-open")
    lines = render_markdown_table(table, [run], with_deltas=True).split("\n")
    assert (
        lines[-2] == "| smollm2-135m (run 20261125T101500Z, smoke)§ | 65.00 |  |  |  |  | 60.00 |"
    )
    assert lines[-1] == "| Δ vs Kanana-1.5-8B | +0.76 |  |  |  |  | -3.53 |"
    # A row the README hides still gives published numbers (Kanana-1.5-2.1B in kanana-1.5-base).
    run = load_run_row(
        write_run(
            tmp_path / "run2",
            scores={"mmlu@base": 0.5},
            readme_rows=("Kanana-1.5-2.1B", "No-Such-Model"),
        )
    )
    view = build_table_view(get_reference_table("kanana-1.5-base"), [run], with_deltas=True)
    assert [r.kind for r in view.rows[-2:]] == ["run", "delta"]
    assert view.rows[-1].cells[0].display == "-6.30"
    assert any(
        "publishes no Kanana 1.5: Base Model Evaluation numbers for 'No-Such-Model'" in n
        for n in view.notes
    )


def test_markdown_table_has_the_readme_header_and_one_line_per_shown_row(tmp_path):
    table = get_reference_table("kanana-1.5-base")
    lines = render_markdown_table(table).split("\n")
    assert lines[0] == "| Models | MMLU | KMMLU | HAE-RAE | HumanEval | MBPP | GSM8K |"
    assert lines[1] == "| --- | :---: | :---: | :---: | :---: | :---: | :---: |"
    assert len(lines) == 2 + 6  # the README hides 3 of its 9 rows
    assert (
        lines[2] == "| **Kanana-Flag-1.5-32.5B** | 76.76 | 61.90 | 89.18 | 73.17 | 65.60 | 81.50 |"
    )
    assert len(render_markdown_table(table, include_hidden=True).split("\n")) == 2 + 9
    run = load_run_row(write_run(tmp_path / "run"))
    assert len(render_markdown_table(table, [run]).split("\n")) == 2 + 7
    open_lines = render_markdown_table(get_reference_table("kanana-1.5-base-open")).split("\n")
    assert open_lines[2].startswith("| **Kanana-1.5-15.7B-A3B (New!)** | 64.79 |")
    assert open_lines[4].startswith("| **Kanana-8B\\*** | 64.22 |")


def test_render_report_writes_base_pages_with_runs_footnotes_and_deltas(tmp_path):
    run_dir = write_run(tmp_path / "runs" / "r1")
    paths = render_report([run_dir], tmp_path / "out")
    assert [p.name for p in paths] == ["base.html", "base.md"]
    page, md = (p.read_text(encoding="utf-8") for p in paths)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "src=" not in page and "href=" not in page and "<link" not in page  # self-contained
    # The three base tables (Kanana 1.5, 1.5 open-source, 1.0) in README markup, then the run.
    assert page.count("<table>") == 3 and page.count('<table class="scores">') == 1
    assert (
        render_readme_table(get_reference_table("kanana-1.5-base")).removesuffix("</table>") in page
    )
    assert (
        '<p class="footnote">* This model is not an open-sourced, '
        "just for comparison with Kanana-1.5-8B</p>" in page
    )
    assert "<td>Δ vs Kanana-1.5-8B</td>" in page
    assert "§ Smoke run 20261125T101500Z" in page
    assert md.startswith("# kanana-eval report: base models\n")
    assert (
        "\n> \\* This model is not an open-sourced, just for comparison with Kanana-1.5-8B\n" in md
    )
    assert "| Δ vs Kanana-1.5-8B | 0.00 | +1.06 | -82.77 |  |  | -60.40 |" in md
    assert (
        md.count(
            "| smollm2-135m (run 20261125T101500Z, smoke)§ | 64.24 | 50.00 | 0.00 |  |  | 3.13 |"
        )
        == 3
    )


def test_render_report_without_runs_and_with_one_named_table(tmp_path):
    [page, md] = render_report([], tmp_path, tables=["kanana-1.5-base-open"])
    assert page.read_text(encoding="utf-8").count("<table>") == 1
    assert "No runs given" in md.read_text(encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="no README table 'nope'"):
        render_report([], tmp_path, tables=["nope"])


def test_render_report_refuses_runs_that_match_no_table(tmp_path):
    run = write_run(tmp_path / "run", scores={"mmlu@base": 0.5})
    # a benchmark no README column shows, of a protocol no README table is about
    edit_scores(run, lambda d: d["scores"][0].update(benchmark="math500@chat"))
    with pytest.raises(ResultsError, match="score no benchmark of any README table"):
        render_report([run], tmp_path / "out")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("smoke"), "fails scores.v1 schema at (top)"),
        (lambda d: d["scores"][0].update(value=64.24), "mmlu@base value 64.24 is outside 0-1"),
        (lambda d: d["scores"].append(dict(d["scores"][0])), "lists benchmark 'mmlu@base' twice"),
        (
            lambda d: d["scores"][0].update(benchmark="MMLU"),
            "fails scores.v1 schema at scores/0/benchmark",
        ),
    ],
)
def test_load_run_row_rejects_bad_scores_in_one_line(tmp_path, mutate, message):
    run = write_run(tmp_path / "run")
    edit_scores(run, mutate)
    with pytest.raises(ResultsError) as info:
        load_run_row(run)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_load_run_row_needs_a_scores_file(tmp_path):
    with pytest.raises(ResultsError, match="has no scores.json"):
        load_run_row(tmp_path)


def test_numbers_follow_the_kanana_15_conventions():
    assert format_number(0.6424, "fraction", "percent") == "64.24"
    assert format_number(0.03125, "fraction", "percent") == "3.13"  # half-up, not half-even
    assert format_number(1, "fraction", "percent") == "100.00"
    assert format_number(0.0, "fraction", "percent") == "0.00"
    assert format_number(7.666666, "judge_1_10", "judge_1_10") == "7.67"
    assert format_number(0.8555, "fraction", "fraction") == "0.856"
    assert format_delta("65.00", "64.24", "percent", "percent") == "+0.76"
    assert format_delta("64.24", "64.24", "percent", "percent") == "0.00"
    assert format_delta("3.13", "63.53", "percent", "percent") == "-60.40"
    assert format_delta("85.00", "0.856", "percent", "fraction") == "-0.60"
    with pytest.raises(ScaleError, match="cannot show a judge_1_10 value in a percent column"):
        format_number(7.5, "judge_1_10", "percent")


SYNTHETIC = """\
# R
### Grouped
<table>
    <tr>
        <th>Models</th>
        <th>MT-Bench</th>
        <th>IFEval</th>
    </tr>
    <tr>
        <th colspan="8" height="30px">27b+ scale</th>
    </tr>
    <tr>
        <td>Model-A</td>
        <td align="center"><strong>8.356</strong></td>
        <td align="center">0.856</td>
    </tr>
    <!-- <tr>
        <td>Model-B*</td>
        <td align="center">TBA</td>
        <td align="center">-</td>
    </tr> -->
    <tr>
        <th colspan="8" height="30px">2b+ scale</th>
    </tr>
    <tr>
        <td>Model-C</td>
        <td align="center">6.400</td>
        <td align="center"><strong>0.720</strong></td>
    </tr>
</table>
### Transposed
<table>
    <tr>
        <td align="center">Backbone</td>
        <td align="center">Model-A</td>
        <td align="center">Model-C</td>
    </tr>
    <tr>
        <td align="center">English</td>
        <td align="center">51.56</td>
        <td align="center"><strong>54.00</strong></td>
    </tr>
    <tr>
        <td align="center">Avg.</td>
        <td align="center"><strong>58.28</strong></td>
        <td align="center">56.35</td>
    </tr>
</table>
"""


def test_group_rows_and_transposed_tables_render_as_printed(tmp_path):
    grouped, transposed = parse_readme_tables(SYNTHETIC)
    columns = {
        "MT-Bench": ("mt_bench@instruct", "judge_1_10"),
        "IFEval": ("ifeval@instruct", "fraction"),
    }
    table = table_from_parsed(
        grouped, TableSpec("g", "G", "instruct", grouped.path, columns), Source("R", "0" * 64, 3)
    )
    assert render_readme_table(table) == grouped.markup
    md = render_markdown_table(table).split("\n")
    assert md[2:] == [
        "| **27b+ scale** |  |  |",
        "| Model-A | **8.356** | 0.856 |",
        "| **2b+ scale** |  |  |",
        "| Model-C | 6.400 | **0.720** |",
    ]
    run = load_run_row(write_run(tmp_path / "run", smoke=False, scores={"mmlu@base": 0.5}))
    assert render_readme_table(table, [run]).endswith(
        "    <tr>\n        <td>smollm2-135m (run 20261125T101500Z)</td>\n"
        '        <td align="center"></td>\n        <td align="center"></td>\n    </tr>\n</table>'
    )
    spec = TableSpec(
        "e",
        "E",
        "embedding",
        transposed.path,
        {"English": ("en@embedding", "percent"), "Avg.": ("avg@embedding", "percent")},
        "models_as_columns",
    )
    emb = table_from_parsed(transposed, spec, Source("R", "0" * 64, 20))
    assert render_readme_table(emb) == transposed.markup
    assert render_markdown_table(emb).split("\n")[0] == "| Backbone | Model-A | Model-C |"


def test_reference_only_columns_keep_published_numbers_and_leave_a_runs_cell_empty(tmp_path):
    run = load_run_row(
        write_run(
            tmp_path / "run",
            smoke=False,
            scores={"mt_bench@instruct": 7.5, "ifeval@instruct": 0.7968},
            readme_rows=("Kanana-Nano-2.1B",),
        )
    )
    table = get_reference_table("kanana-1.0-instruct-following")
    published = render_readme_table(table)
    assert '        <td align="center"><strong>9.524</strong></td>' in published  # LogicKor
    assert '        <td align="center">54.14</td>' in published  # WildBench
    view = build_table_view(table, [run], with_deltas=True)
    run_row, delta = view.rows[-2:]
    # MT-Bench, LogicKor, KoMT-Bench, WildBench, IFEval (a fraction column keeps 0.856 style)
    assert [c.display for c in run_row.cells] == ["7.50", "", "", "", "0.797"]
    assert [c.display for c in delta.cells] == ["+1.10", "", "", "", "+0.077"]
    assert delta.name == "Δ vs Kanana-Nano-2.1B"
    assert view.notes[:2] == (
        "Run 20261125T101500Z has no score for KoMT-Bench: those cells are left empty.",
        "LogicKor, WildBench: published numbers only, kanana-eval cannot run these benchmarks "
        "yet; run 20261125T101500Z's cells are left empty.",
    )
    html = render_readme_table(table, [run])
    assert html.removeprefix(published.removesuffix("</table>")) == (
        "    <tr>\n"
        "        <td>smollm2-135m (run 20261125T101500Z)</td>\n"
        '        <td align="center">7.50</td>\n'
        + '        <td align="center"></td>\n' * 3
        + '        <td align="center">0.797</td>\n'
        "    </tr>\n"
        "</table>"
    )


def test_a_run_in_the_transposed_embedding_table_is_one_more_column_of_empty_cells(tmp_path):
    run = load_run_row(write_run(tmp_path / "run", smoke=False, scores={"mmlu@base": 0.5}))
    table = get_reference_table("kanana-1.0-embedding")
    lines = render_readme_table(table, [run]).split("\n")
    published = render_readme_table(table).split("\n")
    assert len(lines) == len(published) + 4  # one more cell in the header and each of 3 rows
    # header: <table>, <tr>, Backbone + 5 backbones + the run, </tr>; then 9 lines per row
    assert lines[8] == '        <td align="center">smollm2-135m (run 20261125T101500Z)</td>'
    assert [lines[i] for i in (17, 26, 35)] == ['        <td align="center"></td>'] * 3
    assert [lines[i] for i in (16, 25, 34)] == [published[i] for i in (15, 23, 31)]
    [note] = build_table_view(table, [run]).notes
    assert note.startswith("English, Korean, Avg.: published numbers only")
    md = render_markdown_table(table, [run]).split("\n")
    assert md[0].endswith(" | Qwen-2.5-1.5b | smollm2-135m (run 20261125T101500Z) |")
    assert md[2] == "| English | 51.56 | 53.28 | **54.00** | 48.77 | 50.60 |  |"
