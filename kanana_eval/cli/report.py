"""`kanana-eval report`: the README tables (HTML, Markdown) and a page per table kind."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.report.render import render_report
from kanana_eval.report.tables import load_run_row
from kanana_eval.report.update import update_readme
from kanana_eval.results.checks import check_output_dir, check_output_file, verify_run
from kanana_eval.results.io import resolve_run_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render README tables (HTML, Markdown) from stored runs")
    p.add_argument("runs", nargs="*",
                   help="run folders, or model names standing for their latest run, to show "
                        "beside the published numbers (none: the published numbers alone)")
    p.add_argument("--results-dir", default="results", help="where model names are looked up")
    p.add_argument("--out", default="reports/out", help="output folder (default reports/out)")
    p.add_argument("--update", metavar="README", default=None,
                   help="instead of writing pages, regenerate the tables between "
                        "'<!-- kanana-eval:table TABLE-ID [format=markdown] -->' and "
                        "'<!-- /kanana-eval:table -->' in README; every other byte is kept")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    run_dirs = [p for value in args.runs for p in resolve_run_arg(value, Path(args.results_dir))]
    for run_dir in run_dirs:  # a damaged run is refused, never shown partly
        verify_run(run_dir)
    if args.update:
        check_output_file(Path(args.update), "--update file")
        updated = update_readme(Path(args.update), [load_run_row(d) for d in run_dirs])
        print(f"updated {len(updated)} table(s) in {args.update}: {', '.join(updated)}")
        return 0
    check_output_dir(Path(args.out), "--out")
    paths = render_report(run_dirs, Path(args.out))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
