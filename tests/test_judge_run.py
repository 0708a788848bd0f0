"""MT-Bench / KoMT-Bench on the spine: `run` answers in two turns and judges through a real local
OpenAI-compatible server; `judge` re-judges stored answers; faults keep every finished judgment."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from openai_judge_server import JudgeServer, expected_rating
from tiny_llama import with_chat_template

from kanana_eval.cli.main import main
from kanana_eval.data.judge_bench import load_judge_bench
from kanana_eval.results.io import load_run, read_jsonl
from kanana_eval.scoring.judge.stage import plan_questions, planned_questions

LIMIT = 3  # questions per benchmark: 2 turns each


@pytest.fixture(scope="module")
def chat_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_chat_template(tiny_llama, tmp_path_factory.mktemp("chat-llama"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, judge_env: None) -> None:
    """Own caches per test (judgments are counted); judge_env: no route to the real API."""
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def server(judge_server: JudgeServer) -> JudgeServer:
    return judge_server


def run_args(model: Path, mirror: Path, out: Path, url: str,
             benchmarks: str = "mt_bench") -> list[str]:
    return ["run", "--model", str(model), "--protocol", "instruct", "--benchmarks", benchmarks,
            "--data-dir", str(mirror), "--limit", str(LIMIT), "--max-gen-toks", "8",
            "--batch-size", "4", "--output-dir", str(out), "--judge-base-url", url]


def only_run(out: Path) -> Path:
    (model_dir,) = [p for p in out.iterdir() if p.is_dir()]
    runs = sorted(p for p in model_dir.iterdir() if not p.name.startswith("."))
    return runs[-1]


def planned(mirror: Path) -> list[dict]:
    """The MT-Bench questions a --limit LIMIT run asks (spread over the categories)."""
    data = load_judge_bench("mt_bench", mirror)
    return planned_questions(data, plan_questions(data, LIMIT))


def rating(user_prompt: str) -> int:
    return expected_rating([{"role": "user", "content": user_prompt}])


def test_run_answers_two_turns_and_scores_them_with_the_judge(chat_llama, offline_mirror, tmp_path,
                                                             server, capsys):
    out = tmp_path / "results"
    assert main(run_args(chat_llama, offline_mirror, out, server.url)) == 0
    assert "mt_bench@instruct" in capsys.readouterr().out
    run_dir = only_run(out)
    manifest, scores = load_run(run_dir)
    (row,) = scores["scores"]
    items = read_jsonl(run_dir / "items" / "mt_bench@instruct.jsonl", kind="item")
    assert len(items) == 2 * LIMIT and {i["turn"] for i in items} == {1, 2}
    by_q: dict[str, dict[int, dict]] = {}
    for item in items:
        by_q.setdefault(item["item_id"], {})[item["turn"]] = item
    for turns in by_q.values():  # turn 2 is asked after the model's own turn-1 answer
        assert turns[1]["output"] in turns[2]["prompt"] and turns[1]["prompt"] in turns[2]["prompt"]
    for item in items:  # every score is the judge's rating of exactly the FastChat prompt it got
        judge = item["details"]["judge"]
        assert item["verdict"] == "judged" and item["score"] == rating(judge["user_prompt"])
        assert item["output"] in judge["user_prompt"]
        assert (judge["prompt_name"] == ("single-v1" if item["turn"] == 1
                                         else "single-v1-multi-turn")
                or judge["prompt_name"].startswith("single-math-v1"))
    assert row["scale"] == "judge_1_10" and row["n"] == 2 * LIMIT
    assert row["value"] == pytest.approx(sum(i["score"] for i in items) / len(items))
    turn1 = [i["score"] for i in items if i["turn"] == 1]
    assert row["metrics"]["turn_1"] == pytest.approx(sum(turn1) / len(turn1))
    assert set(row["subtasks"]) == {i["subtask"] for i in items} and row["n_dropped"] == 0
    judge = manifest["benchmarks"]["mt_bench@instruct"]["judge"]
    assert judge["model"] == "gpt-4o-2024-08-06" and judge["api_calls"] == 2 * LIMIT
    assert judge["usage"]["prompt_tokens"] > 0 and judge["cost_usd"] > 0
    params = server.stats()["params"]  # FastChat judges at temperature 0, max_tokens 2048
    assert {(p["model"], p["temperature"], p["max_tokens"]) for p in params} == {
        ("gpt-4o-2024-08-06", 0, 2048)}
    temps = {i["subtask"]: i["details"]["temperature"] for i in items}
    assert temps.get("writing", 0.7) == 0.7 and scores["smoke"] is True

    # The report shows the column and the per-category breakdown.
    report = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(report)]) == 0
    html = (report / "instruct.html").read_text()
    assert "MT-Bench and KoMT-Bench by category" in html and items[0]["subtask"] in html

    # A second identical run pays nothing: answers and judgments come from the caches.
    server.reset_stats()
    assert main(run_args(chat_llama, offline_mirror, tmp_path / "again", server.url)) == 0
    assert server.stats()["requests"] == 0
    again = read_jsonl(only_run(tmp_path / "again") / "items" / "mt_bench@instruct.jsonl",
                       kind="item")
    assert [i["output"] for i in again] == [i["output"] for i in items]


def test_first_turns_join_the_protocols_first_generation_pass(chat_llama, offline_mirror,
                                                               tmp_path, server):
    """MT-Bench turn 1 needs no earlier answer: it is generated with GSM8K, not in its own pass."""
    joined_out, alone_out = tmp_path / "joined", tmp_path / "alone"
    assert main(run_args(chat_llama, offline_mirror, joined_out, server.url, "gsm8k,mt_bench")
                + ["--no-cache"]) == 0
    manifest, _ = load_run(only_run(joined_out))
    assert manifest["engine"]["generation_stages"] == {"first_turns_joined": LIMIT,
                                                       "first_turns_separate": 0}
    assert manifest["engine"]["speed"]["generation"]["prompts"] >= 2 * LIMIT
    assert main(run_args(chat_llama, offline_mirror, alone_out, server.url) + ["--no-cache"]) == 0
    alone_manifest, _ = load_run(only_run(alone_out))
    assert alone_manifest["engine"]["generation_stages"]["first_turns_joined"] == 0

    def greedy_answers(out: Path) -> dict[tuple[str, int], str]:
        items = read_jsonl(only_run(out) / "items" / "mt_bench@instruct.jsonl", kind="item")
        return {(i["item_id"], i["turn"]): i["output"]
                for i in items if i["details"]["temperature"] == 0}

    # Greedy answers do not depend on which pass computed them.
    assert greedy_answers(joined_out) == greedy_answers(alone_out) != {}


def test_judge_command_rejudges_stored_answers_and_exports_fastchat_files(
        chat_llama, offline_mirror, tmp_path, server, capsys):
    out = tmp_path / "results"
    assert main(run_args(chat_llama, offline_mirror, out, server.url) + ["--no-judge"]) == 0
    source = only_run(out)
    _, unjudged = load_run(source)
    assert unjudged["scores"][0]["value"] is None
    assert unjudged["scores"][0]["judge"]["status"] == "not judged"
    assert server.stats()["requests"] == 0
    before = (source / "items" / "mt_bench@instruct.jsonl").read_bytes()

    server.configure(model="judge-b")  # the server now serves another judge model
    assert main(["judge", str(source), "--judge-base-url", server.url,
                 "--judge-model", "judge-b"]) == 0
    assert "judge judge-b" in capsys.readouterr().out
    (judged,) = [p for p in source.parent.iterdir() if p != source and not p.name.startswith(".")]
    assert (source / "items" / "mt_bench@instruct.jsonl").read_bytes() == before
    manifest, scores = load_run(judged)
    assert manifest["judged_from"] == str(source.resolve())
    assert manifest["config"]["judge_model"] == "judge-b"
    assert {p["model"] for p in server.stats()["params"]} == {"judge-b"}
    items = read_jsonl(judged / "items" / "mt_bench@instruct.jsonl", kind="item")
    old = read_jsonl(source / "items" / "mt_bench@instruct.jsonl", kind="item")
    assert [i["output"] for i in items] == [i["output"] for i in old]  # nothing regenerated
    assert all(i["score"] == rating(i["details"]["judge"]["user_prompt"]) for i in items)
    assert scores["scores"][0]["value"] == pytest.approx(sum(i["score"] for i in items)
                                                         / len(items))

    export = tmp_path / "fastchat"
    assert main(["fastchat-export", str(judged), str(export)]) == 0
    answer_file = next((export / "mt_bench" / "model_answer").iterdir())
    answers = [json.loads(x) for x in answer_file.read_text().splitlines()]
    judgment_file = export / "mt_bench" / "model_judgment" / "judge-b_single.jsonl"
    judgments = [json.loads(x) for x in judgment_file.read_text().splitlines()]
    assert len(answers) == LIMIT and all(len(a["choices"][0]["turns"]) == 2 for a in answers)
    assert sorted(j["score"] for j in judgments) == sorted(i["score"] for i in items)


def test_unparsable_judgment_is_asked_once_more_then_dropped_and_counted(
        chat_llama, offline_mirror, tmp_path, server):
    first = planned(offline_mirror)[0]
    server.configure(unparsable_marker=first["turns"][0])  # every judgment of question 1
    out = tmp_path / "results"
    assert main(run_args(chat_llama, offline_mirror, out, server.url)) == 0
    _, scores = load_run(only_run(out))
    items = read_jsonl(only_run(out) / "items" / "mt_bench@instruct.jsonl", kind="item")
    dropped = [i for i in items if i["item_id"] == str(first["question_id"])]
    assert {i["verdict"] for i in dropped} == {"unparsable"}
    assert all(i["score"] is None for i in dropped)
    assert all(i["details"]["judge"]["attempts"] == 2 for i in dropped)
    row = scores["scores"][0]
    assert row["n_dropped"] == 2 and row["n"] == 2 * LIMIT - 2

    # The judge is fixed: `run --rejudge unparsable` asks exactly those two again (answers come
    # from the request cache), and the stored run config does not carry the one-off option.
    server.configure(unparsable_marker=None)
    server.reset_stats()
    again = tmp_path / "again"
    assert main(run_args(chat_llama, offline_mirror, again, server.url)
                + ["--rejudge", "unparsable"]) == 0
    assert server.stats()["requests"] == 2
    manifest, scores = load_run(only_run(again))
    assert scores["scores"][0]["n_dropped"] == 0 and "rejudge" not in manifest["config"]
    assert scores["scores"][0]["judge"]["rejudge"] == {"mode": "unparsable", "asked_again": 2}


def test_a_judge_fault_fails_in_one_line_and_the_rerun_pays_only_for_the_rest(
        chat_llama, offline_mirror, tmp_path, server, capsys):
    second = planned(offline_mirror)[1]
    server.configure(fail_marker=second["turns"][0], fail_status=400)
    out = tmp_path / "results"
    assert main(run_args(chat_llama, offline_mirror, out, server.url)) == 2
    errors = [x for x in capsys.readouterr().err.splitlines()
              if x.startswith("kanana-eval: error:")]
    assert len(errors) == 1 and "HTTP 400" in errors[0]
    assert "run the same command again" in errors[0]
    assert not (out / chat_llama.name).exists() or not any(
        p for p in (out / chat_llama.name).iterdir() if not p.name.startswith("."))
    cache = tmp_path / "cache" / "judgments" / "judgments.sqlite"
    done = sqlite3.connect(cache).execute("select count(*) from replies").fetchone()[0]
    assert 0 < done < 2 * LIMIT

    server.configure(fail_marker=None)
    server.reset_stats()
    assert main(run_args(chat_llama, offline_mirror, out, server.url)) == 0
    assert server.stats()["requests"] == 2 * LIMIT - done


def test_komt_bench_uses_korean_judge_prompts_and_the_optional_language_penalty(
        chat_llama, offline_mirror, tmp_path, server, shared_data_dir):
    out = tmp_path / "results"
    args = run_args(chat_llama, offline_mirror, out, server.url, benchmarks="komt_bench")
    assert main(args + ["--komt-language-penalty"]) == 0
    manifest, scores = load_run(only_run(out))
    penalty = manifest["benchmarks"]["komt_bench@instruct"]["judge"]["language_penalty"]
    assert penalty["applied"] is True and penalty["exempt_question_ids"] == [138, 140]
    assert penalty["detector"]["name"] == "py3langid"
    items = read_jsonl(only_run(out) / "items" / "komt_bench@instruct.jsonl", kind="item")
    prompts_file = shared_data_dir / "komt_bench" / "judge_prompts_ko.jsonl"
    judge_prompts = {json.loads(x)["name"]: json.loads(x)
                     for x in prompts_file.read_text().splitlines()}
    for item in items:
        judge = item["details"]["judge"]
        system = judge_prompts[judge["prompt_name"]]["system_prompt"]
        raw = rating(judge["user_prompt"])
        assert judge["raw_score"] == raw
        # The random tiny model writes no Korean: every non-exempt answer is square-rooted.
        if judge["penalty"] is not None:
            assert item["score"] == pytest.approx(raw ** 0.5) and judge["penalty"]["raw"] == raw
        else:
            assert item["score"] == raw
        assert any(ord(c) >= 0xAC00 for c in system)  # the Korean judge prompt
    assert any(i["details"]["judge"]["penalty"] for i in items)
    assert scores["scores"][0]["judge"]["language_penalty"]["applied"] is True


@pytest.mark.slow
def test_smollm2_answers_mt_bench_and_komt_bench_and_the_judge_scores_them(
        offline_mirror, tmp_path, server, shared_data_dir, capsys):
    out = tmp_path / "results"
    assert main(["run", "--model", "smollm2-135m-instruct", "--protocol", "instruct",
                 "--benchmarks", "mt_bench,komt_bench", "--data-dir", str(offline_mirror),
                 "--limit", "2", "--max-gen-toks", "24", "--batch-size", "4",
                 "--output-dir", str(out), "--judge-base-url", server.url]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "mt_bench@instruct" in summary and "komt_bench@instruct" in summary
    run_dir = only_run(out)
    manifest, scores = load_run(run_dir)
    assert manifest["engine"]["chat_template"]["applied"] is True
    for bench in ("mt_bench@instruct", "komt_bench@instruct"):
        items = read_jsonl(run_dir / "items" / f"{bench}.jsonl", kind="item")
        assert len(items) == 4 and all(i["prompt"].startswith("<|im_start|>") for i in items)
        assert all(i["verdict"] == "judged" for i in items)
        assert all(i["score"] == rating(i["details"]["judge"]["user_prompt"]) for i in items)
        spec = manifest["benchmarks"][bench]["spec"]
        assert spec["generation"]["max_gen_toks"] == 24  # --max-gen-toks capped FastChat's 1024
    assert {r["benchmark"]: r["scale"] for r in scores["scores"]} == {
        "mt_bench@instruct": "judge_1_10", "komt_bench@instruct": "judge_1_10"}
    assert server.stats()["requests"] == 8
