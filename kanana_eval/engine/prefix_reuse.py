"""Log-likelihood requests that share a long token prefix: the prefix is computed once.

In 5-shot MMLU about 85% of the tokens lm-eval feeds are the same few-shot prefix, repeated for
every question. Here the rows a causal LM must see are planned from the token sequences alone
(no task names): sorted, each row's longest common prefix (LCP) with its neighbour gives a tree
of shared prefixes, and the grouping that saves the most tokens is chosen from it. A group's
prefix runs once with its KV cache kept; the rest of every row runs on top of that cache,
the suffixes packed end to end in one sequence with a block mask (no padding, only scored
positions projected; full-attention models) or else batched with right padding, and the
log-probabilities are gathered exactly as lm-eval's HFLM does (same
left-truncation, same one-forward-per-identical-row lookup, same greedy check).

Rows without a worthwhile shared prefix are batched like lm-eval's, but only the positions that
are scored are projected onto the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from kanana_eval.engine.model_runner import ModelRunner

# A shared prefix shorter than this is not worth a separate forward and a cache copy.
DEFAULT_MIN_PREFIX = 16
# Token-equivalents one group costs beyond its rows (the extra forward, copying its cache).
GROUP_OVERHEAD = 8
# Most suffix tokens packed into one row: its block mask is (this) x (prefix + this) entries.
PACKED_TOKENS = 2048


@dataclass
class Row:
    """One distinct token row the model is fed, and what is scored on it."""

    tokens: tuple[int, ...]
    limit: int  # first scored position: a shared prefix must end at or before it
    requests: list[int] = field(default_factory=list)  # indices into the call's requests


@dataclass(frozen=True)
class Group:
    """Rows (indices into the row list) that run on one shared prefix of `prefix` tokens."""

    prefix: int
    rows: tuple[int, ...]


def fed_row(context: Sequence[int], continuation: Sequence[int],
            max_length: int) -> tuple[int, ...]:
    """The tokens HFLM feeds for a request: left-truncated to max_length + 1, last one dropped."""
    return tuple((list(context) + list(continuation))[-(max_length + 1):][:-1])


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build_rows(requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
               max_length: int) -> list[Row]:
    """Distinct fed rows; requests with the same row share one forward, as in HFLM's lookup."""
    rows: dict[tuple[int, ...], Row] = {}
    for index, (_key, context, continuation) in enumerate(requests):
        tokens = fed_row(context, continuation, max_length)
        first_scored = len(tokens) - len(continuation)
        row = rows.get(tokens)
        if row is None:
            row = rows[tokens] = Row(tokens, first_scored)
        row.limit = min(row.limit, first_scored)
        row.requests.append(index)
    return list(rows.values())


def plan_groups(rows: Sequence[Sequence[int]], limits: Sequence[int], *,
                min_prefix: int = DEFAULT_MIN_PREFIX,
                overhead: int = GROUP_OVERHEAD) -> list[Group]:
    """Groups of rows sharing a prefix, chosen to save the most recomputed tokens.

    Sorted rows form a Cartesian tree over their neighbours' shared prefixes (capped by each
    row's limit): a node is a contiguous run whose common prefix is the smallest LCP inside it.
    Keeping a run whole saves (rows - 1) x prefix tokens; splitting it at that smallest LCP can
    save more when its parts share longer prefixes (e.g. a common instruction, then per-subject
    few-shot examples). The best choice is found bottom-up in O(n). Rows in no group come back
    as groups with prefix 0.
    """
    order = sorted(range(len(rows)), key=lambda i: tuple(rows[i]))
    n = len(order)
    if n == 0:
        return []
    lcp = [min(common_prefix(rows[order[k]], rows[order[k + 1]]),
               limits[order[k]], limits[order[k + 1]]) for k in range(n - 1)]
    runs = _best_runs(lcp, min_prefix, overhead)
    groups: list[Group] = []
    covered = [False] * n
    for lo, hi, prefix in runs:
        groups.append(Group(prefix, tuple(order[lo:hi + 1])))
        for k in range(lo, hi + 1):
            covered[k] = True
    loose = tuple(order[k] for k in range(n) if not covered[k])
    if loose:
        groups.append(Group(0, loose))
    return groups


