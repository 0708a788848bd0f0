"""The bench's command line: options, the printed report, the JSON copy and the history line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from kanana_eval.core.errors import KananaError
from tools.bench.config import (
    DEFAULT_HISTORY,
    DEFAULT_MODEL_KEY,
    DEFAULT_PROMPTS,
    DEFAULT_QUESTIONS,
    DEFAULT_SUBJECTS,
    BenchConfig,
)
from tools.bench.format import format_report
from tools.bench.run import append_history, run_bench
from tools.bench.vllm_side import format_vllm


def history_path(args: argparse.Namespace) -> Path | None:
    """Where this invocation's JSON line goes: --history (default DEFAULT_HISTORY), or nowhere."""
    return None if args.no_history else args.history


def build_parser() -> argparse.ArgumentParser:
    """Every option of `python -m tools.bench`."""
    p = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Wall time of kanana-eval vs plain lm-eval and vs the compute bound (5-shot "
                    "MMLU), batched vs batch-1 generation (HumanEval), peak memory and a "
                    "projection of the full base protocol; same model, same process (model and "
                    "data loading excluded).")
    p.add_argument("--data-dir", required=True, type=Path,
                   help="offline mirror (data build-mirror)")
    p.add_argument("--subjects", type=int, default=len(DEFAULT_SUBJECTS),
                   help=f"MMLU subjects: {', '.join(DEFAULT_SUBJECTS)} first (default 4)")
    p.add_argument("--questions-per-subject", type=int, default=DEFAULT_QUESTIONS,
                   help=f"first Q test documents of each subject (default {DEFAULT_QUESTIONS})")
    p.add_argument("--batch-size", type=int, default=8,
                   help="every side's batch size; generation's batched side too (default 8)")
    p.add_argument("--humaneval-prompts", type=int, default=DEFAULT_PROMPTS,
                   help=f"first N HumanEval prompts for the generation workload, 0 skips it "
                        f"(default {DEFAULT_PROMPTS})")
    p.add_argument("--max-gen-toks", type=int, default=None,
                   help="lower HumanEval's token limit (default: the protocol's, 1024)")
    p.add_argument("--model-folder", type=Path, default=None,
                   help=f"HF model folder to use instead of {DEFAULT_MODEL_KEY}")
    p.add_argument("--repeats", type=int, default=1,
                   help="run the three log-likelihood sides in turn this often, keep each best "
                        "(default 1)")
    p.add_argument("--throughput-seconds", type=float, default=3.0,
                   help="minimum timed duration of each raw forward-rate measurement (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for everything measured (default: torch's choice)")
    p.add_argument("--retries", type=int, default=1,
                   help="run a timed piece again, up to this often, when other processes loaded "
                        "the machine meanwhile; the fastest attempt counts (default 1)")
    p.add_argument("--retry-above", type=float, default=0.25,
                   help="what counts as loaded: cores used by other processes (default 0.25)")
    p.add_argument("--no-niah", dest="niah", action="store_false",
                   help="skip the NIAH part (a 1K/2K grid, shared prefixes vs cells alone)")
    p.add_argument("--no-vllm", dest="vllm", action="store_false",
                   help="skip the vLLM part (harness overhead over raw vLLM, vLLM vs hf)")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the report here (indented)")
    p.add_argument("--history", type=Path, default=DEFAULT_HISTORY,
                   help=f"append the report as one JSON line here (default {DEFAULT_HISTORY})")
    p.add_argument("--no-history", action="store_true",
                   help="do not append to the history file")
    return p


def _quiet() -> None:
    """Only warnings and errors from the libraries: the report is what the bench prints."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "httpx",
                 "kanana_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run the bench once; 0 when answers agree and outputs are identical, else 1 (2: error)."""
    args = build_parser().parse_args(argv)
    _quiet()
    config = BenchConfig(
        data_dir=args.data_dir.resolve(), subjects=args.subjects,
        questions_per_subject=args.questions_per_subject, batch_size=args.batch_size,
        humaneval_prompts=args.humaneval_prompts, max_gen_toks=args.max_gen_toks,
        model_folder=args.model_folder.resolve() if args.model_folder else None,
        repeats=args.repeats, throughput_seconds=args.throughput_seconds, threads=args.threads,
        retries=args.retries, retry_above=args.retry_above, vllm=args.vllm, niah=args.niah)
    try:
        report = run_bench(config)
    except KananaError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_report(report))
    if config.vllm:
        print("\n".join(format_vllm(report.get("vllm"))))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
        print(f"wrote {args.json}")
    history = history_path(args)
    if history is not None:
        append_history(history, report)
        print(f"appended to {history}")
    return 0 if report["ok"] else 1
