"""`kanana-eval judge RUN` and `kanana-eval fastchat-export RUN DIR`: the judge on stored answers.

Judging reads only the run folder (answers, and the data fingerprint it was made with), so a run
made without a judge is judged later, and a judged run is re-judged by another judge, without
regenerating. The result is a new run folder beside the old one (same answers, the new judge's
scores, `judged_from` naming the source run); the source run is never modified.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import KananaError, ResultsError
from kanana_eval.pipeline import tool_chat
from kanana_eval.results.io import item_file, load_run_records, read_items
from kanana_eval.results.records import Item, Manifest, Scores
from kanana_eval.results.writer import RunWriter, free_run_id, new_run_id
from kanana_eval.scoring.base import AnswerPath
from kanana_eval.scoring.catalog import scorer_for
from kanana_eval.scoring.judge import stage as judge_stage
from kanana_eval.scoring.judge.client import JudgeConfig, preflight
from kanana_eval.scoring.judge.fastchat import (
    export_fastchat_answers,
    export_fastchat_judgments,
    write_jsonl_records,
)

STALE_PARTIAL_S = 600.0  # a `.partial` folder untouched this long is left by a killed write


def judged_specs(scores: Scores) -> list[BenchmarkSpec]:
    """The run's benchmarks that an LLM judge scores (MT-Bench, KoMT-Bench)."""
    specs = []
    for row in scores.scores:
        proto = load_protocol(row.protocol)
        spec = next((b for b in proto.benchmarks if b.id == row.benchmark), None)
        if spec is not None and scorer_for(spec).needs_judge:
            specs.append(spec)
    return specs


def _check_data(spec: BenchmarkSpec, manifest: Manifest, data: judge_stage.JudgeBenchData) -> None:
    stored = manifest.benchmarks[spec.id].data.fingerprint
    if stored != data.fingerprint:
        raise ResultsError(f"{spec.id}: the questions/judge prompts/references differ from the "
                           f"ones this run was made with ({data.fingerprint[:19]} vs "
                           f"{stored[:19]}); pass the run's --data-dir or rerun it")


def judge_run(run_dir: Path, options: judge_stage.JudgeOptions, *,
              output_dir: Path | None = None, data_dir: Path | None = None) -> Path:
    """Judge (or re-judge) the stored answers of `run_dir`; return the new run folder."""
    started = time.time()
    run_dir = Path(run_dir)
    manifest, scores = load_run_records(run_dir)
    specs = judged_specs(scores)
    if not specs:
        raise ResultsError(f"{run_dir} has no MT-Bench or KoMT-Bench answers to judge")
    config = RunConfig.from_dict(manifest.config)
    if data_dir is None and config.data_dir:
        data_dir = Path(config.data_dir)
    preflight(options.client)
    config = dataclasses.replace(
        config, judge=True, judge_model=options.client.model,
        judge_base_url=options.client.base_url, judge_concurrency=options.client.concurrency,
        judge_max_tokens=options.client.max_tokens,
        komt_language_penalty=options.language_penalty,
        output_dir=str(output_dir) if output_dir else str(run_dir.parent.parent))
    judged: dict[str, tuple[list[Item], dict]] = {}
    for spec in specs:
        if scorer_for(spec).answers is AnswerPath.TOOL_CHAT:  # tool calls: own data and rubrics
            items = read_items(item_file(run_dir, spec.id))
            judged[spec.id] = (items, tool_chat.rejudge(spec, items, manifest.benchmarks[
                spec.id].data, config, options.client, data_dir))
            continue
        data = judge_stage.load_data(spec, data_dir)
        _check_data(spec, manifest, data)
        items = read_items(item_file(run_dir, spec.id))
        vouched = judge_stage.vouched_legacy_keys(manifest.benchmarks[spec.id].judge, items,
                                                  options.client)
        for item in items:  # a fresh judgment: drop the previous judge's verdicts
            item.score, item.verdict = None, judge_stage.UNJUDGED
            item.details = dict(item.details or {})
            item.details.pop("judge", None)
        judged[spec.id] = (items, judge_stage.judge_items(spec, items, data, options,
                                                          vouched=vouched))
    written = _write_judged(run_dir, manifest, scores, config, judged, started)
    judge_stage.require_ratings({b: record for b, (_, record) in judged.items()}, written)
    return written


def prior_vouched(model_dir: Path, benchmark: str, config: JudgeConfig) -> set[str]:
    """Legacy judgment-cache keys the earlier runs in `model_dir` vouch for, for this judge.

    Only runs judged before the server joined the cache key (judge records without `server`)
    can vouch; an unreadable run is skipped (`report` and `compare` refuse it on their own).
    """
    vouched: set[str] = set()
    if not model_dir.is_dir():
        return vouched
    for run_dir in sorted(p for p in model_dir.iterdir() if not p.name.startswith(".")):
        try:
            manifest, _ = load_run_records(run_dir)
            record = manifest.benchmarks[benchmark].judge if (
                benchmark in manifest.benchmarks) else None
            if not record or "server" in record:
                continue
            items = read_items(item_file(run_dir, benchmark))
        except (KananaError, OSError):
            continue
        vouched |= judge_stage.vouched_legacy_keys(record, items, config)
    return vouched


