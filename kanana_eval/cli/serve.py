"""`kanana-eval serve MODEL`: vLLM's OpenAI-compatible server for a registry model, on 127.0.0.1.

The served name is the model's registry key (or the --model value), so `kanana-eval run --model
KEY --backend openai --base-url URL --tokenizer FOLDER` and `--judge-base-url URL --judge-model
KEY` reach it; the command prints both lines once the server is ready. Ctrl-C or SIGTERM stops
the server and its engine processes.
"""

from __future__ import annotations

import argparse
import json
import signal
from types import FrameType

from kanana_eval.cli.errors import PROGRAM, OneLineParser
from kanana_eval.cli.options import count
from kanana_eval.config.registry import ModelRef, load_registry
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import ConfigError, EngineError
from kanana_eval.engine.build import (
    VLLM_INSTALL,
    EngineConfig,
    resolve_device,
    resolve_dtype,
    vllm_hf_overrides,
    vllm_installed,
)
from kanana_eval.engine.vllm_server import ServeOptions, start_server, stop_server, wait_ready
from kanana_eval.pipeline.model_source import resolve_weights

EXAMPLES = """\
examples:
  kanana-eval serve smollm2-135m-instruct --port 8011 --enforce-eager
  kanana-eval serve kanana-1.5-8b-instruct-2505 --port 8001 -- --max-num-seqs 64"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model with vLLM's OpenAI-compatible server",
                       description="Start vLLM's OpenAI-compatible server for MODEL on "
                                   "127.0.0.1 (a local endpoint for --backend openai or as "
                                   "the MT-Bench judge). Options after `--` go to vLLM.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("model", help="registry key, HF hub id or local model folder")
    add_serve_options(p)
    p.add_argument("vllm_args", nargs=argparse.REMAINDER,
                   help="after `--`: further options for vLLM's server, passed unchanged")
    p.set_defaults(handler=execute)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """Our own options; `execute` parses them again when given after MODEL (argparse's
    REMAINDER takes everything after MODEL, and only what follows `--` is vLLM's)."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: the server has no auth)")
    p.add_argument("--port", type=count(1), default=8000, help="port (default 8000)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="auto = float32 on CPU, bfloat16 on GPU (as `run`)")
    p.add_argument("--max-model-len", type=count(1), default=None, help="context length cap")
    p.add_argument("--tensor-parallel-size", type=count(1), default=1)
    p.add_argument("--enforce-eager", action="store_true",
                   help="no CUDA graphs or torch.compile (quicker start)")
    p.add_argument("--revision", default=None, help="hub revision of the weights")
    p.add_argument("--yarn", action="store_true",
                   help="serve with the README's YaRN rope_scaling override (128K context); "
                        "refused for 32K-only models (docs/niah.md)")
    p.add_argument("--startup-timeout", type=count(1), default=900,
                   help="seconds to wait for the server to be ready (default 900)")


def check_yarn(ref: ModelRef, yarn: bool) -> None:
    """--yarn is refused for the models the registry marks 32K-only."""
    if yarn and ref.entry is not None and not ref.entry.yarn_128k:
        raise ConfigError(f"{ref.entry.key} does not take the YaRN 128K override (the README: "
                          "~3B models and Kanana-1.5-15.7B-A3B support 32K only)")


def yarn_server_args(load_name: str, yarn: bool) -> list[str]:
    """vLLM server options for --yarn: the README's override merged into the model's rope
    parameters, as `--hf-overrides` (what the offline vLLM engine gets too)."""
    if not yarn:
        return []
    overrides = vllm_hf_overrides(EngineConfig(backend="vllm", model=load_name,
                                               rope_scaling=load_registry().yarn_rope_scaling))
    return ["--hf-overrides", json.dumps(overrides)]


def vllm_extra_args(args: argparse.Namespace) -> list[str]:
    """Split what followed MODEL at `--`: ours before it (parsed into `args`), vLLM's after."""
    rest = list(args.vllm_args or [])
    cut = rest.index("--") if "--" in rest else len(rest)
    ours, theirs = rest[:cut], rest[cut + 1:]
    if ours:
        parser = OneLineParser(prog=f"{PROGRAM} serve", add_help=False)
        add_serve_options(parser)
        parser.parse_args(ours, namespace=args)
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {args.port}")
    return theirs


def execute(args: argparse.Namespace) -> int:
    extra_args = vllm_extra_args(args)  # checked before anything is loaded
    if not vllm_installed():
        raise EngineError(f"kanana-eval serve needs vLLM, which is not installed: {VLLM_INSTALL}")
    ref = load_registry().resolve(args.model, None)[0]
    check_yarn(ref, args.yarn)
    resolved = resolve_weights(ref, RunConfig(model=ref.name, backend="vllm",
                                              revision=args.revision))
    extra = list(extra_args)
    extra += yarn_server_args(resolved.load_name, args.yarn)
    opts = ServeOptions(model_path=resolved.load_name, served_name=ref.name, host=args.host,
                        port=args.port, dtype=resolve_dtype(args.dtype, resolve_device("vllm")),
                        max_model_len=args.max_model_len, enforce_eager=args.enforce_eager,
                        tensor_parallel_size=args.tensor_parallel_size, extra=tuple(extra))
    proc = start_server(opts)

    def stop(signum: int, _frame: FrameType | None) -> None:
        # Unwind to `finally`: stopping here, inside the interrupted `proc.wait()`, would wait
        # on the lock that frame holds and time out (the 60 s shutdown once measured).
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        wait_ready(proc, opts, timeout=float(args.startup_timeout))
        tokenizer = resolved.path or resolved.load_name
        print(f"kanana-eval: serving '{ref.name}' at {opts.base_url} (Ctrl-C stops it)\n"
              f"  kanana-eval run --model {ref.name} --backend openai --base-url {opts.base_url}"
              f" --tokenizer {tokenizer}\n"
              f"  judge: --judge-base-url {opts.base_url} --judge-model {ref.name}", flush=True)
        return proc.wait() or 0
    finally:
        stop_server(proc)
