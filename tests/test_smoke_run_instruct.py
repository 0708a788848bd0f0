"""The instruct protocol end to end: real SmolLM2-135M-Instruct, its chat template, the offline
data."""

from __future__ import annotations

import pytest

from kanana_eval.cli.main import main
from kanana_eval.results.io import load_run, read_jsonl

BENCHMARKS = ["ifeval@instruct", "humaneval_plus@instruct", "mbpp_plus@instruct", "gsm8k@instruct",
              "math@instruct", "mmlu_cot@instruct", "kmmlu_cot@instruct"]


@pytest.mark.slow
def test_smollm2_instruct_smoke_run_and_report(offline_mirror, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--model", "smollm2-135m-instruct", "--protocol", "instruct",
                 "--data-dir", str(offline_mirror), "--limit", "2", "--max-gen-toks", "24",
                 "--benchmarks", ",".join(BENCHMARKS), "--batch-size", "1", "--no-cache",
                 "--output-dir", str(out)]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("smollm2-135m-instruct: ifeval@instruct ") and "SMOKE RUN" in summary
    (run_dir,) = list((out / "smollm2-135m-instruct").iterdir())
    manifest, scores = load_run(run_dir)
    assert scores["smoke"] is True and scores["protocols"] == ["instruct"]
    assert {r["benchmark"]: r["n"] for r in scores["scores"]} == {b: 2 for b in BENCHMARKS}

    # The model's own chat template rendered every prompt, and the manifest names it.
    template = manifest["engine"]["chat_template"]
    assert template["applied"] is True and len(template["sha256"]) == 64
    assert "<|im_start|>" in template["template"]
    for bench in BENCHMARKS:
        spec = manifest["benchmarks"][bench]["spec"]
        assert spec["generation"]["max_gen_toks"] == 24 and spec["generation"]["do_sample"] is False
        items = read_jsonl(run_dir / "items" / f"{bench}.jsonl", kind="item")
        assert all(i["prompt"].startswith("<|im_start|>") for i in items), bench
        assert all(i["prompt"].rstrip().endswith(("<|im_start|>assistant", "```python"))
                   for i in items), bench
        assert all(isinstance(i.get("truncated"), bool) for i in items), bench
    # 24 tokens cut nearly every CoT answer: flagged and counted, never silently scored.
    rows = {r["benchmark"]: r for r in scores["scores"]}
    assert rows["mmlu_cot@instruct"]["n_truncated"] >= 1
    assert set(rows["ifeval@instruct"]["metrics"]) == {
        "prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
        "inst_level_loose_acc"}
    assert set(rows["humaneval_plus@instruct"]["metrics"]) == {"pass@1_base", "pass@1_plus"}
    assert manifest["sandbox"]["disk_quota"]["bytes"] > 0  # what the sandbox enforced is recorded
    code = read_jsonl(run_dir / "items" / "humaneval_plus@instruct.jsonl", kind="item")
    assert all(i["verdict"] in {"passed", "failed", "timeout"} and "plus_status" in i["details"]
               for i in code)

    report_dir = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(report_dir)]) == 0
    html = (report_dir / "instruct.html").read_text()
    assert "smollm2-135m-instruct" in html and "Kanana-1.5-8B" in html and "HumanEval+" in html
