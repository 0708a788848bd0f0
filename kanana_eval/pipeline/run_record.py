"""What a finished run stores: score rows and the manifest, built from typed outcomes.

`run` and `score` both end here: each benchmark's items, data record and plan become a
`BenchmarkOutcome`, the run's engine and model a `RunOutcome`, and `write_run` turns them into
scores.json, manifest.json and items through the one `RunWriter`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.hashing import file_sha256
from kanana_eval.pipeline.collect import token_limit_lowered
from kanana_eval.pipeline.model_source import ResolvedModel, package_versions
from kanana_eval.results.records import (
    BenchmarkRecord,
    DataRecord,
    Item,
    Manifest,
    ProtocolFile,
    ScoreRow,
    Scores,
    ScoresModel,
)
from kanana_eval.results.writer import RunWriter, free_run_id, new_run_id
from kanana_eval.scoring.catalog import scorer_for
from kanana_eval.scoring.judge.stage import not_judged_record
from kanana_eval.scoring.sandbox.api import isolation_report


@dataclass
class BenchmarkOutcome:
    """One benchmark of a run: its items and where they came from."""

    spec: BenchmarkSpec
    items: list[Item]
    data: DataRecord
    plan: dict[str, int]  # items run per leaf task (or category)
    available: int  # items in the scored split before --limit
    lm_eval_tasks: dict[str, Any] = field(default_factory=dict)  # leaf task -> version
    judge: dict[str, Any] | None = None  # judged benchmarks: the judge record

    @property
    def smoke(self) -> bool:
        return sum(self.plan.values()) < self.available or token_limit_lowered(self.spec)

    def judge_record(self) -> dict[str, Any] | None:
        if not scorer_for(self.spec).needs_judge:
            return None
        return self.judge or not_judged_record()

    def score_row(self) -> ScoreRow:
        spec, items = self.spec, self.items
        scorer = scorer_for(spec)
        agg = scorer.aggregate(spec, items)
        fields: dict[str, Any] = dict(scorer.row_fields(spec, items))
        if spec.generation is not None:
            fields["n_no_answer"] = sum(1 for i in items if i.verdict == "no_answer")
            fields["n_truncated"] = sum(1 for i in items if i.truncated)
        judge = self.judge_record()
        if judge is not None:
            fields["judge"] = judge
        return ScoreRow(benchmark=spec.id, protocol=spec.protocol, column=spec.column,
                        metric=spec.metric, value=agg.value, scale=scorer.scale,
                        stderr=agg.stderr, n=agg.n, n_available=self.available,
                        derived_fewshot=self.data.derived_fewshot, subtasks=agg.subtasks, **fields)

    def manifest_record(self) -> BenchmarkRecord:
        spec = self.spec
        return BenchmarkRecord(spec=spec.describe(),
                               task_file_sha256=file_sha256(Path(spec.task.source_file)),
                               lm_eval_tasks=self.lm_eval_tasks, data=self.data,
                               n_scored=len(self.items), n_available=self.available,
                               samples_per_subtask=self.plan,
                               # an optional judge (NIAH's --niah-judge) is recorded here only:
                               # its row shows `judge_score`, not a judged benchmark's `judge`
                               judge=self.judge_record() if self.judge is None else self.judge)


@dataclass
class RunOutcome:
    """A whole run, ready to be stored."""

    resolved: ResolvedModel
    config: RunConfig
    engine: dict[str, Any]
    benchmarks: list[BenchmarkOutcome]
    timings: dict[str, float]
    started: float
    request_cache: str | None = None

    @property
    def smoke(self) -> bool:
        return any(b.smoke for b in self.benchmarks)

    def sandbox_record(self) -> dict[str, Any] | None:
        """What the code sandbox enforced on this machine, for runs that ran code."""
        if not any(scorer_for(b.spec).runs_code for b in self.benchmarks):
            return None
        return isolation_report(unsafe=self.config.unsafe_exec)


def write_run(outcome: RunOutcome) -> Path:
    """Store a run folder: items, scores.json and manifest.json, atomically and validated."""
    ref, config = outcome.resolved.ref, outcome.config
    run_id = free_run_id(Path(config.output_dir) / ref.slug, new_run_id(config.hash()))
    protocols = list(ref.protocols)
    scores = Scores(run_id=run_id,
                    model=ScoresModel(name=ref.name,
                                      registry_key=ref.entry.key if ref.entry else None,
                                      readme_rows=list(ref.readme_rows)),
                    protocols=protocols, smoke=outcome.smoke, limit=config.limit,
                    scores=[b.score_row() for b in outcome.benchmarks])
    manifest = Manifest(
        run_id=run_id,
        created_utc=datetime.fromtimestamp(outcome.started, timezone.utc).isoformat(),
        command=list(sys.argv), config=config.to_dict(), config_hash=config.hash(),
        smoke=outcome.smoke, model=outcome.resolved.record(), engine=outcome.engine,
        request_cache=outcome.request_cache, sandbox=outcome.sandbox_record(),
        protocols={p: ProtocolFile(file=load_protocol(p).source_file,
                                   sha256=file_sha256(Path(load_protocol(p).source_file)))
                   for p in protocols},
        benchmarks={b.spec.id: b.manifest_record() for b in outcome.benchmarks},
        versions=package_versions(),
        timings={k: round(v, 3) for k, v in outcome.timings.items()},
    )
    items = {b.spec.id: b.items for b in outcome.benchmarks}
    return RunWriter(Path(config.output_dir), ref.slug, run_id).write(manifest, scores, items)
