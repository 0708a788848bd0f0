"""IFEval items and score from lm-eval's own checker results (lm-eval's `ifeval` task).

lm-eval's `process_results` runs Google's instruction checker on each response and logs, per
prompt, prompt-level strict/loose (one bool) and instruction-level strict/loose (one bool per
instruction). We keep all four per item and aggregate them exactly as lm-eval does: prompt level
is a mean over prompts, instruction level a micro mean over every instruction of every prompt
(`agg_inst_level_acc`). The README's IFEval number is the mean of the two strict accuracies.
The checker counts sentences with NLTK's punkt_tab: see
kanana_eval.data.punkt.ensure_punkt_tab.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError
from kanana_eval.data.punkt import ensure_punkt_tab
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import Aggregate, PairedTest, Scorer, register, sample_item

METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc",
           "prompt_level_loose_acc", "inst_level_loose_acc")


def _flags(spec: BenchmarkSpec, sample: dict[str, Any], n_instructions: int) -> dict[str, Any]:
    """lm-eval's four per-prompt metric values, checked for shape (bools, one per instruction)."""
    missing = [m for m in METRICS if m not in sample]
    if missing:
        raise ConfigError(
            f"{spec.id}: lm-eval's sample has no {', '.join(missing)} (metrics bypassed?)")
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


def ifeval_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any]) -> Item:
    """One prompt: score = prompt-level strict (all instructions followed); details: all four."""
    doc = sample["doc"]
    instructions = [str(i) for i in doc["instruction_id_list"]]
    flags = _flags(spec, sample, len(instructions))
    response = sample["filtered_resps"][0]  # what lm-eval's process_results checked
    strict = flags["prompt_level_strict_acc"]
    if not response.strip():
        verdict = "no_answer"  # the checker fails every instruction of an empty response
    else:
        verdict = "correct" if strict else "wrong"
    return sample_item(spec, subtask, sample, output=sample["resps"][0][0], extracted=response,
                       target=None, score=1.0 if strict else 0.0, verdict=verdict,
                       details={"instruction_id_list": instructions, **flags})


def _counts(items: Sequence[Item], level: str) -> tuple[list[int], list[int], list[int]]:
    """Per item: prompt-level flag, instructions followed, instructions given (strict or loose)."""
    details = [i.details or {} for i in items]
    prompt = [int(bool(d[f"prompt_level_{level}_acc"])) for d in details]
    followed = [sum(bool(f) for f in d[f"inst_level_{level}_acc"]) for d in details]
    given = [len(d[f"inst_level_{level}_acc"]) for d in details]
    return prompt, followed, given


def ifeval_metrics(items: Sequence[Item]) -> dict[str, float | None]:
    """lm-eval's four IFEval accuracies (`mean` over prompts, `agg_inst_level_acc` over all
    instructions)."""
    out: dict[str, float | None] = {}
    for level in ("strict", "loose"):
        prompt, followed, given = _counts(items, level)
        out[f"prompt_level_{level}_acc"] = sum(prompt) / len(prompt) if prompt else None
        out[f"inst_level_{level}_acc"] = sum(followed) / sum(given) if sum(given) else None
    return {name: out[name] for name in METRICS}


def ifeval_aggregate(items: Sequence[Item]) -> Aggregate:
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
    z = [0.5 * pi + 0.5 * (r + (ki - r * ti) / tbar)
         for pi, ki, ti in zip(prompt, followed, given, strict=True)]
    mean_z = sum(z) / n
    var = sum((x - mean_z) ** 2 for x in z) / (n - 1)
    return Aggregate(value, math.sqrt(var / n), n, {})


@register
class IFEval(Scorer):
    """lm-eval's IFEval checker per prompt; the headline: the mean of the two strict accuracies."""

    name = "ifeval"
    metrics: ClassVar[frozenset[str]] = frozenset({"ifeval_strict_mean"})
    aggregations: ClassVar[frozenset[str]] = frozenset({"ifeval"})
    paired_test = PairedTest.BOOTSTRAP
    compare_note = ("IFEval's headline is the mean of prompt- and instruction-level strict "
                    "accuracy; the difference and test use the per-item prompt-level strict score")

    def prepare(self, spec: BenchmarkSpec) -> None:
        ensure_punkt_tab()  # the checker counts sentences with NLTK's punkt_tab; no download

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        return ifeval_item(spec, subtask, sample)

    def aggregate(self, spec: BenchmarkSpec, items: Sequence[Item]) -> Aggregate:
        return ifeval_aggregate(items)

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        return {"metrics": ifeval_metrics(items)} if items else {}
