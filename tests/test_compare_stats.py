"""The regression gate's statistics: exact McNemar tails, Holm, the paired (cluster) bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kanana_eval.compare.stats import (
    MIN_BOOTSTRAP_UNITS,
    binomial_upper_tail_half,
    bootstrap_rng,
    holm,
    mcnemar_one_sided,
    paired_bootstrap,
)


def _tail_by_definition(k: int, n: int) -> float:
    return sum(math.comb(n, j) for j in range(max(k, 0), n + 1)) / 2**n


@pytest.mark.parametrize("n", [0, 1, 2, 5, 13, 40, 101])
def test_binomial_tail_equals_its_definition_for_every_k(n):
    for k in range(-1, n + 2):
        assert binomial_upper_tail_half(k, n) == pytest.approx(_tail_by_definition(k, n),
                                                               rel=1e-12, abs=0)


def test_binomial_tail_matches_scipy_for_large_counts():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(700, 1300), (600, 1300), (18000, 35000), (10, 5000)]:
        assert binomial_upper_tail_half(k, n) == pytest.approx(stats.binom.sf(k - 1, n, 0.5),
                                                               rel=1e-9)


def test_mcnemar_counts_only_discordant_items_and_is_one_sided():
    # 5 losses, 0 wins: all five discordant coins fell on "worse": p = 1/32.
    assert mcnemar_one_sided(5, 0) == (1 / 32, 1.0)
    assert mcnemar_one_sided(0, 5) == (1.0, 1 / 32)
    assert mcnemar_one_sided(0, 0) == (1.0, 1.0)
    p_worse, p_better = mcnemar_one_sided(12, 3)
    assert p_worse == pytest.approx(_tail_by_definition(12, 15))
    assert p_better == pytest.approx(_tail_by_definition(3, 15))
    with pytest.raises(ValueError):
        mcnemar_one_sided(-1, 2)


def test_mcnemar_is_conservative_under_no_change():
    """Exact test: over many null draws its p-value falls below alpha at most alpha of the time."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        n = int(rng.integers(5, 80))
        losses = int(rng.binomial(n, 0.5))
        hits += mcnemar_one_sided(losses, n - losses)[0] < 0.05
    assert hits / 2000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_holm_adjusts_step_down_keeps_order_and_monotone():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
    assert holm([0.5, 0.6, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    p = list(np.random.default_rng(1).uniform(size=9))
    adj = holm(p)
    order = np.argsort(p)
    assert all(adj[i] >= p[i] for i in range(9))
    assert all(adj[order[i]] <= adj[order[i + 1]] for i in range(8))


def test_bootstrap_is_reproducible_with_a_seed_and_its_interval_holds_the_mean():
    diffs = np.random.default_rng(3).integers(-1, 2, size=300).astype(float)
    a = paired_bootstrap(diffs, n_boot=2000, rng=bootstrap_rng(5, "gsm8k@base"))
    b = paired_bootstrap(diffs, n_boot=2000, rng=bootstrap_rng(5, "gsm8k@base"))
    c = paired_bootstrap(diffs, n_boot=2000, rng=bootstrap_rng(6, "gsm8k@base"))
    assert a == b
    assert a != c
    assert a.mean == pytest.approx(diffs.mean())
    assert a.ci_low < a.mean < a.ci_high


def test_bootstrap_by_value_counts_has_the_distribution_of_index_resampling():
    """The multinomial shortcut for pass/fail differences must be the ordinary bootstrap."""
    rng = np.random.default_rng(11)
    diffs = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.8, 0.1], size=400)
    fast = paired_bootstrap(diffs, n_boot=4000, rng=np.random.default_rng(1), confidence=0.9)
    slow = diffs[rng.integers(0, 400, size=(4000, 400))].mean(axis=1)
    low, high = np.quantile(slow, [0.05, 0.95])
    assert fast.ci_low == pytest.approx(low, abs=0.006)
    assert fast.ci_high == pytest.approx(high, abs=0.006)


def test_cluster_bootstrap_widens_the_interval_when_turns_move_together():
    """MT-Bench: both turns of a question resample together, so correlated turns are not 2x data."""
    per_question = np.random.default_rng(2).normal(size=80)
    diffs = np.repeat(per_question, 2)  # the two turns of a question move identically
    clusters = np.repeat(np.arange(80), 2)
    flat = paired_bootstrap(diffs, n_boot=3000, rng=np.random.default_rng(0))
    grouped = paired_bootstrap(diffs, clusters, n_boot=3000, rng=np.random.default_rng(0))
    assert grouped.mean == pytest.approx(flat.mean)
    ratio = (grouped.ci_high - grouped.ci_low) / (flat.ci_high - flat.ci_low)
    assert ratio == pytest.approx(math.sqrt(2), rel=0.12)
    assert grouped.n_units == 80


def test_bootstrap_p_values_are_calibrated_under_no_change():
    rng = np.random.default_rng(4)
    reps = 400
    worse = sum(paired_bootstrap(rng.normal(size=200), n_boot=400, rng=rng).p_worse < 0.05
                for _ in range(reps))
    tolerance = 3 * math.sqrt(0.05 * 0.95 / reps)
    assert worse / reps <= 0.05 + tolerance


def test_bootstrap_detects_a_consistent_drop_and_not_the_opposite_direction():
    diffs = np.full(50, -1.0)
    result = paired_bootstrap(diffs, n_boot=999, rng=np.random.default_rng(0))
    assert result.p_worse == pytest.approx(1 / 1000)
    assert result.p_better == 1.0
    zero = paired_bootstrap(np.zeros(50), n_boot=999, rng=np.random.default_rng(0))
    assert (zero.p_worse, zero.p_better) == (1.0, 1.0)


def test_bootstrap_refuses_a_p_value_from_too_few_items():
    few = paired_bootstrap(np.full(MIN_BOOTSTRAP_UNITS - 1, -5.0), n_boot=500)
    assert (few.p_worse, few.p_better) == (1.0, 1.0)
    empty = paired_bootstrap(np.array([]), n_boot=10)
    assert empty.n_units == 0 and math.isnan(empty.mean)
