"""Batched generation in which every sequence stops on its own, and a finished one is replaced.

lm-eval's transformers backend hands a batch to `model.generate` with stop criteria that end the
batch only when *every* row has produced the *same* stop string, so each batch decodes until its
slowest row hits `max_gen_toks` and batching made HumanEval ~8x slower. Here a row leaves the
batch as soon as it emits an end-of-sequence id, a stop string appears in its text, or it reaches
its token limit; the next waiting prompt takes its place (continuous batching).

Fidelity with lm-eval at batch size 1: each prompt is prefilled alone (the same forward as
`generate` at batch 1), its cache is then left-padded into the running batch, and decoding steps
carry an attention mask and per-row positions, so a row computes what it would compute alone up
to floating-point reassociation. The text is cut at the first stop string exactly as lm-eval
cuts it, so stopping at the first occurrence or later gives the same bytes. Models with
sliding-window attention decode one row at a time (padding would shift the window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessorList

if TYPE_CHECKING:

    from kanana_eval.engine.model_runner import ModelRunner

# Generation kwargs this loop reproduces exactly; any other one goes to lm-eval's own path.
SUPPORTED_KWARGS = frozenset({"do_sample", "temperature", "top_k", "top_p", "min_p"})
# generation_config fields that would add logits processors `generate` applies even greedily.
_NEUTRAL_CONFIG: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,), "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,), "guidance_scale": (None, 1.0),
    "num_beams": (None, 1), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0), "watermarking_config": (None,), "renormalize_logits": (None, False),
    "remove_invalid_values": (None, False), "top_h": (None,), "max_time": (None,),
    "stop_strings": (None,),
}


def unsupported_config_fields(generation_config: Any) -> list[str]:
    """generation_config fields that this loop does not reproduce (empty: safe to use it)."""
    if generation_config is None:
        return []
    return [name for name, neutral in _NEUTRAL_CONFIG.items()
            if getattr(generation_config, name, None) not in neutral]


@dataclass(frozen=True)
class Sampling:
    """Greedy, or sampling with HF's warpers in HF's order: temperature, top-k, top-p, min-p."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    min_p: float | None = None

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], generation_config: Any) -> Sampling:
        """What `model.generate(**kwargs)` would use: the request, else the model's config, else
        HF's defaults."""
        def pick(name: str, default: Any) -> Any:
            if kwargs.get(name) is not None:
                return kwargs[name]
            value = getattr(generation_config, name, None)
            return default if value is None else value

        do_sample = bool(pick("do_sample", False))
        if not do_sample:  # greedy ignores the warpers' settings: all greedy requests share a batch
            return cls()
        return cls(do_sample=do_sample, temperature=float(pick("temperature", 1.0)),
                   top_k=pick("top_k", 50), top_p=float(pick("top_p", 1.0)),
                   min_p=pick("min_p", None))

    def warpers(self) -> Any:
        from transformers.generation.logits_process import (  # noqa: PLC0415 - heavy: transformers
            MinPLogitsWarper,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        if not self.do_sample:
            return processors
        if self.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k is not None and self.top_k != 0:
            processors.append(TopKLogitsWarper(top_k=int(self.top_k), min_tokens_to_keep=1))
        if self.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        if self.min_p is not None:
            processors.append(MinPLogitsWarper(min_p=float(self.min_p), min_tokens_to_keep=1))
        return processors


@dataclass
class Prompt:
    """One request to generate for: its prompt tokens, stop strings and token limit."""

    tokens: list[int]
    stops: Sequence[str]
    max_new_tokens: int


@dataclass
class _Live:
    """A row of the running batch."""

    index: int
    generated: list[int] = field(default_factory=list)
    position: int = 0  # position id of the next token fed


@dataclass
class GenerationStats:
    """Forwards and tokens of one call, for the bench and the manifest."""

    prompts: int = 0
    prefill_tokens: int = 0
    decode_steps: int = 0
    decoded_tokens: int = 0
    padded_positions: int = 0
    max_active: int = 0

    def add(self, other: GenerationStats) -> None:
        for name in ("prompts", "prefill_tokens", "decode_steps", "decoded_tokens",
                     "padded_positions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_active = max(self.max_active, other.max_active)


class ContinuousBatcher:
    """Decodes prompts with at most `max_active` rows in flight; each row stops on its own."""

    def __init__(self, runner: ModelRunner, *, eos_ids: Sequence[int],
                 decode: Callable[[list[int]], str], sampling: Sampling, max_active: int,
                 stop_window: int = 8, room: Callable[[], int] | None = None) -> None:
        self.runner = runner
        self.eos_ids = set(int(i) for i in eos_ids)
        self.decode = decode
        self.sampling = sampling
        self.warpers = sampling.warpers()
        self.max_active = max(1, max_active if runner.can_pad_batches else 1)
        self.stop_window = stop_window
        # rows memory allows now, asked before a waiting prompt joins: a batch stops growing
        # when memory gets scarce (rows already decoding are never dropped)
        self.room = room
        self.stats = GenerationStats()
        self._stop_tokens: dict[tuple[str, ...], int] = {}

    # ------------------------------------------------------------------ public
    def run(self, prompts: Sequence[Prompt],
            on_done: Callable[[int, list[int]], None] | None = None) -> list[list[int]]:
        """Generated token ids per prompt (EOS included when it ended the row), prompt order."""

        self.prompts = prompts
        self.stats.prompts += len(prompts)
        outputs: list[list[int] | None] = [None] * len(prompts)
        waiting = deque(range(len(prompts)))
        live: list[_Live] = []
        cache: Any = None
        mask: torch.Tensor | None = None
        next_tokens: list[int] = []

        def finish(row: _Live) -> None:
            outputs[row.index] = row.generated
            if on_done is not None:
                on_done(row.index, row.generated)

        with torch.no_grad(), self.runner.autocast():
            while waiting or live:
                while waiting and len(live) < self._limit():
                    row = _Live(waiting.popleft())
                    token, row_cache = self._prefill(row)
                    if self._done(row, token):
                        finish(row)
                        continue
                    cache, mask = self._join(cache, mask, row_cache, len(prompts[row.index].tokens))
                    live.append(row)
                    next_tokens.append(token)
                if not live:
                    continue
                self.stats.max_active = max(self.stats.max_active, len(live))
                tokens = self._step(cache, mask, live, next_tokens)
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                keep = []
                next_tokens = []
                for r, (row, token) in enumerate(zip(live, tokens, strict=True)):
                    row.position += 1
                    if self._done(row, token):
                        finish(row)
                    else:
                        keep.append(r)
                        next_tokens.append(token)
                if len(keep) < len(live):
                    live = [live[r] for r in keep]
                    if not live:
                        cache, mask = None, None
                    else:
                        cache, mask = self._select(cache, mask, keep)
        return [out if out is not None else [] for out in outputs]

    def _limit(self) -> int:
        """Rows the batch may hold: `max_active`, lowered by `room` (at least one row runs)."""
        if self.room is None:
            return self.max_active
        return min(self.max_active, max(1, self.room()))

    # ------------------------------------------------------------------ steps
    def _choose(self, logits: torch.Tensor, generated: Sequence[Sequence[int]]) -> list[int]:
        """Next token per row from the last-position logits, as `generate` chooses it."""

        scores = logits.to(dtype=torch.float32)
        if not self.sampling.do_sample:
            return [int(t) for t in scores.argmax(dim=-1).tolist()]
        width = max(len(g) for g in generated)
        ids = torch.zeros((len(generated), max(1, width)), dtype=torch.long, device=scores.device)
        scores = self.warpers(ids, scores)
        probs = torch.softmax(scores, dim=-1)
        return [int(t) for t in torch.multinomial(probs, num_samples=1).squeeze(1).tolist()]

    def _prefill(self, row: _Live) -> tuple[int, Any]:
        """The prompt alone (batch 1, no padding): the same forward `generate` runs first."""

        prompt = self.prompts[row.index].tokens
        ids = torch.tensor([prompt], dtype=torch.long, device=self.runner.device)
        logits, cache = self.runner.forward(ids, use_cache=True, keep=1)
        self.stats.prefill_tokens += len(prompt)
        row.position = len(prompt)
        return self._choose(logits[:, -1, :], [row.generated])[0], cache

    def _step(self, cache: Any, mask: torch.Tensor, live: Sequence[_Live],
              tokens: Sequence[int]) -> list[int]:
        """One decoding step for every live row: its last token, its own position, its mask."""

        device = self.runner.device
        ids = torch.tensor([[t] for t in tokens], dtype=torch.long, device=device)
        positions = torch.tensor([[row.position] for row in live], dtype=torch.long, device=device)
        full_mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        padded = len(live) > 1 or bool((mask == 0).any())
        logits, _ = self.runner.forward(ids, cache=cache, use_cache=True, keep=1,
                                        attention_mask=full_mask if padded else None,
                                        position_ids=positions)
        self.stats.decode_steps += 1
        self.stats.decoded_tokens += len(live)
        self.stats.padded_positions += int((full_mask == 0).sum())
        return self._choose(logits[:, -1, :], [row.generated for row in live])

    def _done(self, row: _Live, token: int) -> bool:
        """Record `token`; True when the row must stop (EOS, a stop string, or its limit)."""
        row.generated.append(token)
        prompt = self.prompts[row.index]
        if token in self.eos_ids or len(row.generated) >= prompt.max_new_tokens:
            return True
        stops = tuple(s for s in prompt.stops if s)
        if not stops:
            return False
        window = self._stop_tokens.get(stops)
        if window is None:
            window = self._stop_tokens[stops] = (self.runner.stop_token_window(stops)
                                                 + self.stop_window)
        tail = self.decode(row.generated[-window:])
        if not any(stop in tail for stop in stops):
            return False
        # A tail decoded alone can differ at its edge: confirm on the whole text (rare).
        text = self.decode(row.generated)
        return any(stop in text for stop in stops)

    # ------------------------------------------------------------------ cache surgery
    def _join(self, cache: Any, mask: torch.Tensor | None, row_cache: Any, length: int,
              ) -> tuple[Any, torch.Tensor]:
        """Add a prefilled row to the batch, left-padding whichever side is shorter."""

        row_mask = torch.ones((1, length), dtype=torch.long, device=self.runner.device)
        if cache is None:
            return row_cache, row_mask
        width = mask.shape[1]
        if length < width:
            row_cache = self.runner.left_pad_cache(row_cache, width - length)
            row_mask = torch.cat([row_mask.new_zeros((1, width - length)), row_mask], dim=1)
        elif length > width:
            cache = self.runner.left_pad_cache(cache, length - width)
            mask = torch.cat([mask.new_zeros((mask.shape[0], length - width)), mask], dim=1)
        return self.runner.concat_caches(cache, row_cache), torch.cat([mask, row_mask], dim=0)

    def _select(self, cache: Any, mask: torch.Tensor, keep: list[int]) -> tuple[Any, torch.Tensor]:
        """Keep the rows `keep`; drop left padding that no remaining row needs."""

        index = torch.tensor(keep, dtype=torch.long, device=mask.device)
        mask = mask.index_select(0, index)
        cache = self.runner.select_rows(cache, index)
        unused = int((mask.cumsum(dim=1) == 0).all(dim=0).sum())
        if unused:
            cache = self.runner.trim_left(cache, unused)
            mask = mask[:, unused:]
        return cache, mask
