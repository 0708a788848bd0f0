"""`kanana-eval rerun RUN`: repeat a stored run from its manifest (a `score` run re-scores)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import ConfigError, ResultsError
from kanana_eval.pipeline.run import run, summary_line
from kanana_eval.pipeline.score_completions import score_completions
from kanana_eval.results.checks import verify_run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerun", help="repeat a stored run from its manifest")
    p.add_argument("run_dir", help="a run folder (results/<model>/<run-id>)")
    p.add_argument("--output-dir", default=None,
                   help="where the new run goes (default: as stored)")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    manifest, _ = verify_run(Path(args.run_dir))  # a damaged run is refused, not replayed
    try:
        config = RunConfig.from_dict(manifest.config)
    except ConfigError as exc:
        raise ResultsError(f"{Path(args.run_dir) / 'manifest.json'}: {exc}") from exc
    if args.output_dir:
        config.output_dir = args.output_dir
    if manifest.model.source == "completions":  # a `score` run: score the same file again
        if not config.benchmarks:
            raise ResultsError(f"{Path(args.run_dir) / 'manifest.json'}: a `score` run's config "
                               "names no benchmark")
        data_dir = Path(config.data_dir) if config.data_dir else None
        run_dir = score_completions(config.benchmarks[0], Path(config.model), data_dir=data_dir,
                                    output_dir=Path(config.output_dir),
                                    workers=config.execution_workers)
        print(summary_line(run_dir))
        return 0
    for run_dir in run(config):
        print(summary_line(run_dir))
    return 0
