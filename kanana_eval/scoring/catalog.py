"""Every built-in scorer, loaded and registered; the one place a scorer is looked up by name.

`get_scorer(name)` answers for a task config's `scorer:`; `check_spec` holds a protocol entry
against its scorer (options, metric, aggregation, how its answers are made) before any work.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.core.errors import ConfigError

# Importing a scorer module registers it; these names exist for that effect only.
from kanana_eval.scoring import (  # noqa: F401
    answer_scorers,
    code_execution,
    exact_match,
    ifeval,
    multiple_choice,
    niah,
)
from kanana_eval.scoring.base import AnswerPath, Scorer, registered
from kanana_eval.scoring.evalplus import scorer as evalplus_scorer  # noqa: F401
from kanana_eval.scoring.judge import scorer as judge_scorer  # noqa: F401
from kanana_eval.scoring.tool_calls import scorer as tool_calls_scorer  # noqa: F401


def scorer_names() -> list[str]:
    return sorted(registered())


def registered_scorers() -> dict[str, Scorer]:
    """Every built-in scorer by name."""
    return registered()


def get_scorer(name: str) -> Scorer:
    """The registered scorer called `name`; an unknown name names the nearest known one."""
    scorers = registered()
    if name not in scorers:
        close = difflib.get_close_matches(name, sorted(scorers), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown scorer '{name}'{hint} (known: {', '.join(sorted(scorers))})")
    return scorers[name]


def scorer_for(spec: BenchmarkSpec) -> Scorer:
    return get_scorer(spec.task.scorer)


def check_spec(spec: BenchmarkSpec) -> Scorer:
    """A protocol entry agrees with its task's scorer: scorer, options, metric, aggregation."""
    where = f"protocols/{spec.protocol}.yaml: benchmark '{spec.id}'"
    try:
        scorer = scorer_for(spec)
    except ConfigError as exc:
        raise ConfigError(f"{spec.task.where}: {exc}") from exc
    scorer.check(spec.task)
    for key, value, allowed in (("metric", spec.metric, scorer.metrics),
                                ("aggregation", spec.aggregation, scorer.aggregations)):
        if value not in allowed:
            close = difflib.get_close_matches(value, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: {key} '{value}' does not fit scorer '{scorer.name}'"
                              f"{hint} (it gives {', '.join(sorted(allowed))})")
    lm_eval = scorer.answers is AnswerPath.LM_EVAL
    if lm_eval != spec.task.uses_lm_eval:
        need = "an lm-eval task (lm_eval_task + lm_eval_folder, or lm_eval_config)" if lm_eval \
            else "no lm-eval config (its answers are made by the " + scorer.answers.value + ")"
        raise ConfigError(f"{spec.task.where}: scorer '{scorer.name}' needs {need}")
    return scorer


def check_specs(specs: Iterable[BenchmarkSpec]) -> None:
    for spec in specs:
        check_spec(spec)
