"""Greedy generation for prompts that share long token prefixes: each shared prefix prefilled once.

Log-likelihood requests already share prefixes (`prefix_reuse`); generation requests did not.
Long-context grids (NIAH) are made of prompts that are prefixes of one haystack up to their
needle, so a grid run alone would prefill the same tens of thousands of tokens again and again.

Prompts are taken in sorted token order, which walks their token trie depth first: each prompt
shares with the one before it their longest common prefix, the longest it shares with any earlier
prompt. The KV cache is cut back to that prefix and only the rest is prefilled, then
the answer is decoded greedily and the cache cut back to the prompt. So the tokens prefilled are
the size of the trie. A cache that cannot be cut exactly (sliding-window layers keep only their
window) prefills every prompt alone; `stats.shared` says which happened.

A prompt that fails (out of memory, say) is reported to `on_error` and the cache dropped; the
next prompt starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kanana_eval.engine.model_runner import ModelRunner


@dataclass
class SharedPrefixStats:
    """What a grid cost: tokens as prompts alone, tokens prefilled, tokens decoded."""

    prompts: int = 0
    prompt_tokens: int = 0  # the prompts' tokens, as if each ran alone
    prefill_tokens: int = 0  # tokens actually prefilled
    decoded_tokens: int = 0
    failed: int = 0
    shared: bool = True

    def describe(self) -> dict[str, Any]:
        ratio = self.prefill_tokens / self.prompt_tokens if self.prompt_tokens else None
        return {**vars(self), "prefill_ratio": ratio}


@dataclass(frozen=True)
class GridPrompt:
    """One prompt: token ids, stop strings and a token limit."""

    tokens: Sequence[int]
    stops: Sequence[str]
    max_new_tokens: int


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _croppable(cache: Any) -> bool:
    """True for a cache of plain full-attention layers, which `crop` cuts back exactly."""
    from transformers.cache_utils import DynamicLayer  # noqa: PLC0415 - heavy: transformers

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(la) is DynamicLayer for la in layers)


def _cut(cache: Any, length: int) -> None:
    """Keep the first `length` positions of every layer (the API of `crop` differs by version)."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


class SharedPrefixGenerator:
    """Greedy answers for prompts sharing prefixes, with the trie's tokens prefilled once."""

    def __init__(self, runner: ModelRunner, *, eos_ids: Sequence[int],
                 decode: Callable[[list[int]], str]) -> None:
        self.runner = runner
        self.eos_ids = {int(i) for i in eos_ids}
        self.decode = decode
        self.stats = SharedPrefixStats()

    def run(self, prompts: Sequence[GridPrompt], on_done: Callable[[int, list[int]], None],
            on_error: Callable[[int, BaseException], None] | None = None) -> None:
        """Answer every prompt (sorted-token order); `on_done(index, generated ids)` each."""
        order = sorted(range(len(prompts)), key=lambda i: list(prompts[i].tokens))
        cache: Any = None
        cached: Sequence[int] = ()
        self.stats.prompts += len(prompts)
        for index in order:
            prompt = prompts[index]
            self.stats.prompt_tokens += len(prompt.tokens)
            try:
                keep = min(_common(cached, prompt.tokens), len(prompt.tokens) - 1)
                if cache is not None and keep > 0 and _croppable(cache):
                    _cut(cache, keep)
                else:
                    cache, keep = None, 0
                cache, generated = self._answer(prompt, cache, keep)
                cached = prompt.tokens
                if cache is not None and _croppable(cache):
                    _cut(cache, len(prompt.tokens))
                else:
                    cache, cached = None, ()
                    self.stats.shared = False
            except (RuntimeError, MemoryError, ValueError) as exc:
                cache, cached = None, ()
                self.runner.release_memory()
                self.stats.failed += 1
                if on_error is None:
                    raise
                on_error(index, exc)
                continue
            on_done(index, generated)

    def _answer(self, prompt: GridPrompt, cache: Any, keep: int) -> tuple[Any, list[int]]:
        import torch  # noqa: PLC0415 - heavy: torch, only when a grid is answered

        device = self.runner.device
        ids = torch.tensor([list(prompt.tokens[keep:])], dtype=torch.long, device=device)
        logits, cache = self.runner.forward(ids, cache=cache, use_cache=True, keep=1)
        self.stats.prefill_tokens += ids.shape[1]
        generated: list[int] = []
        stops = [s for s in prompt.stops if s]
        while True:
            token = int(logits[0, -1].to(torch.float32).argmax())
            generated.append(token)
            self.stats.decoded_tokens += 1
            if token in self.eos_ids or len(generated) >= prompt.max_new_tokens:
                break
            if stops and any(s in self.decode(generated) for s in stops):
                break
            step = torch.tensor([[token]], dtype=torch.long, device=device)
            logits, cache = self.runner.forward(step, cache=cache, use_cache=True, keep=1)
        return cache, generated
