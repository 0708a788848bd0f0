"""A memory cgroup a test creates for one child process, on cgroup v1 or v2, and removes after.

The kernel enforces the limit: a child that goes past it is killed by the OOM killer, which is
what the memory test must show never happens. v1 (a `memory` controller hierarchy, as on this
machine) and v2 (the unified hierarchy, `memory.max`) are both handled; the folder is named
after the test process so parallel sessions never share one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupUnavailable(RuntimeError):
    """No memory cgroup can be created here (not root, no memory controller, read-only fs)."""


@dataclass
class MemoryCgroup:
    """One child cgroup with a memory limit; `enter` is given to Popen as `preexec_fn`."""

    folder: Path
    version: int
    limit: int

    @classmethod
    def create(cls, limit: int, *, root: Path = CGROUP_ROOT, name: str | None = None,
               ) -> MemoryCgroup:
        """Create `name` (default kanana-test-<pid>) under the memory hierarchy, limited."""
        name = name or f"kanana-test-{os.getpid()}"
        v1 = root / "memory"
        if (v1 / "memory.limit_in_bytes").is_file():
            group = cls(v1 / name, 1, limit)
            limit_file = "memory.limit_in_bytes"
        elif "memory" in _read(root / "cgroup.controllers").split():
            if "memory" not in _read(root / "cgroup.subtree_control").split():
                _write(root / "cgroup.subtree_control", "+memory")
            group = cls(root / name, 2, limit)
            limit_file = "memory.max"
        else:
            raise CgroupUnavailable(f"no memory controller under {root}")
        try:
            group.folder.mkdir(exist_ok=True)
            _write(group.folder / limit_file, str(limit))
            if group.version == 2 and (group.folder / "memory.swap.max").exists():
                _write(group.folder / "memory.swap.max", "0")  # the limit means RAM, not swap
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cannot set up {group.folder}: {exc}") from exc
        return group

    def enter(self) -> None:
        """Move the calling process into the cgroup (run in the child, before exec)."""
        _write(self.folder / "cgroup.procs", str(os.getpid()))

    def peak_bytes(self) -> int | None:
        """The highest usage the cgroup reached (v1 max_usage_in_bytes, v2 memory.peak)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        text = _read(self.folder / name).strip()
        return int(text) if text.isdigit() else None

    def oom_kills(self) -> int:
        """Processes the OOM killer ended inside the cgroup (0 when the kernel does not say)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in _read(self.folder / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self) -> None:
        """Remove the folder once its processes are gone (retried: the kernel lags a little)."""
        for _ in range(50):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)
