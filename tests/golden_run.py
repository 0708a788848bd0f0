"""The golden run: one small SmolLM2 run over base and instruct benchmarks, normalised to bytes.

The copy in `tests/golden/smollm2-limit2/` was made before the package was restructured; the test
`test_golden_run.py` repeats the run and requires every byte to be equal once what legitimately
differs between two runs is removed:

* run ids, paths and URLs (`run_id`, `created_utc`, `command`, `request_cache`, folder paths,
  the judge server's port, and so judgment cache keys), timings (`timings`, items'
  `execution_seconds`), `versions`, `config_hash`, and the sha256 of task and protocol files
  (they move in the restructuring).

Only the CLI and the JSON files are used, so the same code runs against any version of the
package. A change that deliberately alters outputs regenerates the copy in its own commit:

    KANANA_SHARED_DATA=../shared/data .venv/bin/python tests/golden_run.py --update
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from conftest import build_offline_mirror
from openai_judge_server import JudgeServer

from kanana_eval.cli.main import main as kanana_eval_main

HERE = Path(__file__).resolve().parent
GOLDEN_DIR = HERE / "golden" / "smollm2-limit2"

BENCHMARKS = [
    "mmlu@base", "kmmlu@base", "haerae@base", "humaneval@base", "mbpp@base", "gsm8k@base",
    "mt_bench@instruct", "komt_bench@instruct", "ifeval@instruct", "humaneval_plus@instruct",
    "mbpp_plus@instruct", "gsm8k@instruct", "math@instruct", "mmlu_cot@instruct",
    "kmmlu_cot@instruct",
]
PLACEHOLDER = "<varies>"
# Keys whose values legitimately differ between two runs of the same inputs (see the docstring).
_VARYING_KEYS = {"run_id", "created_utc", "command", "config_hash", "versions", "timings",
                 "request_cache", "execution_seconds", "task_file_sha256", "judged_from",
                 "cache_key",  # judgment cache keys hash the judge server's URL (its port)
                 "peak_rss_mib"}  # the process's measured peak memory
_PATH_KEYS = {"path", "file", "output_dir", "data_dir", "root", "base_url", "judge_base_url"}
_URL = re.compile(r"http://127\.0\.0\.1:\d+")


def golden_args(mirror: Path, out: Path, judge_url: str) -> list[str]:
    """The `kanana-eval` arguments of the golden run."""
    return ["run", "--model", "smollm2-135m-instruct", "--protocol", "base,instruct",
            "--data-dir", str(mirror), "--limit", "2", "--max-gen-toks", "24",
            "--benchmarks", ",".join(BENCHMARKS), "--batch-size", "1", "--no-cache",
            "--output-dir", str(out), "--judge-base-url", judge_url, "--judge-concurrency", "1"]


def _normalise(value: Any, roots: list[str], key: str | None = None) -> Any:
    if key in _VARYING_KEYS:
        return PLACEHOLDER
    if key in _PATH_KEYS and value is not None:
        return PLACEHOLDER
    if key == "sha256" and isinstance(value, str) and len(value) == 64:
        return value  # content hashes of data and templates stay (file hashes are keyed above)
    if isinstance(value, dict):
        if "file" in value and "sha256" in value and len(value) == 2:  # a protocol file record
            return {"file": PLACEHOLDER, "sha256": PLACEHOLDER}
        return {k: _normalise(v, roots, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, PLACEHOLDER)
        return _URL.sub("http://127.0.0.1:<port>", value)
    return value


def normalised_files(run_dir: Path, roots: list[str]) -> dict[str, str]:
    """Relative path -> normalised text of every file of a run folder.

    The project's own folder is a root too: a traceback in an item names our files by their
    absolute path, which is wherever the project was cloned."""
    roots = [*roots, str(HERE.parent)]
    files: dict[str, str] = {}
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(run_dir).as_posix()
        if path.suffix == ".jsonl":
            rows = [json.loads(line)
                    for line in path.read_text(encoding="utf-8").splitlines() if line]
            text = "".join(json.dumps(_normalise(r, roots), ensure_ascii=False, sort_keys=True)
                           + "\n" for r in rows)
        else:
            text = json.dumps(_normalise(json.loads(path.read_text(encoding="utf-8")), roots),
                              ensure_ascii=False, sort_keys=True, indent=1) + "\n"
        files[rel] = text
    return files


def build_test_mirror(out: Path) -> Path:
    """The offline mirror plus the schema-exact fixtures, as the test suite's `offline_mirror`."""
    return build_offline_mirror(out)


def make_golden_run(work: Path) -> Path:
    """Run the golden command in `work` (own cache, local judge); return the run folder."""
    os.environ["KANANA_EVAL_CACHE"] = str(work / "cache")
    os.environ["OPENAI_API_KEY"] = "sk-test-dummy"
    mirror = build_test_mirror(work / "mirror")
    out = work / "results"
    with JudgeServer() as server:
        code = kanana_eval_main(golden_args(mirror, out, server.url))
    if code != 0:
        raise SystemExit(f"golden run failed with exit code {code}")
    (run_dir,) = [p for p in (out / "smollm2-135m-instruct").iterdir()
                  if not p.name.startswith(".")]
    return run_dir


def write_golden(run_dir: Path, roots: list[str], target: Path = GOLDEN_DIR) -> None:
    if target.exists():
        shutil.rmtree(target)
    for rel, text in normalised_files(run_dir, roots).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the golden run copy.")
    parser.add_argument("--update", action="store_true", help="overwrite tests/golden/")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_golden_run(Path(tmp))
        if args.update:
            write_golden(run_dir, [tmp])
            print(f"wrote {GOLDEN_DIR}")
        else:
            print(json.dumps(sorted(normalised_files(run_dir, [tmp])), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
