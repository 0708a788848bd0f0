"""A batch size from free memory and the batch's real layout, so a run is never killed for memory.

lm-eval's `--batch_size auto` finds the largest batch by provoking an out-of-memory error, which
works on a GPU (CUDA raises) but not on a CPU: there the kernel kills the process instead (seen at
22 GB for Gemma-3-270m on 60 MMLU questions). Here every batch is sized before its forward from
what that forward allocates in the layout it runs in (`Layout`): right-padded rows on a shared
cached prefix (the path of sliding-window models), suffixes packed in one row, or decoding steps
on per-row caches. The estimate counts the KV cache each layer keeps (a sliding-window layer
keeps only its window of the prefix), the activations of the new tokens, the attention's
query-key pairs, the packed path's block mask, and the logits of the kept positions in the
model's and the softmax's dtype (a 262k vocabulary makes these the largest item when many
positions are kept). It is checked against measured peaks of SmolLM2 and Gemma-3-270m
(tests/test_batch_memory.py, within 1.3x), and compared with the memory that is free now, the
tightest cgroup limit over the process included, before every batch.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
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
_MIB = 1 << 20


class Layout(str, Enum):
    """How the rows of one forward are laid out; each allocates differently."""

    PADDED = "padded"  # rows right-padded to the longest, each on a copy of a shared prefix cache
    PACKED = "packed"  # the rows' suffixes end to end in one row on the prefix, with a block mask
    DECODE = "decode"  # one new token per row on each row's own cache (generation)


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
    sliding_window: int | None = None  # tokens a sliding-window layer keeps
    sliding_layers: int = 0  # how many of the layers slide

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "n_embd", 0) or 1024)
        heads = int(getattr(text, "num_attention_heads", 0) or getattr(text, "n_head", 0) or 16)
        kv_heads = int(getattr(text, "num_key_value_heads", 0) or heads)
        head_dim = int(getattr(text, "head_dim", 0) or hidden // heads)
        layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layer", 0) or 32)
        window = getattr(text, "sliding_window", None)
        types = getattr(text, "layer_types", None) or []
        if not window or getattr(text, "use_sliding_window", True) is False:
            window, sliding = None, 0
        else:
            sliding = (sum(1 for t in types if t != "full_attention") if types else layers)
        return cls(
            layers=layers, hidden=hidden,
            intermediate=int(getattr(text, "intermediate_size", 0) or 4 * hidden),
            heads=heads, kv_heads=kv_heads, head_dim=head_dim,
            vocab=int(getattr(text, "vocab_size", 0) or 32000),
            sliding_window=int(window) if window else None, sliding_layers=sliding,
        )

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Keys and values of every layer for one token."""
        return self.layers * self.kv_layer_bytes(dtype_bytes)

    def kv_layer_bytes(self, dtype_bytes: int) -> int:
        """Keys and values of one layer for one token."""
        return 2 * self.kv_heads * self.head_dim * dtype_bytes

    def cache_tokens(self, cached: int, new: int) -> int:
        """Layer-tokens one row's cache holds after a forward of `new` tokens on `cached`.

        A sliding-window layer's cache keeps only its last window - 1 tokens of the prefix, then
        appends the new ones (the kept slice is a view of that concatenation, so all of it stays
        alive); a full-attention layer keeps everything.
        """
        full = (self.layers - self.sliding_layers) * (cached + new)
        if not self.sliding_layers or self.sliding_window is None:
            return full
        return full + self.sliding_layers * (min(cached, self.sliding_window - 1) + new)

    def activation_floats_per_token(self) -> int:
        """Live activations per new token of one layer at its peak: the residual and the normed
        input, the MLP's gate/up/act, the queries and the attention output (one layer is live at
        a time, no gradients). Six hidden-sized buffers were counted before; measured over five
        processes each, that over-estimated SmolLM2's and Gemma's padded batches by 1.3-1.9x."""
        return 2 * self.hidden + 3 * self.intermediate + 2 * self.heads * self.head_dim

    def activation_bytes(self, tokens: int, attended: int, dtype_bytes: int) -> int:
        """Peak live activations of one row whose `tokens` queries attend to `attended` keys.

        The attention term counts a quarter of a score per query-key pair and head: the CPU
        kernels work in tiles and never hold the whole score matrix, but the mask and the tiles
        grow with the pairs (fitted on SmolLM2 and Gemma-3-270m, tests/test_batch_memory.py).
        """
        scores = self.heads * tokens * attended // 4
        return (tokens * self.activation_floats_per_token() + scores) * dtype_bytes


