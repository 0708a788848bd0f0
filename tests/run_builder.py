"""Run folders for tests, written by the package's own `RunWriter` with typed records.

Tests that need a stored run (compare, report, rerun) build it here instead of writing JSON by
hand, so they follow schema v1 exactly as `run` does:

    run_dir = write_test_run(tmp_path, {"gsm8k@base": [1.0, 0.0]}, model="ckpt")
    bench = TestBenchmark(items=[("81", 1, 7.0), ("81", 2, None)], value=7.0)
    run_dir = write_test_run(tmp_path, {"mt_bench@instruct": bench})

A benchmark of a protocol gets that protocol's scorer and metric (compare asks the scorer how to
test); any other benchmark id is a multiple-choice one measured by `acc`. `build_test_run` gives
the typed records without writing them (to break one on purpose, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, available_protocols, load_protocol
from kanana_eval.results.records import (
    BenchmarkRecord,
    DataRecord,
    Item,
    Manifest,
    ModelRecord,
    ProtocolFile,
    Scale,
    ScoreRow,
    Scores,
    ScoresModel,
    SubtaskScore,
)
from kanana_eval.results.writer import RunWriter
from kanana_eval.scoring.catalog import get_scorer

DEFAULT_RUN_ID = "20260101T000000Z-00000000"
OTHER_SCORER, OTHER_METRIC = "multiple_choice", "acc"


def _spec(benchmark: str) -> BenchmarkSpec | None:
    protocol = benchmark.split("@")[-1]
    if protocol not in available_protocols():
        return None
    return next((s for s in load_protocol(protocol).benchmarks if s.id == benchmark), None)


def scorer_of(benchmark: str) -> str:
    """The scorer the benchmark's protocol names (`multiple_choice` for an unknown id)."""
    spec = _spec(benchmark)
    return spec.task.scorer if spec else OTHER_SCORER


def metric_of(benchmark: str) -> str:
    """The metric the benchmark's protocol names (`acc` for an unknown id)."""
    spec = _spec(benchmark)
    return spec.metric if spec else OTHER_METRIC


@dataclass
class TestBenchmark:
    """One benchmark of a test run.

    `items`: (item_id, turn, score) tuples, plain scores (ids "0", "1", ...) or ready Items.
    """

    __test__ = False  # not a pytest test class, despite its name

    items: list[Any]
    value: float | None = None  # default: the mean of the scored items
    stderr: float | None = None
    column: str | None = None  # default: the benchmark's name in capitals
    scorer: str | None = None  # default: the protocol's scorer
    metric: str | None = None  # default: the protocol's metric
    subtasks: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    n_available: int | None = None
    judge: dict[str, Any] | None = None  # judged benchmarks: default status "judged"
    spec: dict[str, Any] = field(default_factory=dict)  # extra manifest spec fields


def _items(benchmark: str, bench: TestBenchmark, judged: bool) -> list[Item]:
    out = []
    for n, raw in enumerate(bench.items):
        if isinstance(raw, Item):
            out.append(raw)
            continue
        item_id, turn, score = raw if isinstance(raw, tuple) else (str(n), None, raw)
        if judged:
            verdict = "judged" if score is not None else "unjudged"
        else:
            verdict = "correct" if score else "wrong"
        out.append(Item(benchmark=benchmark, item_id=item_id, turn=turn, prompt="q", output="a",
                        extracted=None, target=None, score=score, verdict=verdict))
    return out


def _benchmark(raw: TestBenchmark | list[Any]) -> TestBenchmark:
    return raw if isinstance(raw, TestBenchmark) else TestBenchmark(items=list(raw))


@dataclass(frozen=True)
class RunRecords:
    """The typed records of one test run, before they are written."""

    manifest: Manifest
    scores: Scores
    items: dict[str, list[Item]]


def build_test_run(benchmarks: Mapping[str, TestBenchmark | list[Any]], *, model: str = "ckpt",
                   run_id: str = DEFAULT_RUN_ID, smoke: bool = False, limit: int | None = None,
                   fingerprint: str = "sha256:data-v1", max_gen_toks: int = 256,
                   judge_model: str = "gpt-4o-2024-08-06", protocol_sha: str = "a" * 64,
                   readme_rows: tuple[str, ...] = (), registry_key: str | None = None,
                   ) -> RunRecords:
    """Manifest, scores and items of a test run (`write_test_run` stores them).

    A benchmark is a `TestBenchmark` or just its items (a list, as `TestBenchmark.items`).
    """
    protocols = sorted({b.split("@")[1] for b in benchmarks})
    rows, records, all_items = [], {}, {}
    for name, raw in benchmarks.items():
        bench = _benchmark(raw)
        scorer = bench.scorer or scorer_of(name)
        metric = bench.metric or metric_of(name)
        scale = Scale(get_scorer(scorer).scale)
        judged = get_scorer(scorer).needs_judge
        items = _items(name, bench, judged)
        scored = [i.score for i in items if i.score is not None]
        value = bench.value if bench.value is not None else (sum(scored) / len(scored)
                                                              if scored else None)
        judge = None
        if judged:
            judge = bench.judge or {"status": "judged", "model": judge_model,
                                    "language_penalty": {"applied": False}}
        protocol = name.split("@")[1]
        n_available = bench.n_available or len(items)
        rows.append(ScoreRow(
            benchmark=name, protocol=protocol, column=bench.column or name.split("@")[0].upper(),
            metric=metric, value=value, scale=scale, stderr=bench.stderr, n=len(items),
            n_available=n_available,
            subtasks={k: SubtaskScore(value=v, n=n) for k, (v, n) in bench.subtasks.items()},
            judge=judge))
        records[name] = BenchmarkRecord(
            spec={"id": name, "protocol": protocol, "metric": metric, "num_fewshot": 0,
                  "scorer": scorer,
                  "generation": {"do_sample": False, "max_gen_toks": max_gen_toks}, **bench.spec},
            lm_eval_tasks={name.split("@")[0]: 1.0},
            data=DataRecord(source="hub", dataset_id=f"org/{name}", fingerprint=fingerprint,
                            derived_fewshot=False),
            n_scored=len(items), n_available=n_available, judge=judge)
        all_items[name] = items
    manifest = Manifest(
        run_id=run_id, created_utc="2026-01-01T00:00:00+00:00", config={"model": model},
        config_hash="00000000", smoke=smoke,
        model=ModelRecord(name=model, source="local", fingerprint=f"sha256:{model}",
                          registry_key=registry_key, readme_rows=list(readme_rows)),
        engine={}, protocols={p: ProtocolFile(file=f"protocols/{p}.yaml", sha256=protocol_sha)
                              for p in protocols},
        benchmarks=records, versions={}, timings={})
    scores = Scores(run_id=run_id, model=ScoresModel(name=model, registry_key=registry_key,
                                                     readme_rows=list(readme_rows)),
                    protocols=protocols, smoke=smoke, limit=limit, scores=rows)
    return RunRecords(manifest, scores, all_items)


def write_test_run(root: Path, benchmarks: Mapping[str, TestBenchmark | list[Any]], *,
                   model: str = "ckpt", run_id: str = DEFAULT_RUN_ID, **options: Any) -> Path:
    """`root/<model>/<run_id>/` with items, scores.json and manifest.json, schema-checked.

    `options` are those of `build_test_run` (smoke, limit, fingerprint, judge_model, ...).
    """
    run = build_test_run(benchmarks, model=model, run_id=run_id, **options)
    return RunWriter(Path(root), model, run_id).write(run.manifest, run.scores, run.items)
