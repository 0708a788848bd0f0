"""A benchmark's task config (`kanana_eval/tasks/<name>/task.yaml`): prompts, data, scorer.

Which lm-eval config supplies the prompts (or our own lm-eval config), which dataset, which
scorer and how items are identified. Read strictly: an unknown key is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kanana_eval.config.strict import check_keys, mapping, read_yaml_mapping
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.paths import benchmarks_dir

TASK_FILE = "task.yaml"
TASK_KEYS = ("name", "lm_eval_task", "lm_eval_folder", "dataset_id", "scorer", "item_id",
             "overrides", "lm_eval_config", "literal_functions", "program_template", "filter",
             "scorer_options")
REQUIRED_TASK_KEYS = ("name", "dataset_id", "scorer", "item_id")


@dataclass(frozen=True)
class TaskConfig:
    """A task.yaml: which lm-eval config supplies the prompts and how items are scored."""

    name: str
    lm_eval_task: str | None  # None: our own `lm_eval_config`, or no lm-eval task at all
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

    @property
    def where(self) -> str:
        """How error messages name this file."""
        return f"tasks/{self.name}/{TASK_FILE}"

    @property
    def uses_lm_eval(self) -> bool:
        return self.lm_eval_task is not None or bool(self.lm_eval_config)


def task_path(name: str) -> Path:
    return benchmarks_dir() / name / TASK_FILE


def available_tasks() -> list[str]:
    """Every benchmark folder: a folder of `kanana_eval/tasks/` holding a task.yaml."""
    return sorted(p.parent.name for p in benchmarks_dir().glob(f"*/{TASK_FILE}"))


@cache
def load_task(name: str) -> TaskConfig:
    """The task config of benchmark folder `name`, read once per process."""
    path = task_path(name)
    if not path.is_file():
        raise ConfigError(f"task config tasks/{name}/{TASK_FILE} is missing (benchmark "
                          f"folders: {', '.join(available_tasks())})")
    return read_task(path, name)


def read_task(path: Path, name: str) -> TaskConfig:
    """Read and check one task.yaml strictly (any unknown key is a one-line error)."""
    where = f"tasks/{name}/{TASK_FILE}"
    raw = read_yaml_mapping(path, where)
    check_keys(raw, TASK_KEYS, where, required=REQUIRED_TASK_KEYS)
    if raw["name"] != name:
        raise ConfigError(f"{where}: name '{raw['name']}' differs from its folder '{name}'")
    for key in ("name", "dataset_id", "scorer", "item_id"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string")
    config = TaskConfig(
        name=raw["name"], lm_eval_task=raw.get("lm_eval_task"),
        lm_eval_folder=raw.get("lm_eval_folder"), dataset_id=raw["dataset_id"],
        scorer=raw["scorer"], item_id=raw["item_id"],
        overrides=mapping(raw.get("overrides"), f"{where}: overrides"),
        lm_eval_config=mapping(raw.get("lm_eval_config"), f"{where}: lm_eval_config"),
        literal_functions=tuple(raw.get("literal_functions") or ()),
        program_template=raw.get("program_template"), filter=raw.get("filter"),
        scorer_options=mapping(raw.get("scorer_options"), f"{where}: scorer_options"),
        source_file=str(path),
    )
    if (config.lm_eval_task is None) != (config.lm_eval_folder is None):
        raise ConfigError(f"{where} needs lm_eval_task and lm_eval_folder together")
    if config.lm_eval_task is not None and config.lm_eval_config:
        raise ConfigError(f"{where}: give lm_eval_task + lm_eval_folder, or lm_eval_config")
    return config
