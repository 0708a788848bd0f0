"""Log-likelihood multiple choice (MMLU, KMMLU, HAE-RAE 5-shot): lm-eval's own `acc`."""

from __future__ import annotations

from typing import Any, ClassVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import Scorer, register, sample_item


@register
class MultipleChoice(Scorer):
    """The choice with the highest log-likelihood; every choice's log-likelihood is kept."""

    name = "multiple_choice"
    metrics: ClassVar[frozenset[str]] = frozenset({"acc"})
    sample_filter = "none"

    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        choices = [str(args[1]) for args in sample["arguments"]]
        lls = [float(resp[0]) for resp in sample["filtered_resps"]]
        best = max(range(len(lls)), key=lambda i: (lls[i], -i))  # first maximum, as np.argmax
        target = sample["target"]
        if isinstance(target, int) and 0 <= target < len(choices):
            target_text = choices[target].strip()
        else:
            target_text = str(target).strip()
        score = float(sample["acc"])
        return sample_item(spec, subtask, sample, output=choices[best].strip(),
                           extracted=choices[best].strip(), target=target_text, score=score,
                           verdict="correct" if score == 1.0 else "wrong", choices=choices,
                           loglikelihoods=lls)
