"""`--limit N`: N items per README column, spread over its subtasks in proportion to their size.

lm-eval's own --limit takes N items from *every* subtask (57×N for MMLU). Here a column gets N
items in all, apportioned by the largest-remainder method (Hamilton): subtask i gets
floor(N·size_i/total) items, and the items still missing go one each to the subtasks with the
largest fractional remainders (ties: the subtask listed first). Each subtask contributes its
first items in dataset order, so a limited run is a deterministic prefix of the full one.
"""

from __future__ import annotations

from fractions import Fraction


def spread_limit(sizes: dict[str, int], limit: int | None) -> dict[str, int]:
    """How many items each subtask contributes; `None` means every item."""
    if limit is None:
        return dict(sizes)
    if limit < 0:
        raise ValueError("limit must be >= 0")
    total = sum(sizes.values())
    if limit >= total:
        return dict(sizes)
    if total == 0:
        return {name: 0 for name in sizes}
    quotas = {name: Fraction(limit * size, total) for name, size in sizes.items()}
    counts = {name: int(q) for name, q in quotas.items()}
    missing = limit - sum(counts.values())
    order = sorted(sizes, key=lambda n: (-(quotas[n] - counts[n]), list(sizes).index(n)))
    for name in order[:missing]:
        counts[name] += 1
    return counts
