"""The NIAH part of the bench: a grid prefilled with shared prefixes vs its cells run alone.

Both sides answer the same cells greedily on the same engine; the report gives tokens
prefilled, seconds, the ratio (the issue asks at most 0.5x the tokens of the cells alone for a
grid), and whether the answers agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kanana_eval.engine.shared_prefix_generation import GridPrompt, SharedPrefixGenerator
from kanana_eval.tasks.niah import generator as niah

BENCH_LENGTHS = (1024, 2048)
BENCH_DEPTHS = (0, 25, 50, 75, 100)


def measure_niah(lm: Any, lengths: Sequence[int] = BENCH_LENGTHS,
                 depths: Sequence[int] = BENCH_DEPTHS, max_new_tokens: int = 8) -> dict[str, Any]:
    """Tokens and time of one English retrieval grid, shared prefixes vs each cell alone."""
    tok = lm.tokenizer
    cells = niah.build_cells(niah.Grid(tuple(lengths), tuple(depths), ("en",)), "retrieval",
                             seed=1234, encode=lambda t: tok.encode(t, add_special_tokens=False),
                             frame=niah.Frame(), max_new_tokens=max_new_tokens,
                             context=int(lm.max_length), source=niah.HaystackSource())
    prompts = [GridPrompt(c.tokens, [], max_new_tokens) for c in cells if not c.skipped]
    sides: dict[str, Any] = {}
    answers: dict[str, dict[int, list[int]]] = {"shared": {}, "alone": {}}
    t = time.perf_counter()
    shared = SharedPrefixGenerator(lm.runner, eos_ids=[], decode=tok.decode)
    shared.run(prompts, on_done=lambda i, ids: answers["shared"].__setitem__(i, ids))
    sides["shared"] = {"seconds": round(time.perf_counter() - t, 3), **shared.stats.describe()}
    t = time.perf_counter()
    prefilled = 0
    for index, prompt in enumerate(prompts):
        alone = SharedPrefixGenerator(lm.runner, eos_ids=[], decode=tok.decode)
        alone.run([prompt], on_done=lambda _i, ids, i=index: answers["alone"].__setitem__(i, ids))
        prefilled += alone.stats.prefill_tokens
    sides["alone"] = {"seconds": round(time.perf_counter() - t, 3), "prefill_tokens": prefilled}
    return {"grid": {"lengths": list(lengths), "depths": list(depths), "cells": len(prompts)},
            "sides": sides, "token_ratio": shared.stats.prefill_tokens / max(1, prefilled),
            "time_ratio": sides["shared"]["seconds"] / max(1e-9, sides["alone"]["seconds"]),
            "answers_agree": answers["shared"] == answers["alone"]}


def format_niah(result: dict[str, Any] | None) -> list[str]:
    """The bench's NIAH lines."""
    if result is None:
        return []
    s, a, g = result["sides"]["shared"], result["sides"]["alone"], result["grid"]
    return [f"NIAH grid {g['lengths']} x {g['depths']}% ({g['cells']} cells, English, retrieval):",
            f"  shared prefixes  {s['prefill_tokens']:>8} tokens prefilled  {s['seconds']:8.1f} s",
            f"  cells alone      {a['prefill_tokens']:>8} tokens prefilled  {a['seconds']:8.1f} s",
            f"  ratio            {result['token_ratio']:8.2f}x tokens  "
            f"{result['time_ratio']:8.2f}x time; "
            f"answers {'agree' if result['answers_agree'] else 'DIFFER'}"]
