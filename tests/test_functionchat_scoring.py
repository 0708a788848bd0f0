"""FunctionChat-Bench scoring held against the benchmark repository's own code, on the real data.

`tests/fixtures/functionchat/reference_<version>.py` are verbatim excerpts of
kakao/FunctionChat-Bench's `evaluation_handler.py` and `formatter.py` at 571abec and v2.0.0; the
judge is the local fake OpenAI server (tests/openai_judge_server.py).
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from openai_judge_server import JudgeServer, user_text

from kanana_eval.core.errors import ConfigError, DataUnavailableError
from kanana_eval.results.records import Item
from kanana_eval.scoring.judge.client import JudgeConfig
from kanana_eval.scoring.tool_calls import judge as tool_judge
from kanana_eval.scoring.tool_calls.matching import (
    exact_match,
    gold_call,
    read_verdict,
    rubric_prompt,
)
from kanana_eval.scoring.tool_calls.scorer import AGGREGATIONS, sub_scores
from kanana_eval.tasks.functionchatbench.loader import (
    VERSIONS,
    FunctionChatData,
    ToolChatCase,
    load_functionchat,
)

REFERENCE = Path(__file__).parent / "fixtures" / "functionchat"


def _reference(version: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"fcb_reference_{version.replace('.', '_')}",
                                                  REFERENCE / f"reference_{version}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=list(VERSIONS))
def data(request: pytest.FixtureRequest, shared_data_dir: Path) -> FunctionChatData:
    return load_functionchat(request.param, None)


def _message(calls: list[tuple[str, str]] | None, content: str | None = None) -> dict[str, Any]:
    tool_calls = [{"id": f"call_{n}", "function": {"arguments": a, "name": name},
                   "type": "function"} for n, (name, a) in enumerate(calls or [])] or None
    return {"content": content, "role": "assistant", "function_call": None,
            "tool_calls": tool_calls}


def _repo_input(case: ToolChatCase) -> dict[str, Any]:
    """The request dict the repository's RequestFormatter makes (what its handler reads)."""
    return copy.deepcopy({"serial_num": case.serial_num, "messages": case.messages,
                          "tools": case.tools, "ground_truth": case.ground_truth,
                          "acceptable_arguments": case.acceptable_arguments,
                          "type_of_output": case.type_of_output})


def _variants(case: ToolChatCase) -> list[dict[str, Any]]:
    """Gold, near-gold and wrong calls, a text answer and an empty one."""
    gold = gold_call(case)
    name, args = str(gold.get("name")), str(gold.get("arguments"))
    out = [_message([(name, args)]), _message([("other_function", args)]),
           _message(None, "함수를 호출하지 않은 답변"), _message(None, ""),
           _message([(name, "{not json")])]
    try:
        parsed = json.loads(args)
    except ValueError:
        return out
    if isinstance(parsed, dict):
        upper = {k: v.upper().replace("", " ").strip() if isinstance(v, str) else v
                 for k, v in parsed.items()}
        out += [_message([(name, json.dumps(upper, ensure_ascii=False))]),
                _message([(name, json.dumps({**parsed, "extra_key": 1}))]),
                _message([(name, json.dumps(dict(list(parsed.items())[1:])))])]
        accepted = json.loads(case.acceptable_arguments) if (
            case.acceptable_arguments or "").startswith("{") else {}
        for key, alternatives in (accepted if isinstance(accepted, dict) else {}).items():
            first = alternatives[0] if isinstance(alternatives, list) and alternatives else (
                alternatives)
            out.append(_message([(name, json.dumps({**parsed, key: first},
                                                   ensure_ascii=False))]))
    return out


def test_replaying_the_gold_calls_passes_every_call_turn_by_exact_match(data):
    calls = [c for c in data.cases if c.type_of_output == "call"]
    assert len(calls) == 70 + 500 + 100  # Dialog call turns, Singlecall, CallDecision CALL
    for case in calls:
        gold = gold_call(case)
        passed, message = exact_match(case, _message([(gold["name"], gold["arguments"])]),
                                      data.rules)
        assert passed and message.endswith("pass\npass\n"), case.item_id


