"""FunctionChat-Bench end to end: real SmolLM2-135M-Instruct, the local fake judge, small data.

The data is six requests in the exact schema of the repository's files (two Dialog turns, two
Singlecall queries, a CALL and a REJECT line), with the real rubrics: the real Korean tool lists
are hundreds to thousands of tokens, minutes per request for SmolLM2 on a loaded CPU; the real
data's scoring is held against the repository in test_functionchat_scoring.py.
Runs: SmolLM2 through the system-prompt fallback; a Hermes-style and a Llama-3.1-style template
on SmolLM2's weights; `compare` pairing and refusing; `judge RUN` re-judging stored answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from json_http_server import LocalServer
from openai_judge_server import JudgeServer, user_text

from kanana_eval.cli.main import main
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.results.io import load_run, read_jsonl

BENCH = "functionchatbench@instruct"
FIXTURES = Path(__file__).parent / "fixtures" / "functionchat"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time", "parameters": {
        "type": "object", "properties": {}, "required": []}}}
CALL = {"id": "random_id", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"}}
ASK = {"role": "user", "content": "Weather in Seoul?"}


def _small_copy(source: Path, target: Path) -> Path:
    """A few requests in the exact schema of the repository's files, short enough for a CPU."""
    target.mkdir(parents=True)
    for name in ("rubric_call.txt", "rubric_completion.txt", "rubric_relevance.txt",
                 "rubric_slot.txt"):
        shutil.copyfile(source / name, target / name)
    (target / "system_prompt.txt").write_text("Use a function when one fits.\n", encoding="utf-8")
    done = [ASK, {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "random_id", "name": "get_weather",
             "content": "{\"weather\": \"sunny\"}"}]
    dialog = {"dialog_num": 1, "tools_count": 1, "tools": [WEATHER], "turns": [
        {"turn_num": 1, "serial_num": 1, "query": [ASK],
         "ground_truth": {"role": "assistant", "content": None, "tool_calls": [CALL]},
         "type_of_output": "call", "acceptable_arguments": None},
        {"turn_num": 2, "serial_num": 2, "query": done,
         "ground_truth": {"role": "assistant", "content": "It is sunny in Seoul."},
         "type_of_output": "completion", "acceptable_arguments": None}]}
    single = {"function_num": 1, "function_name": "get_weather", "function_info": {},
              "query": [{"serial_num": 1, "content": "Seoul weather?"},
                        {"serial_num": 2, "content": "Is it raining in Busan?"}],
              "ground_truth": [{"serial_num": 1, "content": json.dumps(
                                   {"name": "get_weather", "arguments": "{\"city\":\"Seoul\"}"})},
                               {"serial_num": 2, "content": json.dumps(
                                   {"name": "get_weather", "arguments": "{\"city\":\"Busan\"}"})}],
              "acceptable_arguments": [{"serial_num": 1, "content": None},
                                       {"serial_num": 2, "content": "{\"city\": [\"부산\"]}"}],
              "tools": [{"type": "exact", "content": [WEATHER]}]}
    system = {"role": "system", "content": "Use a function when one fits."}
    decisions = [
        {"serial_num": 1, "category": "CALL", "input_messages": [system, ASK],
         "input_tools": [WEATHER, TIME], "type_of_output": "call",
         "ground_truth": {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"},
         "acceptable_arguments": None},
        {"serial_num": 1, "category": "REJECT",
         "input_messages": [system, {"role": "user", "content": "Book me a taxi."}],
         "input_tools": [WEATHER, TIME], "type_of_output": "relevance",
         "ground_truth": {"role": "assistant", "content": "I cannot book taxis."},
         "acceptable_arguments": None}]
    for name, rows in (("FunctionChat-Dialog.jsonl", [dialog]),
                       ("FunctionChat-Singlecall.jsonl", [single]),
                       ("FunctionChat-CallDecision.jsonl", decisions)):
        (target / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                           for r in rows), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def small_data(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fcb-data")
    for version in ("571abec", "v2.0.0"):
        _small_copy(shared_data_dir / "functionchat_bench" / version,
                    root / "kakao" / "FunctionChat-Bench" / version)
    return root


def _isolate_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh cache (judgments, requests) sharing the converted models of the user cache."""
    models = ensure_hf_folder("smollm2-135m-instruct").parent
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(models)
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))


def _judgment(messages: Any) -> str:
    """pass for a reply with text or a call, fail for an empty one: the rubric's last lines."""
    empty = '"content": "", "role": "assistant", "function_call": null, "tool_calls": null'
    return "근거.\nfail\nfail" if empty in user_text(messages) else "근거.\npass\npass"


def _run(model: str, data: Path, out: Path, judge: JudgeServer | None, *extra: str,
         limit: int = 5, tokens: int = 12) -> Path:
    args = ["run", "--model", model, "--protocol", "instruct", "--benchmarks", BENCH,
            "--data-dir", str(data), "--limit", str(limit), "--max-gen-toks", str(tokens),
            "--batch-size", "1", "--output-dir", str(out), *extra]
    args += ["--judge-base-url", judge.url] if judge else ["--no-judge"]
    before = set(out.glob("*/*")) if out.exists() else set()
    assert main(args) == 0
    (run_dir,) = set(out.glob("*/*")) - before
    return run_dir


def _with_template(folder: Path, template: str, target: Path) -> Path:
    target.mkdir()
    for path in folder.iterdir():
        if path.name == "tokenizer_config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            config["chat_template"] = (FIXTURES / template).read_text(encoding="utf-8")
            (target / path.name).write_text(json.dumps(config), encoding="utf-8")
        elif path.name != "chat_template.jinja":
            (target / path.name).symlink_to(path)
    return target


@pytest.mark.slow
def test_smollm2_runs_through_the_system_prompt_fallback_and_judge_and_compare(
        small_data, tmp_path, monkeypatch, judge_env, capsys):
    _isolate_cache(tmp_path, monkeypatch)
    out = tmp_path / "results"
    with JudgeServer(model="gpt-4-0125-preview", rating_fn=_judgment) as server:
        run_dir = _run("smollm2-135m-instruct", small_data, out, server)
        manifest, scores = load_run(run_dir)
        (row,) = scores["scores"]
        items = read_jsonl(run_dir / "items" / f"{BENCH}.jsonl", kind="item")
        assert manifest["engine"]["tool_chat"][BENCH]["template_family"] == "system_prompt"
        assert manifest["benchmarks"][BENCH]["data"]["revision"] == "571abec"
        assert scores["smoke"] is True and row["n"] == len(items) == 5
        assert all(i["item_id"].startswith("571abec/") for i in items)
        assert all("# Functions" in i["prompt"] for i in items)  # the documented fallback
        assert all(i["prompt"].startswith("<|im_start|>system\nUse a function when one fits.")
                   for i in items if i["details"]["subset"] != "calldecision")
        assert row["judge"]["model"] == "gpt-4-0125-preview" and row["judge"]["temperature"] == 0.1
        assert row["aggregation"] == {**row["aggregation"], "name": "subset_mean",
                                      "inferred": True}
        subsets = {i["details"]["subset"] for i in items}
        assert subsets | {"aggregation:subset_mean", "aggregation:micro"} <= set(row["metrics"])
        assert set(row["subtasks"]) == {i["subtask"] for i in items}
        judged = [i for i in items if i["details"].get("judge")]
        assert server.stats()["requests"] == len(judged) == row["judge"]["n_judgments"]
        assert all(i["verdict"] in ("passed", "failed") for i in items)
        assert row["value"] == pytest.approx(row["metrics"]["aggregation:subset_mean"])

        # The same answers judged again later: from the cache, nothing paid twice.
        capsys.readouterr()
        assert main(["judge", str(run_dir), "--judge-base-url", server.url,
                     "--judge-concurrency", "3"]) == 0  # another config: another run id
        assert server.stats()["requests"] == len(judged)
    rejudged = [p for p in (out / "smollm2-135m-instruct").iterdir() if p != run_dir]
    assert len(rejudged) == 1
    assert load_run(rejudged[0])[1]["scores"][0]["value"] == row["value"]

    # The report: the FunctionChatBench column takes the run; the page lists the sub-scores.
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "instruct.html").read_text(encoding="utf-8")
    assert "FunctionChatBench" in html and f"{100 * row['value']:.2f}" in html
    assert "aggregation:subset_mean" in html and all(i["subtask"] in html for i in items)

    # compare pairs the runs item by item; a v2.0.0 run is refused, saying why.
    assert main(["compare", str(run_dir), str(rejudged[0])]) == 0
    other = _run("smollm2-135m-instruct", small_data, tmp_path / "v2", None,
                 "--functionchat-version", "v2.0.0", limit=1, tokens=4)
    assert read_jsonl(other / "items" / f"{BENCH}.jsonl", kind="item")[0]["item_id"].startswith(
        "v2.0.0/")
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(other)]) == 2
    assert "data versions differ (571abec vs v2.0.0)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("template,family", [("hermes_tools.jinja", "hermes"),
                                             ("llama31_tools.jinja", "llama3_json")])
