"""`kanana-eval score BENCHMARK FILE`: stored completions scored by the run's own scorers, no
model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kanana_eval.cli.main import main
from kanana_eval.data.evalplus_release import load_problems
from kanana_eval.pipeline.run import summary_line  # noqa: F401  (the CLI prints it)
from kanana_eval.results.io import load_run, read_jsonl
from kanana_eval.scoring.answer_rules import gsm8k_target


def _gsm8k_rows(mirror, n: int) -> list[dict]:
    (path,) = (mirror / "openai/gsm8k").rglob("test-*.parquet")
    return pd.read_parquet(path).head(n).to_dict("records")


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def test_gold_completions_score_full_marks_and_the_run_folder_says_where_they_came_from(
        offline_mirror, tmp_path, capsys):
    rows = _gsm8k_rows(offline_mirror, 4)
    completions = [{"item_id": str(i),
                    "response": "Let me think. So the answer is "
                                f"\\boxed{{{gsm8k_target(r['answer'])}}}."}
                   for i, r in enumerate(rows)]
    completions[3]["response"] = "I do not know."  # no answer: counted, scored wrong
    file = _write(tmp_path / "gsm8k.jsonl", completions)
    out = tmp_path / "results"
    assert main(["score", "gsm8k@instruct", file, "--data-dir", str(offline_mirror),
                 "--output-dir", str(out)]) == 0
    assert "gsm8k@instruct 75.00" in capsys.readouterr().out
    (run_dir,) = list(out.glob("*/*"))
    manifest, scores = load_run(run_dir)
    assert manifest["model"]["source"] == "completions"
    assert manifest["model"]["fingerprint"].startswith("sha256:")
    (row,) = scores["scores"]
    assert (row["value"], row["n"], row["n_no_answer"], scores["smoke"]) == (0.75, 4, 1, True)
    items = read_jsonl(run_dir / "items" / "gsm8k@instruct.jsonl", kind="item")
    assert [i["verdict"] for i in items] == ["correct", "correct", "correct", "no_answer"]
    # The prompt is the task's own 0-shot \boxed{} prompt (no chat template: no model to give one).
    assert items[0]["prompt"].startswith("Put your final answer within \\boxed{}.\n\n")

    # A run's own items file is a completions file too: re-scoring it gives the same scores.
    again = tmp_path / "again"
    assert main(["score", "gsm8k@instruct", str(run_dir / "items" / "gsm8k@instruct.jsonl"),
                 "--data-dir", str(offline_mirror), "--output-dir", str(again)]) == 0
    (run2,) = list(again.glob("*/*"))
    assert load_run(run2)[1]["scores"][0]["value"] == 0.75

    # rerun replays a score run from its manifest.
    third = tmp_path / "third"
    assert main(["rerun", str(run_dir), "--output-dir", str(third)]) == 0
    assert load_run(next(third.glob("*/*")))[1]["scores"][0]["value"] == 0.75


@pytest.mark.parametrize("lines,benchmark,message", [
    (['{"item_id": "0", "response": "x"}', "{not json"], "gsm8k@instruct", ":2 is not valid JSON"),
    (['{"item_id": "0"}'], "gsm8k@instruct", "needs a string item_id"),
    (['{"item_id": "no-such-item", "response": "x"}'], "gsm8k@instruct", "not in gsm8k@instruct"),
    (['{"item_id": "0", "response": "a"}', '{"item_id": "0", "response": "b"}'], "gsm8k@instruct",
     "repeats item 0"),
    (['{"item_id": "abstract_algebra/0", "response": "A"}'], "mmlu@base", "needs a model"),
    (['{"item_id": "0", "response": "x"}'], "gsm8k", "is ambiguous"),
    (['{"item_id": "0", "response": "x"}'], "bogus", "is unknown"),
])
def test_bad_completions_are_one_line_errors_and_write_nothing(offline_mirror, tmp_path, capsys,
                                                               lines, benchmark, message):
    file = tmp_path / "c.jsonl"
    file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "results"
    assert main(["score", benchmark, str(file), "--data-dir", str(offline_mirror),
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("kanana-eval: error:")
    assert not out.exists() or not any(out.rglob("scores.json"))


def test_evalplus_samples_format_is_scored_as_evalplus_reads_it(offline_mirror, tmp_path, capsys):
    problems = load_problems("humaneval", version="v0.1.10",
                             source=offline_mirror
                             / "evalplus/HumanEvalPlus/HumanEvalPlus-v0.1.10.jsonl.gz")
    p0, p1, p2 = (problems[f"HumanEval/{i}"] for i in (0, 1, 2))
    samples = [
        {"task_id": p0["task_id"], "solution": p0["prompt"] + p0["canonical_solution"]},
        # a completion is appended to the prompt
        {"task_id": p1["task_id"], "completion": p1["canonical_solution"]},
        {"task_id": p2["task_id"], "solution": p2["prompt"] + "    return 0\n"},
    ]
    file = _write(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "results"
    assert main(["score", "humaneval_plus", file, "--data-dir", str(offline_mirror),
                 "--output-dir", str(out), "--workers", "2"]) == 0
    assert "humaneval_plus@instruct 66.67" in capsys.readouterr().out
    (run_dir,) = list(out.glob("*/*"))
    items = read_jsonl(run_dir / "items" / "humaneval_plus@instruct.jsonl", kind="item")
    assert [i["verdict"] for i in items] == ["passed", "passed", "failed"]
    assert items[1]["details"]["solution"].startswith(p1["prompt"])
    (row,) = load_run(run_dir)[1]["scores"]
    assert row["metrics"] == {"pass@1_base": 2 / 3, "pass@1_plus": 2 / 3}