def _best_runs(lcp: Sequence[int], min_prefix: int, overhead: int) -> list[tuple[int, int, int]]:
    """(first row, last row, prefix) of the chosen runs, over a Cartesian tree of `lcp`."""
    m = len(lcp)
    if m == 0:
        return []
    left = [-1] * m
    right = [-1] * m
    stack: list[int] = []
    for k in range(m):  # min-rooted Cartesian tree; ties keep the leftmost as the parent
        last = -1
        while stack and lcp[stack[-1]] > lcp[k]:
            last = stack.pop()
        left[k] = last
        if stack:
            right[stack[-1]] = k
        stack.append(k)
    root = stack[0]
    # Node k spans rows [lo, hi]; its left child spans [lo, k], its right child [k + 1, hi].
    span: dict[int, tuple[int, int]] = {root: (0, m)}
    post: list[int] = []
    todo = [root]
    while todo:
        k = todo.pop()
        post.append(k)
        lo, hi = span[k]
        if left[k] != -1:
            span[left[k]] = (lo, k)
            todo.append(left[k])
        if right[k] != -1:
            span[right[k]] = (k + 1, hi)
            todo.append(right[k])
    best: dict[int, int] = {}
    whole: dict[int, bool] = {}
    for k in reversed(post):  # children before parents
        lo, hi = span[k]
        keep = (hi - lo) * lcp[k] - overhead if lcp[k] >= min_prefix else -1
        split = (best[left[k]] if left[k] != -1 else 0) + (best[right[k]] if right[k] != -1 else 0)
        whole[k] = keep > 0 and keep >= split
        best[k] = keep if whole[k] else split
    runs: list[tuple[int, int, int]] = []
    todo = [root]
    while todo:
        k = todo.pop()
        lo, hi = span[k]
        if whole[k]:
            runs.append((lo, hi, lcp[k]))
            continue
        todo.extend(c for c in (left[k], right[k]) if c != -1)
    return sorted(runs)


@dataclass
class ScoreStats:
    """What one call computed: rows, groups, and tokens fed versus a plain full-row forward."""

    requests: int = 0
    rows: int = 0
    groups: int = 0
    grouped_rows: int = 0
    tokens_fed: int = 0
    tokens_plain: int = 0

    def add(self, other: ScoreStats) -> None:
        for name in ("requests", "rows", "groups", "grouped_rows", "tokens_fed", "tokens_plain"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def score_requests(
    runner: ModelRunner,
    requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
    *,
    max_length: int,
    batch_size: Callable[[int, int, int], int],
    reuse: bool,
    min_prefix: int = DEFAULT_MIN_PREFIX,
    on_result: Callable[[int, tuple[float, bool]], None] | None = None,
) -> tuple[list[tuple[float, bool]], ScoreStats]:
    """(log-likelihood, is_greedy) for each (key, context tokens, continuation tokens) request.

    `batch_size(prefix, suffix, kept)` gives the rows per forward for a group; `reuse=False` runs
    every row whole (no shared prefix) but otherwise the same way.
    """
    rows = build_rows(requests, max_length)
    stats = ScoreStats(requests=len(requests), rows=len(rows),
                       tokens_plain=sum(len(r.tokens) for r in rows))
    groups = (plan_groups([r.tokens for r in rows], [r.limit for r in rows], min_prefix=min_prefix)
              if reuse else [Group(0, tuple(range(len(rows))))])
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    # Longest rows first, as HFLM: a memory problem shows at once, not at the end.
    groups = sorted(groups, key=lambda g: -max(len(rows[i].tokens) for i in g.rows))
    for group in groups:
        if group.prefix:
            stats.groups += 1
            stats.grouped_rows += len(group.rows)
        stats.tokens_fed += _score_group(runner, requests, rows, group, batch_size, results,
                                         on_result)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None], stats


