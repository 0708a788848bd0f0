"""Score a stored completions file without a model: `kanana-eval score BENCHMARK FILE`.

So completions made elsewhere (another harness, an API batch job, an older run) are checked by
exactly the scorers of a run. Accepted lines (JSON Lines):

* `{"item_id": ..., "response": ...}` (or `"output"`: a run's own `items/<benchmark>.jsonl`);
* for HumanEval+ / MBPP+, evalplus' samples format: `{"task_id": ..., "solution": ...}` (used as
  it is, as evalplus' `evaluate` does) or `{"task_id": ..., "completion": ...}` (prompt +
  completion).

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

from kanana_eval.config.protocol import BenchmarkSpec, available_protocols, load_protocol
from kanana_eval.config.registry import ModelRef
from kanana_eval.config.run_config import RunConfig
from kanana_eval.core.errors import ConfigError, ResultsError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import cache_dir
from kanana_eval.pipeline.collect import collect_items, execute
from kanana_eval.pipeline.data_record import data_record
from kanana_eval.pipeline.model_source import ResolvedModel
from kanana_eval.pipeline.run_record import BenchmarkOutcome, RunOutcome, write_run
from kanana_eval.results.checks import check_input_dir, check_output_dir
from kanana_eval.scoring.base import AnswerPath, ExecutionContext, Scorer, item_id
from kanana_eval.scoring.catalog import check_spec
from kanana_eval.scoring.sandbox.api import require_boundary
from kanana_eval.tasks.lm_eval_bridge import BuiltTask, build_tasks

_NEEDS_MODEL = "this benchmark is scored by log-likelihood: it needs a model, not completions"


def stored_completions_lm(responses: dict[str, Any],
                          names: dict[str, tuple[BenchmarkSpec, str | None]]) -> Any:
    """An lm-eval LM that answers generation requests from a completions file, by item id.

    Built on call because lm-eval's LM base class is a heavy import the CLI should not pay for.
    """
    from lm_eval.api.model import LM  # noqa: PLC0415 - heavy: lm-eval loads only when scoring

    class StoredCompletionsLM(LM):
        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            out = []
            for req in requests:
                spec, subtask = names[req.task_name]
                out.append(responses[item_id(spec, subtask, req.doc_id, req.doc)])
            return out

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
            raise ConfigError(_NEEDS_MODEL)

        def loglikelihood_rolling(self, requests: list[Any],
                                  disable_tqdm: bool = False) -> list[Any]:
            raise ConfigError(_NEEDS_MODEL)

    return StoredCompletionsLM()


def find_benchmark(name: str) -> BenchmarkSpec:
    """`gsm8k@instruct`, or a bare name that only one protocol has."""
    found = [b for p in available_protocols() for b in load_protocol(p).benchmarks
             if name in (b.id, b.id.split("@")[0])]
    if len(found) != 1:
        known = sorted(b.id for p in available_protocols() for b in load_protocol(p).benchmarks)
        what = "is ambiguous" if found else "is unknown"
        raise ConfigError(f"benchmark '{name}' {what}; name one of: {', '.join(known)}")
    return found[0]


def read_completions(path: Path, scorer: Scorer) -> dict[str, Any]:
    """item id -> response; one clear error for a malformed or duplicated line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ResultsError(f"completions file {path} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})") from exc
    except OSError as exc:
        raise ResultsError(f"cannot read completions file {path}: {exc}") from exc
    responses: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{number} is not valid JSON: {exc.msg}") from exc
        key = row.get("item_id", row.get("task_id")) if isinstance(row, dict) else None
        text = scorer.completion_text(row) if isinstance(row, dict) else None
        if not isinstance(key, str) or text is None:
            raise ResultsError(f"{path}:{number} needs a string item_id (or task_id) and a "
                               "string response, output, solution or completion")
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
    found = {item_id(spec, bt.subtask, i, bt.task.eval_docs[i])
             for bt in built for i in ids[bt.name]}
    missing = sorted(wanted - found)
    if missing:
        raise ResultsError(f"{len(missing)} item id(s) are not in {spec.id}: "
                           f"{', '.join(missing[:5])}")
    return ids


def score_completions(benchmark: str, path: Path, *, data_dir: Path | None, output_dir: Path,
                      workers: int | None = None, unsafe_exec: bool = False) -> Path:
    """Score `path` on `benchmark` and store a run folder (source `completions`); return it.

    Code runs in the sandbox's isolation boundary, refused where it is missing unless
    `unsafe_exec` (--unsafe-exec).
    """
    started = time.time()
    spec = find_benchmark(benchmark)
    scorer = check_spec(spec)
    if spec.generation is None:
        raise ConfigError(f"{spec.id} is scored by log-likelihood: it needs a model, "
                          "not completions")
    if scorer.answers is AnswerPath.GENERATED_GRID:
        raise ConfigError(f"{spec.id} is a generated grid whose cells are cut with the model's "
                          "tokenizer: it needs a model (kanana-eval run), not completions")
    responses = read_completions(path, scorer)
    ref = ModelRef(name=f"completions-{Path(path).stem}", protocols=(spec.protocol,))
    check_output_dir(Path(output_dir) / ref.slug, "--output-dir")  # before any scoring
    check_input_dir(data_dir, "--data-dir")
    if scorer.runs_code:
        require_boundary(unsafe_exec)  # refused before any work, in one line
    scorer.prepare(spec)
    built = build_tasks(spec, data_dir)
    doc_ids = _doc_ids(spec, built, set(responses))
    docs = [(bt.subtask, bt.task.eval_docs[i]) for bt in built for i in doc_ids[bt.name]]
    direct = scorer.items_from_completions(spec, docs, responses)
    if direct is not None:
        items = {spec.id: direct}
        execute([spec], items, ExecutionContext(data_dir=data_dir, cache_dir=cache_dir(),
                                                workers=workers, unsafe_exec=unsafe_exec))
    else:
        names = {bt.name: (spec, bt.subtask) for bt in built}
        items = collect_items(stored_completions_lm(responses, names), [spec], {spec.id: built},
                              {spec.id: {k: len(v) for k, v in doc_ids.items()}},
                              workers=workers, data_dir=data_dir, doc_ids=doc_ids,
                              chat_templates=False, unsafe_exec=unsafe_exec)
    digest = file_sha256(Path(path))
    config = RunConfig(model=str(Path(path).resolve()), protocols=[spec.protocol],
                       benchmarks=[spec.id], backend="completions",
                       data_dir=str(data_dir) if data_dir else None, output_dir=str(output_dir),
                       execution_workers=workers, use_cache=False, unsafe_exec=unsafe_exec)
    resolved = ResolvedModel(ref, str(path), "completions", f"sha256:{digest}", None,
                             str(Path(path).resolve()))
    engine = {"backend": "completions", "file": str(Path(path).resolve()), "sha256": digest,
              "chat_template": {"applied": False, "source": None, "sha256": None,
                                "template": None,
                                "note": "no model: item prompts are shown without a chat template"}}
    outcome = BenchmarkOutcome(spec=spec, items=items[spec.id],
                               data=data_record(spec, scorer, built, data_dir),
                               plan={k: len(v) for k, v in doc_ids.items()},
                               available=sum(len(bt.task.eval_docs) for bt in built),
                               lm_eval_tasks={bt.name: bt.version for bt in built})
    return write_run(RunOutcome(resolved=resolved, config=config, engine=engine,
                                benchmarks=[outcome], timings={"total_s": time.time() - started},
                                started=started))
