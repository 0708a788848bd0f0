"""`kanana-eval data build-mirror DIR`: the offline data as a local mirror in hub layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from kanana_eval.data.mirror.build import main_build_mirror
from kanana_eval.results.checks import check_output_dir
from kanana_eval.tasks.catalog import data_plans


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data build-mirror DIR` to the command line."""
    p = sub.add_parser("data", help="dataset utilities")
    actions = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    mirror = actions.add_parser("build-mirror",
                                help="write the offline data as a local mirror in hub layout")
    mirror.add_argument("dir", help="target folder (use it as --data-dir)")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    """Build every dataset a benchmark folder plans (the shared-data ones when available)."""
    check_output_dir(Path(args.dir), "mirror folder")
    return main_build_mirror(args.dir, data_plans())
