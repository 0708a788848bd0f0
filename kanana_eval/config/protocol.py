"""Protocols (`protocols/*.yaml`): which benchmarks a README table runs, and with what settings.

Read strictly: an unknown key anywhere is an error naming the file, the key and its nearest
valid key. Task configs live in `config.task_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kanana_eval.config.strict import check_keys, mapping, read_yaml_mapping
from kanana_eval.config.task_config import TaskConfig, load_task
from kanana_eval.core.errors import ConfigError, UnknownBenchmarkError
from kanana_eval.core.paths import resource_dir


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


def available_protocols() -> list[str]:
    return sorted(p.stem for p in resource_dir("protocols").glob("*.yaml"))


PROTOCOL_KEYS = ("protocol", "title", "chat_template", "system_prompt", "benchmarks", "regression")
BENCHMARK_KEYS = ("id", "column", "task", "num_fewshot", "metric", "aggregation", "generation",
                  "execution", "optional")
# lm-eval generation kwargs we pass on, and MT-Bench's per-category answer temperatures.
GENERATION_KEYS = ("do_sample", "temperature", "top_p", "top_k", "until", "max_gen_toks",
                   "repetition_penalty", "category_temperatures", "default_temperature")
EXECUTION_KEYS = ("timeout_s", "memory_mb")
REGRESSION_KEYS = ("alpha", "default_min_drop", "min_drop")


def _benchmark(raw: Any, protocol: str, where: str) -> BenchmarkSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each benchmark must be a mapping")
    where = f"{where}: benchmark '{raw.get('id', '?')}'"
    check_keys(raw, BENCHMARK_KEYS, where, required=("id", "column", "task", "num_fewshot",
                                                     "metric"))
    generation = raw.get("generation")
    if generation is not None:
        check_keys(mapping(generation, f"{where}: generation"), GENERATION_KEYS,
                   f"{where}: generation")
    execution = raw.get("execution")
    if execution is not None:
        check_keys(mapping(execution, f"{where}: execution"), EXECUTION_KEYS,
                   f"{where}: execution")
    bench_id = str(raw["id"])
    if "@" not in bench_id or bench_id.split("@", 1)[1] != protocol:
        raise ConfigError(f"{where}: id must be <name>@{protocol}")
    try:
        shots = int(raw["num_fewshot"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: num_fewshot must be a whole number") from exc
    return BenchmarkSpec(
        id=bench_id, protocol=protocol, column=str(raw["column"]),
        task=load_task(str(raw["task"])), num_fewshot=shots, metric=str(raw["metric"]),
        aggregation=str(raw.get("aggregation", "micro")), generation=generation,
        execution=execution, optional=bool(raw.get("optional", False)),
    )


@cache
def load_protocol(name: str) -> Protocol:
    """The protocol `protocols/<name>.yaml`, read once per process."""
    path = resource_dir("protocols") / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"protocol '{name}' is not available (known: {', '.join(available_protocols())})"
        )
    return read_protocol(path, name)


def read_protocol(path: Path, name: str) -> Protocol:
    """Read and check one protocol file strictly (any unknown key is a one-line error)."""
    where = f"protocols/{name}.yaml"
    raw = read_yaml_mapping(path, where)
    check_keys(raw, PROTOCOL_KEYS, where, required=("protocol", "benchmarks"))
    if raw["protocol"] != name:
        raise ConfigError(f"{where}: protocol '{raw['protocol']}' differs from the file name")
    if not isinstance(raw["benchmarks"], list):
        raise ConfigError(f"{where}: benchmarks must be a list")
    benchmarks = [_benchmark(b, name, where) for b in raw["benchmarks"]]
    ids = [b.id for b in benchmarks]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where} repeats a benchmark id")
    return Protocol(name, str(raw.get("title", name)), bool(raw.get("chat_template")),
                    tuple(benchmarks), str(path), raw.get("system_prompt"),
                    _regression_rule(name, raw.get("regression") or {}, set(ids)))


def _regression_rule(name: str, raw: Any, ids: set[str]) -> RegressionRule:
    """Parse and check `regression:` (alpha in (0, 1), drops >= 0, ids of this protocol)."""
    where = f"protocols/{name}.yaml: regression"
    if isinstance(raw, dict):
        check_keys(raw, REGRESSION_KEYS, where)
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
