"""Strict reading of our YAML inputs: an unknown key is an error that names its nearest key.

A typo such as `genration:` in a protocol would otherwise load silently with generation unset,
and a run would go on with settings nobody asked for.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kanana_eval.core.errors import ConfigError


def read_yaml_mapping(path: Path, where: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; any problem is one ConfigError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                          ) from exc
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read {where}: {first}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a YAML mapping")
    return data


def check_keys(raw: Mapping[str, Any], allowed: Iterable[str], where: str, *,
               required: Iterable[str] = ()) -> None:
    """Refuse unknown keys (naming the nearest valid one) and missing required keys."""
    allowed = sorted(set(allowed))
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f" (valid: {', '.join(allowed)})"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    missing = [key for key in required if key not in raw]
    if missing:
        raise ConfigError(f"{where}: missing key '{missing[0]}'")


def mapping(value: Any, where: str) -> dict[str, Any]:
    """`value` as a mapping (None is an empty one), else one ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return dict(value)
