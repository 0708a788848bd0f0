"""The answer path of generated grids (NIAH): cells from the model's tokenizer, answers, items.

A benchmark whose scorer answers `AnswerPath.GENERATED_GRID` makes its own prompts: the grid is
built here with the run's engine's tokenizer (cells are cut in tokens), cells beyond the
model's context are skipped, and the rest are answered in one pass. On the hf engine the cells
go through `SharedPrefixGenerator`, which prefills each shared haystack prefix once; other
engines get the prompt texts through lm-eval's `generate_until` (vLLM shares prefixes with its
own prefix cache). A cell whose generation fails is recorded as failed and the grid goes on.
With `--niah-judge` the QA form's answers are then rated 1-10 by the judge (`judge_grid`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, load_protocol
from kanana_eval.config.registry import ModelRef
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import ConfigError
from kanana_eval.engine.shared_prefix_generation import GridPrompt, SharedPrefixGenerator
from kanana_eval.results.records import DataRecord, Item
from kanana_eval.scoring.base import AnswerPath
from kanana_eval.scoring.catalog import scorer_for
from kanana_eval.scoring.judge.client import JudgeConfig, JudgeError
from kanana_eval.scoring.niah import form_of, judge_cells
from kanana_eval.tasks.niah import generator as niah

log = logging.getLogger("kanana_eval")
_MARK = "\x00NIAH-USER-TURN\x00"
DEFAULT_MAX_NEW_TOKENS = 24


def is_grid(spec: BenchmarkSpec) -> bool:
    return scorer_for(spec).answers is AnswerPath.GENERATED_GRID


def haystack_source(config: RunConfig) -> niah.HaystackSource:
    """The run's haystack: the project's filler, or --haystack-dir (checked before model work)."""
    if config.haystack_dir:
        return niah.folder_haystack(Path(config.haystack_dir).expanduser())
    return niah.HaystackSource()


def requested_grid(config: RunConfig, context: int) -> niah.Grid:
    """--niah-lengths / --niah-depths / --niah-languages, else the default grid for `context`."""
    return niah.Grid(
        lengths=(niah.parse_lengths(config.niah_lengths) if config.niah_lengths
                 else niah.default_lengths(context)),
        depths=(niah.parse_depths(config.niah_depths) if config.niah_depths
                else niah.DEFAULT_DEPTHS),
        languages=(niah.parse_languages(config.niah_languages) if config.niah_languages
                   else niah.LANGUAGES))


def context_hint(ref: ModelRef, rope_scaling: dict[str, Any] | None) -> int | None:
    """The model's context before loading it: the registry's, else its folder's config.json."""
    context = ref.entry.context_length if ref.entry is not None else None
    config_file = ref.path / "config.json" if ref.path is not None else None
    if context is None and config_file is not None and config_file.is_file():
        try:
            context = int(json.loads(config_file.read_text(encoding="utf-8"))
                          ["max_position_embeddings"])
        except (OSError, ValueError, KeyError, TypeError):
            context = None
    if context is not None and rope_scaling:
        context = max(context, extended_context(rope_scaling))
    return context


def check_options(config: RunConfig, context: int | None) -> None:
    """Before any model work: every grid option parses, the haystack folder has text, and the
    grid has a length within the model's context."""
    grid = requested_grid(config, context or niah.MIN_LENGTH)
    if context is not None and all(length > context for length in grid.lengths):
        raise ConfigError(f"every NIAH length ({', '.join(map(str, grid.lengths))} tokens) is "
                          f"longer than the model's context ({context} tokens)")
    haystack_source(config)


def extended_context(rope_scaling: dict[str, Any]) -> int:
    """YaRN's context: the original length times the factor."""
    return int(float(rope_scaling.get("original_max_position_embeddings", 0))
               * float(rope_scaling.get("factor", 1.0)))


def model_context(lm: Any, rope_scaling: dict[str, Any] | None) -> int:
    """Tokens the loaded model takes: its maximum length, or YaRN's extended one."""
    context = int(getattr(lm, "max_length", 0) or 0)
    if rope_scaling:
        context = max(context, extended_context(rope_scaling))
    return context


