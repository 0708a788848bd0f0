"""Plan and run a protocol for one model: data → one engine → answers → items → scores → files.

The pipeline owns the engine, the request cache and the files; scorers only turn responses into
items and items into scores. Model work is cached per request on disk, keyed by the model's
fingerprint, backend and dtype, so a killed run started again with the same command resumes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol, select_benchmarks
from kanana_eval.config.registry import ModelRef, load_registry
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.engine.build import (
    EngineConfig,
    build_lm,
    preflight,
    resolve_backend,
    resolve_device,
    resolve_dtype,
)
from kanana_eval.engine.generation_stage import joined
from kanana_eval.engine.openai_endpoint import CHAT, COMPLETIONS
from kanana_eval.pipeline import tool_chat
from kanana_eval.pipeline.collect import (
    cap_generation,
    chat_template_record,
    collect_items,
    flag_truncation,
    plan_limits,
)
from kanana_eval.pipeline.data_record import data_record
from kanana_eval.pipeline.model_source import request_cache_path, resolve_weights
from kanana_eval.pipeline.niah_grid import (
    answer_grid,
    check_options,
    context_hint,
    is_grid,
    judge_grid,
    plan_grid,
    require_grid_judges,
)
from kanana_eval.pipeline.rejudge import prior_vouched
from kanana_eval.pipeline.run_record import BenchmarkOutcome, RunOutcome, write_run
from kanana_eval.results.checks import check_input_dir, check_output_dir
from kanana_eval.results.io import read_json
from kanana_eval.results.records import Scale
from kanana_eval.scoring.base import AnswerPath
from kanana_eval.scoring.catalog import check_specs, scorer_for
from kanana_eval.scoring.judge import stage as judge_stage
from kanana_eval.scoring.judge.client import JudgeConfig
from kanana_eval.scoring.judge.client import preflight as judge_preflight
from kanana_eval.scoring.sandbox.api import require_boundary
from kanana_eval.tasks.lm_eval_bridge import build_tasks


def judge_options(config: RunConfig,
                  rejudge: judge_stage.Rejudge | None = None) -> judge_stage.JudgeOptions:
    """The judge a run (or `judge` command) asked for; `rejudge` is a one-off (`--rejudge`),
    not part of the run's config, so `rerun` never pays for it again."""
    return judge_stage.JudgeOptions(
        JudgeConfig(model=config.judge_model, base_url=config.judge_base_url,
                    concurrency=config.judge_concurrency, max_tokens=config.judge_max_tokens),
        language_penalty=config.komt_language_penalty, rejudge=rejudge)


def _judged(spec: BenchmarkSpec) -> bool:
    return scorer_for(spec).answers is AnswerPath.JUDGED_TURNS


def _tool_chat(spec: BenchmarkSpec) -> bool:
    return scorer_for(spec).answers is AnswerPath.TOOL_CHAT


def run(config: RunConfig, *, rejudge: judge_stage.Rejudge | None = None) -> list[Path]:
    """Run every checkpoint the --model value names; returns the finished run folders."""
    if config.openai_api != COMPLETIONS and config.backend != "openai":
        raise ConfigError(f"--openai-api {config.openai_api} is an option of --backend openai "
                          f"(a server); --backend {config.backend} renders its own prompts")
    protocols = tuple(config.protocols) if config.protocols else None
    refs = load_registry().resolve(config.model, protocols)
    for ref in refs:  # fail on a missing protocol or a bad config before any model work starts
        for name in ref.protocols:
            load_protocol(name)
        specs = select_benchmarks(list(ref.protocols), config.benchmarks)
        check_specs(specs)
        check_output_dir(Path(config.output_dir) / ref.slug, "--output-dir")
        check_input_dir(config.data_dir, "--data-dir")
        if any(is_grid(s) for s in specs):  # grid options and --haystack-dir, before model work
            check_options(config, context_hint(
                ref, load_registry().yarn_rope_scaling if config.yarn else None))
        if config.yarn and ref.entry is not None and not ref.entry.yarn_128k:
            raise ConfigError(f"{ref.entry.key} does not take the YaRN 128K override (the "
                              "README: ~3B models and Kanana-1.5-15.7B-A3B support 32K only)")
        if config.backend == "openai" and config.openai_api == CHAT:
            check_chat_api(specs)
        if config.judge and any(scorer_for(s).needs_judge for s in specs):
            judge_preflight(judge_options(config).client)
        if any(scorer_for(s).runs_code for s in specs):  # no isolation: refused before work
            require_boundary(config.unsafe_exec)
    return [run_model(ref, dataclasses.replace(config, model=ref.name,
                                               protocols=list(ref.protocols)), rejudge=rejudge)
            for ref in refs]


