"""Forward calls and KV-cache operations for one causal LM, across transformers versions.

The fast paths (prefix reuse, continuous batching) drive the model through this one object, so
a change in how transformers passes caches or positions is handled in one place.
"""

from __future__ import annotations

import copy
import gc
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ModelRunner:
    """Forward calls and KV-cache operations for one causal LM, across transformers versions."""

    model: Any
    device: Any
    autocast_dtype: Any = None
    softmax_dtype: Any = None
    tokenizer: Any = None
    cache_arg: str = "cache"
    keeps_logits: bool = True
    _can_pad: bool | None = field(default=None, repr=False)

    @classmethod
    def for_model(cls, model: Any, device: Any, *, autocast_dtype: Any = None,
                  softmax_dtype: Any = None, tokenizer: Any = None) -> ModelRunner:
        params = inspect.signature(model.forward).parameters
        cache_arg = "cache" if "cache" in params else "past_key_values"
        return cls(model, device, autocast_dtype, softmax_dtype, tokenizer, cache_arg,
                   "logits_to_keep" in params)

    # ------------------------------------------------------------------ forward
    def autocast(self) -> Any:

        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype,
                              enabled=self.autocast_dtype is not None)

    def forward(self, input_ids: Any, *, cache: Any = None, use_cache: bool = False, keep: Any = 0,
                attention_mask: Any = None, position_ids: Any = None) -> tuple[Any, Any]:
        """(logits of the last `keep` positions, or all when 0, or of the positions in a 1-D index
        tensor `keep`; the cache after this forward)."""

        by_index = isinstance(keep, torch.Tensor)
        extra: dict[str, Any] = {}
        if self.keeps_logits and (by_index or keep):
            extra["logits_to_keep"] = keep if by_index else int(keep)
        logits, new_cache = self._call(input_ids, cache, use_cache, attention_mask, position_ids,
                                       extra)
        if not self.keeps_logits and by_index:
            logits = logits[:, keep.to(logits.device), :]
        elif not self.keeps_logits and keep:
            logits = logits[:, -keep:, :]
        return logits, new_cache

    def logits_at(self, input_ids: Any, rows: Any, positions: Any, *, cache: Any = None,
                  use_cache: bool = False, attention_mask: Any = None,
                  position_ids: Any = None) -> tuple[Any, Any]:
        """(logits at the (row, position) pairs only, shape (pairs, vocab); the cache after).

        A right-padded batch scores a few positions per row, at different places in each row:
        `logits_to_keep` can only keep the same positions of every row, which for rows of unequal
        length means most of the batch and, with a 262k vocabulary, gigabytes of logits. So the
        hidden states are gathered at the pairs on their way into the output projection (a
        pre-hook on it), and only those rows are projected: the same per-position computation.
        A model whose output projection is not called on (batch, length, hidden) states gets the
        full logits indexed afterwards instead.
        """
        head = self.model.get_output_embeddings() if hasattr(
            self.model, "get_output_embeddings") else None
        rows = rows.to(input_ids.device)
        positions = positions.to(input_ids.device)
        gathered: list[bool] = []

        def gather(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            hidden = args[0] if args else None
            if (gathered or not isinstance(hidden, torch.Tensor) or hidden.dim() != 3
                    or tuple(hidden.shape[:2]) != tuple(input_ids.shape)):
                return None
            gathered.append(True)
            return (hidden[rows, positions][None], *args[1:])

        handle = head.register_forward_pre_hook(gather) if head is not None else None
        try:
            logits, new_cache = self._call(input_ids, cache, use_cache, attention_mask,
                                           position_ids, {})
        finally:
            if handle is not None:
                handle.remove()
        return (logits[0] if gathered else logits[rows, positions]), new_cache

    def _call(self, input_ids: Any, cache: Any, use_cache: bool, attention_mask: Any,
              position_ids: Any, extra: dict[str, Any]) -> tuple[Any, Any]:

        kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": use_cache, **extra}
        if cache is not None:
            kwargs[self.cache_arg] = cache
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        with torch.no_grad(), self.autocast():
            out = self.model(**kwargs)
        # Read the output under the name this transformers version uses: asking a 5.x output for
        # `past_key_values` logs a deprecation warning (with use_cache=False the cache is None).
        return out.logits, getattr(out, self.cache_arg, None)

    @property
    def mask_dtype(self) -> Any:
        """The dtype an additive 4-D attention mask must have for this model."""
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ memory
    @staticmethod
    def is_out_of_memory(exc: BaseException) -> bool:

        oom = getattr(torch.cuda, "OutOfMemoryError", ())
        return (bool(oom) and isinstance(exc, oom)) or "out of memory" in str(exc).lower()

    @staticmethod
    def release_memory() -> None:


        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ cache operations
    @staticmethod
    def _layers(cache: Any) -> list[Any] | None:
        return getattr(cache, "layers", None)

    def expand_cache(self, cache: Any, rows: int) -> Any:
        """A cache for `rows` rows that all continue `cache`'s single row; `cache` stays intact.

        Layers are shallow-copied with broadcast views, so the only copy made is the one the
        next forward's concatenation makes anyway.
        """
        layers = self._layers(cache)
        if layers is None or any(not isinstance(getattr(layer, "keys", None), torch.Tensor)
                                 for layer in layers):
            clone = copy.deepcopy(cache)
            if rows > 1:
                clone.batch_repeat_interleave(rows)
            return clone
        clone = copy.copy(cache)
        clone.layers = []
        for layer in layers:
            twin = copy.copy(layer)
            twin.keys = layer.keys.expand(rows, *layer.keys.shape[1:])
            twin.values = layer.values.expand(rows, *layer.values.shape[1:])
            clone.layers.append(twin)
        return clone

    @property
    def can_pad_batches(self) -> bool:
        """True when rows of different lengths can share a left-padded batch exactly.

        Needs plain full-attention cache layers: a sliding window counts cache slots, so padding
        would move it, and other layer types (linear attention, quantised) hold other state.
        """
        if self._can_pad is None:
            self._can_pad = self._probe_padding()
        return self._can_pad

    def _probe_padding(self) -> bool:

        text = self.model.config
        if hasattr(text, "get_text_config"):
            text = text.get_text_config()
        types = getattr(text, "layer_types", None)
        if types and any(t != "full_attention" for t in types):
            return False
        if (not types and getattr(text, "sliding_window", None)
                and getattr(text, "use_sliding_window", True)):
            return False
        try:
            from transformers.cache_utils import DynamicLayer  # noqa: PLC0415 - heavy: transformers
        except ImportError:
            return False
        ids = torch.zeros((1, 2), dtype=torch.long, device=self.device)
        _, cache = self.forward(ids, use_cache=True, keep=1)
        layers = self._layers(cache)
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def _map_layers(self, cache: Any, fn: Any) -> Any:
        for layer in self._layers(cache) or []:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys, layer.values = fn(layer.keys), fn(layer.values)
        return cache

    def left_pad_cache(self, cache: Any, n: int) -> Any:

        def pad(t: Any) -> Any:
            return torch.cat([t.new_zeros((t.shape[0], t.shape[1], n, t.shape[3])), t], dim=2)

        return self._map_layers(cache, pad)

    def concat_caches(self, first: Any, second: Any) -> Any:

        for a, b in zip(self._layers(first) or [], self._layers(second) or [], strict=True):
            a.keys = torch.cat([a.keys, b.keys], dim=0)
            a.values = torch.cat([a.values, b.values], dim=0)
        return first

    def select_rows(self, cache: Any, index: Any) -> Any:
        return self._map_layers(cache, lambda t: t.index_select(0, index.to(t.device)))

    def trim_left(self, cache: Any, n: int) -> Any:
        return self._map_layers(cache, lambda t: t[:, :, n:, :])

    def stop_token_window(self, stops: Sequence[str]) -> int:
        """Tokens that can spell the longest stop string (lm-eval looks back this + 2)."""
        if self.tokenizer is None:
            return max((len(s) for s in stops), default=1)
        return max((len(self.tokenizer.encode(s, add_special_tokens=False)) for s in stops),
                   default=1)
