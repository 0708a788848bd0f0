"""An OpenAI-compatible server as the engine (`--backend openai`): its arguments, the checks
before a run, and lm-eval's API model with one-line failures.

Two APIs (`--openai-api`): `completions` (the default) sends prompts our tokenizer rendered and
cut, and scores log-likelihoods through echo with logprobs; `chat` sends the conversation as
`messages` to chat completions and lets the server apply the model's chat template (generation
only: chat completions return no prompt log-probabilities).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from kanana_eval.core.errors import EngineError

COMPLETIONS, CHAT = "completions", "chat"
OPENAI_APIS = (COMPLETIONS, CHAT)


def endpoint_args(*, base_url: str | None, model: str, tokenizer: str | None, seed: int,
                  num_concurrent: int, max_length: int | None, api: str = COMPLETIONS,
                  ) -> dict[str, Any]:
    """lm-eval API-model arguments. Completions: token-id prompts cut by our tokenizer to the
    server's context. lm-eval truncates prompts to `max_length` (its default is 2048, whatever
    the server serves), so the length is --max-model-len, else the length the server reports,
    else lm-eval's default. Chat: text conversations, one per request, the server tokenizes."""
    if api not in OPENAI_APIS:
        raise EngineError(f"unknown --openai-api '{api}' (choose from {', '.join(OPENAI_APIS)})")
    if not base_url:
        raise EngineError(
            "--backend openai needs --base-url (an OpenAI-compatible server, e.g. .../v1)")
    root = base_url.rstrip("/").removesuffix("/completions").removesuffix("/chat")
    args: dict[str, Any] = {"model": model, "num_concurrent": num_concurrent, "max_retries": 3,
                            "seed": seed}
    if api == CHAT:
        return {"base_url": f"{root}/chat/completions", **args, "tokenized_requests": False,
                "tokenizer_backend": None}
    args = {"base_url": f"{root}/completions", **args, "tokenizer": tokenizer or model,
            "tokenizer_backend": "huggingface"}
    if max_length:
        args["max_length"] = int(max_length)
    return args


def check_endpoint(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Fail fast with one line when the server is not there or broken, before any work starts.

    Returns the `/models` listing ({} when the server has none), for `served_model_info`.
    """
    root = base_url.rstrip("/")
    root = root.removesuffix("/completions").removesuffix("/chat")
    try:
        with urllib.request.urlopen(f"{root}/models", timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise EngineError(f"the endpoint {root} is failing: GET /models answered HTTP "
                              f"{exc.code} {exc.reason}") from exc
        return {}  # the server answered: reachable, whatever it thinks of /models
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EngineError(f"cannot reach the endpoint {base_url}: {reason}") from exc
    try:
        listing = json.loads(body)
    except ValueError:
        return {}
    return listing if isinstance(listing, dict) else {}


def served_model_info(listing: dict[str, Any], model: str) -> dict[str, Any]:
    """The `/models` entry of `model`; a clear error when the server lists others but not it."""
    entries = [e for e in listing.get("data") or [] if isinstance(e, dict) and "id" in e]
    for entry in entries:
        if entry["id"] == model:
            return entry
    if entries:
        served = ", ".join(str(e["id"]) for e in entries[:5])
        raise EngineError(f"the endpoint does not serve '{model}' (it serves {served}); "
                          "pass the served name as --model")
    return {}


def endpoint_lm_class(api: str = COMPLETIONS) -> type:
    """lm-eval's LocalCompletionsAPI (or LocalChatCompletion for `chat`) whose failed requests
    end the run with one EngineError line.

    lm-eval retries each request `max_retries` times and then re-raises the raw aiohttp or
    requests exception (or a KeyError when the reply lacks the echo/logprobs fields).

    Chat: a conversation is kept as its messages' JSON text (a plain string, so the item records
    store it as the prompt and lm-eval's cache hashes it), sent as `messages`; the server applies
    the model's chat template.
    """

    import aiohttp  # noqa: PLC0415 - heavy, optional: lm-eval's API extra (--backend openai)
    import requests  # noqa: PLC0415 - heavy, optional: as aiohttp
    from lm_eval.models.openai_completions import (  # noqa: PLC0415 - heavy: lm-eval
        LocalChatCompletion,
        LocalCompletionsAPI,
    )

    base = LocalChatCompletion if api == CHAT else LocalCompletionsAPI

    class EndpointLM(base):  # type: ignore[misc,valid-type]
        # Who renders the chat template (the manifest's chat_template.source): the server for chat
        chat_template_source = "server" if api == CHAT else None

        def _failure(self, exc: BaseException) -> EngineError:
            attempts = f"after {self.max_retries} attempts"
            response = getattr(exc, "response", None)
            status = getattr(exc, "status", None) or getattr(response, "status_code", None)
            if status is not None:
                reason = getattr(exc, "message", None) or getattr(response, "reason", "")
                what = f"answered HTTP {status} {reason}".rstrip()
            elif isinstance(exc, (KeyError, TypeError, IndexError, ValueError)):
                what = (f"answered without the fields lm-eval needs ({type(exc).__name__}: {exc}); "
                        "log-likelihood needs echo with logprobs")
            else:
                what = f"failed: {type(exc).__name__}: {exc}"
            return EngineError(
                f"the endpoint {self.base_url} {what} ({attempts}; -v shows lm-eval's log)")

        def model_call(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().model_call(*args, **kwargs)
            except requests.RequestException as exc:
                raise self._failure(exc) from exc

        async def amodel_call(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().amodel_call(*args, **kwargs)
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError, IndexError,
                    ValueError) as exc:
                raise self._failure(exc) from exc

        async def get_batched_requests(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().get_batched_requests(*args, **kwargs)
            except BaseException:
                # lm-eval gathers without return_exceptions, so every other failed request
                # would print a "Task exception was never retrieved" traceback after our
                # one-line error: the same failure, or "Session is closed" from requests still
                # retrying when lm-eval closed its session. Both follow from the error being
                # raised, so drop them.
                loop = asyncio.get_running_loop()
                previous = loop.get_exception_handler()
                sys.stderr.write("\n")  # end lm-eval's open progress-bar line before our error

                def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                    exc = context.get("exception")
                    if isinstance(exc, EngineError) or (
                            isinstance(exc, RuntimeError) and str(exc) == "Session is closed"):
                        return
                    if previous is not None:
                        previous(loop, context)
                    else:
                        loop.default_exception_handler(context)

                loop.set_exception_handler(quiet)
                raise

        def loglikelihood(self, requests: Any, **kwargs: Any) -> Any:
            if api == CHAT:
                raise EngineError("chat completions give no log-probabilities of a prompt: "
                                  "log-likelihood benchmarks need --openai-api completions")
            return super().loglikelihood(requests, **kwargs)

        def apply_chat_template(self, chat_history: list[dict[str, str]],
                                add_generation_prompt: bool = True) -> Any:
            if api == CHAT:
                return json.dumps(chat_history, ensure_ascii=False)
            return super().apply_chat_template(chat_history, add_generation_prompt)

        def create_message(self, messages: Any, generate: bool = False) -> Any:
            if api != CHAT:
                return super().create_message(messages, generate)
            try:
                conversation = json.loads(messages[0])
            except (TypeError, ValueError):
                conversation = None
            if not isinstance(conversation, list):
                raise EngineError("chat completions need a conversation: this prompt was not "
                                  "rendered as chat messages (use --openai-api completions)")
            return conversation

    return EndpointLM


