"""Protocols (`protocols/*.yaml`) and task configs (`tasks/*.yaml`): what a README table runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kanana_eval.core.errors import ConfigError, UnknownBenchmarkError
from kanana_eval.core.paths import benchmarks_dir, resource_dir

JUDGE_SCORER = "judge"  # MT-Bench-style tasks: kanana_eval.judge_stage, not lm-eval


@dataclass(frozen=True)
class TaskConfig:
    """A `tasks/<name>.yaml`: which lm-eval config supplies the prompts and how items are scored."""

    name: str
    lm_eval_task: str | None  # None: the whole lm-eval config is `lm_eval_config` (no lm-eval YAML)
    lm_eval_folder: str | None
    dataset_id: str
    scorer: str
    item_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    lm_eval_config: dict[str, Any] = field(default_factory=dict)
    literal_functions: tuple[str, ...] = ()
    program_template: str | None = None
    filter: str | None = None
    scorer_options: dict[str, Any] = field(default_factory=dict)
    source_file: str = ""


@dataclass(frozen=True)
class BenchmarkSpec:
    """One README column of a protocol: task, shots, metric, aggregation, generation settings."""

    id: str
    protocol: str
    column: str
    task: TaskConfig
    num_fewshot: int
    metric: str
    aggregation: str
    generation: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    optional: bool = False  # not a README column: runs only when --benchmarks names it

    @property
    def judged(self) -> bool:
        """Answered in two turns and scored by an LLM judge (MT-Bench, KoMT-Bench)."""
        return self.task.scorer == JUDGE_SCORER

    def describe(self) -> dict[str, Any]:
        """Everything about this benchmark that moves numbers, for the manifest."""
        return {
            "id": self.id, "protocol": self.protocol, "column": self.column,
            "task": self.task.name, "lm_eval_task": self.task.lm_eval_task,
            "dataset_id": self.task.dataset_id, "num_fewshot": self.num_fewshot,
            "metric": self.metric, "aggregation": self.aggregation,
            "scorer": self.task.scorer, "filter": self.task.filter,
            "scorer_options": self.task.scorer_options,
            "generation": self.generation, "execution": self.execution,
            "task_overrides": self.task.overrides, "optional": self.optional,
        }


@dataclass(frozen=True)
class RegressionRule:
    """The protocol's `regression:` section: when `kanana-eval compare` calls a change real.

    Drops are in points: percent points for fraction benchmarks, score points for judged ones.
    """

    alpha: float = 0.05
    default_min_drop: float = 1.0
    min_drops: dict[str, float] = field(default_factory=dict)

    def min_drop(self, benchmark: str) -> float:
        return self.min_drops.get(benchmark, self.default_min_drop)


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    chat_template: bool
    benchmarks: tuple[BenchmarkSpec, ...]
    source_file: str
    system_prompt: str | None = None
    regression: RegressionRule = field(default_factory=RegressionRule)

    def select(self, wanted: list[str] | None) -> list[BenchmarkSpec]:
        """Benchmarks matching --benchmarks (ids like `gsm8k@base` or bare names like `gsm8k`)."""
        if not wanted:
            return [b for b in self.benchmarks if not b.optional]
        chosen = [b for b in self.benchmarks if b.id in wanted or b.id.split("@")[0] in wanted]
        return chosen


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping")
    return data


@cache
def load_task(name: str) -> TaskConfig:
    path = benchmarks_dir() / name / "task.yaml"
    if not path.is_file():
        raise ConfigError(f"task config tasks/{name}/task.yaml is missing")
    raw = _read_yaml(path)
    try:
        config = TaskConfig(
            name=raw["name"], lm_eval_task=raw.get("lm_eval_task"),
            lm_eval_folder=raw.get("lm_eval_folder"), dataset_id=raw["dataset_id"],
            scorer=raw["scorer"], item_id=raw["item_id"],
            overrides=dict(raw.get("overrides") or {}),
            lm_eval_config=dict(raw.get("lm_eval_config") or {}),
            literal_functions=tuple(raw.get("literal_functions") or ()),
            program_template=raw.get("program_template"), filter=raw.get("filter"),
            scorer_options=dict(raw.get("scorer_options") or {}),
            source_file=str(path),
        )
    except KeyError as exc:
        raise ConfigError(f"tasks/{name}/task.yaml lacks the key {exc}") from exc
    if config.scorer == JUDGE_SCORER:  # two-turn answers + LLM judge: no lm-eval task at all
        if config.lm_eval_task or config.lm_eval_config:
            raise ConfigError(f"tasks/{name}/task.yaml: a judged task has no lm-eval config")
        return config
    if (config.lm_eval_task is None) != (config.lm_eval_folder is None) or (
            config.lm_eval_task is None and not config.lm_eval_config):
        raise ConfigError(f"tasks/{name}/task.yaml needs lm_eval_task + lm_eval_folder, or lm_eval_config")
    return config


def available_protocols() -> list[str]:
    return sorted(p.stem for p in resource_dir("protocols").glob("*.yaml"))


@cache
def load_protocol(name: str) -> Protocol:
    path = resource_dir("protocols") / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"protocol '{name}' is not available (known: {', '.join(available_protocols())})"
        )
    raw = _read_yaml(path)
    benchmarks = []
    try:
        for b in raw["benchmarks"]:
            benchmarks.append(BenchmarkSpec(
                id=b["id"], protocol=raw["protocol"], column=b["column"],
                task=load_task(b["task"]), num_fewshot=int(b["num_fewshot"]),
                metric=b["metric"], aggregation=b.get("aggregation", "micro"),
                generation=b.get("generation"), execution=b.get("execution"),
                optional=bool(b.get("optional", False)),
            ))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"protocols/{name}.yaml is malformed: {exc!r}") from exc
    ids = [b.id for b in benchmarks]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"protocols/{name}.yaml repeats a benchmark id")
    return Protocol(raw["protocol"], raw.get("title", name), bool(raw.get("chat_template")),
                    tuple(benchmarks), str(path), raw.get("system_prompt"),
                    _regression_rule(name, raw.get("regression") or {}, set(ids)))


def _regression_rule(name: str, raw: Any, ids: set[str]) -> RegressionRule:
    """Parse and check `regression:` (alpha in (0, 1), drops >= 0, ids of this protocol)."""
    where = f"protocols/{name}.yaml: regression"
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("min_drop") or {}, dict):
            raise TypeError("regression and regression.min_drop must be mappings")
        rule = RegressionRule(
            alpha=float(raw.get("alpha", 0.05)),
            default_min_drop=float(raw.get("default_min_drop", 1.0)),
            min_drops={str(k): float(v) for k, v in (raw.get("min_drop") or {}).items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} is malformed: {exc}") from exc
    if not 0.0 < rule.alpha < 1.0:
        raise ConfigError(f"{where}.alpha must lie strictly between 0 and 1, got {rule.alpha}")
    drops = [rule.default_min_drop, *rule.min_drops.values()]
    if any(d < 0 for d in drops):
        raise ConfigError(f"{where}: a minimum drop cannot be negative")
    unknown = sorted(set(rule.min_drops) - ids)
    if unknown:
        raise ConfigError(f"{where}.min_drop names unknown benchmark(s) {', '.join(unknown)}")
    return rule


def select_benchmarks(protocols: list[str], wanted: list[str] | None) -> list[BenchmarkSpec]:
    """The benchmarks of the given protocols that --benchmarks asks for; unknown names fail."""
    specs = [b for p in protocols for b in load_protocol(p).select(wanted)]
    if wanted:
        known = {b.id for p in protocols for b in load_protocol(p).benchmarks}
        known |= {k.split("@")[0] for k in known}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise UnknownBenchmarkError(
                f"unknown benchmark(s) {', '.join(unknown)} for protocol(s) {', '.join(protocols)}"
                f" (known: {', '.join(sorted(k for k in known if '@' in k))})"
            )
    return specs
