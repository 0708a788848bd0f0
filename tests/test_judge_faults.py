"""The judge stage against a fault-injecting local judge server (tests/openai_judge_server.py).

Every case goes through `kanana-eval judge RUN` on a stored run of MT-Bench answers (no model
work), in-process or as real processes where a signal or a second process is the point:
malformed 200s, ratings outside 1-10, another server under the same model name, caches from
before the server joined the key, `--rejudge`, all judgments unparsable, two processes on one
cache, a damaged cache, stale `.partial` folders and Ctrl-C. The proof the issue asks for: no
traceback, no prompt paid twice, Ctrl-C exits within 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_judge_server import JudgeServer, default_judgment, user_text
from run_builder import TestBenchmark, write_test_run

from kanana_eval.cli.main import main
from kanana_eval.data.judge_bench import load_judge_bench
from kanana_eval.pipeline.rejudge import prior_vouched
from kanana_eval.results.io import read_jsonl
from kanana_eval.results.records import Item
from kanana_eval.scoring.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeError,
    JudgeRequest,
    legacy_cache_key,
)
from kanana_eval.scoring.judge.fastchat import read_rating
from kanana_eval.scoring.judge.stage import plan_questions, planned_questions

BENCH = "mt_bench@instruct"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, judge_env: None) -> None:
    """Own judgment cache per test (requests are counted); no route to the real API."""
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def server(judge_server: JudgeServer) -> JudgeServer:
    return judge_server


def questions(mirror: Path, n: int) -> list[dict]:
    data = load_judge_bench("mt_bench", mirror)
    return planned_questions(data, plan_questions(data, n))


def answered_run(root: Path, mirror: Path, n: int = 3) -> Path:
    """A stored run of two-turn MT-Bench answers to `n` questions, not judged yet."""
    data = load_judge_bench("mt_bench", mirror)
    items = [Item(benchmark=BENCH, item_id=str(q["question_id"]), subtask=q["category"], turn=t,
                  prompt=f"prompt {q['question_id']}.{t}", output=f"answer {q['question_id']}.{t}",
                  extracted=None, target=None, score=None, verdict="unjudged",
                  details={"question_id": q["question_id"], "category": q["category"],
                           "temperature": 0.0})
             for q in questions(mirror, n) for t in (1, 2)]
    bench = TestBenchmark(items=items, judge={"status": "not judged", "note": "answers only"})
    return write_test_run(root, {BENCH: bench}, fingerprint=data.fingerprint)


def judge_args(run_dir: Path, mirror: Path, url: str, *extra: str) -> list[str]:
    return ["judge", str(run_dir), "--data-dir", str(mirror), "--judge-base-url", url, *extra]


def newest(source: Path) -> Path:
    runs = sorted(p for p in source.parent.iterdir()
                  if p != source and not p.name.startswith("."))
    return max(runs, key=lambda p: (json.loads((p / "manifest.json").read_text())["created_utc"],
                                    p.stat().st_mtime_ns))


def judged(run_dir: Path) -> tuple[dict, list[dict]]:
    """(the benchmark's score row, its items) of a judged run."""
    scores = json.loads((run_dir / "scores.json").read_text())
    return scores["scores"][0], read_jsonl(run_dir / "items" / f"{BENCH}.jsonl", kind="item")


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("kanana-eval: error:")]


def paid_twice(server: JudgeServer) -> list[str]:
    return [text for text, n in server.stats()["by_user_message"].items() if n > 1]


def cache_rows(cache: Path) -> int:
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])


CACHE = Path("cache") / "judgments" / "judgments.sqlite"


# ------------------------------------------------------------------ malformed 200 replies
def test_malformed_200_replies_are_retried_and_the_judgments_kept(offline_mirror, tmp_path,
                                                                  server, capsys):
    source = answered_run(tmp_path / "results", offline_mirror)
    server.configure(malformed="json", malformed_first=1)
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    server.configure(malformed="text", malformed_first=2)
    server.reset_stats()
    assert main(judge_args(source, offline_mirror, server.url, "--rejudge", "all")) == 0
    assert server.stats()["malformed_sent"] == 2 and server.stats()["requests"] == 6 + 2
    row, items = judged(newest(source))
    assert row["n_dropped"] == 0 and {i["verdict"] for i in items} == {"judged"}
    assert error_lines(capsys.readouterr().err) == []


