"""Load every core of the machine for the length of a `with` block (fidelity tests under load).

Busy processes, one per CPU, at the harness's own priority; each stops by itself after a cap
even if the test dies without cleaning up, and all are killed when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

CAP_S = 1200  # a busy process never outlives this, whatever happens to the test

_BUSY = ("import time\nend = time.monotonic() + {cap}\nx = 0\n"
         "while time.monotonic() < end:\n    x = (x * 7 + 1) % 1000003\n")


@contextlib.contextmanager
def every_core_busy(extra: int = 1) -> Iterator[int]:
    """One busy process per CPU, plus `extra`; yields how many run."""
    count = (os.cpu_count() or 1) + extra
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY.format(cap=CAP_S)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
             for _ in range(count)]
    try:
        yield count
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
