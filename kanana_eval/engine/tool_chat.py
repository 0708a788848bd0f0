"""Tool-calling chat for local models: prompts with tools, and the tool calls read back.

A chat template belongs to one of three families, and each family renders and parses its own way:

* `hermes`: the template writes `<tool_call>` (Hermes, Qwen 2.5): tools go through
  `apply_chat_template(messages, tools=...)`; calls are read from `<tool_call>{json}</tool_call>`
  blocks (vLLM's `hermes` parser);
* `llama3_json`: any other template that renders `tools` (Llama 3.1/3.2, Kanana): calls are read
  as a JSON object `{"name": ..., "parameters"|"arguments": ...}`, optionally after
  `<|python_tag|>`, several separated by `;` (vLLM's `llama3_json` parser);
* `system_prompt`: a template that ignores `tools` (SmolLM2; found by rendering with and without
  them) or no template at all (Gemma-3-270m): the tools and how to call them are written into
  the system message (`FALLBACK_INSTRUCTION`), earlier calls become the assistant's JSON text,
  tool results become user messages, and the reply is read as one JSON object `{"name",
  "arguments"}` (code fences allowed). The family is recorded with every run.

Earlier assistant `tool_calls` keep their arguments as objects for the tool-aware families, as
their templates expect. Output that parses as no call is a text answer; output that looks like a
call but does not parse is a text answer too, counted as `unparsed`; a call whose arguments are not
valid JSON keeps the raw text (`bad_arguments`) so exact match fails and the judge sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

HERMES, LLAMA3_JSON, SYSTEM_PROMPT = "hermes", "llama3_json", "system_prompt"
FAMILIES = (HERMES, LLAMA3_JSON, SYSTEM_PROMPT)

FALLBACK_INSTRUCTION = (
    "# Functions\n"
    "You can call the following functions. Each is described as a JSON object:\n"
    "{tools}\n\n"
    "To call a function, reply with only one JSON object and nothing else:\n"
    '{{"name": "<function name>", "arguments": {{"<argument name>": <value>, ...}}}}\n'
    "Otherwise, reply to the user in plain text.")
_PROBE_TOOL = {"type": "function", "function": {
    "name": "probe_tool_support", "description": "x",
    "parameters": {"type": "object", "properties": {}, "required": []}}}
_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class ParsedReply:
    """A model's reply as an OpenAI assistant message, and how it was read."""

    content: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments": JSON text}
    status: str = "text"  # text | call | unparsed | bad_arguments

    def message(self) -> dict[str, Any]:
        """The OpenAI chat-completions message (`model_dump` field order), ids call_0, call_1..."""
        tool_calls = [{"id": f"call_{n}", "function": {"arguments": c["arguments"],
                                                       "name": c["name"]}, "type": "function"}
                      for n, c in enumerate(self.calls)] or None
        return {"content": self.content, "role": "assistant", "function_call": None,
                "tool_calls": tool_calls}