def check_chat_api(specs: list[BenchmarkSpec]) -> None:
    """`--openai-api chat` sends conversations; a base protocol's plain prompts and NIAH's
    rendered grid are texts made here, which chat completions would wrap in a template again."""
    plain = [spec.id for spec in specs
             if not load_protocol(spec.protocol).chat_template or is_grid(spec)]
    if plain:
        raise ConfigError(f"--openai-api chat sends chat messages, but {', '.join(plain)} "
                          "take a prompt rendered here: run them with --openai-api completions "
                          "(the default)")


def engine_config(config: RunConfig, load_name: str) -> EngineConfig:
    backend = resolve_backend(config.backend)
    device = resolve_device(backend)
    rope = load_registry().yarn_rope_scaling if config.yarn else None
    return EngineConfig(
        backend=backend, model=load_name, revision=config.revision,
        dtype=resolve_dtype(config.dtype, device), batch_size=config.batch_size,
        device=None if backend == "openai" else device, base_url=config.base_url,
        tokenizer=config.tokenizer, rope_scaling=rope, max_model_len=config.max_model_len,
        tensor_parallel_size=config.tensor_parallel_size,
        data_parallel_size=config.data_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization, seed=config.seed,
        prefix_cache=config.prefix_cache, enforce_eager=config.enforce_eager,
        openai_api=config.openai_api,
    )


