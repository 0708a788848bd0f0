"""The regression gate: pair two runs' items, test each benchmark, give a verdict.

A benchmark is *worse* when its one-sided paired p-value, Holm-adjusted over the benchmarks
compared, is below alpha and the drop is at least its minimum meaningful drop; *better*
symmetrically; otherwise *same*. Items are paired by `item_id` (and `turn` for judged benchmarks);
pass/fail items use the exact McNemar test, judge scores and IFEval the paired bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kanana_eval.compare.stats import (
    MIN_BOOTSTRAP_UNITS,
    bootstrap_rng,
    holm,
    mcnemar_one_sided,
    paired_bootstrap,
)
from kanana_eval.config.protocol import RegressionRule, available_protocols, load_protocol
from kanana_eval.core.errors import KananaError, ResultsError
from kanana_eval.results.checks import verify_run
from kanana_eval.results.io import item_file, load_run, read_jsonl, resolve_run_arg
from kanana_eval.results.records import Scale
from kanana_eval.scoring.base import PairedTest, Scorer
from kanana_eval.scoring.catalog import get_scorer, scorer_names

DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 1234
MCNEMAR = "exact McNemar"
BOOTSTRAP = "paired bootstrap"
WORSE, BETTER, SAME, NOT_COMPARED = "worse", "better", "same", "not compared"
_EPS = 1e-9  # a drop equal to the minimum, up to float rounding, counts as reaching it

Key = tuple[str, int | None]


class CompareUsageError(KananaError):
    """A compare argument names no run, an unknown benchmark or an impossible value."""


class IncomparableRunsError(KananaError):
    """The two runs were made under different protocols or data (override with --force)."""


@dataclass(frozen=True)
class RunInfo:
    """One side of the comparison: a finished run folder, read and schema-checked."""

    path: Path
    manifest: dict[str, Any]
    scores: dict[str, Any]

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["benchmark"]: row for row in self.scores["scores"]}

    @property
    def smoke(self) -> bool:
        return bool(self.scores.get("smoke") or self.manifest.get("smoke"))

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "run_id": self.scores["run_id"],
                "model": self.scores["model"]["name"], "smoke": self.smoke,
                "created_utc": self.manifest.get("created_utc")}


@dataclass(frozen=True)
class ItemChange:
    """An item whose score moved between the runs (pass/fail: a flip)."""

    item_id: str
    turn: int | None
    baseline: float
    candidate: float

    def label(self) -> str:
        return self.item_id if self.turn is None else f"{self.item_id} (turn {self.turn})"


@dataclass
class Pairing:
    """Items of one benchmark matched across runs; what could not be matched stays listed."""

    keys: list[Key]
    baseline: np.ndarray
    candidate: np.ndarray
    only_baseline: list[Key] = field(default_factory=list)
    only_candidate: list[Key] = field(default_factory=list)
    unscored_baseline: list[Key] = field(default_factory=list)
    unscored_candidate: list[Key] = field(default_factory=list)


@dataclass
class BenchmarkInput:
    """What the statistics need about one benchmark, whether read from files or built in memory.

    `scorer` names the benchmark's scorer: it decides the paired test, whether an item's turns
    are resampled together, the scale and what the output notes about the method.
    """

    benchmark: str
    pairing: Pairing
    scorer: str | None = None
    metric: str = ""
    protocol: str = ""
    column: str = ""
    baseline_value: float | None = None
    candidate_value: float | None = None

    @property
    def scorer_object(self) -> Scorer:
        """The registered scorer; a run from an unknown scorer is compared as plain scores."""
        if self.scorer in scorer_names():
            return get_scorer(self.scorer)
        return Scorer()

    @property
    def scale(self) -> Scale:
        return Scale(self.scorer_object.scale)


@dataclass
class BenchmarkResult:
    """Scores, paired difference with its interval, p-values and the verdict of one benchmark."""

    benchmark: str
    protocol: str
    column: str
    scale: str
    method: str
    baseline_value: float | None
    candidate_value: float | None
    baseline_paired: float
    candidate_paired: float
    n_paired: int
    diff: float  # candidate - baseline on the paired items, in points
    ci_low: float
    ci_high: float
    p_worse: float
    p_better: float
    min_drop: float
    p_worse_adj: float = 1.0
    p_better_adj: float = 1.0
    verdict: str = SAME
    worse_items: list[ItemChange] = field(default_factory=list)
    better_items: list[ItemChange] = field(default_factory=list)
    pairing: Pairing | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def binary(self) -> bool:
        """Pass/fail items (IFEval's too, though tested by bootstrap): changes are flips."""
        p = self.pairing
        return p is not None and bool(np.isin(p.baseline, (0, 1)).all()
                                      and np.isin(p.candidate, (0, 1)).all())


@dataclass
class Comparison:
    """The whole verdict: per-benchmark results plus everything that could not be compared."""

    baseline: RunInfo | None
    candidate: RunInfo | None
    alpha: float
    confidence: float
    n_boot: int
    seed: int
    results: list[BenchmarkResult]
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    forced: bool = False

    @property
    def regressions(self) -> list[str]:
        return [r.benchmark for r in self.results if r.verdict == WORSE]

    @property
    def improvements(self) -> list[str]:
        return [r.benchmark for r in self.results if r.verdict == BETTER]

    @property
    def smoke(self) -> bool:
        return any(side is not None and side.smoke for side in (self.baseline, self.candidate))

    @property
    def exit_code(self) -> int:
        """0 when nothing regressed, 1 on a regression (usage and data errors raise: 2)."""
        return 1 if self.regressions else 0


# ---------------------------------------------------------------------------------------------
# Pairing


def pair_items(baseline: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]],
               label: str = "items") -> Pairing:
    """Match items by (item_id, turn); null scores and one-sided items are kept apart, listed."""
    base = _scores_by_key(baseline, f"baseline {label}")
    cand = _scores_by_key(candidate, f"candidate {label}")
    keys, b_vals, c_vals = [], [], []
    unscored_b, unscored_c = [], []
    for key, b in base.items():
        if key not in cand:
            continue
        c = cand[key]
        if b is None:
            unscored_b.append(key)
        if c is None:
            unscored_c.append(key)
        if b is not None and c is not None:
            keys.append(key)
            b_vals.append(b)
            c_vals.append(c)
    return Pairing(keys, np.asarray(b_vals, dtype=float), np.asarray(c_vals, dtype=float),
                   only_baseline=[k for k in base if k not in cand],
                   only_candidate=[k for k in cand if k not in base],
                   unscored_baseline=unscored_b, unscored_candidate=unscored_c)


