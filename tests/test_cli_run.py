"""`kanana-eval run` end to end on the tiny random Llama, and its one-line errors on bad input."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from kanana_eval.cli.main import main
from kanana_eval.results.io import load_run, read_jsonl


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tiny_run(tiny_llama, offline_mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    args = ["run", "--model", str(tiny_llama), "--data-dir", str(offline_mirror), "--limit", "4",
            "--benchmarks", "mmlu,gsm8k,humaneval", "--output-dir", str(out), "--batch-size", "4"]
    assert main(args) == 0
    (run_dir,) = list((out / tiny_llama.name.lower()).iterdir())
    return args, out, run_dir


def test_run_writes_schema_valid_results(tiny_run):
    _, _, run_dir = tiny_run
    manifest, scores = load_run(run_dir)  # validates both against schema v1
    assert scores["smoke"] is True and scores["limit"] == 4
    assert [r["benchmark"] for r in scores["scores"]] == ["mmlu@base", "humaneval@base",
                                                          "gsm8k@base"]
    for row in scores["scores"]:
        items = read_jsonl(run_dir / "items" / f"{row['benchmark']}.jsonl", kind="item")
        assert len(items) == row["n"] == 4
        assert len({i["item_id"] for i in items}) == 4
        assert row["value"] == pytest.approx(sum(i["score"] for i in items) / 4)
    data = manifest["benchmarks"]["mmlu@base"]["data"]
    assert data["source"] == "mirror" and data["derived_fewshot"] is True
    assert data["fingerprint"].startswith("sha256:")
    assert manifest["model"]["fingerprint"].startswith("sha256:")
    assert manifest["engine"]["dtype"] == "float32" and manifest["engine"]["backend"] == "hf"
    assert manifest["benchmarks"]["mmlu@base"]["lm_eval_tasks"]["mmlu_abstract_algebra"] == 1.0
    humaneval = read_jsonl(run_dir / "items" / "humaneval@base.jsonl")
    assert humaneval[0]["item_id"] == "HumanEval/0"
    assert humaneval[0]["verdict"] in {"passed", "failed", "timeout", "error"}


def test_rerun_repeats_the_run_from_its_manifest_with_equal_scores(tiny_run, tmp_path):
    _, _, run_dir = tiny_run
    assert main(["rerun", str(run_dir), "--output-dir", str(tmp_path)]) == 0
    (again,) = list(tmp_path.glob("*/*"))
    first, second = load_run(run_dir)[1], load_run(again)[1]
    assert [r["value"] for r in first["scores"]] == [r["value"] for r in second["scores"]]
    for bench in ("mmlu@base", "gsm8k@base", "humaneval@base"):
        a = read_jsonl(run_dir / "items" / f"{bench}.jsonl")
        b = read_jsonl(again / "items" / f"{bench}.jsonl")
        assert [(x["item_id"], x["output"]) for x in a] == [(x["item_id"], x["output"]) for x in b]


@pytest.mark.parametrize("argv,message", [
    (["run", "--model", "no-such-model-xyz"], "unknown model 'no-such-model-xyz'"),
    (["run", "--model", "smollm2-135m-instruct", "--benchmarks", "mmlu,bogus"],
     "unknown benchmark(s) bogus"),
    # an instruct checkpoint runs the instruct protocol; offline its hub data cannot be fetched
    (["run", "--model", "kanana-1.5-8b-instruct-2505", "--benchmarks", "ifeval"],
     "cannot load dataset google/IFEval"),
    (["run", "--model", "kanana-1.5-8b-instruct-2505", "--benchmarks", "gsm8k@base"],
     "unknown benchmark(s) gsm8k@base"),
    (["run", "--model", "kanana-1.5-15.7b-a3b-base", "--yarn"],
     "does not take the YaRN 128K override"),
    # the hub path, offline: the dataset cannot be fetched
    (["run", "--model", "kanana-1.5-8b-base", "--benchmarks", "gsm8k"],
     "cannot load dataset openai/gsm8k"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("kanana-eval: error:")


def test_missing_data_and_unreachable_endpoint_leave_results_untouched(tiny_run, tiny_llama,
                                                                        tmp_path, capsys):
    _, out, _ = tiny_run
    before = _tree_digest(out)
    empty_mirror = tmp_path / "empty"
    empty_mirror.mkdir()
    assert main(["run", "--model", str(tiny_llama), "--data-dir", str(empty_mirror),
                 "--benchmarks", "gsm8k", "--output-dir", str(out)]) == 2
    assert "openai/gsm8k is missing from the mirror" in capsys.readouterr().err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["run", "--model", str(tiny_llama), "--backend", "openai",
                 "--base-url", f"http://127.0.0.1:{port}/v1", "--data-dir", str(tiny_run[0][4]),
                 "--benchmarks", "gsm8k", "--output-dir", str(out)]) == 2
    assert "cannot reach the endpoint" in capsys.readouterr().err
    assert _tree_digest(out) == before


def test_malformed_manifest_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    assert main(["rerun", str(run_dir)]) == 2
    assert "manifest record fails schema v1" in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("kanana-1.5-8b-base" in out and "smollm2-135m-instruct" in out
            and "kanana-1.5-8b ->" in out)
    assert main(["benchmarks"]) == 0
    out = capsys.readouterr().out
    assert "mbpp@base" in out and "google-research-datasets/mbpp" in out
    assert "protocol instruct:" in out and "evalplus release evalplus/HumanEvalPlus" in out
    assert "math500@instruct" in out and "only when named" in out


@pytest.mark.parametrize("flag,value", [("--limit", "-3"), ("--limit", "abc"),
                                        ("--batch-size", "0")])
def test_bad_counts_are_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "smollm2-135m-instruct", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err
