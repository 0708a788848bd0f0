"""`kanana-eval fastchat-export RUN DIR`: a run's MT-Bench answers and judgments as FastChat's."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.pipeline.rejudge import export_fastchat
from kanana_eval.results.checks import check_output_dir, verify_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fastchat-export",
        help="write a run's MT-Bench answers and judgments in FastChat's formats",
        description="Write DIR/<bench>/model_answer/<model>.jsonl and DIR/<bench>/"
                    "model_judgment/<judge>_single.jsonl, the files FastChat's llm_judge tools "
                    "(show_result) read.")
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("dir", help="output folder (FastChat's data/ layout)")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    verify_run(Path(args.run_dir))  # a damaged run is refused, never exported partly
    check_output_dir(Path(args.dir), "output folder")
    paths = export_fastchat(Path(args.run_dir), Path(args.dir))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