def loaded_rope(lm: Any) -> dict[str, Any] | None:
    """The rope parameters of the model as loaded (hf), read back for the record."""
    config = getattr(getattr(lm, "model", None), "config", None)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    return {k: v for k, v in dict(rope).items() if v is None or isinstance(v, (int, float, str))} \
        if isinstance(rope, dict) else None


def _frame(lm: Any, chat: bool) -> niah.Frame:
    """The chat template around one user turn (instruct), or the tokenizer's BOS (base)."""
    tok = lm.tokenizer
    if chat:
        text = tok.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                       add_generation_prompt=True)
        head, tail = text.split(_MARK)
        return niah.Frame(tuple(tok.encode(head, add_special_tokens=False)),
                          tuple(tok.encode(tail, add_special_tokens=False)), head, tail)
    if getattr(lm, "add_bos_token", None) is False:
        return niah.Frame()
    plain = tok.encode("a", add_special_tokens=False)
    special = tok.encode("a", add_special_tokens=True)
    head = special[:len(special) - len(plain)] if special[len(special) - len(plain):] == plain \
        else []
    return niah.Frame(tuple(head), (), tok.decode(head) if head else "", "")


@dataclass
class GridPlan:
    """One grid benchmark ready to answer: its cells and the facts the manifest records."""

    spec: BenchmarkSpec
    cells: list[niah.Cell]
    record: dict[str, Any] = field(default_factory=dict)

    def data_record(self) -> DataRecord:
        return DataRecord(source="generated", dataset_id=self.spec.task.dataset_id,
                          path=self.record["haystack"].get("path"),
                          fingerprint=niah.fingerprint(self.cells), derived_fewshot=False,
                          generated=self.record)

    @property
    def available(self) -> int:
        return len(self.cells)


def _limits(spec: BenchmarkSpec) -> tuple[int, list[str]]:
    gen = spec.generation or {}
    return int(gen.get("max_gen_toks", DEFAULT_MAX_NEW_TOKENS)), list(gen.get("until") or [])


def plan_grid(spec: BenchmarkSpec, lm: Any, config: RunConfig,
              rope_scaling: dict[str, Any] | None) -> GridPlan:
    """The cells of one grid benchmark for this engine; a grid beyond every context fails."""
    context = model_context(lm, rope_scaling)
    grid = requested_grid(config, context)
    source = haystack_source(config)
    form = form_of(spec)
    max_new, _ = _limits(spec)
    tok = lm.tokenizer
    cells = niah.build_cells(
        grid, form, seed=config.seed,
        encode=lambda text: tok.encode(text, add_special_tokens=False),
        frame=_frame(lm, load_protocol(spec.protocol).chat_template),
        max_new_tokens=max_new, context=context, source=source)
    if all(c.skipped for c in cells):
        raise ConfigError(f"{spec.id}: every NIAH cell is longer than the model's context "
                          f"({context} tokens; lengths {', '.join(map(str, grid.lengths))})")
    needles = {c.language: {"key": c.needle.key, "value": c.needle.value} for c in cells}
    record = {"seed": config.seed, "form": form, "grid": grid.describe(), "context": context,
              "yarn": rope_scaling is not None, "needles": needles,
              "haystack": source.describe(), "generator_version": niah.GENERATOR_VERSION,
              "cells": len(cells), "skipped": sum(1 for c in cells if c.skipped),
              "rope_parameters_loaded": loaded_rope(lm)}
    return GridPlan(spec, cells, record)


