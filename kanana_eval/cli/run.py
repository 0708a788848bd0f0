"""`kanana-eval run`: evaluate a model on its protocol(s) and store a run folder per checkpoint."""

from __future__ import annotations

import argparse

from kanana_eval.cli.niah_options import add_niah_options, niah_fields
from kanana_eval.cli.options import (
    add_judge_options,
    batch_size,
    count,
    csv,
    fraction,
    resolved_path,
    seed,
)
from kanana_eval.config.run_config import RunConfig
from kanana_eval.engine.openai_endpoint import COMPLETIONS, OPENAI_APIS
from kanana_eval.pipeline.run import run, summary_line

EXAMPLES = """\
examples:
  kanana-eval run --model smollm2-135m-instruct --data-dir data/mirror --limit 20
  kanana-eval run --model kanana-1.5-8b-base                 # GPU machine, data from the hub
  kanana-eval run --model ./my-checkpoint --benchmarks mmlu,gsm8k --backend hf
  kanana-eval run --model my-model --backend openai --base-url http://127.0.0.1:8000/v1
  kanana-eval run --model kanana-1.5-8b-instruct-2505 --benchmarks mt_bench,komt_bench"""


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="registry key (see `kanana-eval models`), family alias such as "
                        "kanana-1.5-8b (runs base and instruct), HF hub id, or local folder")
    p.add_argument("--protocol", dest="protocols", type=csv, default=None,
                   help="protocol(s) to run, comma-separated (default: the registry's for the "
                        "model; `base` for hub ids and folders)")
    p.add_argument("--benchmarks", type=csv, default=None,
                   help="comma-separated benchmark ids or names (mmlu@base or mmlu); "
                        "default: all")
    p.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm", "openai"],
                   help="inference engine: auto = vLLM when installed on a GPU machine, "
                        "else transformers")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server for --backend openai, "
                        "e.g. http://host:8000/v1")
    p.add_argument("--openai-api", default=COMPLETIONS, choices=list(OPENAI_APIS),
                   help="--backend openai: completions (default; prompts rendered here with "
                        "--tokenizer, log-likelihood through echo+logprobs) or chat (messages "
                        "to chat completions, the server applies the chat template; chat "
                        "protocols' generation only)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer id/folder when it differs from the model")
    p.add_argument("--revision", default=None,
                   help="model revision (branch, tag or commit); recorded")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="auto = float32 on CPU (fidelity), bfloat16 on GPU")
    p.add_argument("--batch-size", type=batch_size, default="auto",
                   help="rows per forward pass, or auto (default): the transformers backend "
                        "sizes each batch from free memory and sequence length; vLLM schedules "
                        "its own batches")
    p.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                   help="transformers backend: score every log-likelihood request on its full "
                        "context instead of computing a shared few-shot prefix once and reusing "
                        "its KV cache (answers agree to 1e-4; recorded in the manifest)")
    p.add_argument("--limit", type=count(1), default=None,
                   help="N items per README column, spread over its subtasks in proportion to "
                        "their size (largest remainder); results are marked as a smoke run")
    p.add_argument("--data-dir", default=None,
                   help="local dataset mirror in hub layout (DIR/<hub id>/...); default: the hub")
    p.add_argument("--output-dir", default="results",
                   help="where run folders go (default: results)")
    p.add_argument("--seed", type=seed, default=1234,
                   help="numpy/torch/few-shot seed (default 1234, as lm-eval)")
    p.add_argument("--yarn", action="store_true",
                   help="apply the README's YaRN rope_scaling override (128K context)")
    p.add_argument("--max-model-len", type=count(1), default=None,
                   help="context length cap for the engine")
    p.add_argument("--tensor-parallel-size", type=count(1), default=1,
                   help="vLLM tensor parallelism")
    p.add_argument("--data-parallel-size", type=count(1), default=1,
                   help="vLLM data parallel replicas")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=0.9,
                   help="vLLM memory fraction, in (0, 1]")
    p.add_argument("--enforce-eager", action="store_true",
                   help="vLLM: no CUDA graphs or torch.compile (quicker start; docs/vllm.md)")
    p.add_argument("--unsafe-exec", action="store_true",
                   help="run generated code without the sandbox's isolation boundary where this "
                        "machine lacks it (recorded in the manifest; docs/sandbox.md)")
    p.add_argument("--max-gen-toks", type=count(1), default=None,
                   help="lower every benchmark's new-token limit to N (smoke runs on CPU); "
                        "recorded, generations cut by it are flagged, and the run is marked as a "
                        "smoke run")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="do not read or write the on-disk request cache (resuming needs it)")
    p.add_argument("--no-judge", dest="judge", action="store_false",
                   help="MT-Bench/KoMT-Bench: store the answers only; judge later with "
                        "`kanana-eval judge RUN`")
    add_judge_options(p)
    p.add_argument("--functionchat-version", default=None, choices=["571abec", "v2.0.0"],
                   help="FunctionChat-Bench data version (default 571abec, the last commit "
                        "before v2.0.0; recorded in the manifest and the item ids)")
    p.add_argument("--functionchat-judge-model", default=None,
                   help="FunctionChat-Bench judge (default: the data version's own, "
                        "gpt-4-0125-preview at 571abec, gpt-4.1-2025-04-14 at v2.0.0)")
    add_niah_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a model on its protocol(s) and store the results",
                       description="Evaluate a model and write results/<model>/<run-id>/ "
                                   "(manifest.json, scores.json, items/<benchmark>.jsonl).",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    add_run_options(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    fields = {k: v for k, v in vars(args).items() if k not in ("command", "verbose", "handler")}
    data_dir = resolved_path(fields["data_dir"])  # absolute, so `rerun` works from any folder
    fields["data_dir"] = str(data_dir) if data_dir else None
    niah_fields(fields)
    rejudge = fields.pop("rejudge", None)  # a one-off, not part of the stored run config
    for run_dir in run(RunConfig(**fields), rejudge=rejudge):
        print(summary_line(run_dir))
    return 0