def batch_bytes(shape: ModelShape, layout: Layout, rows: int, *, cached: int, new: int,
                kept: int, dtype_bytes: int, softmax_bytes: int = 4) -> int:
    """What one forward of `rows` rows allocates beyond the weights and a cache it starts from.

    `cached` is the shared prefix (PADDED, PACKED) or each row's own cache (DECODE); `new` the
    new tokens of the longest row (1 when decoding); `kept` the positions per row whose logits
    are projected. A shared prefix's own cache was allocated by the forward that built it and is
    not counted again; what each forward adds is counted:

    * PADDED: every row's copy of the cache (prefix + new tokens, a sliding layer only its
      window of the prefix), the key/value heads repeated for the query heads in one layer, the
      activations and attention pairs of rows x new tokens;
    * PACKED: one row of rows x new tokens on the prefix: its cache, activations, pairs, and the
      block mask (in the model's dtype plus the boolean it is built from);
    * DECODE: every row's cache and its copy while a layer concatenates one token, and the
      last-position logits.

    Logits: the kept positions x vocabulary, once in the model's dtype (the projection) and once
    in the softmax dtype (the log-softmax), the largest item for a 262k vocabulary.
    """
    rows = max(1, rows)
    kv_layer = shape.kv_layer_bytes(dtype_bytes)
    repeated = 2 * shape.heads * shape.head_dim * dtype_bytes  # one layer's k/v per query head
    logits = rows * max(1, kept) * shape.vocab * (dtype_bytes + softmax_bytes)
    if layout is Layout.DECODE:
        cache = rows * shape.cache_tokens(cached, new) * kv_layer
        step = rows * (cached + new) * (kv_layer + repeated)  # one layer's concatenation
        return cache + step + shape.activation_bytes(rows * new, cached + new, dtype_bytes) + logits
    if layout is Layout.PACKED:
        tokens = rows * new
        keys = cached + tokens
        cache = shape.cache_tokens(cached, tokens) * kv_layer
        mask = tokens * keys * (dtype_bytes + 1)
        return (cache + keys * repeated + mask
                + shape.activation_bytes(tokens, keys, dtype_bytes) + logits)
    keys = cached + new
    cache = rows * shape.cache_tokens(cached, new) * kv_layer if cached else 0
    return (cache + rows * keys * repeated
            + rows * shape.activation_bytes(new, keys, dtype_bytes) + logits)


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


