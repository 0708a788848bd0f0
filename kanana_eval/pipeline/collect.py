"""Requests through lm-eval on one engine, lm-eval's samples into items, code into the sandbox.

lm-eval groups the requests of all tasks by type, so every benchmark of a protocol shares one
engine and one pass per request type; a protocol with a chat template (instruct) is a second
lm-eval call on the same engine. Each scorer then builds its items and runs what it must run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.core.paths import cache_dir
from kanana_eval.results.records import Item
from kanana_eval.scoring.base import ExecutionContext
from kanana_eval.scoring.catalog import scorer_for
from kanana_eval.tasks.limits import spread_limit
from kanana_eval.tasks.lm_eval_bridge import BuiltTask

Plan = dict[str, dict[str, int]]  # benchmark id -> leaf task -> items to run


def collect_items(lm: Any, specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
                  plan: Plan, *, seed: int = 1234, cache_path: Path | None = None,
                  workers: int | None = None, timings: dict[str, float] | None = None,
                  data_dir: Path | None = None, doc_ids: dict[str, list[int]] | None = None,
                  chat_templates: bool = True,
                  unsafe_exec: bool = False) -> dict[str, list[Item]]:
    """Every planned request through lm-eval on `lm`, then one item per document, executed.

    `chat_templates=False` renders every prompt plain (scoring stored completions: no model);
    `unsafe_exec` runs code without the sandbox's isolation boundary (--unsafe-exec).
    """
    timings = timings if timings is not None else {}
    samples: dict[str, list[dict[str, Any]]] = {}
    t = time.time()
    for chat, system_prompt, group in _chat_groups(specs):
        samples.update(_evaluate(lm, group, built, plan, chat=chat and chat_templates,
                                 system_prompt=system_prompt, seed=seed, cache_path=cache_path,
                                 doc_ids=doc_ids))
    timings["inference_s"] = time.time() - t
    items: dict[str, list[Item]] = {}
    for spec in specs:
        scorer = scorer_for(spec)
        items[spec.id] = [item for bt in built[spec.id]
                          for item in scorer.items_from_samples(spec, bt.subtask,
                                                                samples.get(bt.name, []))]
    flag_truncation(lm, specs, items)
    t = time.time()
    execute(specs, items, ExecutionContext(data_dir=data_dir, cache_dir=cache_dir(),
                                           workers=workers, unsafe_exec=unsafe_exec))
    timings["execution_s"] = time.time() - t
    return items


def execute(specs: Sequence[BenchmarkSpec], items: dict[str, list[Item]],
            context: ExecutionContext) -> None:
    """What each scorer must still run to give verdicts (code in the sandbox)."""
    for spec in specs:
        scorer_for(spec).execute(spec, items[spec.id], context)


def _chat_groups(specs: list[BenchmarkSpec]) -> list[tuple[bool, str | None, list[BenchmarkSpec]]]:
    """Specs grouped by how prompts are rendered: (chat template?, system prompt, specs)."""
    groups: dict[tuple[bool, str | None], list[BenchmarkSpec]] = {}
    for spec in specs:
        proto = load_protocol(spec.protocol)
        groups.setdefault((proto.chat_template, proto.system_prompt), []).append(spec)
    return [(chat, system, group) for (chat, system), group in groups.items()]


def _evaluate(lm: Any, specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
              plan: Plan, *, chat: bool, system_prompt: str | None, seed: int,
              cache_path: Path | None, doc_ids: dict[str, list[int]] | None = None,
              ) -> dict[str, list[dict[str, Any]]]:
    """One lm-eval `simple_evaluate` over the planned documents; lm-eval's logged samples.

    Documents are the first `plan` ones of each leaf task, or exactly `doc_ids[leaf]` when given.
    """
    import lm_eval  # noqa: PLC0415 - heavy: lm-eval's evaluator, only when a run evaluates
    from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy, as above

    samples = {bt.name: (doc_ids[bt.name] if doc_ids is not None
                         else list(range(plan[spec.id][bt.name])))
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


def token_limit_lowered(spec: BenchmarkSpec) -> bool:
    """True when --max-gen-toks cut this benchmark's protocol token limit (a smoke run)."""
    original = next(b for b in load_protocol(spec.protocol).benchmarks if b.id == spec.id)
    ours = (spec.generation or {}).get("max_gen_toks")
    return ours is not None and ours != (original.generation or {}).get("max_gen_toks")


def flag_truncation(lm: Any, specs: list[BenchmarkSpec], items: dict[str, list[Item]]) -> None:
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
                n = len(encode(item.output))
            except Exception:  # noqa: BLE001 - an engine without a local tokenizer
                return
            item.truncated = n >= int(limit) - 1
            item.add_details(output_tokens=n)


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
    else:  # a server that applies its own template (--openai-api chat) says so
        record["source"] = getattr(lm, "chat_template_source", None)
    return record


def plan_limits(specs: list[BenchmarkSpec], built: dict[str, list[BuiltTask]],
                limit: int | None) -> tuple[Plan, dict[str, int]]:
    """(items per leaf task for each benchmark, items available per benchmark) under --limit."""
    plan: Plan = {}
    available: dict[str, int] = {}
    for spec in specs:
        sizes = {bt.name: len(bt.task.eval_docs) for bt in built[spec.id]}
        available[spec.id] = sum(sizes.values())
        plan[spec.id] = spread_limit(sizes, limit)
    return plan, available
