"""NIAH's optional 1-10 judge (--niah-judge) on the QA form, against the real local judge server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from openai_judge_server import JudgeServer, expected_rating
from tiny_llama import with_chat_template

from kanana_eval.cli.main import main
from kanana_eval.tasks.niah.generator import Needle
from kanana_eval.tasks.niah.judge_prompt import PROMPT_FILE, PROMPT_NAME, load_judge_prompt


@pytest.fixture(scope="module")
def chat_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_chat_template(tiny_llama, tmp_path_factory.mktemp("niah-chat-llama"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, judge_env: None) -> None:
    """Own judgment cache per test; judge_env: no route to the real API."""
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))


def _run(model: Path, out: Path, url: str) -> int:
    return main(["run", "--model", str(model), "--protocol", "instruct", "--benchmarks", "niah",
                 "--backend", "hf", "--niah-lengths", "1K,2K", "--niah-depths", "0,100",
                 "--output-dir", str(out), "--niah-judge", "--judge-base-url", url])


def _stored(out: Path) -> tuple[list[dict], dict, dict]:
    (model_dir,) = [p for p in out.iterdir() if p.is_dir()]
    (run_dir,) = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    items = [json.loads(line) for line in (run_dir / "items" / "niah@instruct.jsonl").open()]
    [row] = json.loads((run_dir / "scores.json").read_text())["scores"]
    return items, row, json.loads((run_dir / "manifest.json").read_text())


def test_every_answered_cell_is_rated_against_its_needle_and_the_means_sit_beside_the_score(
        chat_llama: Path, tmp_path: Path, judge_server: JudgeServer) -> None:
    judge_server.configure(unparsable_marker="특별한")  # every Korean judgment: no rating
    assert _run(chat_llama, tmp_path / "out", judge_server.url) == 0
    items, row, manifest = _stored(tmp_path / "out")
    needles = manifest["benchmarks"]["niah@instruct"]["data"]["generated"]["needles"]
    prompt = load_judge_prompt()
    assert len(items) == 2 * 2 * 2 and all(i["verdict"] in ("correct", "wrong", "no_answer")
                                           for i in items)
    unparsable = [i for i in items if i["details"]["judge"]["verdict"] == "unparsable"]
    assert {i["subtask"] for i in unparsable} == {"ko"} and len(unparsable) == 4
    assert all(i.get("judge_score") is None for i in unparsable)
    for item in (i for i in items if i not in unparsable):
        needle = Needle(item["subtask"], **needles[item["subtask"]])
        sent = prompt.render(question=needle.text("qa"), needle=needle.text("needle"),
                             answer=item["output"])  # the prompt the judge saw, rebuilt
        assert item["judge_score"] == expected_rating([{"role": "user", "content": sent}])
        assert item["score"] in (0.0, 1.0)  # the contains-value score stays as it was
    rated = [i for i in items if i.get("judge_score") is not None]
    summary = row["judge_score"]
    assert summary["value"] == pytest.approx(sum(i["judge_score"] for i in rated) / len(rated))
    assert (summary["n"], summary["n_unparsable"]) == (len(rated), len(unparsable))
    assert summary["models"] == ["gpt-4o-2024-08-06"] and "judge" not in row
    assert summary["languages"] == {"en": {"value": summary["value"], "n": 4},
                                    "ko": {"value": None, "n": 0}}  # unparsable: left out
    assert row["value"] == pytest.approx(sum(i["score"] for i in items) / len(items))
    judge = manifest["benchmarks"]["niah@instruct"]["judge"]
    assert judge["status"] == "judged" and judge["model"] == "gpt-4o-2024-08-06"
    assert judge["prompts"] == [PROMPT_NAME]
    assert judge["prompt_sha256"] == hashlib.sha256(PROMPT_FILE.read_bytes()).hexdigest()
    assert manifest["config"]["niah_judge"] is True


def test_a_failing_judge_exits_2_and_keeps_every_cells_answer_and_score(
        chat_llama: Path, tmp_path: Path, judge_server: JudgeServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    judge_server.configure(always_fail=401)
    assert _run(chat_llama, tmp_path / "out", judge_server.url) == 2
    assert "the judge failed" in capsys.readouterr().err
    items, row, manifest = _stored(tmp_path / "out")
    assert len(items) == 8 and all(i["output"] and i["score"] is not None for i in items)
    assert not any("judge_score" in i or "judge" in i["details"] for i in items)
    assert row["value"] is not None and "judge_score" not in row
    judge = manifest["benchmarks"]["niah@instruct"]["judge"]
    assert judge["status"] == "not judged" and "401" in judge["error"]