def _scores_by_key(items: Sequence[dict[str, Any]], where: str) -> dict[Key, float | None]:
    out: dict[Key, float | None] = {}
    for n, item in enumerate(items, 1):
        item_id, score, turn = item.get("item_id"), item.get("score"), item.get("turn")
        if not isinstance(item_id, str) or (turn is not None and not isinstance(turn, int)):
            raise ResultsError(f"{where}: line {n} lacks a string item_id (or has a bad turn)")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score)):
            raise ResultsError(f"{where}: item {item_id} has a non-numeric score {score!r}")
        key = (item_id, turn)
        if key in out:
            what = item_id if turn is None else f"{item_id} turn {turn}"
            raise ResultsError(f"{where}: item {what} appears twice; items cannot be paired")
        out[key] = None if score is None else float(score)
    return out


# ---------------------------------------------------------------------------------------------
# Statistics and verdicts


def choose_method(bench: BenchmarkInput) -> str:
    """The scorer's paired test: McNemar for pass/fail items, else the paired bootstrap."""
    if bench.scorer_object.paired_test is PairedTest.BOOTSTRAP:
        return BOOTSTRAP
    values = np.concatenate([bench.pairing.baseline, bench.pairing.candidate])
    return MCNEMAR if bool(np.all((values == 0) | (values == 1))) else BOOTSTRAP


