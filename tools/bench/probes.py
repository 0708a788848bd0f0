"""What a timed piece reads besides its wall time: tokens fed, peak memory, others' CPU use.

Everything is read from what happened (a forward pre-hook, /proc/self/status, /proc/stat), never
re-derived, so the bench reports what the model and the machine actually did.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_PAD_ID = 0  # lm-eval's HFLM right-pads log-likelihood batches with zeros and passes no mask


@dataclass
class TokenCounter:
    """Counts what a torch model is fed, through a forward pre-hook (so nothing is re-derived).

    `rows` holds the non-padding length of every sequence of every forward: from the attention
    mask when one is passed, else the row minus its trailing pad ids (lm-eval's log-likelihood
    batches are right-padded with 0 and carry no mask; a real row ending in id 0 would be
    undercounted by those tokens). `positions` counts padded positions too: what was computed.
    """

    rows: list[int] = field(default_factory=list)
    positions: int = 0
    forwards: int = 0
    forward_seconds: float = 0.0  # wall time inside the model's forwards: the rest is overhead
    _handles: list[Any] = field(default_factory=list)
    _started: float | None = None

    @property
    def tokens(self) -> int:
        """Non-padding tokens fed over all forwards."""
        return sum(self.rows)

    def _hook(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._started = time.perf_counter()
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None or getattr(ids, "dim", lambda: 0)() != 2:
            return
        batch, length = ids.shape
        self.forwards += 1
        self.positions += batch * length
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 4:  # a packed row (block mask): all are tokens
            self.rows.extend([length] * batch)
            return
        if mask is not None:
            self.rows.extend(int(n) for n in mask[:, -length:].sum(dim=1).tolist())
            return
        for row in ids.tolist():
            n = len(row)
            while n > 0 and row[n - 1] == _PAD_ID:
                n -= 1
            self.rows.append(n)

    def _done(self, _module: Any, _args: Any, _output: Any) -> None:
        if self._started is not None:
            self.forward_seconds += time.perf_counter() - self._started
            self._started = None

    def attach(self, model: Any) -> TokenCounter:
        """Start counting `model`'s forwards (until `detach`)."""
        self._handles = [model.register_forward_pre_hook(self._hook, with_kwargs=True),
                         model.register_forward_hook(self._done)]
        return self

    def detach(self) -> None:
        """Stop counting: later forwards add nothing."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _status_kib(name: str) -> int | None:
    """A `VmXxx:  N kB` line of /proc/self/status (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next phase's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def peak_rss_kib(resettable: bool) -> tuple[int, str]:
    """(peak resident KiB, its source): VmHWM since the reset, else the lifetime ru_maxrss."""
    if resettable:
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm, "VmHWM"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "ru_maxrss"


def machine_busy_seconds() -> float | None:
    """CPU seconds every process of the machine has run so far (/proc/stat; None off Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # user nice system idle iowait irq softirq steal; guests are counted in user
    busy = sum(fields[:8]) - idle
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process has used (to subtract from the machine's)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class PhaseLog:
    """Wall time, peak resident memory and other processes' CPU use of each phase, in order.

    A phase run in several pieces (the log-likelihood sides alternate subject by subject) is
    one record: wall times and other processes' CPU seconds add up, the peak is the highest.
    `others_cores` is the CPU the rest of the machine used meanwhile, in cores: on a shared
    machine it tells which timings were taken under someone else's load.
    """

    phases: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Measure one piece of phase `name`; the yielded dict holds its figures afterwards."""
        resettable = reset_peak_rss()
        start = _status_kib("VmRSS")
        piece: dict[str, Any] = {"phase": name}
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        started = time.perf_counter()
        try:
            yield piece
        finally:
            wall = time.perf_counter() - started
            peak, source = peak_rss_kib(resettable)
            busy_after = machine_busy_seconds()
            others = (max(0.0, (busy_after - busy) - (own_cpu_seconds() - own))
                      if busy is not None and busy_after is not None else None)
            piece.update(wall_s=wall,
                         rss_start_mib=round(start / 1024, 1) if start is not None else None,
                         peak_rss_mib=round(peak / 1024, 1), peak_source=source,
                         others_cpu_s=others)
            self._merge(piece)

    def _merge(self, piece: dict[str, Any]) -> None:
        record = next((r for r in self.phases if r["phase"] == piece["phase"]), None)
        if record is None:
            record = {**piece, "pieces": 0, "wall_s": 0.0,
                      "others_cpu_s": None if piece["others_cpu_s"] is None else 0.0}
            self.phases.append(record)
        record["pieces"] += 1
        record["wall_s"] = round(record["wall_s"] + piece["wall_s"], 3)
        record["peak_rss_mib"] = max(record["peak_rss_mib"], piece["peak_rss_mib"])
        if record["others_cpu_s"] is not None and piece["others_cpu_s"] is not None:
            record["others_cpu_s"] = round(record["others_cpu_s"] + piece["others_cpu_s"], 2)
        record["others_cores"] = (round(record["others_cpu_s"] / record["wall_s"], 2)
                                  if record["others_cpu_s"] is not None and record["wall_s"] > 0
                                  else None)

    def get(self, name: str) -> dict[str, Any]:
        """The record of phase `name` (all its pieces merged)."""
        return next(r for r in self.phases if r["phase"] == name)
