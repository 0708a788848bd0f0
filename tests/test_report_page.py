"""The HTML report page's run views and `report --update`: content pinned on hand-made runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from run_builder import TestBenchmark, write_test_run

from kanana_eval.cli.main import main
from kanana_eval.core.errors import ResultsError
from kanana_eval.report.page import benchmark_views, radar_series, run_dashboard
from kanana_eval.report.render import render_markdown_table, render_readme_table
from kanana_eval.report.tables import load_run_row
from kanana_eval.report.update import update_text
from kanana_eval.results.io import read_json
from kanana_eval.results.records import Item
from kanana_eval.results.reference import load_reference_tables

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


COLUMNS = {"ifeval@instruct": "IFEval", "humaneval_plus@instruct": "HumanEval+",
           "gsm8k@instruct": "GSM8K (0-shot)", "math@instruct": "MATH",
           "mt_bench@instruct": "MT-Bench"}


def _items(bench: str) -> list[Item]:
    """Four items whose prompt needs escaping and clipping in the page."""
    return [Item(benchmark=bench, item_id=str(k), subtask=None,
                 prompt="<b>prompt</b> " + "x" * 2000, output=f"answer {k}", extracted="42",
                 target="42", score=1.0 if k % 2 else 0.0,
                 verdict="correct" if k % 2 else "wrong") for k in range(4)]


def make_run(root: Path, *, values: dict[str, tuple[float, float | None]] | None = None,
             readme_rows: tuple[str, ...] = ("Kanana-1.5-8B",)) -> Path:
    """An instruct run of `my-model` under `root`, written by the package's RunWriter."""
    values = values or {"ifeval@instruct": (0.80, 0.01), "humaneval_plus@instruct": (0.70, 0.035),
                        "gsm8k@instruct": (0.50, 0.02), "math@instruct": (0.60, 0.01),
                        "mt_bench@instruct": (7.5, 0.1)}
    benchmarks = {}
    for bench, (value, stderr) in values.items():
        judged = bench.startswith("mt_bench")
        benchmarks[bench] = TestBenchmark(
            items=_items(bench), value=value, stderr=stderr, column=COLUMNS[bench], metric="m",
            n_available=4, subtasks={"writing": (8.0, 2), "math": (7.0, 2)} if judged else {})
    return write_test_run(root, benchmarks, model="my-model", run_id="20261125T120000Z-abcdef12",
                          readme_rows=readme_rows)


def test_deltas_against_the_models_readme_row_are_flagged_beyond_the_error_bar(tmp_path):
    run = make_run(tmp_path / "run")
    scores = read_json(run / "scores.json")
    views = {v.benchmark: v for v in benchmark_views(scores, load_reference_tables())}
    ifeval = views["ifeval@instruct"]  # Kanana-1.5-8B IFEval is published as 80.11 (two tables)
    assert ifeval.value == "80.00" and ifeval.error_bar == "1.96"
    assert {p["display"] for p in ifeval.published} == {"80.11"}
    assert {p["delta"] for p in ifeval.published} == {"-0.11"}
    assert {p["flag"] for p in ifeval.published} == {"same"}
    gsm = views["gsm8k@instruct"]  # 50.00 ± 3.92 against 87.64: far below the error bar
    assert all(p["flag"] == "below" and p["delta"] == "-37.64" for p in gsm.published)
    mt = views["mt_bench@instruct"]  # judge scores keep their scale: 7.50 vs 7.76
    assert mt.value == "7.50" and {p["delta"] for p in mt.published} == {"-0.26"}
    assert [c[0] for c in mt.categories] == ["math", "writing"]


def test_radar_puts_the_run_beside_the_published_kanana_models(tmp_path):
    run = make_run(tmp_path / "run")
    table = next(t for t in load_reference_tables() if t.id == "kanana-1.5-instruct")
    axes, series = radar_series(read_json(run / "scores.json"), table)
    assert axes == ["MT-Bench", "IFEval", "HumanEval+", "GSM8K (0-shot)", "MATH"]
    assert series[0]["run"] and series[0]["values"] == pytest.approx([75.0, 80.0, 70.0, 50.0, 60.0])
    assert all("Kanana" in s["name"] for s in series[1:]) and len(series) > 3


def test_items_are_escaped_clipped_and_browsable_in_the_page(tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "instruct.html").read_text()
    assert "&lt;b&gt;prompt&lt;/b&gt;" in page and "<b>prompt</b>" not in page
    assert "more characters]" in page and 'data-benchmark="mt_bench@instruct"' in page
    assert "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    dash = run_dashboard(run, load_reference_tables(), "instruct")
    assert [b["n_items"] for b in dash["benchmarks"]] == [4] * 5


README = ("# My model\n\nIntro text with trailing spaces   \n"
          """<!-- kanana-eval:table kanana-1.5-instruct -->
old table
<!-- /kanana-eval:table -->
middle\r\n<!-- kanana-eval:table kanana-1.5-base format=markdown -->
<!-- /kanana-eval:table -->
end without newline""")


def test_update_replaces_only_the_marked_tables_and_keeps_every_other_byte(tmp_path):
    run = load_run_row(make_run(tmp_path / "run"))
    new, updated = update_text(README, [run])
    assert updated == ["kanana-1.5-instruct", "kanana-1.5-base"]
    tables = {t.id: t for t in load_reference_tables()}
    html = render_readme_table(tables["kanana-1.5-instruct"], [run]).rstrip("\n")
    md = render_markdown_table(tables["kanana-1.5-base"], []).rstrip("\n")
    assert new == README.replace("\nold table\n", "\n" + html + "\n").replace(
        "markdown -->\n<!--", "markdown -->\n" + md + "\n<!--")
    assert "my-model" in new and update_text(new, [run])[0] == new  # idempotent


@pytest.mark.parametrize("text, message", [
    ("<!-- kanana-eval:table nope -->\n<!-- /kanana-eval:table -->", "nope"),
    ("<!-- kanana-eval:table kanana-1.5-base -->\nno end", "not closed"),
    ("<!-- /kanana-eval:table -->", "closes no table"),
    ("<!-- kanana-eval:table kanana-1.5-base format=pdf -->\n<!-- /kanana-eval:table -->",
     "format"),
])
def test_update_refuses_bad_markers(text, message):
    with pytest.raises(ResultsError, match=message):
        update_text(text, [])


def test_update_command_leaves_a_bad_file_untouched_and_exits_2(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- kanana-eval:table nope -->\nx\n<!-- /kanana-eval:table -->\n")
    before = readme.read_bytes()
    assert main(["report", "--update", str(readme)]) == 2
    assert readme.read_bytes() == before and "nope" in capsys.readouterr().err
    readme.write_text(README)
    assert main(["report", "--update", str(readme)]) == 0
    assert "Kanana-Flag-1.5-32.5B" in readme.read_text()


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing under CI: `make install` installs the Debian package")
        pytest.skip("chromium is not installed (make install installs it)")
    return found


def test_the_report_page_opens_in_headless_chromium_without_console_errors(tmp_path):
    chromium = _chromium()
    run = make_run(tmp_path / "run")
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "instruct.html").resolve().as_uri()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120, check=True)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # the page logs nothing: no error, no warning
    assert 'data-ready="1"' in dom.stdout  # its script ran to the end
    assert '<div id="js-errors"></div>' in dom.stdout
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-instruct.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1300,2600", page],
                   capture_output=True, text=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
