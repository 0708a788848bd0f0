"""Run folders for tests, written by the package's own `RunWriter` with typed records.

Tests that need a stored run (compare, report, rerun) build it here instead of writing JSON by
hand, so they follow schema v1 exactly as `run` does:

    bench = TestBenchmark(items=[("1", None, 1.0), ("2", None, 0.0)])
    run_dir = write_test_run(tmp_path, {"gsm8k@base": bench}, model="ckpt")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.results.records import (
    BenchmarkRecord,
    DataRecord,
    Item,
    Manifest,
    ModelRecord,
    ProtocolFile,
    Scale,
    Scores,
    ScoresModel,
    ScoreRow,
    SubtaskScore,
)
from kanana_eval.results.writer import RunWriter

DEFAULT_RUN_ID = "20260101T000000Z-00000000"
# The scorer of each benchmark as the protocols name it (compare asks the scorer how to test).
SCORERS = {"mt_bench": "judge", "komt_bench": "judge", "ifeval": "ifeval",
           "humaneval_plus": "evalplus", "mbpp_plus": "evalplus", "humaneval": "code_execution",
           "mbpp": "code_execution", "math": "math_answer", "math500": "math_answer",
           "mmlu_cot": "cot_letter", "kmmlu_cot": "cot_letter", "gsm8k@instruct": "math_answer",
           "gsm8k@base": "filtered_exact_match"}
METRICS = {"judge": "judge_score", "ifeval": "ifeval_strict_mean", "evalplus": "pass@1",
           "code_execution": "pass@1", "math_answer": "exact_match", "cot_letter": "acc",
           "filtered_exact_match": "exact_match", "multiple_choice": "acc"}


def scorer_of(benchmark: str) -> str:
    return SCORERS.get(benchmark, SCORERS.get(benchmark.split("@")[0], "multiple_choice"))


@dataclass
class TestBenchmark:
    """One benchmark of a test run.

    `items`: (item_id, turn, score) tuples, plain scores (ids "0", "1", ...) or ready Items.
    """

    items: list[Any]
    value: float | None = None  # default: the mean of the scored items
    stderr: float | None = None
    column: str | None = None
    scorer: str | None = None
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
                        score=score, verdict=verdict))
    return out


def write_test_run(root: Path, benchmarks: dict[str, TestBenchmark], *, model: str = "ckpt",
                   run_id: str = DEFAULT_RUN_ID, smoke: bool = False, limit: int | None = None,
                   fingerprint: str = "sha256:data-v1", max_gen_toks: int = 256,
                   judge_model: str = "gpt-4o-2024-08-06", protocol_sha: str = "a" * 64,
                   readme_rows: tuple[str, ...] = (), registry_key: str | None = None) -> Path:
    """`root/<model>/<run_id>/` with items, scores.json and manifest.json, schema-checked."""
    protocols = sorted({b.split("@")[1] for b in benchmarks})
    rows, records, all_items = [], {}, {}
    for name, bench in benchmarks.items():
        scorer = bench.scorer or scorer_of(name)
        judged = scorer == "judge"
        items = _items(name, bench, judged)
        scored = [i.score for i in items if i.score is not None]
        value = bench.value if bench.value is not None else (sum(scored) / len(scored)
                                                              if scored else None)
        judge = None
        if judged:
            judge = bench.judge or {"status": "judged", "model": judge_model,
                                    "language_penalty": {"applied": False}}
        protocol = name.split("@")[1]
        rows.append(ScoreRow(
            benchmark=name, protocol=protocol, column=bench.column or name.split("@")[0].upper(),
            metric=METRICS[scorer], value=value,
            scale=Scale.JUDGE_1_10 if judged else Scale.FRACTION, stderr=bench.stderr,
            n=len(items), n_available=bench.n_available or len(items),
            subtasks={k: SubtaskScore(value=v, n=n) for k, (v, n) in bench.subtasks.items()},
            judge=judge))
        records[name] = BenchmarkRecord(
            spec={"id": name, "protocol": protocol, "metric": METRICS[scorer], "num_fewshot": 0,
                  "scorer": scorer, "generation": {"do_sample": False, "max_gen_toks": max_gen_toks},
                  **bench.spec},
            lm_eval_tasks={name.split("@")[0]: 1.0},
            data=DataRecord(source="hub", dataset_id=f"org/{name}", fingerprint=fingerprint),
            n_scored=len(items), n_available=bench.n_available or len(items), judge=judge)
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
    return RunWriter(Path(root), model, run_id).write(manifest, scores, all_items)
