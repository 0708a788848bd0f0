"""Each backend receives exactly the arguments its flags ask for (no GPU or server needed)."""

from __future__ import annotations

import ast
import importlib.util
import socket

import pytest

import kanana_eval.engine.build as engine
from kanana_eval.config.registry import load_registry
from kanana_eval.core.errors import EngineError
from kanana_eval.engine.build import (
    EngineConfig,
    build_lm,
    check_endpoint,
    hf_model_args,
    openai_model_args,
    resolve_backend,
    resolve_dtype,
    vllm_installed,
    vllm_model_args,
)
from kanana_eval.engine.hf_fast import FastHFLM

YARN = load_registry().yarn_rope_scaling


def test_dtype_auto_is_fp32_on_cpu_and_bf16_on_gpu():
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(EngineError):
        resolve_dtype("int3", "cpu")


def test_backend_auto_is_hf_without_vllm_and_gpu():
    if not vllm_installed():
        assert resolve_backend("auto") == "hf"
    assert resolve_backend("openai") == "openai"
    with pytest.raises(EngineError, match="unknown backend"):
        resolve_backend("tgi")


def test_hf_args_carry_revision_dtype_batch_and_yarn():
    cfg = EngineConfig(backend="hf", model="kakaocorp/kanana-1.5-8b-base", revision="abc123",
                       dtype="bfloat16", batch_size=16, device="cuda", rope_scaling=YARN,
                       max_model_len=131072)
    args = hf_model_args(cfg)
    assert args == {"pretrained": "kakaocorp/kanana-1.5-8b-base", "dtype": "bfloat16",
                    "batch_size": 16, "device": "cuda", "trust_remote_code": False,
                    "prefix_cache": True, "revision": "abc123", "rope_scaling": YARN,
                    "max_length": 131072}


def test_hf_args_default_to_memory_batching_and_take_no_prefix_cache():
    args = hf_model_args(EngineConfig(backend="hf", model="m", device="cpu", prefix_cache=False))
    assert args["batch_size"] == "auto" and args["prefix_cache"] is False
    assert args["dtype"] == "auto" and "rope_scaling" not in args


def test_hf_engine_is_the_fast_hflm_and_records_how_it_computes(tiny_llama):
    lm = build_lm(EngineConfig(backend="hf", model=str(tiny_llama), dtype="float32", device="cpu",
                               prefix_cache=False))
    assert isinstance(lm, FastHFLM)
    record = lm.speed_record()
    assert record["prefix_cache"] is False
    assert record["batching"]["mode"] == "memory"


@pytest.mark.parametrize("tp,dp,mem,mml,yarn", [
    (tp, dp, mem, mml, yarn) for tp in (1, 4) for dp in (1, 2) for mem in (0.9, 0.8)
    for mml, yarn in ((None, False), (32768, False), (131072, True))])
def test_vllm_args_for_each_flag_combination(tp, dp, mem, mml, yarn):
    cfg = EngineConfig(backend="vllm", model="kakaocorp/kanana-1.5-8b-base", dtype="bfloat16",
                       tensor_parallel_size=tp, data_parallel_size=dp, gpu_memory_utilization=mem,
                       max_model_len=mml, rope_scaling=YARN if yarn else None, seed=7)
    args = vllm_model_args(cfg)
    assert args["tensor_parallel_size"] == tp and args["data_parallel_size"] == dp
    assert args["gpu_memory_utilization"] == mem and args["seed"] == 7
    assert args["enable_prefix_caching"] is True and args["batch_size"] == "auto"
    assert args.get("max_model_len") == mml
    assert args.get("hf_overrides") == ({"rope_scaling": YARN} if yarn else None)


def test_vllm_missing_is_a_clear_error():
    if vllm_installed():
        pytest.skip("vLLM is installed here")
    with pytest.raises(EngineError, match="needs vLLM"):
        build_lm(EngineConfig(backend="vllm", model="x/y"))


def test_openai_args_and_unreachable_endpoint():
    cfg = EngineConfig(backend="openai", model="m", base_url="http://h:1/v1/")
    assert openai_model_args(cfg)["base_url"] == "http://h:1/v1/completions"
    with pytest.raises(EngineError, match="needs --base-url"):
        openai_model_args(EngineConfig(backend="openai", model="m"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError, match="cannot reach the endpoint"):
        check_endpoint(f"http://127.0.0.1:{port}/v1/completions", timeout=2)


def _lm_eval_vllm_parameters() -> set[str]:
    """Named parameters of lm-eval's VLLM.__init__, read from its source (no vLLM here)."""
    spec = importlib.util.find_spec("lm_eval.models.vllm_causallms")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "VLLM"]
    (init,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    return {a.arg for a in init.args.args + init.args.kwonlyargs}


def test_vllm_args_are_lm_eval_parameters_or_vllm_engine_arguments():
    """lm-eval names most arguments; the rest go through **kwargs into vllm.LLM(**model_args)."""
    cfg = EngineConfig(backend="vllm", model="m", revision="r", tokenizer="t", dtype="bfloat16",
                       tensor_parallel_size=2, data_parallel_size=2, max_model_len=131072,
                       rope_scaling=YARN)
    named = _lm_eval_vllm_parameters()
    # vllm EngineArgs
    engine_args = {"enable_prefix_caching", "hf_overrides", "gpu_memory_utilization"}
    assert set(vllm_model_args(cfg)) <= named | engine_args
    assert {"tensor_parallel_size", "data_parallel_size", "max_model_len", "seed"} <= named


def test_vllm_data_parallel_needs_ray(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(engine, "vllm_installed", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    engine.preflight(EngineConfig(backend="vllm", model="m", data_parallel_size=1))
    with pytest.raises(EngineError, match="needs Ray"):
        engine.preflight(EngineConfig(backend="vllm", model="m", data_parallel_size=2))