def test_exact_match_agrees_with_the_repository_code_on_every_call_case(data):
    reference = _reference(data.version)
    handler = reference.EvaluationHandler(data.rubrics)
    checked = disagreements = 0
    for case in (c for c in data.cases if c.type_of_output == "call"):
        for response in _variants(case):
            ours = exact_match(case, copy.deepcopy(response), data.rules)
            try:
                if data.version == "571abec":
                    fetch, theirs, _ = handler.match(_repo_input(case), copy.deepcopy(response))
                    passed = not fetch
                else:
                    passed, theirs, _ = handler.exact_match(_repo_input(case),
                                                            copy.deepcopy(response))
            except (AttributeError, TypeError):
                continue  # the repository crashes on this response; ours says fail
            checked += 1
            disagreements += ours[0] != passed
            if data.version == "571abec":
                assert ours[1] == theirs["choices"][0]["message"]["content"], case.item_id
    assert checked > 3000 and disagreements == 0


def test_rubric_prompts_are_byte_for_byte_the_repository_prompts(data):
    reference = _reference(data.version)
    handler = reference.EvaluationHandler(data.rubrics)
    for case in data.cases:
        gold = gold_call(case) if case.type_of_output == "call" else {}
        responses = [_message(None, "네, 알려 주세요."),
                     _message([(str(gold.get("name")), str(gold.get("arguments")))])]
        for response in responses:
            ours = rubric_prompt(case, copy.deepcopy(response), data.rubrics, data.rules)
            theirs = handler.get_input_prompt(_repo_input(case), copy.deepcopy(response))
            assert ours == theirs, case.item_id
            assert "call_0" not in ours  # the model's tool-call ids are removed
    assert data.rubrics["call"] == (data.folder / "rubric_call.txt").read_text().strip()


JUDGMENTS = [
    "추론...\npass\npass", "추론...\nfail\nfail", "The answer is wrong.\nFail\nFail\n",
    "근거 설명\n\n통과\n통과", "근거 설명\n합격입니다\n합격", "결론\n성공\n성공",
    "판단 결과는 다음과 같습니다.\npass\n\n입니다.", "no verdict here\nmaybe\nperhaps",
    "", "pass fail\nfail pass",
]


@pytest.mark.parametrize("version", list(VERSIONS))
def test_verdicts_are_read_as_the_repository_reads_them(version):
    reference = _reference(version)
    rules = VERSIONS[version]
    for text in JUDGMENTS:
        theirs = reference.convert_eval_key({"choices": [{"message": {"content": text}}]})
        ours = read_verdict(text, rules)
        assert ours == (theirs if theirs in ("pass", "fail") else None), text


def _items(data: FunctionChatData, cases: list[ToolChatCase],
           respond: Any) -> list[Item]:
    return [Item(benchmark="functionchatbench@instruct", item_id=c.item_id, subtask=c.subtask,
                 prompt="p", output="o", extracted=None, target=None, score=None,
                 verdict="unjudged", details={"response": respond(c)}) for c in cases]


def _gold_response(case: ToolChatCase) -> dict[str, Any]:
    if case.type_of_output == "call":
        gold = gold_call(case)
        return _message([(gold["name"], gold["arguments"])])
    return _message(None, case.ground_truth.get("content") or "")


def _pass_if_gold_text(messages: Any) -> str:
    """Fake judge: pass when the [Response] holds non-empty text or a call, else fail."""
    prompt = user_text(messages)
    empty = '{"content": "", "role": "assistant", "function_call": null, "tool_calls": null}'
    return "판단 근거.\nfail\nfail" if empty in prompt else "판단 근거.\npass\npass"


