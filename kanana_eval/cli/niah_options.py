"""The NIAH options of `run` (grid, haystack folder); recorded in the run config for `rerun`."""

from __future__ import annotations

import argparse
from typing import Any

from kanana_eval.cli.options import resolved_path


def add_niah_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("needle in a haystack (niah@base, niah@instruct)")
    g.add_argument("--niah-lengths", default=None, metavar="1K,2K,...",
                   help="context lengths of the grid in tokens, prompt and answer together "
                        "(K = 1024; default: 1K doubling up to the model's context); cells "
                        "longer than the context are skipped and recorded")
    g.add_argument("--niah-depths", default=None, metavar="0,50,100",
                   help="needle depths in percent (default 0,10,...,100)")
    g.add_argument("--niah-languages", default=None, metavar="en,ko",
                   help="haystack and needle languages (default both)")
    g.add_argument("--niah-judge", action="store_true",
                   help="niah@instruct: also rate every answered cell 1-10 against the needle "
                        "with the LLM judge (--judge-model, --judge-base-url; gkamradt's kind "
                        "of score); the contains-value score stays the benchmark's value")
    g.add_argument("--haystack-dir", default=None,
                   help="a folder of your own UTF-8 text files (.txt, .md) as the haystack, cut "
                        "at sentence ends and sliced by the model's tokenizer (default: the "
                        "project's own English and Korean filler)")


def niah_fields(fields: dict[str, Any]) -> None:
    """--haystack-dir made absolute, so `rerun` replays from any folder."""
    folder = resolved_path(fields.get("haystack_dir"))
    fields["haystack_dir"] = str(folder) if folder else None