def run_model(ref: ModelRef, config: RunConfig, *,
              rejudge: judge_stage.Rejudge | None = None) -> Path:
    """One checkpoint: cheap engine checks, data, engine, all requests, scores, files."""
    timings: dict[str, float] = {}
    started = time.time()
    specs = cap_generation(select_benchmarks(list(ref.protocols), config.benchmarks),
                           config.max_gen_toks)
    data_dir = Path(config.data_dir).resolve() if config.data_dir else None

    t = time.time()
    resolved = resolve_weights(ref, config)
    engine = engine_config(config, resolved.load_name)
    preflight(engine)
    timings["resolve_model_s"] = time.time() - t

    t = time.time()
    lm_specs = [spec for spec in specs if not _judged(spec) and not is_grid(spec)]
    grids = [spec for spec in specs if is_grid(spec)]
    judged = [spec for spec in specs if _judged(spec)]
    tool_specs = [spec for spec in lm_specs if _tool_chat(spec)]  # chat with tools, own data
    lm_specs = [spec for spec in lm_specs if not _tool_chat(spec)]
    for spec in specs:
        scorer_for(spec).prepare(spec)
    built = {spec.id: build_tasks(spec, data_dir) for spec in lm_specs}
    data = {spec.id: data_record(spec, scorer_for(spec), built[spec.id], data_dir)
            for spec in lm_specs}
    judge_data = {spec.id: judge_stage.load_data(spec, data_dir) for spec in judged}
    data.update({spec.id: judge_stage.data_record(spec, judge_data[spec.id]) for spec in judged})
    tool_jobs = {spec.id: tool_chat.prepare(spec, config, data_dir) for spec in tool_specs}
    data.update({spec.id: tool_chat.data_record(tool_jobs[spec.id]) for spec in tool_specs})
    timings["load_data_s"] = time.time() - t

    plan, available = plan_limits(lm_specs, built, config.limit)
    for spec in judged:
        built[spec.id] = []
        plan[spec.id] = judge_stage.plan_questions(judge_data[spec.id], config.limit)
        available[spec.id] = len(judge_data[spec.id].questions)
    for spec in tool_specs:
        built[spec.id], plan[spec.id] = [], tool_jobs[spec.id].plan
        available[spec.id] = tool_jobs[spec.id].available

    t = time.time()
    lm = build_lm(engine)
    engine_record: dict[str, Any] = {**engine.describe(),
                                     "effective_max_length": getattr(lm, "max_length", None)}
    timings["build_engine_s"] = time.time() - t
    grid_plans = {spec.id: plan_grid(spec, lm, config, engine.rope_scaling) for spec in grids}
    for spec in grids:  # generated grids: their own data record, one item per cell
        data[spec.id] = grid_plans[spec.id].data_record()
        built[spec.id], available[spec.id] = [], grid_plans[spec.id].available
        plan[spec.id] = {"cells": grid_plans[spec.id].available}

    cache_path = request_cache_path(resolved, engine) if config.use_cache else None
    t = time.time()
    # Stage 1: every request that needs no earlier answer, MT-Bench's first turns included,
    # in one generation pass; stage 2: the second turns.
    first_turns = [request for spec in judged for request in judge_stage.first_turn_requests(
        lm, spec, judge_data[spec.id], plan[spec.id],
        system_prompt=load_protocol(spec.protocol).system_prompt, cache_path=cache_path)]
    with joined(lm, first_turns) as stage_one:
        items = collect_items(lm, lm_specs, built, plan, seed=config.seed, cache_path=cache_path,
                              workers=config.execution_workers, timings=timings,
                              data_dir=data_dir, unsafe_exec=config.unsafe_exec)
    for spec in judged:
        items[spec.id] = judge_stage.answer_items(
            lm, spec, judge_data[spec.id], plan[spec.id],
            system_prompt=load_protocol(spec.protocol).system_prompt, cache_path=cache_path,
            seed=config.seed, ready=stage_one.outputs)
        flag_truncation(lm, [spec], items)
    for spec in tool_specs:
        items[spec.id], engine_record.setdefault("tool_chat", {})[spec.id] = tool_chat.answer(
            tool_jobs[spec.id], lm, engine, cache_path)
        flag_truncation(lm, [spec], items)
    for spec in grids:
        items[spec.id], engine_record.setdefault("grids", {})[spec.id] = answer_grid(
            lm, grid_plans[spec.id])
    timings["inference_and_scoring_s"] = time.time() - t
    engine_record["chat_template"] = chat_template_record(lm, specs)
    engine_record["generation_stages"] = {
        "first_turns_joined": len(stage_one.outputs),
        "first_turns_separate": len(first_turns) - len(stage_one.outputs)}
    if hasattr(lm, "speed_record"):  # how requests were computed: prefix reuse, batching
        engine_record["speed"] = lm.speed_record()
    judges: dict[str, dict[str, Any]] = {}
    if judged and config.judge:
        t = time.time()
        for spec in judged:
            judges[spec.id] = judge_stage.judge_items(
                spec, items[spec.id], judge_data[spec.id], judge_options(config, rejudge),
                vouched=prior_vouched(Path(config.output_dir) / ref.slug, spec.id,
                                      judge_options(config).client))
        timings["judge_s"] = time.time() - t
    for spec in tool_specs:  # exact match always; the rubric judge unless --no-judge
        t = time.time()
        judges[spec.id] = tool_chat.judge(tool_jobs[spec.id], items[spec.id], config,
                                          judge_options(config).client)
        timings[f"judge_{spec.id}_s"] = time.time() - t
    for spec in grids:  # NIAH's QA answers rated 1-10 when --niah-judge asks (docs/niah.md)
        grid_judge = judge_grid(grid_plans[spec.id], items[spec.id], config,
                                judge_options(config).client)
        if grid_judge is not None:
            judges[spec.id] = grid_judge
    timings["total_s"] = time.time() - started

    outcomes = [BenchmarkOutcome(spec=spec, items=items[spec.id], data=data[spec.id],
                                 plan=plan[spec.id], available=available[spec.id],
                                 lm_eval_tasks={bt.name: bt.version for bt in built[spec.id]},
                                 judge=judges.get(spec.id))
                for spec in specs]
    run_dir = write_run(RunOutcome(resolved=resolved, config=config, engine=engine_record,
                                   benchmarks=outcomes, timings=timings, started=started,
                                   request_cache=str(cache_path) if cache_path else None))
    # MT-Bench/KoMT-Bench with every judgment unparsable: one line, after the write
    judge_stage.require_ratings({s.id: judges[s.id] for s in judged if s.id in judges}, run_dir)
    require_grid_judges({s.id: judges[s.id] for s in grids if s.id in judges}, run_dir)
    return run_dir


def summary_line(run_dir: Path) -> str:
    """One line for the end of a run: every score with its error bar, and where it is."""
    scores = read_json(run_dir / "scores.json", "scores")
    parts = []
    for row in scores["scores"]:
        if row["value"] is None:
            parts.append(f"{row['benchmark']} n/a")
            continue
        unit = Scale(row.get("scale", "fraction")).points_per_unit
        err = f" ±{unit * row['stderr']:.2f}" if row["stderr"] is not None else ""
        parts.append(f"{row['benchmark']} {unit * row['value']:.2f}{err} (n={row['n']})")
    tag = (" [SMOKE RUN: --limit cut the data; not comparable with published numbers]"
           if scores["smoke"] else "")
    return f"{scores['model']['name']}: " + " | ".join(parts) + f"{tag} -> {run_dir}"
