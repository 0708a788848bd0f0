"""Score a stored completions file without a model: `kanana-eval score BENCHMARK FILE`.

So completions made elsewhere (another harness, an API batch job, an older run) are checked by
exactly the scorers of a run. Accepted lines (JSON Lines):

* `{"item_id": ..., "response": ...}` (or `"output"`: a run's own `items/<benchmark>.jsonl`);
* for HumanEval+ / MBPP+, evalplus' samples format: `{"task_id": ..., "solution": ...}` (used as
  it is, as evalplus' `evaluate` does) or `{"task_id": ..., "completion": ...}` (prompt + completion).

Generation benchmarks replay the responses through lm-eval (a stand-in LM answers each request
from the file), so filters and metrics are the run's own; with no model there is no chat
template, so item prompts are stored plain. Only the items in the file are scored; fewer than
the benchmark has makes the result a smoke run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from kanana_eval.config.protocol import BenchmarkSpec, available_protocols, load_protocol
from kanana_eval.config.registry import ModelRef
from kanana_eval.core.errors import ConfigError, ResultsError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.scoring.base import item_id
from kanana_eval.tasks.lm_eval_bridge import BuiltTask, build_tasks


class StoredCompletionsLM(LM):
    """Answers generation requests from a completions file, keyed by the item's dataset id."""

    def __init__(self, responses: dict[str, str], names: dict[str, tuple[BenchmarkSpec, str | None]]) -> None:
        super().__init__()
        self.responses, self.names = responses, names

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            spec, subtask = self.names[req.task_name]
            out.append(self.responses[item_id(spec, subtask, req.doc_id, req.doc)])
        return out

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        raise ConfigError("this benchmark is scored by log-likelihood: it needs a model, not completions")

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        raise ConfigError("this benchmark is scored by log-likelihood: it needs a model, not completions")


def find_benchmark(name: str) -> BenchmarkSpec:
    """`gsm8k@instruct`, or a bare name that only one protocol has."""
    found = [b for p in available_protocols() for b in load_protocol(p).benchmarks
             if name in (b.id, b.id.split("@")[0])]
    if len(found) != 1:
        known = sorted(b.id for p in available_protocols() for b in load_protocol(p).benchmarks)
        what = "is ambiguous" if found else "is unknown"
        raise ConfigError(f"benchmark '{name}' {what}; name one of: {', '.join(known)}")
    return found[0]


def read_completions(path: Path, spec: BenchmarkSpec) -> dict[str, str]:
    """item id -> response text; one clear error for a malformed or duplicated line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ResultsError(f"cannot read completions file {path}: {exc}") from exc
    responses: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{number} is not valid JSON: {exc.msg}") from exc
        key = row.get("item_id", row.get("task_id")) if isinstance(row, dict) else None
        text = next((row[k] for k in ("response", "output", "solution", "completion")
                     if isinstance(row, dict) and k in row), None)
        if not isinstance(key, str) or not isinstance(text, str):
            raise ResultsError(f"{path}:{number} needs a string item_id (or task_id) and a string "
                               "response, output, solution or completion")
        if "completion" in row and "solution" not in row and spec.task.scorer == "evalplus":
            text = {"completion": text}  # type: ignore[assignment]  # evalplus: prompt + completion
        if key in responses:
            raise ResultsError(f"{path}:{number} repeats item {key}")
        responses[key] = text
    if not responses:
        raise ResultsError(f"{path} holds no completions")
    return responses


def _doc_ids(spec: BenchmarkSpec, built: list[BuiltTask], wanted: set[str]) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for bt in built:
        ids[bt.name] = [i for i, doc in enumerate(bt.task.eval_docs)
                        if item_id(spec, bt.subtask, i, doc) in wanted]
    found = {item_id(spec, bt.subtask, i, bt.task.eval_docs[i]) for bt in built for i in ids[bt.name]}
    missing = sorted(wanted - found)
    if missing:
        raise ResultsError(f"{len(missing)} item id(s) are not in {spec.id}: {', '.join(missing[:5])}")
    return ids


def _evalplus_items(spec: BenchmarkSpec, built: list[BuiltTask], responses: dict[str, Any],
                    doc_ids: dict[str, list[int]]) -> list[dict[str, Any]]:
    """evalplus' samples semantics: `solution` as it is, `completion` after the prompt."""
    items = []
    for bt in built:
        for i in doc_ids[bt.name]:
            doc = bt.task.eval_docs[i]
            given = responses[doc["task_id"]]
            solution = doc["prompt"] + given["completion"] if isinstance(given, dict) else given
            items.append({"schema_version": 1, "benchmark": spec.id, "item_id": doc["task_id"],
                          "subtask": None, "prompt": doc["prompt"], "output": solution,
                          "extracted": solution, "target": None, "score": 0.0, "verdict": "unscored",
                          "details": {"solution": solution, "entry_point": doc["entry_point"]}})
    return items


def score_completions(benchmark: str, path: Path, *, data_dir: Path | None, output_dir: Path,
                      workers: int | None = None) -> Path:
    """Score `path` on `benchmark` and store a run folder (source `completions`); return it."""
    from kanana_eval.pipeline.run import (
        ResolvedModel,
        RunConfig,
        _data_record,
        _execute_code,
        _write_run,
        collect_items,
    )

    started = time.time()
    spec = find_benchmark(benchmark)
    if spec.generation is None:
        raise ConfigError(f"{spec.id} is scored by log-likelihood: it needs a model, not completions")
    responses = read_completions(path, spec)
    built = build_tasks(spec, data_dir)
    doc_ids = _doc_ids(spec, built, set(responses))
    if spec.task.scorer == "evalplus":
        items = {spec.id: _evalplus_items(spec, built, responses, doc_ids)}
        _execute_code([spec], items, workers, data_dir)
    else:
        names = {bt.name: (spec, bt.subtask) for bt in built}
        items = collect_items(StoredCompletionsLM(responses, names), [spec], {spec.id: built},
                              {spec.id: {k: len(v) for k, v in doc_ids.items()}},
                              workers=workers, data_dir=data_dir, doc_ids=doc_ids,
                              chat_templates=False)
    digest = file_sha256(Path(path))
    ref = ModelRef(name=f"completions-{Path(path).stem}", protocols=(spec.protocol,))
    config = RunConfig(model=str(Path(path).resolve()), protocols=[spec.protocol], benchmarks=[spec.id],
                       backend="completions", data_dir=str(data_dir) if data_dir else None,
                       output_dir=str(output_dir), execution_workers=workers, use_cache=False)
    resolved = ResolvedModel(ref, str(path), "completions", f"sha256:{digest}", None, str(Path(path).resolve()))
    engine = {"backend": "completions", "file": str(Path(path).resolve()), "sha256": digest,
              "chat_template": {"applied": False, "source": None, "sha256": None, "template": None,
                                "note": "no model: item prompts are shown without a chat template"}}
    plan = {spec.id: {k: len(v) for k, v in doc_ids.items()}}
    available = {spec.id: sum(len(bt.task.eval_docs) for bt in built)}
    data = {spec.id: _data_record(spec, built, data_dir)}
    timings = {"total_s": time.time() - started}
    return _write_run(ref, config, resolved, engine, [spec], {spec.id: built}, data,
                      plan, available, items, timings, None, started)

