"""`kanana-eval judge RUN`: judge (or re-judge) the stored MT-Bench/KoMT-Bench answers of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.cli.options import add_judge_options, resolved_path
from kanana_eval.pipeline.rejudge import describe, judge_run
from kanana_eval.results.checks import check_output_dir, verify_run
from kanana_eval.scoring.judge.client import JudgeConfig
from kanana_eval.scoring.judge.stage import JudgeOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "judge", help="judge (or re-judge) the MT-Bench/KoMT-Bench answers of a stored run",
        description="Judge the stored two-turn answers of RUN with an LLM judge and write a new "
                    "run folder beside it (same answers, the judge's scores, `judged_from` "
                    "naming RUN). Judgments are cached by (server, judge prompt, judge model, "
                    "request): a rerun never pays twice; --rejudge asks chosen ones again.")
    p.add_argument("run_dir", help="a run folder (results/<model>/<run-id>)")
    p.add_argument("--data-dir", default=None,
                   help="where the questions, judge prompts and references are (default: the "
                        "run's)")
    p.add_argument("--output-dir", default=None,
                   help="results folder for the new run (default: RUN's)")
    add_judge_options(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    source = Path(args.run_dir).resolve()  # refused before any judge is paid: a damaged run,
    verify_run(Path(args.run_dir))  # and an output folder that cannot be written
    results = Path(args.output_dir) if args.output_dir else source.parent.parent
    check_output_dir(results / source.parent.name, "--output-dir")
    options = JudgeOptions(JudgeConfig(model=args.judge_model, base_url=args.judge_base_url,
                                       concurrency=args.judge_concurrency,
                                       max_tokens=args.judge_max_tokens),
                           language_penalty=args.komt_language_penalty, rejudge=args.rejudge)
    run_dir = judge_run(Path(args.run_dir), options,
                        output_dir=Path(args.output_dir) if args.output_dir else None,
                        data_dir=resolved_path(args.data_dir))
    print(f"{describe(run_dir)} -> {run_dir}")
    return 0
