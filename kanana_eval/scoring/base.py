"""What a scorer is: one registered object that answers every question the pipeline asks.

A benchmark's task config names its scorer (`scorer: multiple_choice`); the runner, `score`,
`judge`, `compare` and `report` then ask that object, and no one else compares scorer or
benchmark names. A scorer says
- how an item is built from one lm-eval sample (`build_item`), reading which filter's samples;
- which `scorer_options` it needs, and what must be ready before the run (`check`, `prepare`);
- what must still be executed: code in the sandbox (`execute`) or an LLM judge (`needs_judge`);
- how items aggregate, with a standard error (`aggregate`) and further row fields (`row_fields`);
- the per-item score and the paired test `compare` uses, and the scale of its values.
Built-in scorers register themselves with `@register`; `scoring.catalog` loads them all.
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.config.task_config import TaskConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.results.records import DataRecord, Item, Scale, SubtaskScore


class AnswerPath(Enum):
    """How a benchmark's answers are produced."""

    LM_EVAL = "lm-eval task"  # lm-eval builds the requests; the engine answers them
    JUDGED_TURNS = "two-turn chat"  # our multi-turn chat (MT-Bench): answers, then a judge
    GENERATED_GRID = "generated grid"  # prompts made by the benchmark itself (NIAH), no lm-eval
    TOOL_CHAT = "tool-calling chat"  # chat with tools (FunctionChat-Bench): calls, then a judge


class PairedTest(Enum):
    """How `compare` tests a paired difference."""

    BY_VALUES = "exact McNemar on 0/1 scores, else the paired bootstrap"
    BOOTSTRAP = "the paired bootstrap"


@dataclass(frozen=True)
class Aggregate:
    """A benchmark's headline value, its standard error, the items counted and per-subtask means."""

    value: float | None
    stderr: float | None
    n: int
    subtasks: dict[str, SubtaskScore] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionContext:
    """What code execution needs from the run: the mirror, workers, a cache kept across runs."""

    data_dir: Path | None
    cache_dir: Path  # derived data kept across runs (evalplus' expected outputs)
    workers: int | None = None
    progress: bool = True
    unsafe_exec: bool = False  # run code without the isolation boundary (--unsafe-exec)


