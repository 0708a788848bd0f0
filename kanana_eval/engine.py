"""One inference engine per run: an lm-eval LM object (hf, vllm or an OpenAI-compatible server).

The argument builders are pure functions so the exact arguments each backend receives can be
tested without a GPU or a server; `build_lm` only imports and constructs.
"""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from kanana_eval.errors import EngineError

BACKENDS = ("auto", "hf", "vllm", "openai")
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that decides how requests are computed; recorded in the manifest."""

    backend: str
    model: str  # local folder or hub id (for openai: the served model name)
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int = 8
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

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


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


def vllm_model_args(cfg: EngineConfig) -> dict[str, Any]:
    args: dict[str, Any] = {
        "pretrained": cfg.model,
        "dtype": cfg.dtype,
        "batch_size": "auto",
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "data_parallel_size": cfg.data_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "seed": cfg.seed,
        "enable_prefix_caching": True,
    }
    if cfg.revision:
        args["revision"] = cfg.revision
    if cfg.tokenizer:
        args["tokenizer"] = cfg.tokenizer
    if cfg.max_model_len:
        args["max_model_len"] = cfg.max_model_len
    if cfg.rope_scaling:
        args["hf_overrides"] = {"rope_scaling": dict(cfg.rope_scaling)}
    return args


def openai_model_args(cfg: EngineConfig) -> dict[str, Any]:
    if not cfg.base_url:
        raise EngineError("--backend openai needs --base-url (an OpenAI-compatible /v1/completions)")
    url = cfg.base_url.rstrip("/")
    if not url.endswith("/completions"):
        url = f"{url}/completions"
    return {
        "base_url": url,
        "model": cfg.model,
        "tokenizer": cfg.tokenizer or cfg.model,
        "tokenizer_backend": "huggingface",
        "num_concurrent": cfg.num_concurrent,
        "max_retries": 3,
        "seed": cfg.seed,
    }


def check_endpoint(base_url: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when the server is not there, before any work starts."""
    root = base_url.rstrip("/")
    root = root.removesuffix("/completions").removesuffix("/chat")
    try:
        with urllib.request.urlopen(f"{root}/models", timeout=timeout):  # noqa: S310
            return
    except urllib.error.HTTPError:
        return  # the server answered: reachable, whatever it thinks of /models
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EngineError(f"cannot reach the endpoint {base_url}: {reason}") from exc


def build_lm(cfg: EngineConfig) -> Any:
    """Construct the lm-eval LM object for a resolved EngineConfig."""
    if cfg.backend == "hf":
        if importlib.util.find_spec("accelerate") is None:
            raise EngineError("the hf backend needs `accelerate`: pip install accelerate")
        from lm_eval.models.huggingface import HFLM

        try:
            return HFLM(**hf_model_args(cfg))
        except OSError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load model '{cfg.model}': {first}") from exc
    if cfg.backend == "vllm":
        if not vllm_installed():
            raise EngineError(
                "--backend vllm needs vLLM on a GPU machine: pip install 'kanana-eval[vllm]'"
            )
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(**vllm_model_args(cfg))
    if cfg.backend == "openai":
        args = openai_model_args(cfg)
        check_endpoint(args["base_url"])
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        return LocalCompletionsAPI(**args)
    raise EngineError(f"unknown backend '{cfg.backend}'")
