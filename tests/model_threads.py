"""One torch thread for the model tests that compare two engines.

Agreement and identity do not depend on it (both sides run alike), and on a shared 2-core machine
two OpenMP threads per process that compete with other processes wait on each other: forwards and
decoding were measured 10-100x slower than with one thread while another job ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch  # noqa: PLC0415 - heavy: conftest imports this module in every session

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
