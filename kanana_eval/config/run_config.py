"""A run as the user asked for it: stored in the manifest, so `rerun` replays exactly it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

from kanana_eval.core.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy's seeds: 0 .. 2**32 - 1
# The smallest value of each whole-number option, as the command line's types enforce them.
MINIMUM = {"limit": 1, "batch_size": 1, "max_model_len": 1, "tensor_parallel_size": 1,
           "data_parallel_size": 1, "execution_workers": 1, "max_gen_toks": 1,
           "judge_concurrency": 1, "seed": 0}


@dataclass
class RunConfig:
    """Every `kanana-eval run` option; field names are the manifest's `config` keys."""

    model: str
    protocols: list[str] | None = None
    benchmarks: list[str] | None = None
    backend: str = "auto"
    base_url: str | None = None
    openai_api: str = "completions"  # --backend openai: completions or chat (chat completions)
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
    niah_judge: bool = False  # NIAH QA form: also rate each answer 1-10 with the judge

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        if not raw["unsafe_exec"]:  # stored only when given: earlier manifests and hashes stay
            del raw["unsafe_exec"]
        if not raw["niah_judge"]:  # likewise: stored only when asked
            del raw["niah_judge"]
        if raw["openai_api"] == "completions":  # likewise: stored only when not the default
            del raw["openai_api"]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"run config has unknown keys {sorted(unknown)}")
        if "model" not in raw:
            raise ConfigError("run config lacks the key 'model'")
        hints = get_type_hints(cls)
        for key, value in raw.items():
            problem = _problem(key, value, hints[key])
            if problem:
                raise ConfigError(f"run config key '{key}' {problem}, got {json.dumps(value)}")
        return cls(**raw)

    def hash(self) -> str:
        payload = {k: v for k, v in self.to_dict().items() if k != "output_dir"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def _problem(key: str, value: Any, hint: Any) -> str | None:
    """What is wrong with a stored config value (its type, then its range), or None.

    So `rerun` of a hand-edited or damaged manifest fails naming the key, before any work,
    instead of deep inside the engine with a traceback.
    """
    if not _fits(value, hint):
        return f"must be {_describe(hint)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be 'auto' or a number" if key == "batch_size" and value != "auto" else None
    if key in MINIMUM and value < MINIMUM[key]:
        return f"must be at least {MINIMUM[key]}"
    if key == "seed" and value > SEED_MAX:
        return f"must be at most {SEED_MAX}"
    if key == "gpu_memory_utilization" and not 0.0 < value <= 1.0:
        return "must lie in (0, 1]"
    return None


def _fits(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(_fits(v, get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool or hint is str:
        return isinstance(value, hint)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    return True  # Any, or a type this config does not use


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if get_origin(hint) is list:
        return f"a list of {_describe(get_args(hint)[0])}s".replace("a list of a ", "a list of ")
    names = {type(None): "null", bool: "true or false", int: "a whole number", float: "a number",
             str: "a string"}
    return names.get(hint, str(hint))
