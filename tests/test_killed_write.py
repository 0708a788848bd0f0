"""A run write killed on the way never leaves its hidden `.partial` folder behind for good.

The writer locks a file inside its partial folder until the rename; the next write into the same
model folder removes partial folders whose lock is free (their writer died), and leaves a live
writer's folder alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_builder import write_test_run

from kanana_eval.results.writer import UNLOCKED_GRACE_S, remove_stale_partials

RUN_ID = "20260101T000000Z-00000000"
TESTS = Path(__file__).parent

# A writer that stops for good once its items are written: it has made and locked its partial
# folder, and signals that by creating `ready`.
_BLOCKED_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import kanana_eval.results.writer as writer
from run_builder import write_test_run

def blocked(path, obj, kind=None):
    Path(sys.argv[3]).write_text("ready")
    time.sleep(3600)

writer.write_json = blocked
write_test_run(Path(sys.argv[2]), {"gsm8k@base": [1.0, 0.0]}, run_id=sys.argv[4])
"""


def _wait_for(path: Path, process: subprocess.Popen, limit_s: float = 300.0) -> None:
    """Until `path` exists; fails if the process ends first (a load-proof, generous limit)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the writer never reached its write"
        time.sleep(0.05)


def test_a_killed_writers_partial_folder_is_removed_by_the_next_write(tmp_path, capsys):
    ready = tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", _BLOCKED_WRITER, str(TESTS), str(tmp_path),
                               str(ready), RUN_ID], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(ready, writer)
        partial = tmp_path / "ckpt" / f".{RUN_ID}.partial"
        assert partial.is_dir()
        assert remove_stale_partials(tmp_path / "ckpt") == []  # its writer is alive: kept
        assert partial.is_dir()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate()
    assert partial.is_dir()  # the kill left it behind
    capsys.readouterr()
    other = write_test_run(tmp_path, {"gsm8k@base": [1.0]}, run_id="20260102T000000Z-11111111")
    assert not partial.exists()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [other.name]
    warned = capsys.readouterr().err
    assert f".{RUN_ID}.partial" in warned and "killed" in warned


def test_an_unlocked_partial_folder_is_removed_only_once_it_is_old(tmp_path):
    model_dir = tmp_path / "ckpt"
    old, fresh = model_dir / ".old.partial", model_dir / ".fresh.partial"
    for folder in (old, fresh):  # as a writer killed between mkdir and lock would leave them
        folder.mkdir(parents=True)
    long_ago = time.time() - UNLOCKED_GRACE_S - 60
    os.utime(old, (long_ago, long_ago))
    assert remove_stale_partials(model_dir) == [old]
    assert not old.exists() and fresh.is_dir()
