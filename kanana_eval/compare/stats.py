"""Paired statistics for the regression gate: exact McNemar, paired bootstrap, Holm.

Two runs of the same benchmark score the same items, so every test here works on per-item
differences (candidate minus baseline), never on two independent means: the item-to-item
variation both runs share cancels, which is what makes a 1-2 point drop detectable at all.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Below this many resampling units a bootstrap distribution is too coarse to give a p-value
# (with one item every resample equals the observation): the test then reports p = 1.
MIN_BOOTSTRAP_UNITS = 10
# Resampled values held in memory at once (rows x units) when clusters are resampled.
_CHUNK_CELLS = 2_000_000
# Up to this many distinct values (pass/fail differences have 3) resampling goes by value counts.
_MAX_DISTINCT_FOR_COUNTS = 32


def binomial_upper_tail_half(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, one rounding at the end)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if 2 * k <= n:  # sum the shorter side: P(X >= k) = 1 - P(X >= n - k + 1) by symmetry
        return ((1 << n) - _upper_tail_count(n - k + 1, n)) / (1 << n)
    return _upper_tail_count(k, n) / (1 << n)


def _upper_tail_count(k: int, n: int) -> int:
    """sum_{j=k..n} C(n, j), stepping C(n, j+1) = C(n, j) (n - j) / (j + 1) exactly."""
    term = math.comb(n, k)
    total = 0
    for j in range(k, n + 1):
        total += term
        term = term * (n - j) // (j + 1)
    return total


def mcnemar_one_sided(losses: int, wins: int) -> tuple[float, float]:
    """Exact McNemar p-values (p_worse, p_better) from the discordant pairs of pass/fail items.

    `losses`: items passed by the baseline and failed by the candidate; `wins`: the reverse.
    Under "no change" each discordant item is a fair coin, so losses ~ Binomial(losses + wins, 1/2);
    p_worse = P(X >= losses), p_better = P(X >= wins). Concordant items carry no information.
    """
    if losses < 0 or wins < 0:
        raise ValueError("discordant counts cannot be negative")
    n = losses + wins
    return binomial_upper_tail_half(losses, n), binomial_upper_tail_half(wins, n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (reject where adjusted < alpha).

    Controls the chance of any false rejection among the m hypotheses at alpha, whatever their
    dependence: the smallest p is multiplied by m, the next by m - 1, ..., kept monotone.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class BootstrapResult:
    """Mean paired difference, its percentile interval and the two one-sided p-values."""

    mean: float
    ci_low: float
    ci_high: float
    p_worse: float
    p_better: float
    n_units: int
    n_boot: int


def bootstrap_rng(seed: int, label: str) -> np.random.Generator:
    """A generator fixed by (seed, label): each benchmark draws its own reproducible stream."""
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def paired_bootstrap(diffs: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 10_000,
                     rng: np.random.Generator | None = None, confidence: float = 0.95,
                     ) -> BootstrapResult:
    """Paired bootstrap of the mean difference, resampling items (or whole clusters), replaced.

    `clusters` groups differences that must be resampled together (MT-Bench: both turns of one
    question); the mean is then the ratio of resampled sums to resampled counts. p-values use the
    null-shifted distribution (Efron & Tibshirani 16.4):
    p_worse = (1 + #{c (m* - m) <= m}) / (B + 1) with c = sqrt(n / (n - 1)) over n resampled units.
    """
    diffs = np.asarray(diffs, dtype=float)
    if n_boot < 1:
        raise ValueError("the bootstrap needs at least one resample")
    rng = rng if rng is not None else np.random.default_rng(0)
    sums, counts = _cluster_sums(diffs, clusters)
    n_units = len(sums)
    if n_units == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 1.0, 1.0, 0, n_boot)
    mean = float(sums.sum() / counts.sum())
    if bool(np.all(counts == 1)) and len(np.unique(sums)) <= _MAX_DISTINCT_FOR_COUNTS:
        means = _resample_values(sums, n_boot, rng)
    else:
        means = _resample_clusters(sums, counts, n_boot, rng)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    if n_units < MIN_BOOTSTRAP_UNITS:
        p_worse = p_better = 1.0
    else:
        # Null-centred, and widened by sqrt(n / (n - 1)): the plug-in bootstrap's variance is
        # (n - 1) / n of the unbiased one, which makes small-n p-values a little too small.
        shifted = (means - mean) * math.sqrt(n_units / (n_units - 1))
        tol = 1e-12 * max(1.0, abs(mean))  # ties of equal means must count as "as extreme"
        p_worse = (1 + int(np.count_nonzero(shifted <= mean + tol))) / (n_boot + 1)
        p_better = (1 + int(np.count_nonzero(shifted >= mean - tol))) / (n_boot + 1)
    return BootstrapResult(mean, float(low), float(high), min(1.0, p_worse), min(1.0, p_better),
                           n_units, n_boot)


def _cluster_sums(diffs: np.ndarray, clusters: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if clusters is None:
        return diffs, np.ones(len(diffs), dtype=np.int64)
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=diffs)
    counts = np.bincount(inverse).astype(np.int64)
    return sums, counts


def _resample_values(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n draws with replacement, via multinomial counts of the distinct values.

    The same distribution as resampling indices, in O(B x distinct values) instead of O(B x n):
    pass/fail differences take three values, so 35,000 KMMLU items cost nothing.
    """
    distinct, freq = np.unique(values, return_counts=True)
    n = len(values)
    draws = rng.multinomial(n, freq / n, size=n_boot)
    return draws @ distinct / n


def _resample_clusters(sums: np.ndarray, counts: np.ndarray, n_boot: int,
                       rng: np.random.Generator) -> np.ndarray:
    k = len(sums)
    rows = max(1, _CHUNK_CELLS // k)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, k, size=(stop - start, k))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out
