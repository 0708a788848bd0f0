"""`kanana-eval compare BASELINE CANDIDATE`: the regression gate's command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from kanana_eval.cli.errors import OneLineParser, error_line
from kanana_eval.cli.options import seed
from kanana_eval.compare.gate import DEFAULT_BOOTSTRAP, DEFAULT_SEED, compare_runs, resolve_one
from kanana_eval.compare.output import render_junit, render_markdown, render_table, to_json
from kanana_eval.core.errors import KananaError
from kanana_eval.results.checks import check_output_file

DESCRIPTION = """\
Compare a CANDIDATE run with a BASELINE run, benchmark by benchmark, on paired items.

For each benchmark both runs have, the items are paired by item_id (and turn for MT-Bench and
KoMT-Bench; judged turns without a score are left out and counted). The command prints both
scores, the paired difference with a bootstrap confidence interval, and a verdict:

  worse   the one-sided p-value for a drop, Holm-adjusted over the benchmarks compared, is
          below alpha AND the drop is at least the benchmark's minimum drop
  better  the same for a gain
  same    otherwise

Pass/fail items (accuracy, pass@1) use the exact McNemar test on the items that flipped; judge
scores and IFEval (whose headline averages two accuracies; the test uses the per-item
prompt-level strict score) use the paired bootstrap. Drops are percent points for accuracies,
score points (1-10) for judged benchmarks; with fewer than 10 paired items (questions for
judged benchmarks) the bootstrap gives no evidence (p = 1). alpha and the minimum drops come from
the `regression:` section of protocols/<protocol>.yaml.

Items in only one run are listed, never dropped silently. Runs whose benchmarks differ in data
fingerprint, recorded protocol settings, lm-eval task versions or judge model are refused
unless --force is given. Smoke runs can be compared; the output says so.

exit status: 0 nothing regressed, 1 a regression, 2 a usage or data error."""

EPILOG = (
    "examples:\n"
    "  kanana-eval compare results/kanana-1.5-8b-base/<run-id> results/my-ckpt/<run-id>\n"
    "  kanana-eval compare baseline-run/ my-ckpt --results-dir results --min-drop gsm8k=2.5\n"
    '  kanana-eval compare BASE CAND --markdown "$GITHUB_STEP_SUMMARY" --junit junit.xml'
    " --json verdict.json"
)


def _alpha(value: str) -> float:
    try:
        alpha = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number") from None
    if not 0.0 < alpha < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return alpha


def _min_drop(value: str) -> tuple[str, float]:
    name, sep, points = value.partition("=")
    try:
        drop = float(points)
    except ValueError:
        drop = -1.0
    if not sep or not name.strip() or not math.isfinite(drop) or drop < 0:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not BENCH=POINTS with POINTS >= 0 (e.g. gsm8k@base=2 or mt_bench=0.3)")
    return name.strip(), drop


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` subcommand to the kanana-eval parser."""
    p = subparsers.add_parser(
        "compare", help="regression gate: compare a candidate run with a baseline on paired items",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline", help="baseline run folder, or a model name for its latest run in "
                                    "--results-dir")
    p.add_argument("candidate", help="candidate run folder, or a model name for its latest run in "
                                     "--results-dir")
    p.add_argument("--results-dir", default="results",
                   help="where model names are looked up (default: results)")
    p.add_argument("--alpha", type=_alpha, default=None,
                   help="family-wise error rate of the verdicts (default: the protocol's, 0.05)")
    p.add_argument("--min-drop", action="append", type=_min_drop, default=[],
                   metavar="BENCH=POINTS",
                   help="minimum meaningful change for a benchmark id (gsm8k@base) or name "
                        "(gsm8k, all its protocols), in percent points or judge score points; "
                        "repeatable "
                        "(default: the protocol's regression.min_drop)")
    p.add_argument("--force", action="store_true",
                   help="compare even when the runs' data fingerprints or protocol settings differ "
                        "(the outputs list every difference)")
    p.add_argument("--markdown", type=Path, default=None, metavar="PATH",
                   help="write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY); appends when "
                        "PATH is the step summary file")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="write the verdict as JSON (format kanana-eval-compare, version 1)")
    p.add_argument("--junit", type=Path, default=None, metavar="PATH",
                   help="write JUnit XML: one test case per benchmark, failed when worse")
    p.add_argument("--bootstrap", type=_positive, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help="bootstrap resamples for intervals and bootstrap tests "
                        f"(default {DEFAULT_BOOTSTRAP})")
    p.add_argument("--seed", type=seed, default=DEFAULT_SEED,
                   help="bootstrap seed; the same seed gives the same numbers "
                        f"(default {DEFAULT_SEED})")
    p.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    """Compare, print the table, write the requested files; 0 no regression, 1 a regression."""

    results_dir = Path(args.results_dir)
    for option in ("markdown", "json", "junit"):  # refused before any work, not after it
        if getattr(args, option) is not None:
            check_output_file(getattr(args, option), f"--{option} file")
    baseline = resolve_one(args.baseline, results_dir, "baseline")
    candidate = resolve_one(args.candidate, results_dir, "candidate")
    comparison = compare_runs(baseline, candidate, alpha=args.alpha, min_drops=dict(args.min_drop),
                              force=args.force, n_boot=args.bootstrap, seed=args.seed)
    sys.stdout.write(render_table(comparison))
    if args.markdown:
        _write(args.markdown, render_markdown(comparison), append=_is_step_summary(args.markdown))
    if args.json:
        _write(args.json, json.dumps(to_json(comparison), indent=2, ensure_ascii=False) + "\n")
    if args.junit:
        _write(args.junit, render_junit(comparison))
    return comparison.exit_code


def _is_step_summary(path: Path) -> bool:
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return bool(summary) and Path(summary).resolve() == path.resolve()


def _write(path: Path, text: str, append: bool = False) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise KananaError(f"cannot write {path}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """`python -m kanana_eval.cli.compare BASELINE CANDIDATE ...`, the same command standalone."""
    parser = OneLineParser(prog="kanana-eval")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["compare", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_compare(args)
    except KananaError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