def mean_stderr(scores: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and its standard error (sample std, ddof=1, over sqrt n) as lm-eval reports it."""
    n = len(scores)
    if n == 0:
        return None, None
    mean = sum(scores) / n
    if n < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in scores) / (n - 1)
    return mean, math.sqrt(var / n)


def item_id(spec: BenchmarkSpec, subtask: str | None, doc_id: int, doc: dict[str, Any]) -> str:
    """The dataset's own id, so that two runs can be paired item by item."""
    try:
        return str(spec.task.item_id.format(subtask=subtask, doc_id=doc_id, doc=doc))
    except (KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{spec.id}: item_id template {spec.task.item_id!r} fails: {exc!r}"
                          ) from exc


def sample_item(spec: BenchmarkSpec, subtask: str | None, sample: dict[str, Any],
                **fields: Any) -> Item:
    """An item for one lm-eval sample: id, subtask and prompt from the sample, the rest given."""
    return Item(benchmark=spec.id, item_id=item_id(spec, subtask, sample["doc_id"], sample["doc"]),
                subtask=subtask, prompt=sample["arguments"][0][0], **fields)


def subtask_means(items: Sequence[Item]) -> dict[str, SubtaskScore]:
    """Mean score per named subtask (items without a subtask are left out)."""
    by_sub: dict[str, list[float]] = defaultdict(list)
    for item in items:
        if item.subtask:
            by_sub[item.subtask].append(float(item.score or 0.0))
    return {name: SubtaskScore(value=mean_stderr(scores)[0], n=len(scores))
            for name, scores in by_sub.items()}


class Scorer:
    """Base class of every scorer; subclasses set the class attributes and override methods."""

    name: ClassVar[str]
    scale: ClassVar[Scale] = Scale.FRACTION
    metrics: ClassVar[frozenset[str]] = frozenset()
    aggregations: ClassVar[frozenset[str]] = frozenset({"micro", "macro"})
    required_options: ClassVar[tuple[str, ...]] = ()
    optional_options: ClassVar[tuple[str, ...]] = ()
    sample_filter: ClassVar[str | None] = None  # lm-eval filter read; None: the only one
    answers: ClassVar[AnswerPath] = AnswerPath.LM_EVAL
    runs_code: ClassVar[bool] = False
    needs_judge: ClassVar[bool] = False
    paired_test: ClassVar[PairedTest] = PairedTest.BY_VALUES
    paired_by_question: ClassVar[bool] = False  # bootstrap resamples an item's turns together
    compare_note: ClassVar[str | None] = None
    data_source: ClassVar[str] = "hub"  # for `kanana-eval benchmarks`

    # ------------------------------------------------------------------ before the run
    def check(self, task: TaskConfig) -> None:
        """Fail at load time on missing or unknown `scorer_options` (never after hours of work)."""
        given = set(task.scorer_options)
        allowed = set(self.required_options) | set(self.optional_options)
        missing = sorted(set(self.required_options) - given)
        unknown = sorted(given - allowed)
        if missing or unknown:
            hint = ""
            if unknown and allowed:
                close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{task.where}: scorer '{self.name}' needs scorer_options "
                f"{sorted(self.required_options)} (missing {missing}, unknown {unknown}){hint}")

    def prepare(self, spec: BenchmarkSpec) -> None:
        """Install what scoring needs before any model work (data files, checks)."""

    # ------------------------------------------------------------------ items
    def build_item(self, spec: BenchmarkSpec, subtask: str | None,
                   sample: dict[str, Any]) -> Item:
        raise NotImplementedError(f"scorer '{self.name}' builds no items from lm-eval samples")

    def items_from_samples(self, spec: BenchmarkSpec, subtask: str | None,
                           samples: Sequence[dict[str, Any]]) -> list[Item]:
        """One item per document, taken from the samples of the filter this scorer reads."""
        wanted = spec.task.filter or self.sample_filter
        filters = sorted({s["filter"] for s in samples})
        if wanted is None:
            if len(filters) > 1:
                raise ConfigError(f"{spec.id}: several filters {filters}; name one in the task "
                                  "config")
            wanted = filters[0] if filters else None
        chosen = [s for s in samples if s["filter"] == wanted]
        if samples and not chosen:
            raise ConfigError(f"{spec.id}: lm-eval produced no '{wanted}' filter (has {filters})")
        return [self.build_item(spec, subtask, s)
                for s in sorted(chosen, key=lambda s: s["doc_id"])]

    def completion_text(self, row: dict[str, Any]) -> Any:
        """The response in one line of a completions file (`kanana-eval score`), else None."""
        return next((row[k] for k in ("response", "output", "solution", "completion")
                     if isinstance(row.get(k), str)), None)

    def items_from_completions(self, spec: BenchmarkSpec, docs: Sequence[tuple[str | None, dict]],
                               responses: dict[str, Any]) -> list[Item] | None:
        """Items straight from stored completions; None replays them through lm-eval instead."""
        return None

    def execute(self, spec: BenchmarkSpec, items: list[Item], context: ExecutionContext) -> None:
        """Give items their verdict where scoring needs more than the output (code runs)."""

    # ------------------------------------------------------------------ scores
    def aggregate(self, spec: BenchmarkSpec, items: Sequence[Item]) -> Aggregate:
        """micro: every item counts once (lm-eval's size-weighted group mean); macro: subtasks."""
        subtasks = subtask_means(items)
        scores = [float(i.score or 0.0) for i in items]
        if spec.aggregation == "macro":
            means = [s.value for s in subtasks.values() if s.value is not None]
            means = means or [v for v in [mean_stderr(scores)[0]] if v is not None]
            return Aggregate(sum(means) / len(means) if means else None, None, len(items), subtasks)
        value, stderr = mean_stderr(scores)
        return Aggregate(value, stderr, len(items), subtasks)

    def row_fields(self, spec: BenchmarkSpec, items: Sequence[Item]) -> dict[str, Any]:
        """Further fields of the benchmark's score row (other metrics of the same items)."""
        return {}

    def paired_score(self, item: Item) -> float | None:
        """The per-item number `compare` pairs across runs."""
        return item.score

    def release_data(self, spec: BenchmarkSpec) -> DataRecord | None:
        """The data record when no mirror is given and the data is not a hub dataset."""
        return None


_SCORERS: dict[str, Scorer] = {}
S = TypeVar("S", bound=type[Scorer])


def register(cls: S) -> S:
    """Class decorator: make a scorer known under its `name` (once)."""
    if cls.name in _SCORERS:
        raise ValueError(f"scorer '{cls.name}' is registered twice")
    _SCORERS[cls.name] = cls()
    return cls


def registered() -> dict[str, Scorer]:
    """Every registered scorer by name (load `scoring.catalog` for the built-in ones)."""
    return dict(_SCORERS)