def answer_grid(lm: Any, plan: GridPlan) -> tuple[list[Item], dict[str, Any]]:
    """Items for every cell (skipped and failed ones included) and how the answers were made."""
    max_new, stops = _limits(plan.spec)
    runnable = [c for c in plan.cells if not c.skipped]
    outputs: dict[str, str] = {}
    errors: dict[str, str] = {}
    runner = getattr(lm, "runner", None)
    if runner is not None:  # the hf engine: shared prefixes prefilled once
        generator = SharedPrefixGenerator(runner, eos_ids=lm._eos_ids(),
                                          decode=lambda ids: lm.tokenizer.decode(ids))
        prompts = [GridPrompt(c.tokens, stops, max_new) for c in runnable]

        def done(index: int, tokens: list[int]) -> None:
            outputs[runnable[index].item_id] = lm._finish_text(tokens, stops)

        def failed(index: int, exc: BaseException) -> None:
            errors[runnable[index].item_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.warning("NIAH cell %s failed: %s", runnable[index].item_id,
                        errors[runnable[index].item_id])

        generator.run(prompts, on_done=done, on_error=failed)
        how = {"path": "shared-prefix generation", **generator.stats.describe()}
    else:
        _generate_texts(lm, runnable, max_new, stops, outputs, errors)
        how = {"path": "lm-eval generate_until (engine prefix caching)",
               "prompt_tokens": sum(len(c.tokens) for c in runnable)}
    how["trie_tokens"] = niah.shared_prefix_tokens(c.tokens for c in runnable)
    return [_item(plan.spec, cell, outputs, errors) for cell in plan.cells], how


def _generate_texts(lm: Any, cells: list[niah.Cell], max_new: int, stops: list[str],
                    outputs: dict[str, str], errors: dict[str, str]) -> None:
    """Prompt texts through lm-eval's generate_until: all at once, else cell by cell."""
    from lm_eval.api.instance import Instance  # noqa: PLC0415 - heavy: lm-eval

    kwargs = {"until": stops, "max_gen_toks": max_new, "do_sample": False, "temperature": 0.0}

    def request(cell: niah.Cell) -> Any:
        return Instance(request_type="generate_until", doc={}, arguments=(cell.text, kwargs),
                        idx=0)

    try:
        texts = lm.generate_until([request(c) for c in cells])
        outputs.update({c.item_id: t for c, t in zip(cells, texts, strict=True)})
        return
    except Exception as exc:  # noqa: BLE001 - find the failing cells one by one
        log.warning("NIAH grid failed as a batch (%s); answering cell by cell", exc)
    for cell in cells:
        try:
            outputs[cell.item_id] = lm.generate_until([request(cell)])[0]
        except Exception as exc:  # noqa: BLE001 - a failed cell is recorded, the grid goes on
            errors[cell.item_id] = f"{type(exc).__name__}: {exc}".splitlines()[0]


def _item(spec: BenchmarkSpec, cell: niah.Cell, outputs: dict[str, str],
          errors: dict[str, str]) -> Item:
    details = {"form": cell.form, "language": cell.language, "length": cell.length,
               "depth": cell.depth, "prompt_tokens": len(cell.tokens),
               "needle_token": cell.needle_token, "haystack_tokens": cell.haystack_tokens}
    if cell.skipped or cell.item_id in errors:
        why = {"skipped": cell.skipped} if cell.skipped else {"error": errors[cell.item_id]}
        return Item(benchmark=spec.id, item_id=cell.item_id, subtask=cell.language,
                    prompt=cell.text, output="", extracted=None, target=cell.needle.value,
                    score=None, verdict="unscored" if cell.skipped else "error",
                    details={**details, **why})
    return scorer_for(spec).cell_item(spec, item_id=cell.item_id, language=cell.language,
                                      prompt=cell.text, output=outputs[cell.item_id],
                                      value=cell.needle.value, details=details)


def judge_grid(plan: GridPlan, items: list[Item], config: RunConfig, judge: JudgeConfig, *,
               progress: bool = True) -> dict[str, Any] | None:
    """The judge record of a QA-form grid run with `--niah-judge` (items rated in place), else
    None: the retrieval form has no answer to grade, and `--no-judge` wins."""
    if not (config.niah_judge and config.judge) or plan.record["form"] != "qa":
        return None
    needles = {c.language: c.needle for c in plan.cells}
    return judge_cells(plan.spec, items, needles, judge, progress=progress)


def require_grid_judges(judges: dict[str, dict[str, Any]], run_dir: Path) -> None:
    """A grid whose judge failed: one line after the run is written (answers and contains-value
    scores kept), so the exit code says the asked-for judge scores are missing."""
    for bench, record in judges.items():
        if record.get("error"):
            raise JudgeError(f"{bench}: the judge failed ({record['error']}); the run is written "
                             f"to {run_dir} with every cell's answer and contains-value score; "
                             f"run again to judge (replies already made are cached)")