def _score_group(runner: ModelRunner, requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
                 rows: Sequence[Row], group: Group, batch_size: Callable[[int, int, int], int],
                 results: list[tuple[float, bool] | None],
                 on_result: Callable[[int, tuple[float, bool]], None] | None) -> int:
    """Run one group (prefix once, then its rows' suffixes in batches); returns tokens fed."""

    members = sorted(group.rows, key=lambda i: (-len(rows[i].tokens), rows[i].tokens))
    fed = 0
    cache = None
    if group.prefix:
        prefix = torch.tensor([rows[members[0]].tokens[:group.prefix]], dtype=torch.long,
                              device=runner.device)
        _, cache = runner.forward(prefix, use_cache=True, keep=1)
        fed += group.prefix
    widest_kept = max(len(rows[i].tokens) - rows[i].limit for i in members)
    packed = cache is not None and runner.can_pad_batches
    after_oom: int | None = None  # the size a GPU out-of-memory error left, never exceeded again
    start = 0
    while start < len(members):
        # asked before every batch, for the longest row left (rows run longest first): memory
        # that got scarcer since the last batch shrinks this one
        longest = len(rows[members[start]].tokens) - group.prefix
        size = max(1, batch_size(group.prefix, longest, widest_kept))
        if after_oom is not None:
            size = min(size, after_oom)
        chunk = members[start:start + size]
        if packed:  # the block mask grows with the square of the packed length: bound it
            chunk = _within_tokens(chunk, [len(rows[i].tokens) - group.prefix for i in chunk],
                                   PACKED_TOKENS)
        try:
            score = _score_packed if packed else _score_chunk
            fed += score(runner, requests, rows, chunk, group.prefix, cache, results, on_result)
        except Exception as exc:  # a GPU out of memory: halve the batch and retry this chunk
            if size == 1 or not runner.is_out_of_memory(exc):
                raise
            runner.release_memory()
            after_oom = max(1, size // 2)
            continue
        start += len(chunk)
    return fed


def _within_tokens(chunk: Sequence[int], lengths: Sequence[int], budget: int) -> list[int]:
    """The longest head of `chunk` whose lengths sum to at most `budget` (at least one row)."""
    total, taken = 0, []
    for index, length in zip(chunk, lengths, strict=True):
        if taken and total + length > budget:
            break
        taken.append(index)
        total += length
    return taken


def _score_chunk(runner: ModelRunner, requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
                 rows: Sequence[Row], chunk: Sequence[int], prefix: int, cache: Any,
                 results: list[tuple[float, bool] | None],
                 on_result: Callable[[int, tuple[float, bool]], None] | None) -> int:
    """One forward over the suffixes of `chunk`, right-padded with 0 as HFLM pads."""

    suffixes = [rows[i].tokens[prefix:] for i in chunk]
    width = max(len(s) for s in suffixes)
    batch = torch.zeros((len(chunk), width), dtype=torch.long)
    for r, suffix in enumerate(suffixes):
        batch[r, :len(suffix)] = torch.tensor(suffix, dtype=torch.long)
    # Scored positions of each row: from its first scored position to its end. Only these are
    # projected onto the vocabulary, whatever the padding between rows.
    spans = [(rows[i].limit - prefix, len(suffixes[r])) for r, i in enumerate(chunk)]
    row_index = torch.cat([torch.full((b - a,), r, dtype=torch.long)
                           for r, (a, b) in enumerate(spans)])
    positions = torch.cat([torch.arange(a, b) for a, b in spans])
    past = runner.expand_cache(cache, len(chunk)) if cache is not None else None
    logits, _ = runner.logits_at(batch.to(runner.device), row_index, positions, cache=past,
                                 use_cache=past is not None)
    _record_spans(requests, rows, chunk, spans, logits, runner.softmax_dtype, results, on_result)
    return sum(len(s) for s in suffixes)


def _score_packed(runner: ModelRunner, requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
                  rows: Sequence[Row], chunk: Sequence[int], prefix: int, cache: Any,
                  results: list[tuple[float, bool] | None],
                  on_result: Callable[[int, tuple[float, bool]], None] | None) -> int:
    """The suffixes of `chunk` packed end to end in one row on the prefix cache: no padding.

    Each suffix token attends to the prefix and to the earlier tokens of its own suffix (a 4-D
    mask), and takes the position it has in its full row, so every suffix computes what it would
    compute alone; only the scored positions are projected onto the vocabulary. Needs plain
    full-attention layers (`ModelRunner.can_pad_batches`): a sliding window counts slots.
    """

    suffixes = [rows[i].tokens[prefix:] for i in chunk]
    lengths = torch.tensor([len(s) for s in suffixes], dtype=torch.long)
    total = int(lengths.sum())
    ids = torch.tensor([[t for s in suffixes for t in s]], dtype=torch.long, device=runner.device)
    segment = torch.repeat_interleave(torch.arange(len(chunk)), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    local = torch.arange(total) - starts[segment]
    allowed = (segment[:, None] == segment[None, :]) & (local[None, :] <= local[:, None])
    allowed = torch.cat([torch.ones((total, prefix), dtype=torch.bool), allowed], dim=1)
    dtype = runner.mask_dtype
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    # Scored positions of each row: from its first scored position to its end.
    spans = [(int(starts[r]) + rows[i].limit - prefix, int(starts[r]) + len(suffixes[r]))
             for r, i in enumerate(chunk)]
    keep = torch.cat([torch.arange(a, b) for a, b in spans]).to(runner.device)
    past = runner.expand_cache(cache, 1)
    logits, _ = runner.forward(ids, cache=past, use_cache=True, keep=keep,
                               attention_mask=mask[None, None].to(runner.device),
                               position_ids=(prefix + local)[None].to(runner.device))
    _record_spans(requests, rows, chunk, spans, logits[0], runner.softmax_dtype, results,
                  on_result)
    return total


def _record_spans(requests: Sequence[tuple[Any, Sequence[int], Sequence[int]]],
                  rows: Sequence[Row], chunk: Sequence[int], spans: Sequence[tuple[int, int]],
                  logits: torch.Tensor, softmax_dtype: Any,
                  results: list[tuple[float, bool] | None],
                  on_result: Callable[[int, tuple[float, bool]], None] | None) -> None:
    """Each request's (log-likelihood, is_greedy) from logits at its row's scored span.

    `logits` holds, one after the other, the positions `spans[r]` of each row of `chunk`; a
    request's continuation of n tokens is scored by the last n positions of its row's span.
    """
    logprobs = F.log_softmax(logits, dim=-1, dtype=softmax_dtype)
    greedy = logprobs.argmax(dim=-1)
    offset = 0
    for (a, b), index in zip(spans, chunk, strict=True):
        end = offset + (b - a)  # the row's last position, in kept coordinates (exclusive)
        for request_index in rows[index].requests:
            _key, _context, continuation = requests[request_index]
            n = len(continuation)
            cont = torch.tensor(continuation, dtype=torch.long, device=logprobs.device)
            picked = logprobs[end - n:end]
            answer = (float(torch.gather(picked, 1, cont.unsqueeze(-1)).sum()),
                      bool((greedy[end - n:end] == cont).all()))
            results[request_index] = answer
            if on_result is not None:
                on_result(request_index, answer)
        offset = end
