"""Tool prompts and tool-call parsing, one family per chat-template style, on SmolLM2's tokenizer.

The Llama-3.1-style and Hermes-style templates are test fixtures (tests/fixtures/functionchat/);
SmolLM2's own template ignores `tools` and fails on `content: None`, so it takes the system-prompt
fallback. Each parser reads back what its own template writes for every gold call of the data.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
from transformers import AutoTokenizer

from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.tool_chat import (
    HERMES,
    LLAMA3_JSON,
    SYSTEM_PROMPT,
    fallback_call_text,
    parse_hermes,
    parse_llama3_json,
    parse_reply,
    parse_system_prompt,
    render,
    template_family,
)
from kanana_eval.scoring.tool_calls.matching import gold_call
from kanana_eval.tasks.functionchatbench.loader import load_functionchat

FIXTURES = Path(__file__).parent / "fixtures" / "functionchat"
TEMPLATES = {LLAMA3_JSON: "llama31_tools.jinja", HERMES: "hermes_tools.jinja"}
# Where the assistant's turn starts and ends in each template's output.
TURNS = {LLAMA3_JSON: ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
         HERMES: ("<|im_start|>assistant\n", "<|im_end|>"),
         SYSTEM_PROMPT: ("<|im_start|>assistant\n", "<|im_end|>")}


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(str(ensure_hf_folder("smollm2-135m-instruct")))


def _with_template(tokenizer: Any, family: str) -> Any:
    tok = copy.copy(tokenizer)
    if family in TEMPLATES:
        tok.chat_template = (FIXTURES / TEMPLATES[family]).read_text(encoding="utf-8")
    return tok


@pytest.fixture(scope="module")
def data(shared_data_dir: Path) -> Any:
    return load_functionchat("571abec", None)


def test_each_template_is_put_in_its_family(smollm2_tokenizer):
    assert template_family(smollm2_tokenizer) == SYSTEM_PROMPT  # renders tools as if absent
    for family in TEMPLATES:
        assert template_family(_with_template(smollm2_tokenizer, family)) == family
    bare = copy.copy(smollm2_tokenizer)
    bare.chat_template = None  # a base model (Gemma-3-270m has no template)
    assert template_family(bare) == SYSTEM_PROMPT


def _assistant_turn(rendered: str, family: str) -> str:
    start, end = TURNS[family]
    return rendered.rsplit(start, 1)[1].split(end, 1)[0]


@pytest.mark.parametrize("family", [LLAMA3_JSON, HERMES, SYSTEM_PROMPT])
def test_each_parser_reads_back_every_gold_call_its_template_writes(smollm2_tokenizer, data,
                                                                    family):
    tok = _with_template(smollm2_tokenizer, family)
    calls = [c for c in data.cases if c.type_of_output == "call"]
    for case in calls:
        gold = gold_call(case)
        said = {"role": "assistant", "content": None,
                "tool_calls": [{"id": "x", "type": "function", "function": gold}]}
        if family == SYSTEM_PROMPT:  # the fallback writes the call as the assistant's text
            said = {"role": "assistant", "content": fallback_call_text(said["tool_calls"][0])}
        rendered = render(tok, [*case.messages, said], case.tools, family)
        rendered = rendered.removesuffix(TURNS[family][0])
        reply = parse_reply(_assistant_turn(rendered, family), family)
        assert reply.status == "call", (case.item_id, family)
        assert reply.calls[0]["name"] == gold["name"]
        assert json.loads(reply.calls[0]["arguments"]) == json.loads(gold["arguments"])


@pytest.mark.parametrize("family", [LLAMA3_JSON, HERMES, SYSTEM_PROMPT])
def test_every_dialog_history_renders_with_its_tools_and_earlier_calls(smollm2_tokenizer, data,
                                                                       family):
    tok = _with_template(smollm2_tokenizer, family)
    for case in (c for c in data.cases if c.subset == "dialog"):
        prompt = render(tok, case.messages, case.tools, family)
        assert case.tools[0]["function"]["name"] in prompt, case.item_id
        assert prompt.endswith(TURNS[family][0]), case.item_id
        for message in case.messages:
            for call in message.get("tool_calls") or []:  # earlier calls, as the template writes
                assert f'"{call["function"]["name"]}"' in prompt, case.item_id
    system = case.messages[0]["content"]
    assert system in prompt  # the repository's system prompt, byte for byte


def test_the_fallback_writes_the_tools_and_earlier_calls_into_plain_text_messages(
        smollm2_tokenizer, data):
    case = next(c for c in data.cases if c.item_id == "571abec/dialog/3")  # after a call + result
    prompt = render(smollm2_tokenizer, case.messages, case.tools, SYSTEM_PROMPT)
    assert "# Functions" in prompt and '"name": "create_user"' in prompt
    assert '{"name": "create_user", "arguments": {"name": "John"' in prompt
    assert "<|im_start|>user\n[result of create_user]" in prompt
    with pytest.raises((TypeError, jinja2.TemplateError)):  # why the fallback exists
        smollm2_tokenizer.apply_chat_template(case.messages, tokenize=False)


def test_parsers_on_what_models_write_around_the_call():
    hermes = parse_hermes('먼저 확인할게요.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n'
                          '</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>')
    assert hermes.status == "call" and hermes.content == "먼저 확인할게요."
    assert [c["name"] for c in hermes.calls] == ["a", "b"] and hermes.calls[0]["arguments"] == (
        '{"x": 1}')
    llama = parse_llama3_json('<|python_tag|>{"name": "a", "parameters": {"도시": "서울"}}; '
                              '{"name": "b", "parameters": {}}')
    assert llama.status == "call" and llama.calls[0]["arguments"] == '{"도시": "서울"}'
    assert len(llama.calls) == 2
    fenced = parse_system_prompt('```json\n{"name": "a", "arguments": {"k": "v"}}\n```')
    assert fenced.status == "call" and fenced.calls[0]["name"] == "a"
    # Text answers, and calls that do not parse: text, the latter counted as unparsed.
    assert parse_llama3_json("서울의 날씨는 맑습니다.").status == "text"
    assert parse_hermes("<tool_call>\n{\"name\": \"a\", \"argu").status == "unparsed"
    assert parse_llama3_json('{"name": "a", "parameters": {"x": }').status == "unparsed"
    assert parse_system_prompt('{"name": "a"} and more words').status == "unparsed"
    # Arguments that are not valid JSON stay as written, marked; exact match then fails.
    bad = parse_system_prompt('{"name": "a", "arguments": "{not json"}')
    assert bad.status == "bad_arguments" and bad.calls[0]["arguments"] == "{not json"
    message = bad.message()
    assert message["tool_calls"][0]["function"] == {"arguments": "{not json", "name": "a"}
    assert message["content"] is None and message["role"] == "assistant"