@pytest.mark.parametrize("kind", ["json", "text"])
def test_a_judge_that_only_answers_malformed_200s_is_one_line_after_retries(server, tmp_path,
                                                                           kind):
    server.configure(malformed=kind, malformed_marker="BROKEN")
    config = JudgeConfig(base_url=server.url, max_retries=2, concurrency=2)
    reqs = [JudgeRequest(({"role": "user", "content": text},)) for text in ("fine", "BROKEN")]
    with JudgeClient(config, tmp_path / "j.sqlite") as client:
        with pytest.raises(JudgeError) as info:
            client.complete_many(reqs, progress=False)
    message = str(info.value)
    assert "\n" not in message and "malformed reply (HTTP 200" in message
    assert "after 2 retries" in message and "1/2 judgments done" in message
    assert server.stats()["by_user_message"] == {"fine": 1, "BROKEN": 3}


# ------------------------------------------------------------------ the rating range
@pytest.mark.parametrize(("judgment", "rating", "rejected"), [
    ("Rating: [[10]]", 10.0, None), ("Rating: [[1]]", 1.0, None), ("[[7.5]]", 7.5, None),
    ("Rating: [[15]]", None, 15.0), ("Rating: [[0]]", None, 0.0), ("[[10.5]]", None, 10.5),
    ("Rating: [11]", None, 11.0), ("no rating here", None, None)])
def test_ratings_outside_1_to_10_are_rejected_not_read(judgment, rating, rejected):
    assert read_rating(judgment) == (rating, rejected)


def test_out_of_range_ratings_are_unparsable_counted_and_the_range_recorded(
        offline_mirror, tmp_path, server):
    first = questions(offline_mirror, 3)[0]["turns"][0]

    def rating(messages: list[dict]) -> str:
        return "Rating: [[15]]" if first in user_text(messages) else default_judgment(messages)

    server.configure(rating_fn=rating)
    source = answered_run(tmp_path / "results", offline_mirror)
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    row, items = judged(newest(source))
    dropped = [i for i in items if first in i["details"]["judge"]["user_prompt"]]
    assert len(dropped) == 2 and {i["verdict"] for i in dropped} == {"unparsable"}
    assert all(i["score"] is None and i["details"]["judge"]["rejected_rating"] == 15
               and i["details"]["judge"]["attempts"] == 2 for i in dropped)  # re-asked once
    assert row["n_dropped"] == 2 and row["n"] == 4
    assert row["value"] == pytest.approx(sum(i["score"] for i in items if i["score"]) / 4)
    assert row["judge"]["valid_range"] == [1, 10] and row["judge"]["n_out_of_range"] == 2
    assert row["value"] <= 10


# ------------------------------------------------------------------ the cache key
def test_another_server_under_the_same_model_name_is_asked_not_answered_from_cache(
        offline_mirror, tmp_path, server):
    source = answered_run(tmp_path / "results", offline_mirror)
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    with JudgeServer() as other:
        assert main(judge_args(source, offline_mirror, other.url)) == 0
        assert other.stats()["requests"] == 6
        row, _ = judged(newest(source))
        assert row["judge"]["server"] == other.url and row["judge"]["api_calls"] == 6
    server.reset_stats()
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    assert server.stats()["requests"] == 0  # the first server's judgments are still there


