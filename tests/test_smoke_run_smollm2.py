"""The embedded default end to end: real SmolLM2 on the offline mirror, then the report."""

from __future__ import annotations

import pytest

from kanana_eval.cli.main import main
from kanana_eval.results.io import load_run, read_jsonl


@pytest.mark.slow
def test_smollm2_smoke_run_and_report(offline_mirror, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--model", "smollm2-135m-instruct", "--data-dir", str(offline_mirror),
                 "--limit", "5", "--benchmarks", "mmlu@base,humaneval@base,gsm8k@base",
                 "--batch-size", "1", "--no-cache", "--output-dir", str(out)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("smollm2-135m-instruct: mmlu@base ") and "SMOKE RUN" in summary
    (run_dir,) = list((out / "smollm2-135m-instruct").iterdir())
    manifest, scores = load_run(run_dir)
    assert scores["smoke"] is True and manifest["model"]["source"] == "offline"
    assert manifest["model"]["registry_key"] == "smollm2-135m-instruct"
    assert {r["benchmark"]: r["n"] for r in scores["scores"]} == {
        "mmlu@base": 5, "humaneval@base": 5, "gsm8k@base": 5}
    mmlu = read_jsonl(run_dir / "items" / "mmlu@base.jsonl", kind="item")
    assert all(len(i["loglikelihoods"]) == 4 and i["output"] in "ABCD" for i in mmlu)
    gsm8k = read_jsonl(run_dir / "items" / "gsm8k@base.jsonl", kind="item")
    assert any(i["output"] for i in gsm8k), "SmolLM2 generated nothing"

    report_dir = tmp_path / "report"
    assert main(["report", "smollm2-135m-instruct", "--results-dir", str(out),
                 "--out", str(report_dir)]) == 0
    html = (report_dir / "base.html").read_text()
    assert "smollm2-135m-instruct" in html and "Kanana-Flag-1.5-32.5B" in html
    assert run_dir.name in (report_dir / "base.md").read_text()