def assess_benchmark(bench: BenchmarkInput, *, min_drop: float, confidence: float, n_boot: int,
                     seed: int) -> BenchmarkResult:
    """Unadjusted p-values, paired difference and interval, and the changed items of a benchmark."""
    pairing, scale = bench.pairing, bench.scale.points_per_unit
    method = choose_method(bench)
    diffs = pairing.candidate - pairing.baseline
    clusters = (np.asarray([k[0] for k in pairing.keys], dtype=object)
                if bench.scorer_object.paired_by_question and len(diffs) else None)
    boot = paired_bootstrap(diffs, clusters, n_boot=n_boot, confidence=confidence,
                            rng=bootstrap_rng(seed, bench.benchmark))
    p_worse, p_better = boot.p_worse, boot.p_better
    if method == MCNEMAR:
        losses = int(np.count_nonzero(diffs < 0))
        p_worse, p_better = mcnemar_one_sided(losses, int(np.count_nonzero(diffs > 0)))
    n = len(diffs)
    result = BenchmarkResult(
        benchmark=bench.benchmark, protocol=bench.protocol, column=bench.column,
        scale=bench.scale.value,
        method=method, baseline_value=bench.baseline_value, candidate_value=bench.candidate_value,
        baseline_paired=float(pairing.baseline.mean()) if n else math.nan,
        candidate_paired=float(pairing.candidate.mean()) if n else math.nan, n_paired=n,
        diff=boot.mean * scale, ci_low=boot.ci_low * scale, ci_high=boot.ci_high * scale,
        p_worse=p_worse, p_better=p_better, min_drop=min_drop, pairing=pairing,
        worse_items=_changes(pairing, diffs < 0), better_items=_changes(pairing, diffs > 0))
    result.notes += _method_notes(bench, method, boot.n_units)
    return result


def _changes(pairing: Pairing, mask: np.ndarray) -> list[ItemChange]:
    return [ItemChange(k[0], k[1], float(b), float(c))
            for k, b, c, m in zip(pairing.keys, pairing.baseline, pairing.candidate, mask,
                                  strict=True) if m]


def _method_notes(bench: BenchmarkInput, method: str, n_units: int) -> list[str]:
    note = bench.scorer_object.compare_note
    notes = [note] if note else []
    if method == BOOTSTRAP and 0 < n_units < MIN_BOOTSTRAP_UNITS:
        notes.append(f"only {n_units} paired questions/items: too few for the bootstrap, "
                     "p set to 1")
    return notes


def decide(results: list[BenchmarkResult], alpha: float) -> None:
    """Holm-adjust each direction over the benchmarks compared, then apply the rule."""
    tested = [r for r in results if r.n_paired > 0]
    for r, p in zip(tested, holm([r.p_worse for r in tested]), strict=True):
        r.p_worse_adj = p
    for r, p in zip(tested, holm([r.p_better for r in tested]), strict=True):
        r.p_better_adj = p
    for r in results:
        r.verdict = _verdict(r, alpha)


def _verdict(r: BenchmarkResult, alpha: float) -> str:
    if r.n_paired == 0:
        return NOT_COMPARED
    unit = Scale(r.scale).unit
    if r.p_worse_adj < alpha:
        if -r.diff >= r.min_drop - _EPS:
            return WORSE
        r.notes.append(f"significant drop (adjusted p {r.p_worse_adj:.2g}) but "
                       f"{-r.diff:.2f} {unit} is below the minimum drop {r.min_drop:g}")
    if r.p_better_adj < alpha:
        if r.diff >= r.min_drop - _EPS:
            return BETTER
        r.notes.append(f"significant gain (adjusted p {r.p_better_adj:.2g}) but "
                       f"{r.diff:.2f} {unit} is below the minimum change {r.min_drop:g}")
    return SAME


