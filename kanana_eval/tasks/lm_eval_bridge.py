"""Build lm-eval Task objects from lm-eval's own task YAML plus our pinned overrides.

lm-eval's loader imports every `!function` module while reading a YAML; for humaneval and mbpp
that module loads the hub `evaluate` metric at import, which fails offline and would run code
in-process. So we read lm-eval's YAML with `!function` kept as a reference, replace what our
task config overrides, read pure-data helpers from source (`literal_functions`) and import only
the references that remain. The prompts stay lm-eval's: nothing is copied.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kanana_eval.config.protocol import BenchmarkSpec, TaskConfig
from kanana_eval.core.errors import ConfigError, DataUnavailableError, KananaError

_STRUCTURAL_KEYS = ("tag", "group", "task_list", "aggregate_metric_list")


@dataclass(frozen=True)
class FunctionRef:
    """A `!function module.name` reference, resolved only if our overrides leave it in place."""

    base_dir: Path
    spec: str

    def resolve(self) -> Any:
        from lm_eval.tasks._yaml_loader import (  # noqa: PLC0415 - heavy: lm-eval, only for a run
            _import_func_in_yml,
        )

        return _import_func_in_yml(self.spec, self.base_dir)

    def literal(self) -> Any:
        """The value a zero-argument helper returns, read from its source without importing it."""
        module, _, func = self.spec.rpartition(".")
        source = self.base_dir / f"{module.replace('.', '/')}.py"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == func:
                returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
                if len(returns) == 1 and returns[0].value is not None:
                    return ast.literal_eval(returns[0].value)
        raise ConfigError(f"{source}:{func} does not return one literal value")


def lm_eval_tasks_root() -> Path:
    import lm_eval.tasks  # noqa: PLC0415 - heavy: lm-eval, only for a run

    return Path(lm_eval.tasks.__file__).parent


def load_yaml_with_refs(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """lm-eval's YAML semantics (`include` merged, local keys win) with `!function` kept as refs."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"include cycle at {path}")

    class _Loader(yaml.SafeLoader):
        pass

    def _function(loader: yaml.Loader, node: yaml.Node) -> FunctionRef:
        return FunctionRef(path.parent, loader.construct_scalar(node))  # type: ignore[arg-type]

    _Loader.add_constructor("!function", _function)
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        merged.update(load_yaml_with_refs(inc_path, _seen | {path}))
    merged.update(cfg)
    return merged


@cache
def _index(folder: str) -> dict[str, Any]:
    from lm_eval.tasks._index import TaskIndex  # noqa: PLC0415 - heavy: lm-eval, only for a run

    root = lm_eval_tasks_root() / folder
    if not root.is_dir():
        raise ConfigError(f"lm-eval has no task folder '{folder}' (lm-eval version changed?)")
    return TaskIndex.build([root])


def leaf_task_names(name: str, folder: str) -> list[str]:
    """Expand an lm-eval group or tag into its leaf task names, in lm-eval's order."""
    from lm_eval.tasks._index import Kind  # noqa: PLC0415 - heavy: lm-eval, only for a run

    index = _index(folder)
    if name not in index:
        raise ConfigError(f"lm-eval task '{name}' not found in lm_eval/tasks/{folder}")
    entry = index[name]
    if entry.kind == Kind.TAG:
        return [t for tag_task in sorted(entry.tags) for t in leaf_task_names(tag_task, folder)]
    if entry.kind != Kind.GROUP:
        return [name]
    leaves: list[str] = []
    for member in entry.cfg.get("task", []):
        if isinstance(member, dict):
            extra = set(member) - {"task"}
            if extra:
                raise ConfigError(f"group '{name}' member has overrides {extra}: unsupported")
            member = member["task"]
        leaves.extend(leaf_task_names(member, folder))
    return leaves


def _set_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        cfg = cfg[key]
    cfg[keys[-1]] = value


def _get_path(cfg: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        cfg = cfg[key]
    return cfg


def _resolve_refs(value: Any) -> Any:
    if isinstance(value, FunctionRef):
        return value.resolve()
    if isinstance(value, dict):
        return {k: _resolve_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v) for v in value]
    return value


def resolve_callable(value: str) -> Any:
    """`package.module:function` from a task config, for code lm-eval's YAML cannot name."""
    module, _, name = value.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {value!r} named in a task config: {exc}") from exc


