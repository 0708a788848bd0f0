"""evalplus's `get_groundtruth` in an interpreter of its own, run by path by `execute.py`.

    python groundtruth.py <dataset> <problems.pkl> <cache folder> <cache key>

The canonical solutions are dataset code, not the harness's, so they run here rather than in the
harness; evalplus writes its own cache file, `<cache folder>/<cache key>.pkl`, which the harness
then moves into its scratch folder. Nothing of kanana_eval is imported: evalplus and the four
arguments are all it needs.
"""

from __future__ import annotations

import os
import pickle
import sys


def main(dataset: str, problems_path: str, cache_dir: str, key: str) -> None:
    """Expected outputs and reference times of every canonical solution, as evalplus caches them."""
    import evalplus.evaluate as evaluate  # noqa: PLC0415 - heavy: evalplus, and only when run
    from evalplus.eval._special_oracle import (  # noqa: PLC0415 - heavy: as above
        MBPP_OUTPUT_NOT_NONE_TASKS,
    )

    with open(problems_path, "rb") as handle:  # written by execute.py a moment ago
        problems = pickle.load(handle)
    evaluate.CACHE_DIR = cache_dir  # get_groundtruth caches in evalplus.evaluate.CACHE_DIR
    # evalplus's evaluate: the output-not-None oracle applies to MBPP+ only
    output_not_none = {"mbpp": MBPP_OUTPUT_NOT_NONE_TASKS}.get(dataset, [])
    evaluate.get_groundtruth(problems, key, output_not_none)


if __name__ == "__main__":
    # Run by path, Python puts this folder first on sys.path, where execute.py and scorer.py
    # would shadow any top-level module of those names (`python -c` put the working folder).
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == here:
        sys.path[0] = os.getcwd()
    main(*sys.argv[1:5])