def evaluate(benches: Sequence[BenchmarkInput], *, alpha: float, min_drops: dict[str, float],
             n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED) -> list[BenchmarkResult]:
    """Test every benchmark and decide with Holm over all of them (compare's in-memory core)."""
    results = [assess_benchmark(b, min_drop=min_drops.get(b.benchmark, 1.0), confidence=1 - alpha,
                                n_boot=n_boot, seed=seed) for b in benches]
    decide(results, alpha)
    return results


# ---------------------------------------------------------------------------------------------
# Runs, protocols and the rule's parameters


def resolve_one(value: str, results_dir: Path, role: str) -> Path:
    """A run folder, or a model name standing for its latest run; several checkpoints: refused."""
    runs = resolve_run_arg(value, results_dir)
    if len(runs) > 1:
        raise CompareUsageError(
            f"{role} '{value}' stands for {len(runs)} checkpoints' runs "
            f"({', '.join(str(r) for r in runs)}); name one run folder")
    return runs[0]


def load_side(path: Path) -> RunInfo:
    verify_run(path)  # a damaged run (items missing, truncated files) is refused, not compared
    manifest, scores = load_run(path)
    return RunInfo(Path(path), manifest, scores)


def regression_rule(protocol: str) -> RegressionRule:
    """The protocol's `regression:` section; an unknown protocol gets the defaults."""
    if protocol not in available_protocols():
        return RegressionRule()
    return load_protocol(protocol).regression


def resolve_min_drops(benchmarks: Sequence[tuple[str, str]], overrides: dict[str, float],
                      ) -> dict[str, float]:
    """Per benchmark id: --min-drop by id, else by bare name, else the protocol's value."""
    known = {b for b, _ in benchmarks} | {b.split("@")[0] for b, _ in benchmarks}
    for p in available_protocols():
        ids = {b.id for b in load_protocol(p).benchmarks}
        known |= ids | {i.split("@")[0] for i in ids}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CompareUsageError(f"--min-drop names unknown benchmark(s): {', '.join(unknown)}")
    out = {}
    for bench, protocol in benchmarks:
        name = bench.split("@")[0]
        if bench in overrides:
            out[bench] = overrides[bench]
        elif name in overrides:
            out[bench] = overrides[name]
        else:
            out[bench] = regression_rule(protocol).min_drop(bench)
    return out


def comparability(base: RunInfo, cand: RunInfo, benchmarks: Sequence[str],
                  ) -> tuple[list[str], list[str]]:
    """(refusals, notes): what makes the numbers incomparable, and harmless differences."""
    refusals = [msg for b in benchmarks for msg in _benchmark_differences(b, base, cand)]
    notes = []
    bp, cp = base.manifest.get("protocols") or {}, cand.manifest.get("protocols") or {}
    for name in sorted(set(bp) & set(cp)):
        b_sha, c_sha = (bp[name] or {}).get("sha256"), (cp[name] or {}).get("sha256")
        if b_sha != c_sha:
            notes.append(f"protocols/{name}.yaml differs between the runs (sha256 "
                         f"{str(b_sha)[:12]} vs {str(c_sha)[:12]}); every compared benchmark's "
                         "recorded settings are equal")
    return refusals, notes


