"""A run as the user asked for it: stored in the manifest, so `rerun` replays exactly it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kanana_eval.core.errors import ConfigError


@dataclass
class RunConfig:
    """Every `kanana-eval run` option; field names are the manifest's `config` keys."""

    model: str
    protocols: list[str] | None = None
    benchmarks: list[str] | None = None
    backend: str = "auto"
    base_url: str | None = None
    tokenizer: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int | str = "auto"
    limit: int | None = None
    data_dir: str | None = None
    output_dir: str = "results"
    seed: int = 1234
    yarn: bool = False
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False  # vLLM: no CUDA graphs or torch.compile (a quicker start)
    use_cache: bool = True
    execution_workers: int | None = None
    max_gen_toks: int | None = None
    judge: bool = True  # False: MT-Bench answers only, judged later with `kanana-eval judge RUN`
    judge_model: str = "gpt-4o-2024-08-06"
    judge_base_url: str | None = None
    judge_concurrency: int = 8
    judge_max_tokens: int = 2048  # FastChat's limit for OpenAI judges
    komt_language_penalty: bool = False
    prefix_cache: bool = True
    unsafe_exec: bool = False  # run generated code without the isolation boundary (sandbox.md)
    functionchat_version: str | None = None  # None: the task's default (571abec)
    functionchat_judge_model: str | None = None  # None: the data version's own judge model
    haystack_dir: str | None = None  # NIAH: the user's text files instead of the project's filler
    niah_lengths: str | None = None  # NIAH grid: context lengths (e.g. "1K,2K,4K"), else default
    niah_depths: str | None = None  # NIAH grid: needle depths in percent, else 0,10,...,100
    niah_languages: str | None = None  # NIAH grid: "en", "ko" or both (default)

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        if not raw["unsafe_exec"]:  # stored only when given: earlier manifests and hashes stay
            del raw["unsafe_exec"]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"run config has unknown keys {sorted(unknown)}")
        if "model" not in raw:
            raise ConfigError("run config lacks the key 'model'")
        return cls(**raw)

    def hash(self) -> str:
        payload = {k: v for k, v in self.to_dict().items() if k != "output_dir"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]
