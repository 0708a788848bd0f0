"""A batch size from free memory and sequence length, so a run is never killed for memory.

lm-eval's `--batch_size auto` finds the largest batch by provoking an out-of-memory error, which
works on a GPU (CUDA raises) but not on a CPU: there the kernel kills the process instead (seen at
24 GB on this machine). Here the batch is computed before any forward from what one row costs:
its KV cache, the activations of the widest layer and the logits that are kept, against the
memory that is free now (the cgroup limit included), with a safety margin for the allocator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

# Fraction of the free memory a batch may use: the rest covers allocator slack, temporaries
# that the estimate does not model, and whatever else runs on the machine.
DEFAULT_SAFETY = 0.5
CPU_MAX_BATCH = 16  # beyond this a CPU forward gains little and a decoding step only waits longer
GPU_MAX_BATCH = 64
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a decoder config that decide its memory per token."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 1024)
        heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 16)
        kv_heads = int(getattr(text, "num_key_value_heads", 0) or heads)
        head_dim = int(getattr(text, "head_dim", 0) or hidden // heads)
        return cls(
            layers=int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0) or 32),
            hidden=hidden,
            intermediate=int(getattr(text, "intermediate_size", 0) or 4 * hidden),
            heads=heads, kv_heads=kv_heads, head_dim=head_dim,
            vocab=int(getattr(text, "vocab_size", 0) or 32000),
        )

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Keys and values of every layer for one token."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def activation_bytes(self, tokens: int, attended: int, dtype_bytes: int) -> int:
        """Peak live activations of one row whose `tokens` queries attend to `attended` keys.

        One layer is live at a time (no gradients): residual, norms, q/k/v/o projections, the
        MLP's gate/up/act, and the attention scores if the kernel materialises them.
        """
        per_token = 6 * self.hidden + 3 * self.intermediate + 2 * self.heads * self.head_dim
        scores = self.heads * tokens * attended
        return (tokens * per_token + scores) * dtype_bytes


def row_bytes(shape: ModelShape, *, cached_tokens: int, new_tokens: int, kept_logits: int,
              dtype_bytes: int, cache_copies: int = 2) -> int:
    """Memory one row of a batch needs: KV cache (with the copy a concatenation makes),
    activations of its new tokens, and fp32 logits plus their log-softmax for the kept positions."""
    total_tokens = cached_tokens + new_tokens
    kv = cache_copies * shape.kv_bytes_per_token(dtype_bytes) * total_tokens
    act = shape.activation_bytes(max(1, new_tokens), total_tokens, dtype_bytes)
    logits = 3 * max(1, kept_logits) * shape.vocab * 4
    return kv + act + logits


def _own_cgroup(proc_cgroup: Path, controller: str | None) -> str:
    """The process's cgroup path from /proc/self/cgroup: the v2 line (`0::/path`) when
    `controller` is None, else the v1 line naming that controller; "/" when absent."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if controller is None and hierarchy == "0" and controllers == "":
            return path or "/"
        if controller is not None and controller in controllers.split(","):
            return path or "/"
    return "/"


def _headroom(folder: Path, limit_file: str, usage_file: str) -> int | None:
    """limit - usage in one cgroup folder; None when it sets no limit (or cannot be read)."""
    try:
        raw = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    if not raw.isdigit() or int(raw) >= 1 << 60:  # v2 "max"; v1 writes "unlimited" as ~2**63
        return None
    return max(0, int(raw) - usage)


def cgroup_available(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Bytes left under the tightest cgroup v2 (or v1) memory limit over the process, if any.

    The limit can sit on the process's own cgroup or on any parent (a container, a systemd
    slice), so the process's cgroup is found in `proc_cgroup` and every level from it up to
    `root` is read; the smallest headroom wins. `root` is where the cgroup filesystem is
    mounted; both are parameters so tests can hand them a folder.
    """
    best: int | None = None
    for subdir, controller, limit_file, usage_file in (
            ("", None, "memory.max", "memory.current"),
            ("memory", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")):
        base = root / subdir if subdir else root
        if not base.is_dir():
            continue
        own = _own_cgroup(proc_cgroup, controller).strip("/")
        folders = [base]
        if own:
            parts = own.split("/")
            folders += [base.joinpath(*parts[:n]) for n in range(1, len(parts) + 1)]
        for folder in folders:
            room = _headroom(folder, limit_file, usage_file)
            if room is not None:
                best = room if best is None else min(best, room)
        if best is not None:
            return best
    return best


def available_bytes(device: str, *, cgroup_root: Path = CGROUP_ROOT,
                    proc_cgroup: Path = PROC_CGROUP) -> int:
    """Memory a new allocation can use now: CUDA's free memory, or the host's (cgroup-aware)."""
    if device.startswith("cuda"):

        index = torch.device(device).index
        free, _total = torch.cuda.mem_get_info(
            index if index is not None else torch.cuda.current_device())
        return int(free)

    free = int(psutil.virtual_memory().available)
    limited = cgroup_available(cgroup_root, proc_cgroup)
    return min(free, limited) if limited is not None else free


def max_batch_for(device: str) -> int:
    """The largest batch worth running on the device, whatever memory allows."""
    return GPU_MAX_BATCH if device.startswith("cuda") else CPU_MAX_BATCH


def fit_batch(per_row: int, free: int, *, cap: int, fixed: int = 0,
              safety: float = DEFAULT_SAFETY) -> int:
    """Rows that fit in `safety` of `free` after `fixed` bytes; at least 1, at most `cap`."""
    budget = int(free * safety) - fixed
    if per_row <= 0:
        return cap
    return max(1, min(cap, budget // per_row))


@dataclass
class BatchPlanner:
    """Chooses batch sizes for one engine: a fixed size when the user gave one, else from memory.

    `chosen` remembers, per kind of request, the smallest and largest batch chosen and how many
    decisions were made, so the manifest can show them. `free_memory` is how free memory is
    measured (a parameter so tests can give a fixed amount).
    """

    shape: ModelShape
    dtype_bytes: int
    device: str
    fixed_size: int | None = None
    cap: int | None = None
    safety: float = DEFAULT_SAFETY
    free_memory: Callable[[str], int] = field(default=available_bytes, repr=False)

    def __post_init__(self) -> None:
        self.chosen: dict[str, dict[str, int]] = {}

    def choose(self, kind: str, *, cached_tokens: int, new_tokens: int, kept_logits: int,
               fixed: int = 0) -> int:
        if self.fixed_size is not None:
            return self.fixed_size
        per_row = row_bytes(self.shape, cached_tokens=cached_tokens, new_tokens=new_tokens,
                            kept_logits=kept_logits, dtype_bytes=self.dtype_bytes)
        size = fit_batch(per_row, self.free_memory(self.device), fixed=fixed,
                         cap=self.cap or max_batch_for(self.device), safety=self.safety)
        record = self.chosen.setdefault(kind, {"min": size, "max": size, "decisions": 0})
        record["min"], record["max"] = min(record["min"], size), max(record["max"], size)
        record["decisions"] += 1
        return size

    def describe(self) -> dict[str, Any]:
        return {"mode": "fixed" if self.fixed_size is not None else "memory",
                "fixed_size": self.fixed_size, "cap": self.cap or max_batch_for(self.device),
                "safety": self.safety, "chosen": self.chosen}
