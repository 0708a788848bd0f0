"""--limit N spreads N items over a column's subtasks in proportion to their size."""

from __future__ import annotations

import random

from kanana_eval.tasks.limits import spread_limit


def test_no_limit_or_large_limit_takes_everything():
    sizes = {"a": 3, "b": 5}
    assert spread_limit(sizes, None) == sizes
    assert spread_limit(sizes, 100) == sizes


def test_proportional_with_largest_remainder():
    # quotas 10*100/200=5, 10*60/200=3, 10*40/200=2
    assert spread_limit({"a": 100, "b": 60, "c": 40}, 10) == {"a": 5, "b": 3, "c": 2}
    # quotas 1.5, 1.5, 1.0 -> one extra item, tie broken by listing order
    assert spread_limit({"a": 3, "b": 3, "c": 2}, 4) == {"a": 2, "b": 1, "c": 1}


def test_fewer_items_than_subtasks_go_to_the_largest():
    assert spread_limit({"small": 10, "big": 1000, "mid": 100}, 1) == {"small": 0, "big": 1,
                                                                        "mid": 0}


def test_invariants_on_random_sizes():
    rng = random.Random(7)
    for _ in range(300):
        sizes = {f"s{i}": rng.randint(0, 50) for i in range(rng.randint(1, 12))}
        limit = rng.randint(0, 200)
        counts = spread_limit(sizes, limit)
        assert sum(counts.values()) == min(limit, sum(sizes.values()))
        assert all(0 <= counts[k] <= sizes[k] for k in sizes)
        total = sum(sizes.values())
        if total and limit < total:
            for k in sizes:  # never more than one item away from the exact quota
                assert abs(counts[k] - limit * sizes[k] / total) < 1