def _own_config(task: TaskConfig, data_dir: Path | None) -> dict[str, Any]:
    """A task lm-eval has no YAML for (evalplus' datasets): our config, our dataset loader.

    `custom_dataset` is called by lm-eval as loader(**metadata); we bind the mirror folder and
    the task's scorer options so one loader serves the hub default and the offline mirror.
    """
    cfg = copy.deepcopy(task.lm_eval_config)
    cfg.setdefault("task", task.name)
    loader = cfg.get("custom_dataset")
    if isinstance(loader, str):
        cfg["custom_dataset"] = functools.partial(
            resolve_callable(loader), data_dir=data_dir, dataset_id=task.dataset_id,
            options=dict(task.scorer_options))
    return cfg


def task_config(leaf: str, spec: BenchmarkSpec, data_dir: Path | None) -> dict[str, Any]:
    """lm-eval's config for one leaf task with our protocol and task settings applied."""
    task: TaskConfig = spec.task
    if task.lm_eval_folder is None:
        cfg = _own_config(task, data_dir)
    else:
        entry = _index(task.lm_eval_folder)[leaf]
        cfg = copy.deepcopy(load_yaml_with_refs(entry.yaml_path))
    for key in _STRUCTURAL_KEYS:
        cfg.pop(key, None)
    cfg.update(copy.deepcopy(task.overrides))
    for dotted in task.literal_functions:
        ref = _get_path(cfg, dotted)
        if isinstance(ref, FunctionRef):
            _set_path(cfg, dotted, ref.literal())
    cfg["num_fewshot"] = spec.num_fewshot
    if spec.generation:
        cfg["generation_kwargs"] = {**cfg.get("generation_kwargs", {}), **spec.generation}
    if data_dir is not None and "custom_dataset" not in cfg:
        local = data_dir / task.dataset_id
        if not local.is_dir():
            raise DataUnavailableError(
                f"{spec.id}: dataset {task.dataset_id} is missing from the mirror {data_dir}"
                f" (build it with `kanana-eval data build-mirror {data_dir}`)"
            )
        cfg["dataset_path"] = str(local)
    cfg["metadata"] = {**(cfg.get("metadata") or {}), "kanana_benchmark": spec.id}
    cfg["task"] = lm_eval_name(leaf, spec)
    return _resolve_refs(cfg)


def lm_eval_name(leaf: str, spec: BenchmarkSpec) -> str:
    """The name lm-eval files a leaf's samples under: unique across the protocols of one run.

    gsm8k@base and gsm8k@instruct both build lm-eval's `gsm8k` leaf (with different prompts);
    one model's two protocols must not share a name, so non-base protocols qualify it.
    """
    return leaf if spec.protocol == "base" else f"{leaf}@{spec.protocol}"


def lm_eval_task_version(leaf: str, folder: str | None, own: dict[str, Any] | None = None) -> Any:
    if folder is None:
        return ((own or {}).get("metadata") or {}).get("version")
    cfg = load_yaml_with_refs(_index(folder)[leaf].yaml_path)
    return (cfg.get("metadata") or {}).get("version")


@dataclass
class BuiltTask:
    """An lm-eval task ready to run, with what the runner needs to name and score its items."""

    name: str
    subtask: str | None
    task: Any  # lm_eval.api.task.ConfigurableTask
    version: Any


def build_tasks(spec: BenchmarkSpec, data_dir: Path | None,
                only: Sequence[str] | None = None) -> list[BuiltTask]:
    """Every leaf lm-eval task of a benchmark (or the `only` ones), its dataset loaded."""
    from lm_eval.api.task import ConfigurableTask  # noqa: PLC0415 - heavy: lm-eval, only for a run

    if spec.task.lm_eval_task is None or spec.task.lm_eval_folder is None:
        leaves = [spec.task.name]
    else:
        leaves = leaf_task_names(spec.task.lm_eval_task, spec.task.lm_eval_folder)
    if only is not None:
        unknown = sorted(set(only) - set(leaves))
        if unknown:
            raise ConfigError(f"{spec.id} has no subtask(s) {', '.join(unknown)}")
    built = []
    for leaf in leaves:
        if only is not None and leaf not in only:
            continue
        cfg = task_config(leaf, spec, data_dir)
        try:
            obj = ConfigurableTask(config=cfg)
        except KananaError:
            raise
        except Exception as exc:  # datasets raises many types for missing or offline data
            where = cfg.get("dataset_path") or spec.task.dataset_id
            raise DataUnavailableError(
                f"{spec.id}: cannot load dataset {where} ({cfg.get('dataset_name') or 'default'}):"
                f" {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        subtask = cfg.get("dataset_name") if len(leaves) > 1 else None
        version = lm_eval_task_version(leaf, spec.task.lm_eval_folder, spec.task.lm_eval_config)
        built.append(BuiltTask(cfg["task"], subtask, obj, version))
    return built
