"""`kanana-eval score BENCHMARK FILE`: score completions made elsewhere, without a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.cli.options import count, resolved_path
from kanana_eval.pipeline.run import summary_line
from kanana_eval.pipeline.score_completions import score_completions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score a stored completions file without a model",
        description="Score completions made elsewhere with the scorers of a run and store a run "
                    "folder (model source `completions`). FILE is JSON Lines: {\"item_id\", "
                    "\"response\"} (or a run's items/<benchmark>.jsonl); for humaneval_plus / "
                    "mbpp_plus also evalplus' samples format {\"task_id\", \"solution\" | "
                    "\"completion\"}. Only the items in FILE are scored.")
    p.add_argument("benchmark", help="benchmark id, e.g. gsm8k@instruct, humaneval_plus")
    p.add_argument("file", help="completions file (JSON Lines)")
    p.add_argument("--data-dir", default=None, help="local dataset mirror (default: the hub)")
    p.add_argument("--output-dir", default="results", help="where the run folder goes")
    p.add_argument("--workers", type=count(1), default=None,
                   help="parallel sandboxes for code (default: CPU count)")
    p.add_argument("--unsafe-exec", action="store_true",
                   help="run generated code without the sandbox's isolation boundary where this "
                        "machine lacks it (recorded in the manifest; docs/sandbox.md)")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    run_dir = score_completions(args.benchmark, Path(args.file),
                                data_dir=resolved_path(args.data_dir),
                                output_dir=Path(args.output_dir), workers=args.workers,
                                unsafe_exec=args.unsafe_exec)
    print(summary_line(run_dir))
    return 0