def clean_stale_partials(model_dir: Path, older_than_s: float = STALE_PARTIAL_S) -> list[Path]:
    """Remove the hidden `.<run-id>.partial` folders a killed write left in `model_dir`.

    A write takes seconds, and a partial folder is never a result (the rename into place is the
    commit), so one untouched for `older_than_s` is debris; younger ones may be another
    process's write in progress and stay.
    """
    if not model_dir.is_dir():
        return []
    removed = []
    for path in model_dir.glob(".*.partial"):
        try:
            if path.is_dir() and time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path)
                removed.append(path)
        except OSError:
            continue  # another process removed or renamed it meanwhile
    return removed


def _write_judged(source: Path, manifest: Manifest, scores: Scores, config: RunConfig,
                  judged: dict[str, tuple[list[Item], dict]], started: float) -> Path:
    run_id = free_run_id(Path(config.output_dir) / source.parent.name, new_run_id(config.hash()))
    rows = []
    for row in scores.scores:
        if row.benchmark in judged:
            items, record = judged[row.benchmark]
            spec = next(s for s in judged_specs(scores) if s.id == row.benchmark)
            scorer = scorer_for(spec)
            agg = scorer.aggregate(spec, items)
            row = row.model_copy(update={"value": agg.value, "stderr": agg.stderr, "n": agg.n,
                                         "subtasks": agg.subtasks,
                                         **scorer.row_fields(spec, items), "judge": record})
            manifest.benchmarks[row.benchmark].judge = record
        rows.append(row)
    scores = scores.model_copy(update={"run_id": run_id, "scores": rows})
    manifest = manifest.model_copy(update={
        "run_id": run_id, "config": config.to_dict(), "config_hash": config.hash(),
        "created_utc": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "command": list(sys.argv), "judged_from": str(source.resolve()),
        "timings": {**manifest.timings, "judge_s": round(time.time() - started, 3)}})
    for path in clean_stale_partials(Path(config.output_dir) / source.parent.name):
        print(f"kanana-eval: removed {path}, left by a write that was killed", file=sys.stderr)
    writer = RunWriter(Path(config.output_dir), source.parent.name, run_id)
    return writer.write(manifest, scores, {b: items for b, (items, _) in judged.items()},
                        copy_items_from=source)


def export_fastchat(run_dir: Path, out_dir: Path) -> list[Path]:
    """FastChat's files for each judged benchmark of a run, laid out as FastChat reads them.

    `<out>/<bench>/model_answer/<model>.jsonl` and, when judged,
    `<out>/<bench>/model_judgment/<judge>_single.jsonl`, so FastChat's own show_result works.
    """
    manifest, scores = load_run_records(Path(run_dir))
    specs = judged_specs(scores)
    if not specs:
        raise ResultsError(f"{run_dir} has no MT-Bench or KoMT-Bench answers to export")
    model_id = manifest.model.name.replace("/", "_")
    written = []
    for spec in specs:
        items = read_items(item_file(Path(run_dir), spec.id))
        bench = spec.id.split("@")[0]
        path = Path(out_dir) / bench / "model_answer" / f"{model_id}.jsonl"
        write_jsonl_records(path, export_fastchat_answers(items, model_id))
        written.append(path)
        record = manifest.benchmarks[spec.id].judge or {}
        if record.get("status") == "judged":
            judge_model = record["model"]
            path = Path(out_dir) / bench / "model_judgment" / f"{judge_model}_single.jsonl"
            write_jsonl_records(path, export_fastchat_judgments(items, model_id, judge_model))
            written.append(path)
    return written


def describe(path: Path) -> str:
    """One line per judged benchmark of a run: score, per turn, dropped, cost."""
    _, scores = load_run_records(Path(path))
    parts = []
    for row in scores.scores:
        judge = row.judge
        if not judge or judge.get("status") != "judged" or row.value is None:
            continue
        cost = judge.get("cost_usd")
        turns = {k: "n/a" if v is None else f"{v:.2f}" for k, v in (row.metrics or {}).items()}
        if "turn_1" not in turns:  # pass rates (tool calls), not 1-10 ratings per turn
            parts.append(f"{row.benchmark} {100 * row.value:.2f} (n={row.n}, unreadable "
                         f"{row.n_dropped}, judge {judge['model']}, {judge['api_calls']} calls)")
            continue
        parts.append(f"{row.benchmark} {row.value:.2f} (turn 1 {turns['turn_1']}, "
                     f"turn 2 {turns['turn_2']}, n={row.n}, dropped {row.n_dropped}, "
                     f"judge {judge['model']}, {judge['api_calls']} calls"
                     + (f", ~${cost:.2f})" if cost is not None else ")"))
    return " | ".join(parts)