def test_a_tool_aware_template_on_smollm2_renders_the_tools_itself(small_data, tmp_path,
                                                                   monkeypatch, template, family):
    _isolate_cache(tmp_path, monkeypatch)
    model = _with_template(ensure_hf_folder("smollm2-135m-instruct"), template,
                           tmp_path / "smollm2-tools")
    run_dir = _run(str(model), small_data, tmp_path / "results", None, limit=2, tokens=8)
    manifest, scores = load_run(run_dir)
    record = manifest["engine"]["tool_chat"][BENCH]
    assert record["template_family"] == family and record["fallback_instruction"] is None
    items = read_jsonl(run_dir / "items" / f"{BENCH}.jsonl", kind="item")
    marker = "<tools>" if family == "hermes" else "Given the following functions"
    assert all(marker in i["prompt"] and "# Functions" not in i["prompt"] for i in items)
    assert all(i["details"]["parse"]["family"] == family for i in items)
    (row,) = scores["scores"]
    assert row["value"] is None and row["judge"]["status"] == "not judged"  # --no-judge
    assert row["n_unjudged"] + row["exact_match_passes"] == len(items)


class ToolChatApp:
    """A served model: /v1/models, and chat completions that call the first tool offered."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        if path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "kakao-test/served-tools",
                                                     "object": "model"}]}
        request = json.loads(body)
        self.requests.append(request)
        tool = request["tools"][0]["function"]
        wants_city = "city" in tool["parameters"]["properties"]
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_x", "type": "function", "function": {
                "name": tool["name"], "arguments": json.dumps({"city": "seoul"} if wants_city
                                                              else {})}}]}
        return 200, {"id": "c", "object": "chat.completion", "created": 0, "model": "served-tools",
                     "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def test_a_served_model_gets_chat_completions_with_tools_and_its_calls_are_scored(
        small_data, tmp_path, monkeypatch):
    _isolate_cache(tmp_path, monkeypatch)
    app = ToolChatApp()
    with LocalServer(app) as server:
        run_dir = _run("kakao-test/served-tools", small_data, tmp_path / "results", None,
                       "--backend", "openai", "--base-url", server.base_url,
                       "--tokenizer", str(ensure_hf_folder("smollm2-135m-instruct")))
    assert {(r["tool_choice"], r["temperature"]) for r in app.requests} == {("auto", 0.1)}
    items = read_jsonl(run_dir / "items" / f"{BENCH}.jsonl", kind="item")
    assert len(app.requests) == len(items) == 5
    by_id = {i["item_id"]: i for i in items}
    sent = sorted(json.dumps({"messages": r["messages"], "tools": r["tools"]}, sort_keys=True)
                  for r in app.requests)  # sent concurrently: compare as sets
    assert sent == sorted(json.dumps(json.loads(i["prompt"]), sort_keys=True) for i in items)
    # get_weather(city="seoul") matches the gold "Seoul" ignoring case: passed without a judge.
    assert by_id["571abec/singlecall/1/exact"]["verdict"] == "passed"
    assert by_id["571abec/singlecall/1/exact"]["details"]["exact"] == "pass"
    manifest, scores = load_run(run_dir)
    assert manifest["engine"]["tool_chat"][BENCH]["tool_choice"] == "auto"
    assert scores["scores"][0]["exact_match_passes"] >= 1
