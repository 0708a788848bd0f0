"""The judge HTTP layer against a real local OpenAI-compatible server (never the internet)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

import pytest
from openai_judge_server import UNPARSABLE_TEXT, JudgeServer, expected_rating

from kanana_eval.core.errors import KananaError
from kanana_eval.scoring.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeError,
    JudgeRequest,
    cache_key,
    estimate_cost_usd,
    preflight,
)

SYSTEM = "You are a helpful assistant."


pytestmark = pytest.mark.usefixtures("judge_env")


@pytest.fixture
def server(judge_server: JudgeServer) -> JudgeServer:
    return judge_server


def request(text: str, attempt: int = 0) -> JudgeRequest:
    return JudgeRequest(messages=({"role": "system", "content": SYSTEM},
                                  {"role": "user", "content": text}), attempt=attempt)


def config(url: str, **overrides: object) -> JudgeConfig:
    base: dict[str, object] = {"base_url": url, "concurrency": 4, "max_retries": 2,
                               "timeout_s": 5.0}
    return JudgeConfig(**{**base, **overrides})  # type: ignore[arg-type]


def rating_of(text: str) -> int:
    return int(text.rsplit("[[", 1)[1].split("]]", 1)[0])


def test_replies_come_back_in_request_order_with_the_servers_ratings(server, tmp_path):
    reqs = [request(f"question {i}") for i in range(12)]
    with JudgeClient(config(server.url), tmp_path / "judge.sqlite") as client:
        replies = client.complete_many(reqs, progress=False)
        assert client.api_calls() == 12
    assert [rating_of(r.text) for r in replies] == [expected_rating(r.messages) for r in reqs]
    assert len({rating_of(r.text) for r in replies}) > 1  # the ratings do depend on the prompt
    assert all(not r.cached and r.prompt_tokens > 0 and r.completion_tokens > 0 for r in replies)
    server_url = server.url.lower().rstrip("/")
    assert [r.key for r in replies] == [cache_key("gpt-4o-2024-08-06", q, 0.0, 2048,
                                                  server=server_url) for q in reqs]


def test_fastchat_sampling_parameters_are_sent(server, tmp_path):
    with JudgeClient(config(server.url), tmp_path / "judge.sqlite") as client:
        client.complete_many([request("a"), request("b")], progress=False)
    assert server.stats()["params"] == [
        {"model": "gpt-4o-2024-08-06", "temperature": 0.0, "max_tokens": 2048, "n": 1, "count": 2}]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit_is_respected_and_used(server, tmp_path, concurrency):
    server.configure(slow_s=0.15)
    with JudgeClient(config(server.url, concurrency=concurrency), tmp_path / "j.sqlite") as client:
        client.complete_many([request(f"q{i}") for i in range(7)], progress=False)
    assert server.stats()["max_concurrent"] == concurrency


def test_rate_limit_429_is_retried_after_retry_after(server, tmp_path):
    server.configure(fail_first=1, fail_status=429)  # `Retry-After: 0`: the client's own backoff
    with JudgeClient(config(server.url, concurrency=1), tmp_path / "judge.sqlite") as client:
        replies = client.complete_many([request("a"), request("b")], progress=False)
        assert client.api_calls() == 2
    assert [rating_of(r.text) for r in replies] == [expected_rating(request(t).messages)
                                                    for t in "ab"]
    stats = server.stats()
    assert stats["by_status"] == {429: 1, 200: 2}
    assert stats["by_user_message"] == {"a": 2, "b": 1}


def test_server_error_500_is_retried_then_succeeds(server, tmp_path):
    server.configure(fail_first=2, fail_status=500, retry_after_s=0.01)
    with JudgeClient(config(server.url, concurrency=1), tmp_path / "judge.sqlite") as client:
        replies = client.complete_many([request("a")], progress=False)
    assert rating_of(replies[0].text) == expected_rating(request("a").messages)
    assert server.stats()["by_status"] == {500: 2, 200: 1}


def test_a_reply_slower_than_the_timeout_is_retried(server, tmp_path):
    server.configure(slow_s=3.0, slow_first=1)
    with JudgeClient(config(server.url, timeout_s=0.4), tmp_path / "judge.sqlite") as client:
        replies = client.complete_many([request("slow")], progress=False)
    assert rating_of(replies[0].text) == expected_rating(request("slow").messages)
    assert server.stats()["by_user_message"] == {"slow": 2}


def test_a_second_client_on_the_same_cache_makes_no_http_call(server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    reqs = [request(f"q{i}") for i in range(5)]
    with JudgeClient(config(server.url), cache) as first:
        fresh = first.complete_many(reqs, progress=False)
    server.reset_stats()
    with JudgeClient(config(server.url), cache) as second:
        again = second.complete_many(reqs, progress=False)
        assert second.api_calls() == 0
    assert server.stats()["requests"] == 0
    assert all(r.cached for r in again)
    assert [(r.text, r.prompt_tokens, r.completion_tokens, r.key) for r in again] == \
        [(r.text, r.prompt_tokens, r.completion_tokens, r.key) for r in fresh]


def test_identical_requests_in_one_batch_are_sent_once(server, tmp_path):
    reqs = [request("same"), request("other"), request("same")]
    with JudgeClient(config(server.url), tmp_path / "judge.sqlite") as client:
        replies = client.complete_many(reqs, progress=False)
        assert client.api_calls() == 2
    assert server.stats()["by_user_message"] == {"same": 1, "other": 1}
    assert replies[0].text == replies[2].text and replies[0] is not replies[2]
    assert [r.cached for r in replies] == [False, False, True]  # the repeat was not paid for


def test_the_cache_key_covers_server_prompt_model_attempt_and_sampling():
    def key(model: str, req: JudgeRequest, temperature: float, max_tokens: int,
            server: str = "http://a/v1") -> str:
        return cache_key(model, req, temperature, max_tokens, server=server)

    base = key("gpt-4o-2024-08-06", request("q"), 0.0, 2048)
    assert base == key("gpt-4o-2024-08-06", request("q"), 0, 2048)  # 0 and 0.0 alike
    others = {key("gpt-4o-2024-08-06", request("q", attempt=1), 0.0, 2048),
              key("gpt-4o", request("q"), 0.0, 2048),
              key("gpt-4o-2024-08-06", request("q"), 0.7, 2048),
              key("gpt-4o-2024-08-06", request("q"), 0.0, 1024),
              key("gpt-4o-2024-08-06", request("Q"), 0.0, 2048),
              key("gpt-4o-2024-08-06", request("q"), 0.0, 2048, server="http://b/v1"),
              key("gpt-4o-2024-08-06", JudgeRequest(request("q").messages, prompt="single-v2"),
                  0.0, 2048)}
    assert base not in others and len(others) == 7


def test_the_re_ask_attempt_is_sent_although_attempt_0_is_cached(server, tmp_path):
    server.configure(unparsable_marker="[hard]", unparsable_first=1)
    with JudgeClient(config(server.url), tmp_path / "judge.sqlite") as client:
        first = client.complete_many([request("[hard] q")], progress=False)
        second = client.complete_many([request("[hard] q", attempt=1)], progress=False)
        third = client.complete_many([request("[hard] q")], progress=False)
        assert client.api_calls() == 2
    assert first[0].text == UNPARSABLE_TEXT and "[[" not in first[0].text
    assert rating_of(second[0].text) == expected_rating(request("[hard] q").messages)
    assert second[0].key != first[0].key and not second[0].cached
    assert third[0].cached and third[0].text == UNPARSABLE_TEXT


def test_persistent_500_raises_and_keeps_what_succeeded(server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    # The failing request is also slow, so the five others are surely in flight when it fails.
    server.configure(fail_marker="BROKEN", fail_status=500, retry_after_s=0.01,
                     slow_marker="BROKEN", slow_s=0.2)
    reqs = [request(f"q{i}") for i in range(5)] + [request("BROKEN q")]
    with JudgeClient(config(server.url, concurrency=6), cache) as client:
        with pytest.raises(JudgeError) as info:
            client.complete_many(reqs, progress=False)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, KananaError)
    assert "HTTP 500" in message and "after 2 retries" in message
    assert "5/6 judgments done" in message and "again to resume" in message
    assert server.stats()["by_user_message"]["BROKEN q"] == 3  # first try + 2 retries
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 5

    server.configure(fail_marker=None, slow_s=0.0)
    server.reset_stats()
    with JudgeClient(config(server.url), cache) as rerun:
        replies = rerun.complete_many(reqs, progress=False)
        assert rerun.api_calls() == 1
    assert server.stats()["by_user_message"] == {"BROKEN q": 1}
    assert [r.cached for r in replies] == [True] * 5 + [False]
    assert [rating_of(r.text) for r in replies] == [expected_rating(q.messages) for q in reqs]


def test_after_a_failure_queued_requests_are_not_sent(server, tmp_path):
    cache = tmp_path / "judge.sqlite"
    server.configure(fail_marker="BROKEN", fail_status=400)  # 400 is not retried
    reqs = [request("q0"), request("BROKEN"), request("q2"), request("q3")]
    with JudgeClient(config(server.url, concurrency=1), cache) as client:
        with pytest.raises(JudgeError, match=r"failed: HTTP 400: .*1/4 judgments done"):
            client.complete_many(reqs, progress=False)
    assert server.stats()["by_user_message"] == {"q0": 1, "BROKEN": 1}
    server.configure(fail_marker=None)
    server.reset_stats()
    with JudgeClient(config(server.url, concurrency=1), cache) as rerun:
        rerun.complete_many(reqs, progress=False)
    assert server.stats()["by_user_message"] == {"BROKEN": 1, "q2": 1, "q3": 1}


def test_a_rejected_key_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-wrong")
    with JudgeServer(require_key="sk-right") as srv:
        cfg = config(srv.url, api_key_env="JUDGE_TEST_KEY")
        with JudgeClient(cfg, tmp_path / "judge.sqlite") as client:
            with pytest.raises(JudgeError) as info:
                client.complete_many([request("a"), request("b")], progress=False)
        assert srv.stats()["by_status"] == {401: srv.stats()["requests"]}  # 401 is not retried
    message = str(info.value)
    assert "rejected the key in $JUDGE_TEST_KEY" in message and "HTTP 401" in message
    assert "sk-wrong" not in message and "0/2 judgments done" in message


def test_the_right_key_is_sent_as_bearer(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-right")
    with JudgeServer(require_key="sk-right") as srv:
        with JudgeClient(config(srv.url, api_key_env="JUDGE_TEST_KEY"), tmp_path / "j.sqlite") as c:
            assert rating_of(c.complete_many([request("a")], progress=False)[0].text) >= 1


def test_an_unreachable_judge_fails_with_a_connection_error(tmp_path):
    with JudgeServer() as srv:
        url = srv.url  # the port is closed once the server stops
    with JudgeClient(config(url, max_retries=0), tmp_path / "judge.sqlite") as client:
        with pytest.raises(JudgeError, match="cannot connect"):
            client.complete_many([request("a")], progress=False)


def test_preflight_needs_a_key_unless_a_base_url_is_given(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(JudgeError, match="set OPENAI_API_KEY"):
        preflight(JudgeConfig())
    preflight(JudgeConfig(base_url="http://127.0.0.1:8000/v1"))  # local servers need no key
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    preflight(JudgeConfig())


def test_preflight_rejects_nonsense_settings():
    with pytest.raises(JudgeError, match="concurrency"):
        preflight(JudgeConfig(concurrency=0))


def test_a_local_server_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with JudgeServer() as srv, JudgeClient(config(srv.url), tmp_path / "judge.sqlite") as client:
        assert len(client.complete_many([request("a")], progress=False)) == 1


def test_describe_keeps_no_secret():
    cfg = JudgeConfig(base_url="http://user:hunter2@127.0.0.1:8000/v1")
    described = cfg.describe()
    assert "hunter2" not in json.dumps(described)
    assert described["model"] == "gpt-4o-2024-08-06"
    assert described["api_key_env"] == "OPENAI_API_KEY"
    assert described["temperature"] == 0.0 and described["max_tokens"] == 2048


def test_estimate_cost_for_the_kanana_judge():
    assert estimate_cost_usd("gpt-4o-2024-08-06", 1_000_000, 100_000) == pytest.approx(3.50)
    assert estimate_cost_usd("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert estimate_cost_usd("my-local-judge", 10, 10) is None


def test_control_endpoint_changes_faults_over_http(server, tmp_path):
    body = json.dumps({"always_fail": 503, "reset_stats": True}).encode()
    post = urllib.request.Request(server.url.removesuffix("/v1") + "/control", data=body,
                                  method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=5) as answer:
        assert json.loads(answer.read())["requests"] == 0
    with JudgeClient(config(server.url, max_retries=0), tmp_path / "j.sqlite") as client:
        with pytest.raises(JudgeError, match="HTTP 503"):
            client.complete_many([request("a")], progress=False)


def test_the_cache_file_is_a_readable_sqlite_table(server, tmp_path):
    cache = tmp_path / "sub" / "judge.sqlite"
    with JudgeClient(config(server.url), cache) as client:
        reply = client.complete_many([request("a", attempt=1)], progress=False)[0]
    with sqlite3.connect(cache) as db:
        row = db.execute("SELECT model, attempt, request, text, server FROM replies "
                         "WHERE key = ?", (reply.key,)).fetchone()
    assert row[:2] == ("gpt-4o-2024-08-06", 1) and row[4] == server.url.rstrip("/")
    assert json.loads(row[2])[1] == {"role": "user", "content": "a"} and row[3] == reply.text


def test_an_empty_batch_sends_nothing(server, tmp_path):
    with JudgeClient(config(server.url), tmp_path / "judge.sqlite") as client:
        assert client.complete_many([], progress=False) == []
    assert server.stats()["requests"] == 0


def test_the_progress_bar_counts_cached_and_duplicate_requests(server, tmp_path, capsys):
    cache = tmp_path / "judge.sqlite"
    with JudgeClient(config(server.url), cache) as client:
        client.complete_many([request("a")], progress=False)
        client.complete_many([request("a"), request("b"), request("b")], desc="mt-bench judge")
    err = capsys.readouterr().err
    assert "mt-bench judge" in err and "3/3" in err