def _benchmark_differences(b: str, base: RunInfo, cand: RunInfo) -> list[str]:
    mb, mc = base.manifest["benchmarks"].get(b), cand.manifest["benchmarks"].get(b)
    if mb is None or mc is None:
        side = "baseline" if mb is None else "candidate"
        return [f"{b}: the {side} manifest does not describe it"]
    out = []
    fb, fc = mb["data"]["fingerprint"], mc["data"]["fingerprint"]
    if fb != fc:
        rb, rc = mb["data"].get("revision"), mc["data"].get("revision")
        versions = (f"data versions differ ({rb} vs {rc}), so their items cannot be paired; "
                    if rb != rc and rb and rc else "")
        out.append(f"{b}: {versions}data fingerprints differ ({fb} vs {fc})")
    spec_b, spec_c = mb.get("spec") or {}, mc.get("spec") or {}
    changed = sorted(k for k in set(spec_b) | set(spec_c) if spec_b.get(k) != spec_c.get(k))
    if changed:
        out.append(f"{b}: protocol settings differ ({', '.join(changed)})")
    if (mb.get("lm_eval_tasks") or {}) != (mc.get("lm_eval_tasks") or {}):
        out.append(f"{b}: lm-eval task versions differ")
    jb, jc = base.rows[b].get("judge") or {}, cand.rows[b].get("judge") or {}
    if jb.get("status") == jc.get("status") == "judged":
        if jb.get("model") != jc.get("model"):
            out.append(f"{b}: judged by different models ({jb.get('model')} vs {jc.get('model')})")
        pen_b, pen_c = ((j.get("language_penalty") or {}).get("applied") for j in (jb, jc))
        if pen_b != pen_c:
            out.append(f"{b}: the KoMT-Bench language penalty was applied in one run only")
    return out


def read_items(run: RunInfo, benchmark: str) -> list[dict[str, Any]]:
    path = item_file(run.path, benchmark)
    if not path.is_file():
        raise ResultsError(f"{path} is missing: the run's items are needed to pair them")
    return read_jsonl(path)


def compare_runs(baseline: Path, candidate: Path, *, alpha: float | None = None,
                 min_drops: dict[str, float] | None = None, force: bool = False,
                 n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED) -> Comparison:
    """Compare two run folders benchmark by benchmark (refuses incomparable runs unless forced)."""
    if n_boot < 1:
        raise CompareUsageError("--bootstrap must be at least 1")
    base, cand = load_side(baseline), load_side(candidate)
    b_rows, c_rows = base.rows, cand.rows
    common = [b for b in b_rows if b in c_rows]
    if not common:
        raise CompareUsageError(f"{baseline} and {candidate} have no benchmark in common "
                                f"({', '.join(b_rows)} vs {', '.join(c_rows)})")
    refusals, warnings = comparability(base, cand, common)
    if refusals and not force:
        raise IncomparableRunsError(
            "the runs were made under different protocols or data: " + "; ".join(refusals)
            + " (pass --force to compare anyway)")
    warnings = [f"forced: {r}" for r in refusals] + warnings
    pairs = [(b, b_rows[b]["protocol"]) for b in common]
    if alpha is None:
        alpha = min(regression_rule(p).alpha for _, p in pairs)
    if not 0.0 < alpha < 1.0:
        raise CompareUsageError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    drops = resolve_min_drops(pairs, min_drops or {})
    benches = [_bench_input(b, base, cand) for b in common]
    results = evaluate(benches, alpha=alpha, min_drops=drops, n_boot=n_boot, seed=seed)
    return Comparison(base, cand, alpha, 1 - alpha, n_boot, seed, results,
                      only_in_baseline=[b for b in b_rows if b not in c_rows],
                      only_in_candidate=[b for b in c_rows if b not in b_rows],
                      warnings=warnings, forced=force and bool(refusals))


def _bench_input(b: str, base: RunInfo, cand: RunInfo) -> BenchmarkInput:
    row_b, row_c = base.rows[b], cand.rows[b]
    pairing = pair_items(read_items(base, b), read_items(cand, b), label=f"items/{b}.jsonl")
    spec = base.manifest["benchmarks"][b].get("spec") or {}
    return BenchmarkInput(
        benchmark=b, pairing=pairing, scorer=spec.get("scorer"),
        metric=row_b.get("metric", ""), protocol=row_b["protocol"], column=row_b.get("column", b),
        baseline_value=row_b.get("value"), candidate_value=row_c.get("value"))