def _reclaimable(folder: Path, stat_keys: tuple[str, ...]) -> int:
    """Inactive file cache the kernel drops before it would kill (0 if memory.stat says nothing).

    A cgroup's usage counts the page cache of every file read (datasets, the weights' file):
    without this, a run that had read a few files would see its headroom gone and fall back to
    one row although the kernel frees that cache on demand.
    """
    try:
        lines = (folder / "memory.stat").read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(" ", 1) for line in lines if " " in line)
    for key in stat_keys:
        value = values.get(key, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def _headroom(folder: Path, limit_file: str, usage_file: str,
              stat_keys: tuple[str, ...] = ()) -> int | None:
    """limit - (usage - reclaimable cache) in one cgroup folder; None when it sets no limit."""
    try:
        raw = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    if not raw.isdigit() or int(raw) >= 1 << 60:  # v2 "max"; v1 writes "unlimited" as ~2**63
        return None
    used = max(0, usage - _reclaimable(folder, stat_keys)) if stat_keys else usage
    return max(0, int(raw) - used)


def cgroup_available(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Bytes left under the tightest cgroup v2 (or v1) memory limit over the process, if any.

    The limit can sit on the process's own cgroup or on any parent (a container, a systemd
    slice), so the process's cgroup is found in `proc_cgroup` and every level from it up to
    `root` is read; the smallest headroom wins. `root` is where the cgroup filesystem is
    mounted; both are parameters so tests can hand them a folder.
    """
    best: int | None = None
    for subdir, controller, limit_file, usage_file, stat_keys in (
            ("", None, "memory.max", "memory.current", ("inactive_file",)),
            ("memory", "memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
             ("total_inactive_file", "inactive_file"))):
        base = root / subdir if subdir else root
        if not base.is_dir():
            continue
        own = _own_cgroup(proc_cgroup, controller).strip("/")
        folders = [base]
        if own:
            parts = own.split("/")
            folders += [base.joinpath(*parts[:n]) for n in range(1, len(parts) + 1)]
        for folder in folders:
            room = _headroom(folder, limit_file, usage_file, stat_keys)
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


def fit_rows(cost: Callable[[int], int], free: int, *, cap: int, fixed: int = 0,
             safety: float = DEFAULT_SAFETY) -> int:
    """The most rows (at least 1, at most `cap`) whose `cost(rows)` fits in `safety` of `free`
    after `fixed` bytes. `cost` grows with rows (the packed mask grows with their square)."""
    budget = int(free * safety) - fixed
    low, high = 1, max(1, cap)
    if cost(high) <= budget:
        return high
    while low < high:  # the largest r with cost(r) <= budget; 1 when even that does not fit
        middle = (low + high + 1) // 2
        if cost(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class BatchPlanner:
    """Chooses batch sizes for one engine: a fixed size when the user gave one, else from memory.

    Asked before every batch, so a batch shrinks when memory got scarcer since the last one.
    `chosen` remembers, per kind of request, the smallest and largest batch chosen, how many
    decisions were made and the largest estimate, so the manifest can show them.
    `free_memory` is how free memory is measured (a parameter so tests can give a fixed amount).
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

    def estimate(self, layout: Layout, rows: int, *, cached_tokens: int, new_tokens: int,
                 kept_logits: int) -> int:
        """Bytes one forward of `rows` rows in `layout` allocates (see `batch_bytes`)."""
        return batch_bytes(self.shape, layout, rows, cached=cached_tokens, new=new_tokens,
                           kept=kept_logits, dtype_bytes=self.dtype_bytes)

    def choose(self, kind: str, *, cached_tokens: int, new_tokens: int, kept_logits: int,
               layout: Layout = Layout.PADDED, fixed: int = 0) -> int:
        """Rows for the next batch of `kind` in `layout`: the fixed size, or what fits now."""
        if self.fixed_size is not None:
            return self.fixed_size

        def cost(rows: int) -> int:
            return self.estimate(layout, rows, cached_tokens=cached_tokens,
                                 new_tokens=new_tokens, kept_logits=kept_logits)

        size = fit_rows(cost, self.free_memory(self.device), fixed=fixed,
                        cap=self.cap or max_batch_for(self.device), safety=self.safety)
        record = self.chosen.setdefault(kind, {"min": size, "max": size, "decisions": 0,
                                               "max_estimate_mib": 0})
        record["min"], record["max"] = min(record["min"], size), max(record["max"], size)
        record["decisions"] += 1
        record["max_estimate_mib"] = max(record["max_estimate_mib"],
                                         round((cost(size) + fixed) / _MIB))
        return size

    def describe(self) -> dict[str, Any]:
        """The record the manifest keeps: mode, bounds, decisions, and the process's peak."""
        return {"mode": "fixed" if self.fixed_size is not None else "memory",
                "fixed_size": self.fixed_size, "cap": self.cap or max_batch_for(self.device),
                "safety": self.safety, "chosen": self.chosen,
                "peak_rss_mib": round(peak_rss_bytes() / _MIB)}