def _make_legacy(run_dir: Path, cache: Path) -> set[str]:
    """Turn a judged run and the cache into what the code before key version 2 left: rows in
    table `judgments` under the old key, a judge record without `server`."""
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT model, attempt, request, text, prompt_tokens, "
                          "completion_tokens, created FROM replies").fetchall()
        db.execute("CREATE TABLE judgments (key TEXT PRIMARY KEY, model TEXT NOT NULL, attempt "
                   "INTEGER NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens "
                   "INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)")
        old = {}
        for model, attempt, request, text, p, c, created in rows:
            key = legacy_cache_key(model, JudgeRequest(tuple(json.loads(request)), attempt),
                                   0.0, 2048)
            old[user_text(json.loads(request))] = key
            db.execute("INSERT INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (key, model, attempt, request, text, p, c, created))
        db.execute("DELETE FROM replies")
    for name in ("manifest.json", "scores.json"):
        path = run_dir / name
        record = json.loads(path.read_text())
        judge = (record["benchmarks"][BENCH] if name == "manifest.json"
                 else record["scores"][0])["judge"]
        judge.pop("server")
        path.write_text(json.dumps(record))
    items_file = run_dir / "items" / f"{BENCH}.jsonl"
    items = [json.loads(x) for x in items_file.read_text().splitlines()]
    for item in items:
        item["details"]["judge"]["cache_key"] = old[item["details"]["judge"]["user_prompt"]]
    items_file.write_text("".join(json.dumps(i) + "\n" for i in items))
    return set(old.values())


def test_legacy_cache_rows_a_manifest_vouches_for_are_adopted_not_paid_again(
        offline_mirror, tmp_path, server):
    source = answered_run(tmp_path / "results", offline_mirror)
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    first = newest(source)
    legacy = _make_legacy(first, tmp_path / CACHE)
    assert prior_vouched(first.parent, BENCH, JudgeConfig(base_url=server.url)) == legacy
    assert prior_vouched(first.parent, BENCH, JudgeConfig(base_url="http://x/v1")) == set()

    with JudgeServer() as other:  # another server: the legacy rows are not its judgments
        assert main(judge_args(first, offline_mirror, other.url)) == 0
        assert other.stats()["requests"] == 6
    server.reset_stats()
    assert main(judge_args(first, offline_mirror, server.url)) == 0
    assert server.stats()["requests"] == 0
    row, items = judged(newest(source))
    assert row["judge"]["adopted_legacy_replies"] == 6 and row["judge"]["cached_replies"] == 6
    assert {i["verdict"] for i in items} == {"judged"}


# ------------------------------------------------------------------ --rejudge
def test_rejudge_asks_unparsable_chosen_or_all_judgments_again(offline_mirror, tmp_path, server,
                                                               capsys):
    asked = questions(offline_mirror, 3)
    source = answered_run(tmp_path / "results", offline_mirror)
    server.configure(unparsable_marker=asked[0]["turns"][0])
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    assert judged(newest(source))[0]["n_dropped"] == 2
    server.configure(unparsable_marker=None)

    def rejudge(*option: str) -> int:
        server.reset_stats()
        assert main(judge_args(source, offline_mirror, server.url, *option)) == 0
        return int(server.stats()["requests"])

    assert rejudge() == 0  # the unparsable judgments are cached like any other
    assert judged(newest(source))[0]["n_dropped"] == 2
    assert rejudge("--rejudge", "unparsable") == 2
    row, _ = judged(newest(source))
    assert row["n_dropped"] == 0 and row["judge"]["rejudge"] == {"mode": "unparsable",
                                                                 "asked_again": 2}
    assert rejudge("--rejudge", "unparsable") == 0
    assert rejudge("--rejudge", f"{asked[1]['question_id']}:2") == 1
    assert rejudge("--rejudge", f"{asked[1]['question_id']},{asked[2]['question_id']}") == 4
    assert rejudge("--rejudge", "all") == 6
    capsys.readouterr()
    server.reset_stats()
    assert main(judge_args(source, offline_mirror, server.url, "--rejudge", "9999")) == 2
    assert "has no judgment 9999" in error_lines(capsys.readouterr().err)[0]
    assert server.stats()["requests"] == 0
    with pytest.raises(SystemExit) as info:
        main(judge_args(source, offline_mirror, server.url, "--rejudge", "some"))
    assert info.value.code == 2 and "question ids such as 81,82:2" in capsys.readouterr().err


# ------------------------------------------------------------------ all unparsable
def test_a_run_whose_judgments_are_all_unparsable_exits_2_in_one_line(offline_mirror, tmp_path,
                                                                      server, capsys):
    server.configure(rating_fn=lambda messages: "I will not rate this.")
    source = answered_run(tmp_path / "results", offline_mirror)
    assert main(judge_args(source, offline_mirror, server.url)) == 2
    (line,) = error_lines(capsys.readouterr().err)
    written = newest(source)
    assert "none of the 6 judgments has a rating in 1-10" in line and str(written) in line
    assert "--rejudge unparsable" in line
    assert judged(written)[0]["n_dropped"] == 6  # written: nothing is lost


# ------------------------------------------------------------------ damaged cache, .partial
@pytest.mark.parametrize("damage", ["page", "not a database"])
def test_a_damaged_cache_is_one_line(offline_mirror, tmp_path, server, capsys, damage):
    source = answered_run(tmp_path / "results", offline_mirror)
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    cache = tmp_path / CACHE
    data = bytearray(cache.read_bytes())
    if damage == "page":
        assert len(data) > 3 * 4096
        data[4096:len(data)] = b"\xa5" * (len(data) - 4096)
    else:
        data = bytearray(b"this is no sqlite file " * 300)
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    server.reset_stats()
    assert main(judge_args(source, offline_mirror, server.url)) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert f"the judge cache {cache} is damaged" in line and "move it aside" in line
    assert server.stats()["requests"] == 0


def test_stale_partial_folders_of_killed_writes_are_removed_and_reported(offline_mirror, tmp_path,
                                                                         server, capsys):
    source = answered_run(tmp_path / "results", offline_mirror)
    stale = source.parent / ".20250101T000000Z-deadbeef.partial"
    fresh = source.parent / ".20250101T000001Z-cafecafe.partial"
    for folder in (stale, fresh):
        folder.mkdir()
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    assert not stale.exists() and fresh.exists()  # a young one may be a write in progress
    assert f"removed {stale}" in capsys.readouterr().err


# ------------------------------------------------------------------ real processes
def _judge_process(run_dir: Path, mirror: Path, url: str, cache_root: Path,
                   *extra: str) -> subprocess.Popen:
    env = {**os.environ, "KANANA_EVAL_CACHE": str(cache_root), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kanana_eval.cli.main",
         *judge_args(run_dir, mirror, url, *extra)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_on_one_cache_pay_for_every_prompt_once(offline_mirror, tmp_path, server):
    source = answered_run(tmp_path / "results", offline_mirror, n=6)
    server.configure(hold_until=4)  # answers wait until both processes ask at once (3 + 1)
    outs = [tmp_path / f"out{n}" for n in range(2)]  # one output folder each: same run id
    procs = [_judge_process(source, offline_mirror, server.url, tmp_path / "cache",
                            "--judge-concurrency", "3", "--output-dir", str(out))
             for out in outs]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert error_lines(err) == []
    stats = server.stats()
    assert stats["max_concurrent"] >= 4  # more than one process's 3: they did overlap
    assert stats["requests"] == 12 and paid_twice(server) == []
    runs = [next((out / source.parent.name).iterdir()) for out in outs]
    scores = {judged(r)[0]["value"] for r in runs}
    calls = [judged(r)[0]["judge"]["api_calls"] for r in runs]
    assert len(scores) == 1 and sum(calls) == 12


def test_ctrl_c_stops_judging_within_5_s_keeping_the_answered_judgments(offline_mirror, tmp_path,
                                                                        server):
    asked = questions(offline_mirror, 3)
    source = answered_run(tmp_path / "results", offline_mirror)
    server.configure(slow_marker=asked[1]["turns"][0], slow_s=300)  # its two judgments hang
    proc = _judge_process(source, offline_mirror, server.url, tmp_path / "cache")
    cache = tmp_path / CACHE
    deadline = time.time() + 120
    while time.time() < deadline:  # the four other judgments answered and cached
        if server.stats()["in_flight"] == 2 and cache.exists() and cache_rows(cache) == 4:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"the judge process never had 4 answers and 2 hanging: {server.stats()}")
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert time.monotonic() - interrupted < 5.0
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    assert cache_rows(cache) == 4
    assert not [p for p in source.parent.iterdir() if p != source]  # no half-written run

    server.configure(slow_marker=None, slow_s=0.0)
    server.reset_stats()
    assert main(judge_args(source, offline_mirror, server.url)) == 0
    assert server.stats()["requests"] == 2  # only the abandoned ones are asked
