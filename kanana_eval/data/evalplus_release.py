"""HumanEval+ and MBPP+ problems, loaded by evalplus's own loader so its post-processing applies.

Without `source`, evalplus fetches its release itself (downloading it into ~/.cache/evalplus on
first use, or reading HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH). With `source`, the same
loader reads that local release file: we point evalplus's module-level override path at it for
the duration of the call, so e.g. MBPP+'s input deserialisation (lists back to tuples, sets,
complex numbers) is evalplus's, not a copy of it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from kanana_eval.core.errors import ConfigError, DataUnavailableError

VERSIONS = {"humaneval": "v0.1.10", "mbpp": "v0.2.0"}  # what the Kanana README evaluates
_OVERRIDE = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}
_NAMES = {"humaneval": "HumanEval+", "mbpp": "MBPP+"}
_PATCH_LOCK = threading.Lock()


def load_problems(dataset: str, *, version: str, source: Path | None = None) -> dict[str, dict]:
    """task_id → evalplus problem, exactly as `get_human_eval_plus` / `get_mbpp_plus` return it."""
    module, loader = _loader(dataset, version)
    name = f"{_NAMES[dataset]} {version}"
    if source is None:
        return _call(loader, version, name,
                     "evalplus's download (offline? pass a local release file)")
    path = Path(source)
    if not path.is_file():
        raise DataUnavailableError(f"{name} release file not found: {path}")
    attribute = _OVERRIDE[dataset]
    with _PATCH_LOCK:
        previous = getattr(module, attribute)
        setattr(module, attribute, str(path))
        try:
            return _call(loader, version, name, str(path))
        finally:
            setattr(module, attribute, previous)


def dataset_hash(problems: dict[str, dict]) -> str:
    """sha256 of the problems as loaded (stable across processes): keys caches of derived data."""
    text = json.dumps(problems, sort_keys=True, default=_stable, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _stable(value: Any) -> Any:
    """JSON stand-ins for what evalplus's deserialisation creates (sets, complex numbers)."""
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(repr(v) for v in value)}
    return {type(value).__name__: repr(value)}


# evalplus' own dataset names -> (its data module, loader, the one version that module loads;
# None when it loads the version it is asked for). evalplus 0.3.1 reads HUMANEVAL_PLUS_VERSION
# whatever `version` says, so another version is refused rather than mislabelled.
_EVALPLUS_DATA = {"humaneval": ("evalplus.data.humaneval", "get_human_eval_plus",
                                "HUMANEVAL_PLUS_VERSION"),
                  "mbpp": ("evalplus.data.mbpp", "get_mbpp_plus", None)}


def _loader(dataset: str, version: str) -> tuple[ModuleType, Any]:
    if dataset not in _EVALPLUS_DATA:
        raise ConfigError(f"unknown evalplus dataset {dataset!r}: use "
                          f"{' or '.join(repr(d) for d in _EVALPLUS_DATA)}")
    module_name, loader, pinned = _EVALPLUS_DATA[dataset]
    module = importlib.import_module(module_name)  # heavy: evalplus loads only when used
    if pinned is not None and version != getattr(module, pinned):
        raise ConfigError(f"evalplus {_evalplus_version()} loads {_NAMES[dataset]} "
                          f"{getattr(module, pinned)} only, not {version}")
    return module, getattr(module, loader)


def _call(loader: Any, version: str, name: str, where: str) -> dict[str, dict]:
    """evalplus raises many types (network, gzip, JSON, its completeness asserts): one line each."""
    try:
        problems = loader(version=version)
    except AssertionError as exc:
        raise DataUnavailableError(f"{name} from {where} is malformed: {exc}") from exc
    except (OSError, ValueError, EOFError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataUnavailableError(
            f"cannot load {name} from {where}: {type(exc).__name__}: {first}") from exc
    if not problems:
        raise DataUnavailableError(f"{name} from {where} holds no problems")
    return problems


def _evalplus_version() -> str:
    from evalplus import __version__  # noqa: PLC0415 - heavy: evalplus, only when used

    return str(__version__)


def checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """An evalplus task's scorer_options, with the keys every loader needs."""
    for key in ("dataset", "version", "release_file"):
        if key not in options:
            raise ConfigError(f"an evalplus task needs scorer_options.{key}")
    return options


def release_path(data_dir: Path | None, dataset_id: str, options: dict[str, Any]) -> Path | None:
    """The release file in a local mirror (DIR/<dataset id>/<release file>).

    None: evalplus' own download.
    """
    if data_dir is None:
        return None
    return Path(data_dir) / dataset_id / options["release_file"]


def load_task_problems(data_dir: Path | None, dataset_id: str,
                       options: dict[str, Any]) -> dict[str, dict]:
    return load_problems(options["dataset"], version=options["version"],
                         source=release_path(data_dir, dataset_id, options))


def evalplus_dataset(*, data_dir: Path | None, dataset_id: str, options: dict[str, Any],
                     **_: Any) -> Any:
    """lm-eval `custom_dataset`: the problems as a one-split DatasetDict (prompts only).

    Test inputs stay out of Arrow (they mix types); the scorer reloads them from evalplus.
    """
    import datasets  # noqa: PLC0415 - heavy: datasets, only when data is read or written

    problems = load_task_problems(data_dir, dataset_id, checked_options(options))
    rows = [{"task_id": p["task_id"], "prompt": p["prompt"], "entry_point": p["entry_point"],
             "canonical_solution": p["canonical_solution"]} for p in problems.values()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
