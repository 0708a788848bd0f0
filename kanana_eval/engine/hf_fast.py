"""The transformers engine: lm-eval's HFLM with prefix reuse, per-row stopping and memory batching.

`FastHFLM` is lm-eval's own HFLM (same tokenization, truncation, chat templates, request cache)
with three paths replaced:

* log-likelihood: rows that share a long token prefix run it once
  (kanana_eval.engine.prefix_reuse);
* generation: continuous batching in which each row stops on its own
  (kanana_eval.engine.batched_generation);
* batch size: `auto` is computed from free memory and sequence length
  (kanana_eval.engine.batch_memory) instead of lm-eval's detect-by-OOM, which never triggers on a
  CPU.

Anything else (rolling log-likelihood, seq2seq models, generation kwargs the loop does not
reproduce) goes to HFLM's own code. `ModelRunner` holds the model calls and cache surgery both
paths share, written against transformers' Cache API (`cache=` from 5.x, `past_key_values=` before).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from kanana_eval.engine.batch_memory import BatchPlanner, Layout, ModelShape
from kanana_eval.engine.batched_generation import (
    SUPPORTED_KWARGS,
    ContinuousBatcher,
    GenerationStats,
    Prompt,
    Sampling,
    unsupported_config_fields,
)
from kanana_eval.engine.model_runner import ModelRunner
from kanana_eval.engine.prefix_reuse import DEFAULT_MIN_PREFIX, ScoreStats, score_requests

log = logging.getLogger("kanana_eval")


class FastHFLM(HFLM):
    """lm-eval's HFLM, faster: prefix reuse, per-row stopping, a batch size that fits in memory."""

    def __init__(self, pretrained: Any, *, prefix_cache: bool = True,
                 batch_size: int | str = "auto", batch_cap: int | None = None,
                 min_prefix: int = DEFAULT_MIN_PREFIX, **kwargs: Any) -> None:
        from_memory = str(batch_size) == "auto"
        super().__init__(pretrained, batch_size=1 if from_memory else int(batch_size), **kwargs)
        self.prefix_cache = bool(prefix_cache)
        self.min_prefix = int(min_prefix)
        dtype = next(self.model.parameters()).dtype
        self.planner = BatchPlanner(
            ModelShape.from_config(self.model.config), dtype_bytes=dtype.itemsize,
            device=str(self.device), fixed_size=None if from_memory else int(batch_size),
            cap=batch_cap)
        self.runner = ModelRunner.for_model(
            self.model, self.device, autocast_dtype=self.mixed_precision_dtype,
            softmax_dtype=self.softmax_dtype, tokenizer=self.tokenizer)
        self.score_stats = ScoreStats()
        self.generation_stats = GenerationStats()
        self.delegated: dict[str, int] = {}

    # ------------------------------------------------------------------ record
    def speed_record(self) -> dict[str, Any]:
        """What the manifest records about how requests were computed."""
        return {
            "prefix_cache": self.prefix_cache, "min_prefix_tokens": self.min_prefix,
            "batching": self.planner.describe(),
            "loglikelihood": {**vars(self.score_stats),
                              "suffixes_packed": self.prefix_cache and self.runner.can_pad_batches},
            "generation": {**vars(self.generation_stats), "per_row_stopping": True,
                           "rows_padded_together": self.runner.can_pad_batches},
            "delegated_to_lm_eval": dict(self.delegated),
        }

    @contextlib.contextmanager
    def _plain_batch(self, kind: str, tokens: int) -> Iterator[None]:
        """HFLM's own path for what is not handled here, at a batch size that fits in memory."""
        self.delegated[kind] = self.delegated.get(kind, 0) + 1
        saved = self.batch_size_per_gpu
        self.batch_size_per_gpu = self.planner.choose(kind, cached_tokens=0, new_tokens=tokens,
                                                      kept_logits=tokens)
        try:
            yield
        finally:
            self.batch_size_per_gpu = saved

    # ------------------------------------------------------------------ log-likelihood
    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, override_bs: int | None = None,
                              ) -> list[tuple[float, bool]]:
        if not requests:
            return []
        if self.backend != "causal" or any(req[0] is None for req in requests):
            # rolling windows (perplexity) and seq2seq: lm-eval's own code
            with self._plain_batch("loglikelihood_plain", self.max_length):
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm,
                                                     override_bs=override_bs)

        for _key, context, continuation in requests:
            assert len(context) > 0 and len(continuation) > 0
            assert len(continuation) <= self.max_length
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests")

        def on_result(index: int, answer: tuple[float, bool]) -> None:
            key = requests[index][0]
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
            bar.update(1)

        def batch_size(prefix: int, suffix: int, kept: int) -> int:
            # the layout prefix_reuse runs the batch in: packed on a prefix when the layers allow
            layout = Layout.PACKED if prefix and self.runner.can_pad_batches else Layout.PADDED
            return self.planner.choose("loglikelihood", cached_tokens=prefix, new_tokens=suffix,
                                       kept_logits=kept, layout=layout)

        try:
            results, stats = score_requests(self.runner, requests, max_length=self.max_length,
                                            batch_size=batch_size, reuse=self.prefix_cache,
                                            min_prefix=self.min_prefix, on_result=on_result)
        finally:
            bar.close()
        self.score_stats.add(stats)
        return results

    # ------------------------------------------------------------------ generation
    def _generation_plan(self, gen_kwargs: dict[str, Any],
                         ) -> tuple[list[str], int, Sampling] | None:
        """(stop strings, token limit, sampling) as HFLM would use them, or None to delegate."""

        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen_toks = int(kwargs.pop("max_gen_toks"))
        # HFLM._model_generate: temperature 0 means greedy and is then dropped
        kwargs["temperature"] = kwargs.get("temperature", 0.0)
        if kwargs["temperature"] == 0.0 and kwargs.get("do_sample") is None:
            kwargs["do_sample"] = False
        if kwargs.get("do_sample") is False and kwargs["temperature"] == 0.0:
            kwargs.pop("temperature")
        if set(kwargs) - SUPPORTED_KWARGS:
            return None
        config = getattr(self.model, "generation_config", None)
        if unsupported_config_fields(config):
            return None
        return until, max_gen_toks, Sampling.from_kwargs(kwargs, config)

    def _eos_ids(self) -> list[int]:
        config = getattr(self.model, "generation_config", None)
        eos = getattr(config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]

    def _finish_text(self, tokens: list[int], until: list[str]) -> str:
        """HFLM's post-processing of a row's tokens: thinking marker, decode, cut at stops."""

        if isinstance(self.think_end_token, int):
            found = [i for i, t in enumerate(tokens) if t == self.think_end_token]
            if found:
                tokens = tokens[found[-1] + 1:]
        text = self.tok_decode(tokens)
        if isinstance(self.think_end_token, int):
            text = text.lstrip()
        return postprocess_generated_text(
            generation=text, stop=until,
            think_end_token=self.think_end_token if isinstance(self.think_end_token, str) else None)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        if not requests:
            return []
        if self.backend != "causal":
            with self._plain_batch("generate_until_plain", self.max_length):
                return super().generate_until(requests, disable_tqdm=disable_tqdm)

        # One pass for everything that samples alike: stop strings and token limits are per row,
        # so greedy requests of every benchmark share the batches (sorted by length).
        plans: dict[str, tuple[list[str], int, Sampling] | None] = {}
        groups: dict[Sampling | None, list[int]] = {}
        for index, request in enumerate(requests):
            key = json.dumps(request.args[1], sort_keys=True, default=str)
            if key not in plans:
                plans[key] = self._generation_plan(request.args[1])
            plan = plans[key]
            groups.setdefault(plan[2] if plan is not None else None, []).append(index)
        results: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                   desc="Running generate_until requests")
        try:
            for sampling, indices in groups.items():
                if sampling is None:
                    with self._plain_batch("generate_until_plain", self.max_length):
                        outputs = super().generate_until([requests[i] for i in indices],
                                                         disable_tqdm=True)
                    for i, text in zip(indices, outputs, strict=True):
                        results[i] = text
                    bar.update(len(indices))
                    continue
                row_plans = {}
                for i in indices:
                    plan = plans[json.dumps(requests[i].args[1], sort_keys=True, default=str)]
                    assert plan is not None
                    row_plans[i] = plan
                self._generate_group(requests, indices, row_plans, sampling, results, bar)
        finally:
            bar.close()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _generate_group(self, requests: list[Any], indices: list[int],
                        plans: dict[int, tuple[list[str], int, Sampling]], sampling: Sampling,
                        results: list[str | None], bar: Any) -> None:
        prompts: list[Prompt] = []
        for i in indices:
            until, max_gen_toks, _ = plans[i]
            max_ctx_len = self.max_length - max_gen_toks
            assert max_ctx_len > 0, (
                f"requested max tokens to generate ({max_gen_toks}) must be less "
                f"than the model's maximum sequence length ({self.max_length})")
            ids, _ = self.tok_batch_encode([requests[i].args[0]], left_truncate_len=max_ctx_len,
                                           truncation=self.truncation)
            prompts.append(Prompt(ids[0].tolist(), until, max_gen_toks))
        order = sorted(range(len(indices)),
                       key=lambda k: (-len(prompts[k].tokens), requests[indices[k]].args[0]))
        ordered = [prompts[k] for k in order]
        longest = max(len(p.tokens) + p.max_new_tokens for p in ordered)
        # each prompt is prefilled alone before it joins: that forward comes on top of the batch
        prefill = self.planner.estimate(Layout.PADDED, 1, cached_tokens=0,
                                        new_tokens=max(len(p.tokens) for p in ordered),
                                        kept_logits=1)
        def room() -> int:
            return self.planner.choose("generate_until", cached_tokens=longest, new_tokens=1,
                                       kept_logits=1, layout=Layout.DECODE, fixed=prefill)

        def decode(tokens: list[int]) -> str:
            return self.tokenizer.decode(tokens, skip_special_tokens=False)

        def on_done(position: int, tokens: list[int]) -> None:
            i = indices[order[position]]
            context, gen_kwargs = requests[i].args
            text = self._finish_text(tokens, list(ordered[position].stops))
            results[i] = text
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            bar.update(1)

        batcher = ContinuousBatcher(self.runner, eos_ids=self._eos_ids(), decode=decode,
                                    sampling=sampling, max_active=room(), room=room)
        batcher.run(ordered, on_done=on_done)
        self.generation_stats.add(batcher.stats)