def test_gold_replay_scores_every_call_turn_without_asking_the_judge(data, judge_server, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    calls = [c for c in data.cases if c.type_of_output == "call"]
    items = _items(data, calls, _gold_response)
    config = JudgeConfig(base_url=judge_server.url, concurrency=2)
    record = tool_judge.judge_items(items, data, tool_judge.judge_config(data, config, None),
                                    progress=False)
    assert judge_server.stats()["requests"] == 0 and record["n_judgments"] == 0
    assert all(i.score == 1.0 and i.verdict == "passed" for i in items)
    assert record["model"] == data.rules.judge_model and record["temperature"] == 0.1


def test_empty_answers_score_zero_and_the_judge_sees_the_rubric_prompt(data, tmp_path,
                                                                       monkeypatch, judge_env):
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    cases = [c for c in data.cases if c.subset == "dialog"][:12]  # every turn type
    assert {c.type_of_output for c in cases} == {"call", "completion", "slot", "relevance"}
    items = _items(data, cases, lambda c: _message(None, ""))
    with JudgeServer(model=data.rules.judge_model, rating_fn=_pass_if_gold_text) as server:
        config = tool_judge.judge_config(data, JudgeConfig(base_url=server.url), None)
        record = tool_judge.judge_items(items, data, config, progress=False)
        stats = server.stats()
    assert [i.score for i in items] == [0.0] * len(items)
    assert {i.verdict for i in items} == {"failed"}
    assert stats["requests"] == len(cases) == record["n_judgments"]
    assert {(p["model"], p["temperature"]) for p in stats["params"]} == {
        (data.rules.judge_model, 0.1)}
    expected = {rubric_prompt(c, _message(None, ""), data.rubrics, data.rules) for c in cases}
    assert set(stats["by_user_message"]) == expected  # the bytes the repository would send
    value = sub_scores(items)
    assert value["dialog"] == 0.0 and value["aggregation:dialog_type_mean"] == 0.0


def test_a_second_judging_is_answered_from_the_cache(data, tmp_path, monkeypatch, judge_env):
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    cases = [c for c in data.cases if c.subset == "calldecision"][::150]
    with JudgeServer(model=data.rules.judge_model, rating_fn=_pass_if_gold_text) as server:
        config = tool_judge.judge_config(data, JudgeConfig(base_url=server.url), None)
        first = _items(data, cases, lambda c: _message(None, "텍스트 답변"))
        record = tool_judge.judge_items(first, data, config, progress=False)
        again = _items(data, cases, lambda c: _message(None, "텍스트 답변"))
        second = tool_judge.judge_items(again, data, config, progress=False)
        assert server.stats()["requests"] == record["api_calls"] == len(cases)
    assert second["api_calls"] == 0 and second["cached_replies"] == len(cases)
    assert [i.verdict for i in first] == [i.verdict for i in again] == ["passed"] * len(cases)
    assert all(i.details["judge"]["judgment"].endswith("pass\npass") for i in again)


def test_every_candidate_aggregation_is_a_mean_of_stored_sub_scores(data):
    by_subtask: dict[str, int] = {}
    items = []
    for n, case in enumerate(data.cases):  # every third request passes
        by_subtask[case.subtask] = by_subtask.get(case.subtask, 0) + 1
        items.append(Item(benchmark="b@i", item_id=case.item_id, subtask=case.subtask,
                          prompt="", output="", extracted=None, target=None,
                          score=float(n % 3 == 0), verdict="passed"))
    scores = sub_scores(items)
    rate = {s: sum(i.score for i in items if i.subtask.startswith(s)) / n
            for s, n in (("dialog", 200), ("singlecall", 500), ("calldecision", 606))}
    assert scores["dialog"] == pytest.approx(rate["dialog"])
    assert scores["aggregation:subset_mean"] == pytest.approx(sum(rate.values()) / 3)
    assert scores["aggregation:micro"] == pytest.approx(
        sum(i.score for i in items) / len(items))
    assert set(AGGREGATIONS) <= {k.split(":", 1)[1] for k in scores if ":" in k}


def test_a_broken_dialog_line_and_bad_gold_arguments_are_recorded_and_the_rest_loads(
        shared_data_dir, tmp_path):
    source = shared_data_dir / "functionchat_bench" / "571abec"
    folder = tmp_path / "kakao" / "FunctionChat-Bench" / "571abec"
    folder.mkdir(parents=True)
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    lines = (folder / "FunctionChat-Dialog.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["turns"][1]["ground_truth"]["tool_calls"][0]["function"]["arguments"] = "{broken"
    lines[0] = json.dumps(first, ensure_ascii=False)
    lines[1] = lines[1][:40]  # a line cut in half
    (folder / "FunctionChat-Dialog.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = load_functionchat("571abec", tmp_path)
    errors = {c.item_id: c.error for c in data.cases if c.error}
    assert set(errors) == {"571abec/dialog/2", "571abec/dialog/line2"}
    assert "not valid JSON" in errors["571abec/dialog/2"]
    assert "line 2 does not parse" in errors["571abec/dialog/line2"]
    assert len(data.cases) == 1306 - sum(len(t) for t in [json.loads(
        (source / "FunctionChat-Dialog.jsonl").read_text(encoding="utf-8").splitlines()[1])[
        "turns"]]) + 1
    items = _items(data, [c for c in data.cases if c.error], lambda c: _message(None, "x"))
    record = tool_judge.settle_only(items, data)
    assert [i.verdict for i in items] == ["error", "error"] and record["n_unjudged"] == 0


PUBLISHED = [58.00, 53.70, 17.37, 26.10, 67.17, 65.67, 51.43, 26.77, 55.37]
# Each candidate as the item counts whose pass rates it averages (one count: a plain rate).
CANDIDATES = {"`micro`": [1306], "Dialog alone": [200], "Singlecall alone": [500],
              "CallDecision alone": [606], "`dialog_singlecall_mean`": [200, 500],
              "`subset_mean` (default, [I])": [200, 500, 606],
              "`dialog_type_mean`": [70, 71, 36, 23],
              "`calldecision_category_mean`": [100, 100, 100, 306]}


def _reachable(counts: list[int]) -> set[float]:
    """Every value (percent, two decimals) a mean of pass rates over these counts can print."""
    import numpy as np  # noqa: PLC0415 - only this test needs it

    sums = np.zeros(1)
    for n in counts:
        sums = np.unique((sums[:, None] + np.arange(n + 1)[None, :] / n).ravel().round(12))
    return set(np.round(100 * sums / len(counts), 2).tolist())


def test_the_docs_table_of_candidate_aggregations_is_what_the_counts_allow():
    doc = (Path(__file__).parent.parent / "docs" / "functionchat.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in CANDIDATES:
            rows[cells[0]] = cells[2:]
    assert set(rows) == set(CANDIDATES)
    for name, counts in CANDIDATES.items():
        reachable = _reachable(counts)
        fits = ["yes" if v in reachable else "no" for v in PUBLISHED]
        assert rows[name] == [*fits, f"{fits.count('yes')}/9"], name
    assert set(AGGREGATIONS) == {"micro", "dialog_singlecall_mean", "subset_mean",
                                 "dialog_type_mean", "calldecision_category_mean"}


def test_a_missing_data_folder_is_one_line_naming_both_ways_to_give_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KANANA_SHARED_DATA", raising=False)
    with pytest.raises(DataUnavailableError) as missing:
        load_functionchat("571abec", tmp_path)
    message = str(missing.value)
    assert "\n" not in message and "--data-dir" in message and "KANANA_SHARED_DATA" in message
    assert "kakao/FunctionChat-Bench/571abec" in message
    with pytest.raises(ConfigError, match="v9"):
        load_functionchat("v9", tmp_path)