def template_family(tokenizer: Any) -> str:
    """Which family a tokenizer's chat template belongs to (see the module docstring)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return SYSTEM_PROMPT
    if "<tool_call>" in str(template):
        return HERMES
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        with_tools = tokenizer.apply_chat_template(probe, tools=[_PROBE_TOOL], tokenize=False,
                                                   add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that fails on tools does not support them
        return SYSTEM_PROMPT
    without = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    return SYSTEM_PROMPT if with_tools == without else LLAMA3_JSON


def _arguments_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def _for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History for a tool-aware template: tool-call arguments as objects, as templates expect."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [
                {**call, "function": {**call["function"],
                                      "arguments": _arguments_object(
                                          call["function"].get("arguments"))}}
                for call in message["tool_calls"]]
        out.append(message)
    return out


def fallback_call_text(call: dict[str, Any]) -> str:
    """How an earlier call is written in the system-prompt format (what the model should write)."""
    function = call.get("function", call)
    return json.dumps({"name": function.get("name"),
                       "arguments": _arguments_object(function.get("arguments"))},
                      ensure_ascii=False)


def fallback_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]]
                      ) -> list[dict[str, str]]:
    """The chat rewritten for a template without tool support: plain text roles only."""
    listing = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    instruction = FALLBACK_INSTRUCTION.format(tools=listing)
    out: list[dict[str, str]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            content = "\n".join(fallback_call_text(c) for c in message["tool_calls"])
        elif role == "tool":
            role, content = "user", f"[result of {message.get('name', 'the function')}]\n{content}"
        if out and out[-1]["role"] == role and role != "system":
            out[-1]["content"] += "\n\n" + content  # templates that need alternating roles
        else:
            out.append({"role": str(role), "content": str(content)})
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{instruction}"
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
           family: str) -> str:
    """The prompt text for one request (generation prompt added)."""
    if family != SYSTEM_PROMPT:
        return str(tokenizer.apply_chat_template(_for_template(messages), tools=tools,
                                                 tokenize=False, add_generation_prompt=True))
    chat = fallback_messages(messages, tools)
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(chat, tokenize=False,
                                                 add_generation_prompt=True))
    # No template (a base model): a plain transcript, the reply after "assistant:".
    return "".join(f"{m['role']}: {m['content']}\n\n" for m in chat) + "assistant:"


def _call(obj: Any, argument_keys: tuple[str, ...]) -> dict[str, Any] | None:
    """{"name", "arguments": JSON text} from a parsed object, or None when it is not a call."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = next((obj[k] for k in argument_keys if k in obj), {})
    if isinstance(arguments, str):
        return {"name": obj["name"], "arguments": arguments}
    return {"name": obj["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}


def _finish(content: str | None, calls: list[dict[str, Any]]) -> ParsedReply:
    bad = any(not _valid_json(c["arguments"]) for c in calls)
    return ParsedReply(content=content or None, calls=calls,
                       status="bad_arguments" if bad else "call")


def _valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_hermes(text: str) -> ParsedReply:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, text before them."""
    if "<tool_call>" not in text:
        return ParsedReply(content=text.strip())
    calls = []
    for block in _HERMES_BLOCK.findall(text):
        try:
            call = _call(json.loads(block), ("arguments", "parameters"))
        except ValueError:
            call = None
        if call is None:
            return ParsedReply(content=text.strip(), status="unparsed")
        calls.append(call)
    return _finish(text.split("<tool_call>", 1)[0].strip(), calls)


def parse_llama3_json(text: str) -> ParsedReply:
    """`{"name": ..., "parameters": {...}}` (after an optional `<|python_tag|>`), `;`-separated."""
    body = text.strip().removeprefix("<|python_tag|>").strip()
    if not body.startswith("{"):
        return ParsedReply(content=text.strip())
    decoder = json.JSONDecoder()
    calls, rest = [], body
    while rest:
        try:
            obj, end = decoder.raw_decode(rest)
        except ValueError:
            return ParsedReply(content=text.strip(), status="unparsed")
        call = _call(obj, ("parameters", "arguments"))
        if call is None:
            return ParsedReply(content=text.strip(), status="unparsed")
        calls.append(call)
        rest = rest[end:].strip().removeprefix(";").strip()
    return _finish(None, calls)


def parse_system_prompt(text: str) -> ParsedReply:
    """The fallback format: one JSON object {"name", "arguments"}, code fences allowed."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        return ParsedReply(content=text.strip())
    try:
        obj, end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return ParsedReply(content=text.strip(), status="unparsed")
    call = _call(obj, ("arguments", "parameters"))
    if call is None or body[end:].strip():
        return ParsedReply(content=text.strip(), status="unparsed")
    return _finish(None, [call])


PARSERS = {HERMES: parse_hermes, LLAMA3_JSON: parse_llama3_json,
           SYSTEM_PROMPT: parse_system_prompt}


def parse_reply(text: str, family: str) -> ParsedReply:
    """The model's raw output read with its family's parser."""
    return PARSERS[family](text)


def served_reply(message: Any) -> ParsedReply:
    """A chat-completions message from a server (`--backend openai`) as a ParsedReply."""
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        function = call.function
        calls.append({"name": function.name, "arguments": function.arguments or ""})
    content = getattr(message, "content", None)
    if not calls:
        return ParsedReply(content=content)
    return _finish(content, calls)


class ServedToolChat:
    """`--backend openai`: chat completions with `tools`, `tool_choice: "auto"`, as the benchmark
    repository asks its models (temperature 0.1); the server's own tool parser reads the calls."""

    def __init__(self, base_url: str, model: str, *, temperature: float = 0.1,
                 max_tokens: int | None = None, timeout_s: float = 300.0,
                 max_retries: int = 3) -> None:
        import openai  # noqa: PLC0415 - heavy: the OpenAI client, only for a served model

        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        root = base_url.rstrip("/").removesuffix("/completions").removesuffix("/chat")
        self.base_url = root
        self._client = openai.OpenAI(base_url=root, api_key="EMPTY", timeout=timeout_s,
                                     max_retries=max_retries)

    def describe(self) -> dict[str, Any]:
        return {"endpoint": f"{self.base_url}/chat/completions", "tool_choice": "auto",
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    def reply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ParsedReply:
        """One request; a failure raises the openai client's error (the caller words it)."""
        extra = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        response = self._client.chat.completions.create(
            model=self.model, messages=messages, tools=tools, tool_choice="auto",
            temperature=self.temperature, **extra)
        return served_reply(response.choices[0].message)

    def close(self) -> None:
        self._client.close()
