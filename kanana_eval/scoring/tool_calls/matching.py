"""FunctionChat-Bench's own scoring rules, transcribed from kakao/FunctionChat-Bench at each commit.

* `exact_match`: a call turn passes without a judge when the first predicted tool call has the
  gold function name and its arguments pass `compare_arguments` (`src/evaluation_handler.py`
  `match` at 571abec, `exact_match` at v2.0.0): values compared ignoring case and spaces, an
  alternative from `acceptable_arguments` accepted, an extra key fails. The two commits differ
  on a missing key (`VersionRules.arguments_rule`).
* `rubric_prompt`: the judge prompt of a turn, filled as `get_input_prompt` fills it: the
  rubric `.strip()`ped, then `str.format` with `json.dumps(..., ensure_ascii=False)` of the
  tools, the messages, the ground truth and the model's message (tool-call ids removed from both)
  and, for call turns, of `acceptable_arguments` (a JSON text, so it is dumped as a string).
* `read_verdict`: pass/fail from the judgment's last two lines (`formatter.convert_eval_key`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kanana_eval.tasks.functionchatbench.loader import ToolChatCase, VersionRules

PASS, FAIL = "pass", "fail"
# Free-text acceptable_arguments the repository treats as "no alternatives".
_NO_ALTERNATIVES = (
    "Only ground truth is allowed.",
    "The date should be expressed as 'tomorrow'. A specific date should not be designated.",
    "Since the user did not mention a specific year, it will fail if the date was created "
    "including the year in the submission.",
)


def acceptable_arguments(raw: str | None) -> dict[str, Any]:
    """`get_acceptable_arguments`: the alternatives per argument name, {} when there are none."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # the repository's json.loads(f'"{raw}"') is the text itself
    if value is None or value in _NO_ALTERNATIVES:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}  # the repository raises here; no line of either version reaches it
    return value if isinstance(value, dict) else {}


def _same(a: Any, b: Any) -> bool:
    """`compare_value`: strings equal ignoring case and spaces, anything else equal."""
    if isinstance(a, str) and isinstance(b, str):
        return a.replace(" ", "").lower() == b.replace(" ", "").lower()
    return bool(a == b)


def _accepted(predicted: Any, alternatives: Any) -> bool:
    if isinstance(alternatives, list):
        return any(_same(predicted, alt) for alt in alternatives)
    if isinstance(alternatives, str):
        return _same(predicted, alternatives)
    return False


def compare_arguments(gold: str, predicted: str, accepted: dict[str, Any],
                      rules: VersionRules) -> bool:
    """Whether the predicted arguments (JSON text) match the gold ones under `rules`."""
    if rules.arguments_rule == "571abec" and gold == predicted:
        return True
    try:
        gold_args, pred_args = json.loads(gold), json.loads(predicted)
    except (ValueError, TypeError):
        return False
    if not isinstance(gold_args, dict) or not isinstance(pred_args, dict):
        return False
    if any(key not in gold_args for key in pred_args):  # an argument the gold call lacks
        return False
    for key, answer in gold_args.items():
        value = pred_args.get(key)
        if _same(value, answer):
            continue
        if rules.arguments_rule == "571abec":
            if answer is not None and value is None:
                return False
            if not _accepted(value, accepted.get(key)):
                return False
        else:  # v2.0.0: only a list or string of alternatives can rescue a mismatch
            alternatives = accepted.get(key, [])
            if isinstance(alternatives, list | str) and not _accepted(value, alternatives):
                return False
    return True


def gold_call(case: ToolChatCase) -> dict[str, Any]:
    """The gold function {name, arguments}: the first tool call, or Singlecall's own form."""
    truth = case.ground_truth
    if "tool_calls" in truth:
        calls = truth.get("tool_calls") or [{}]
        return dict(calls[0].get("function") or {})
    return {"name": truth.get("name"), "arguments": truth.get("arguments")}


def exact_match(case: ToolChatCase, response: dict[str, Any], rules: VersionRules
                ) -> tuple[bool, str]:
    """(passed, the repository's exact-eval message) for a call turn; other turns never pass."""
    if case.type_of_output != "call":
        return False, "skip evaluation"
    gold = gold_call(case)
    calls = response.get("tool_calls") or []
    why = ""
    passed = False
    if calls:
        function = calls[0].get("function") or {}
        if function.get("name") == gold.get("name"):
            passed = compare_arguments(str(gold.get("arguments")), function.get("arguments"),
                                       acceptable_arguments(case.acceptable_arguments), rules)
            if not passed:
                why = (f"g({gold.get('arguments')})|p({function.get('arguments')})\n"
                       "Function argument extraction failed.\n")
        else:
            why = f"g({gold.get('name')})|p({function.get('name')})\nFunction selection failed.\n"
    verdict = PASS if passed else FAIL
    return passed, f"exact-eval\n{why}\n\n{verdict}\n{verdict}\n"


def _without_ids(calls: Any) -> Any:
    if not calls:
        return calls
    return [{k: v for k, v in call.items() if k != "id"} for call in calls]


def rubric_prompt(case: ToolChatCase, response: dict[str, Any], rubrics: dict[str, str],
                  rules: VersionRules) -> str:
    """The judge's user message for this turn, byte for byte as the repository builds it."""
    truth = copy.deepcopy(case.ground_truth)
    if rules.ground_truth_tool_calls_always or truth.get("tool_calls"):
        truth["tool_calls"] = _without_ids(truth.get("tool_calls"))
    out = copy.deepcopy(response)
    out["tool_calls"] = _without_ids(out.get("tool_calls"))
    rubric = rubrics[case.type_of_output]
    fields = {"tools": json.dumps(case.tools, ensure_ascii=False),
              "query": json.dumps(case.messages, ensure_ascii=False),
              "ground_truth": json.dumps(truth, ensure_ascii=False),
              "response": json.dumps(out, ensure_ascii=False)}
    if case.type_of_output == "call":
        fields["acceptable_arguments"] = json.dumps(case.acceptable_arguments, ensure_ascii=False)
    return rubric.format(**fields)


def read_verdict(judgment: str, rules: VersionRules) -> str | None:
    """'pass' / 'fail' as `convert_eval_key` reads them; None when neither can be read."""
    def contained(text: str) -> str:
        if PASS in text.lower():
            return PASS
        if FAIL in text.lower():
            return FAIL
        for word in rules.pass_words:
            if word in text:
                return PASS
        return text

    lines = judgment.strip().split("\n")
    key = contained("".join(lines[-2:]))
    if key in (PASS, FAIL):
        return key
    if key == "입니다.":
        key = contained("".join(lines[-4:]))
        if key in (PASS, FAIL):
            return key
    return None
