"""IFEval items and score from lm-eval's own checker results (lm-eval's `ifeval` task).

lm-eval's `process_results` runs Google's instruction checker on each response and logs, per
prompt, prompt-level strict/loose (one bool) and instruction-level strict/loose (one bool per
instruction). We keep all four per item and aggregate them exactly as lm-eval does: prompt level
is a mean over prompts, instruction level a micro mean over every instruction of every prompt
(`agg_inst_level_acc`). The README's IFEval number is the mean of the two strict accuracies.
The checker counts sentences with NLTK's punkt_tab: see kanana_eval.punkt.ensure_punkt_tab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError
from kanana_eval.scoring.base import Aggregate, item_id

METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc",
           "prompt_level_loose_acc", "inst_level_loose_acc")


def _flags(spec: BenchmarkSpec, sample: dict[str, Any], n_instructions: int) -> dict[str, Any]:
    """lm-eval's four per-prompt metric values, checked for shape (bools, one per instruction)."""
    missing = [m for m in METRICS if m not in sample]
    if missing:
        raise ConfigError(f"{spec.id}: lm-eval's sample has no {', '.join(missing)} (metrics bypassed?)")
    flags: dict[str, Any] = {}
    for name in METRICS:
        value = sample[name]
        if name.startswith("inst_"):
            if not isinstance(value, list) or len(value) != n_instructions:
                raise ConfigError(f"{spec.id}: {name} of doc {sample['doc_id']} is {value!r},"
                                  f" not one flag per instruction ({n_instructions})")
            flags[name] = [bool(v) for v in value]
        else:
            flags[name] = bool(value)
    return flags


def ifeval_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> dict[str, Any]:
    """One prompt: score = prompt-level strict (every instruction followed); details keep all four."""
    doc = sample["doc"]
    instructions = [str(i) for i in doc["instruction_id_list"]]
    flags = _flags(spec, sample, len(instructions))
    response = sample["filtered_resps"][0]  # what lm-eval's process_results checked
    strict = flags["prompt_level_strict_acc"]
    if not response.strip():
        verdict = "no_answer"  # the checker fails every instruction of an empty response
    else:
        verdict = "correct" if strict else "wrong"
    return {
        "schema_version": 1,
        "benchmark": spec.id,
        "item_id": item_id(spec, subtask, sample["doc_id"], doc),
        "subtask": subtask,
        "prompt": sample["arguments"][0][0],
        "output": sample["resps"][0][0],
        "extracted": response,
        "target": None,
        "score": 1.0 if strict else 0.0,
        "verdict": verdict,
        "details": {"instruction_id_list": instructions, **flags},
    }


def _counts(items: Sequence[dict[str, Any]], level: str) -> tuple[list[int], list[int], list[int]]:
    """Per item: prompt-level flag, instructions followed, instructions given (strict or loose)."""
    prompt = [int(bool(i["details"][f"prompt_level_{level}_acc"])) for i in items]
    followed = [sum(bool(f) for f in i["details"][f"inst_level_{level}_acc"]) for i in items]
    given = [len(i["details"][f"inst_level_{level}_acc"]) for i in items]
    return prompt, followed, given


def ifeval_metrics(items: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """lm-eval's four IFEval accuracies (`mean` over prompts; `agg_inst_level_acc` over instructions)."""
    out: dict[str, float | None] = {}
    for level in ("strict", "loose"):
        prompt, followed, given = _counts(items, level)
        out[f"prompt_level_{level}_acc"] = sum(prompt) / len(prompt) if prompt else None
        out[f"inst_level_{level}_acc"] = sum(followed) / sum(given) if sum(given) else None
    return {name: out[name] for name in METRICS}


def ifeval_aggregate(items: Sequence[dict[str, Any]]) -> Aggregate:
    """The README's IFEval: (prompt-level strict + instruction-level strict) / 2, with a stderr.

    Prompts are the sampled units (one prompt's instructions share a response), so the stderr
    is the delta-method one over prompts. With p_i the prompt's strict flag, k_i of its t_i
    instructions followed, r = sum k / sum t and tbar = mean t, each prompt contributes
        z_i = p_i / 2 + (r + (k_i - r * t_i) / tbar) / 2,
    whose mean is exactly the value (sum (k_i - r t_i) = 0), and the stderr is the sample
    standard deviation of z over sqrt(n), as lm-eval's mean_stderr. (k_i - r t_i) / tbar is the
    ratio estimator's first-order influence; when every prompt has the same number of
    instructions it equals k_i / tbar - r, i.e. the plain per-item contribution.
    """
    n = len(items)
    if n == 0:
        return Aggregate(None, None, 0, {})
    prompt, followed, given = _counts(items, "strict")
    total = sum(given)
    if total == 0:
        raise ConfigError("IFEval items without instructions cannot be scored")
    p, r = sum(prompt) / n, sum(followed) / total
    value = (p + r) / 2
    if n < 2:
        return Aggregate(value, None, n, {})
    tbar = total / n
    z = [0.5 * pi + 0.5 * (r + (ki - r * ti) / tbar) for pi, ki, ti in zip(prompt, followed, given, strict=True)]
    mean_z = sum(z) / n
    var = sum((x - mean_z) ** 2 for x in z) / (n - 1)
    return Aggregate(value, math.sqrt(var / n), n, {})
