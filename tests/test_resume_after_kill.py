"""A run killed with `kill -9` and started again with the same command resumes from the cache."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kanana_eval.results.io import load_run, read_jsonl


def _cached_rows(cache_root: Path) -> int:
    total = 0
    for db in cache_root.glob("requests/*/lm_rank0.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                total += con.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
        except sqlite3.Error:
            pass
    return total


@pytest.mark.slow
def test_kill_9_mid_run_then_same_command_resumes_with_equal_scores(tiny_llama, offline_mirror,
                                                                     tmp_path):
    cmd = [sys.executable, "-m", "kanana_eval.cli.main", "-v", "run", "--model", str(tiny_llama),
           "--data-dir", str(offline_mirror), "--benchmarks", "gsm8k", "--limit", "10",
           "--batch-size", "1"]
    env = {**os.environ, "KANANA_EVAL_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = subprocess.Popen([*cmd, "--output-dir", str(out)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _cached_rows(tmp_path / "cache") < 3:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no request reached the cache"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _cached_rows(tmp_path / "cache")
    assert 3 <= done_before < 10
    assert not [p for p in out.glob("*/*") if not p.name.startswith(".")], (
        "a killed run left a finished run")

    resumed = subprocess.run([*cmd, "--output-dir", str(out)], env=env, capture_output=True,
                             text=True, timeout=600, check=True)
    cached = int(re.search(r"Cached requests: (\d+)", resumed.stderr).group(1))
    assert cached >= done_before - 1  # the last write may not have been committed at the kill

    fresh = subprocess.run([*cmd, "--no-cache", "--output-dir", str(tmp_path / "fresh")], env=env,
                           capture_output=True, text=True, timeout=600, check=True)
    assert fresh.returncode == 0
    (resumed_dir,) = [p for p in out.glob("*/*") if not p.name.startswith(".")]
    (fresh_dir,) = list((tmp_path / "fresh").glob("*/*"))
    assert load_run(resumed_dir)[1]["scores"] == load_run(fresh_dir)[1]["scores"]
    a = read_jsonl(resumed_dir / "items" / "gsm8k@base.jsonl")
    b = read_jsonl(fresh_dir / "items" / "gsm8k@base.jsonl")
    assert [(x["item_id"], x["output"]) for x in a] == [(x["item_id"], x["output"]) for x in b]
