"""`make bench`: our wall time against plain lm-eval and against the compute lower bound.

A speed claim is only meaningful next to a reference measured on the same machine in the same
process, so every workload is measured three ways in one invocation:

* ours  - kanana-eval's runner path (`runner.collect_items` on an engine from `engine.build_lm`);
* plain - `lm_eval.simple_evaluate` on lm-eval's own HFLM and lm-eval's own task YAML;
* bound - the tokens plain lm-eval actually fed the model (counted by a forward pre-hook)
  divided by the model's raw forward throughput (batched forwards of the workload's typical
  length, no lm-eval, measured here after a warm-up). A second, tighter bound uses the
  "needed" tokens: every distinct token prefix once (for MMLU: the 5-shot prefix once per
  subject, each question's suffix once, each choice's tokens but its last).

Model loading and dataset loading are excluded from every timing; both sides get a warm-up
forward first. Ours and plain must choose the same answers, or the bench exits 1.
Workloads are a list (`default_workloads`) so later issues can add more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.errors import KananaError

DEFAULT_MODEL_KEY = "smollm2-135m-instruct"
# Fixed so numbers stay comparable between runs: one social-science, one "other", two STEM
# subjects, with 5-shot prompts of middling length (about 310-550 tokens on SmolLM2).
DEFAULT_SUBJECTS = ("high_school_geography", "marketing", "astronomy", "college_biology")
JSON_SCHEMA = "kanana-bench/1"
_PAD_ID = 0  # lm-eval's HFLM right-pads log-likelihood batches with zeros and passes no mask


class BenchError(KananaError):
    """The bench cannot run as asked (bad option, too few documents, unknown subject)."""


# ----------------------------------------------------------------------------- token counting
@dataclass
class TokenCounter:
    """Counts what a torch model is fed, through a forward pre-hook (so nothing is re-derived).

    `rows` holds the non-padding length of every sequence of every forward: from the attention
    mask when one is passed, else the row minus its trailing pad ids (lm-eval's log-likelihood
    batches are right-padded with 0 and carry no mask; a real row ending in id 0 would be
    undercounted by those tokens). `positions` counts padded positions too: what was computed.
    """

    rows: list[int] = field(default_factory=list)
    positions: int = 0
    forwards: int = 0
    _handle: Any = None

    @property
    def tokens(self) -> int:
        return sum(self.rows)

    def _hook(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None or getattr(ids, "dim", lambda: 0)() != 2:
            return
        batch, length = ids.shape
        self.forwards += 1
        self.positions += batch * length
        mask = kwargs.get("attention_mask")
        if mask is not None:
            self.rows.extend(int(n) for n in mask[:, -length:].sum(dim=1).tolist())
            return
        for row in ids.tolist():
            n = len(row)
            while n > 0 and row[n - 1] == _PAD_ID:
                n -= 1
            self.rows.append(n)

    def attach(self, model: Any) -> TokenCounter:
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def distinct_prefix_tokens(rows: Iterable[Sequence[int]]) -> int:
    """Tokens a causal model must compute to see every row with perfect prefix (KV) reuse.

    That is the number of distinct non-empty prefixes (trie nodes): after sorting, each row adds
    its length minus its common prefix with the row before it.
    """
    total = 0
    previous: tuple[int, ...] = ()
    for row in sorted({tuple(r) for r in rows}):
        common = 0
        for a, b in zip(previous, row, strict=False):
            if a != b:
                break
            common += 1
        total += len(row) - common
        previous = row
    return total


# ----------------------------------------------------------------------------- workloads
@dataclass
class RunOutput:
    """What one side produced: comparable answers, plus the requests when they are log-likelihoods."""

    answers: dict[str, Any]
    loglikelihoods: dict[str, list[float]] = field(default_factory=dict)
    # (context, continuation) requests, grouped by the unit whose prefix may be shared.
    requests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


class Workload(ABC):
    """One fixed piece of evaluation work, runnable by our path and by plain lm-eval."""

    name: str

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the workload is, for the JSON report."""

    @abstractmethod
    def run_ours(self, lm: Any) -> RunOutput:
        """The work through kanana-eval (timed by the caller)."""

    @abstractmethod
    def run_plain(self, lm: Any) -> RunOutput:
        """The same work through plain lm-eval (timed by the caller)."""

    def needed_tokens(self, lm: Any, plain: RunOutput) -> int | None:
        """Minimal tokens for the work, from the plain run's requests (None if undefined)."""
        if not plain.requests or not hasattr(lm, "_encode_pair"):
            return None
        total = 0
        for requests in plain.requests.values():
            rows = []
            for context, continuation in requests:
                ctx, cont = lm._encode_pair(context, continuation)  # lm-eval's own tokenization
                rows.append((ctx + cont)[:-1])  # the last token is predicted, never fed
            total += distinct_prefix_tokens(rows)
        return total


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first maximum, as np.argmax


class MMLUWorkload(Workload):
    """5-shot MMLU log-likelihood on fixed subjects, the first Q test documents of each."""

    def __init__(self, data_dir: Path, subjects: Sequence[str], questions: int) -> None:
        from kanana_eval.protocol import select_benchmarks

        self.data_dir = data_dir
        self.subjects = list(subjects)
        self.questions = questions
        self.spec = select_benchmarks(["base"], ["mmlu"])[0]
        self.name = f"mmlu-{self.spec.num_fewshot}shot {len(subjects)}x{questions}"
        self._ours = self._build_ours()
        self._plain = self._build_plain()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "benchmark": self.spec.id, "num_fewshot": self.spec.num_fewshot,
                "subjects": self.subjects, "questions_per_subject": self.questions,
                "items": len(self.subjects) * self.questions}

    def _check_size(self, leaf: str, task: Any) -> None:
        if len(task.eval_docs) < self.questions:
            raise BenchError(f"{leaf} has {len(task.eval_docs)} test documents, fewer than "
                             f"--questions-per-subject {self.questions}")

    def _build_ours(self) -> list[Any]:
        """Our BuiltTasks for the chosen subjects only (all 57 would take ~10 s to load)."""
        from kanana_eval.lmeval_tasks import build_tasks

        built = build_tasks(self.spec, self.data_dir, only=[f"mmlu_{s}" for s in self.subjects])
        for bt in built:
            self._check_size(bt.name, bt.task)
        return built

    def _build_plain(self) -> list[Any]:
        """Task objects from lm-eval's own YAML, only dataset_path pointed at the mirror."""
        from lm_eval.tasks import TaskManager
        from lm_eval.tasks._yaml_loader import load_yaml

        from kanana_eval.lmeval_tasks import lm_eval_tasks_root

        manager = TaskManager(include_path=str(lm_eval_tasks_root() / self.spec.task.lm_eval_folder),
                              include_defaults=False)
        configs = []
        for subject in self.subjects:
            cfg = load_yaml(manager.task_index[f"mmlu_{subject}"].yaml_path, resolve_func=True)
            cfg["dataset_path"] = str(self.data_dir / self.spec.task.dataset_id)
            configs.append(cfg)
        tasks = manager.load(configs)["tasks"]
        ordered = [tasks[f"mmlu_{subject}"] for subject in self.subjects]
        for subject, task in zip(self.subjects, ordered, strict=True):
            self._check_size(f"mmlu_{subject}", task)
        return ordered

    def run_ours(self, lm: Any) -> RunOutput:
        from kanana_eval.runner import collect_items

        plan = {self.spec.id: {bt.name: self.questions for bt in self._ours}}
        items = collect_items(lm, [self.spec], {self.spec.id: self._ours}, plan, cache_path=None)
        out = RunOutput(answers={})
        for item in items[self.spec.id]:
            out.answers[item["item_id"]] = _argmax(item["loglikelihoods"])
            out.loglikelihoods[item["item_id"]] = item["loglikelihoods"]
        return out

    def run_plain(self, lm: Any) -> RunOutput:
        import lm_eval

        from kanana_eval.scoring import item_id

        results = lm_eval.simple_evaluate(
            model=lm, tasks=list(self._plain), num_fewshot=self.spec.num_fewshot,
            samples={task.config.task: list(range(self.questions)) for task in self._plain},
        )
        if results is None:
            raise BenchError("lm-eval returned no results")
        out = RunOutput(answers={})
        for subject, task in zip(self.subjects, self._plain, strict=True):
            for sample in results["samples"][task.config.task]:
                key = item_id(self.spec, subject, sample["doc_id"], sample["doc"])
                lls = [float(resp[0]) for resp in sample["filtered_resps"]]
                out.answers[key] = _argmax(lls)
                out.loglikelihoods[key] = lls
                out.requests.setdefault(subject, []).extend(
                    (str(args[0]), str(args[1])) for args in sample["arguments"])
        return out


# ----------------------------------------------------------------------------- measuring
def forward_throughput(model: Any, batch_size: int, length: int, *, min_seconds: float = 3.0,
                       min_forwards: int = 2) -> float:
    """Tokens per second of plain batched forwards (random ids, fixed shape), after a warm-up.

    The fastest forward counts, as the best run of each side does: on a shared machine a bound
    taken from an average would include other people's load.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(1, vocab, (batch_size, max(1, length)), generator=generator)
    fastest = float("inf")
    with torch.no_grad():
        model(ids)  # warm-up: allocator, thread pool, kernels for this shape
        forwards = 0
        started = time.perf_counter()
        while forwards < min_forwards or time.perf_counter() - started < min_seconds:
            t = time.perf_counter()
            model(ids)
            fastest = min(fastest, time.perf_counter() - t)
            forwards += 1
    return ids.numel() / fastest


def warm_up(model: Any, batch_size: int, length: int = 64) -> None:
    """One small forward, so neither side pays first-call costs inside its timing."""
    import torch

    with torch.no_grad():
        model(torch.ones((batch_size, length), dtype=torch.long))


@dataclass
class WorkloadResult:
    """One row of the table; every figure that went into it."""

    workload: str
    items: int
    ours_s: float
    plain_s: float
    ours_runs_s: list[float]
    plain_runs_s: list[float]
    tokens_fed: int
    positions_computed: int
    forwards: int
    ours_tokens_fed: int
    needed_tokens: int | None
    typical_length: int
    throughput_tok_s: float
    bound_s: float
    needed_bound_s: float | None
    answers_agree: bool
    disagreements: list[str]
    max_abs_ll_diff: float | None
    detail: dict[str, Any]

    @property
    def ours_over_plain(self) -> float:
        return self.ours_s / self.plain_s

    @property
    def ours_over_bound(self) -> float:
        return self.ours_s / self.bound_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ours_over_plain": self.ours_over_plain,
                "ours_over_bound": self.ours_over_bound,
                "ours_over_needed_bound": (self.ours_s / self.needed_bound_s
                                           if self.needed_bound_s else None)}


def _timed(run: Callable[[Any], RunOutput], lm: Any) -> tuple[float, RunOutput, TokenCounter]:
    """Wall time of one side's run (model already loaded), with its forwards counted."""
    counter = TokenCounter().attach(lm.model)
    try:
        started = time.perf_counter()
        out = run(lm)
        elapsed = time.perf_counter() - started
    finally:
        counter.detach()
    return elapsed, out, counter


def measure(workload: Workload, ours_lm: Any, plain_lm: Any, *, batch_size: int, repeats: int = 1,
            min_seconds: float = 3.0) -> WorkloadResult:
    """Ours and plain alternately `repeats` times (best time counts), then the compute bound."""
    if repeats < 1:
        raise BenchError(f"repeats must be >= 1, got {repeats}")
    ours_runs: list[float] = []
    plain_runs: list[float] = []
    for _ in range(repeats):
        seconds, ours, ours_count = _timed(workload.run_ours, ours_lm)
        ours_runs.append(seconds)
        seconds, plain, plain_count = _timed(workload.run_plain, plain_lm)
        plain_runs.append(seconds)
    if not plain_count.rows:
        raise BenchError(f"{workload.name}: plain lm-eval fed the model no tokens")

    keys = sorted(set(ours.answers) | set(plain.answers))
    disagreements = [k for k in keys if ours.answers.get(k) != plain.answers.get(k)]
    diffs = [abs(a - b) for k in keys if k in ours.loglikelihoods and k in plain.loglikelihoods
             for a, b in zip(ours.loglikelihoods[k], plain.loglikelihoods[k], strict=False)]
    needed = workload.needed_tokens(plain_lm, plain)
    typical = round(plain_count.tokens / len(plain_count.rows))
    throughput = forward_throughput(plain_lm.model, batch_size, typical, min_seconds=min_seconds)
    return WorkloadResult(
        workload=workload.name, items=len(plain.answers),
        ours_s=min(ours_runs), plain_s=min(plain_runs), ours_runs_s=ours_runs,
        plain_runs_s=plain_runs, tokens_fed=plain_count.tokens,
        positions_computed=plain_count.positions, forwards=plain_count.forwards,
        ours_tokens_fed=ours_count.tokens, needed_tokens=needed, typical_length=typical,
        throughput_tok_s=throughput, bound_s=plain_count.tokens / throughput,
        needed_bound_s=needed / throughput if needed is not None else None,
        answers_agree=bool(keys) and not disagreements, disagreements=disagreements,
        max_abs_ll_diff=max(diffs) if diffs else None, detail=workload.describe(),
    )


# ----------------------------------------------------------------------------- the run
@dataclass
class BenchConfig:
    data_dir: Path
    subjects: int = len(DEFAULT_SUBJECTS)
    questions_per_subject: int = 10
    batch_size: int = 8
    model_folder: Path | None = None
    repeats: int = 1
    throughput_seconds: float = 3.0
    threads: int | None = None


def choose_subjects(n: int) -> list[str]:
    """The fixed default subjects first, then lm-eval's remaining MMLU subjects in its order."""
    from kanana_eval.lmeval_tasks import leaf_task_names

    known = [leaf.removeprefix("mmlu_") for leaf in leaf_task_names("mmlu", "mmlu/default")]
    ordered = list(DEFAULT_SUBJECTS) + [s for s in known if s not in DEFAULT_SUBJECTS]
    if not 1 <= n <= len(ordered):
        raise BenchError(f"--subjects must be between 1 and {len(ordered)}, got {n}")
    return ordered[:n]


def default_workloads(config: BenchConfig) -> list[Workload]:
    """The measured workloads; later issues append theirs here."""
    return [MMLUWorkload(config.data_dir, choose_subjects(config.subjects),
                         config.questions_per_subject)]


def _engines(folder: Path, batch_size: int) -> tuple[Any, Any]:
    """(ours, plain): two separately loaded copies of the same weights, fp32 on CPU."""
    from lm_eval.models.huggingface import HFLM

    from kanana_eval.engine import EngineConfig, build_lm

    ours = build_lm(EngineConfig(backend="hf", model=str(folder), dtype="float32",
                                 batch_size=batch_size, device="cpu"))
    plain = HFLM(pretrained=str(folder), dtype="float32", batch_size=batch_size, device="cpu")
    return ours, plain


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Load the model twice, measure every workload, return the report as plain data."""
    import torch

    from kanana_eval.runner import package_versions

    if config.questions_per_subject < 1 or config.batch_size < 1 or config.repeats < 1:
        raise BenchError("--questions-per-subject, --batch-size and --repeats must be >= 1")
    if not (config.data_dir / "cais" / "mmlu").is_dir():
        raise BenchError(f"{config.data_dir} holds no cais/mmlu mirror "
                         f"(build it with `kanana-eval data build-mirror {config.data_dir}`)")
    if config.threads is not None:
        if config.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {config.threads}")
        torch.set_num_threads(config.threads)  # both sides and the bound run in this process
    started = time.perf_counter()
    if config.model_folder is not None:
        folder, model_name = config.model_folder, str(config.model_folder)
        if not (folder / "config.json").is_file():
            raise BenchError(f"--model-folder {folder} is not a Hugging Face model folder")
    else:
        from kanana_eval.offline_models import ensure_hf_folder

        folder, model_name = ensure_hf_folder(DEFAULT_MODEL_KEY), DEFAULT_MODEL_KEY
    t = time.perf_counter()
    workloads = default_workloads(config)
    data_s = time.perf_counter() - t
    t = time.perf_counter()
    ours_lm, plain_lm = _engines(folder, config.batch_size)
    load_s = time.perf_counter() - t
    for lm in (ours_lm, plain_lm):
        warm_up(lm.model, config.batch_size)
    results = [measure(w, ours_lm, plain_lm, batch_size=config.batch_size, repeats=config.repeats,
                       min_seconds=config.throughput_seconds) for w in workloads]
    return {
        "schema": JSON_SCHEMA,
        "model": {"name": model_name, "folder": str(folder), "dtype": "float32", "device": "cpu"},
        "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "versions": package_versions(),
        "setup_s": {"data": round(data_s, 3), "model_load": round(load_s, 3)},
        "total_s": round(time.perf_counter() - started, 3),
        "workloads": [r.to_dict() for r in results],
        "answers_agree": all(r.answers_agree for r in results),
    }


# ----------------------------------------------------------------------------- output
_COLUMNS = ("workload", "ours s", "plain s", "ours/plain", "bound s", "ours/bound",
            "tokens fed", "needed tok", "needed s", "ours/needed")


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(report: dict[str, Any]) -> str:
    """The table, the agreement check and a one-line summary."""
    rows = [_COLUMNS]
    for w in report["workloads"]:
        rows.append((
            w["workload"], _fmt(w["ours_s"], ".2f"), _fmt(w["plain_s"], ".2f"),
            _fmt(w["ours_over_plain"], ".2f") + "x", _fmt(w["bound_s"], ".2f"),
            _fmt(w["ours_over_bound"], ".2f") + "x", str(w["tokens_fed"]),
            _fmt(w["needed_tokens"], "d"), _fmt(w["needed_bound_s"], ".2f"),
            _fmt(w["ours_over_needed_bound"], ".2f") + "x",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                       for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for w in report["workloads"]:
        mark = "✓" if w["answers_agree"] else "✗"
        ll = _fmt(w["max_abs_ll_diff"], ".1e")
        lines.append(f"{mark} {w['workload']}: ours and plain chose the same answer on "
                     f"{w['items'] - len(w['disagreements'])}/{w['items']} items "
                     f"(max |Δ loglikelihood| {ll}); typical length {w['typical_length']} tokens, "
                     f"raw forward {w['throughput_tok_s']:.0f} tok/s at batch "
                     f"{report['config']['batch_size']}")
    summary = "; ".join(
        f"{w['workload']}: ours {w['ours_over_plain']:.2f}x plain lm-eval, "
        f"{w['ours_over_bound']:.2f}x the compute bound" for w in report["workloads"])
    lines.append(f"summary: {summary} ({report['model']['name']}, fp32, "
                 f"{report['machine']['torch_threads']} torch threads; model and data loading excluded; "
                 f"{'answers agree' if report['answers_agree'] else 'ANSWERS DIFFER'})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kanana_eval.bench",
        description="Wall time of kanana-eval vs plain lm-eval and vs the compute lower bound, "
                    "same model, same work, same process (model and data loading excluded).")
    p.add_argument("--data-dir", required=True, type=Path, help="offline mirror (data build-mirror)")
    p.add_argument("--subjects", type=int, default=len(DEFAULT_SUBJECTS),
                   help=f"MMLU subjects: {', '.join(DEFAULT_SUBJECTS)} first (default 4)")
    p.add_argument("--questions-per-subject", type=int, default=10,
                   help="first Q test documents of each subject (default 10)")
    p.add_argument("--batch-size", type=int, default=8, help="both sides' batch size (default 8)")
    p.add_argument("--model-folder", type=Path, default=None,
                   help=f"HF model folder to use instead of {DEFAULT_MODEL_KEY}")
    p.add_argument("--repeats", type=int, default=1,
                   help="run ours and plain alternately this often, keep each best (default 1)")
    p.add_argument("--throughput-seconds", type=float, default=3.0,
                   help="minimum timed duration of the raw-throughput measurement (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for everything measured (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    config = BenchConfig(
        data_dir=args.data_dir.resolve(), subjects=args.subjects,
        questions_per_subject=args.questions_per_subject, batch_size=args.batch_size,
        model_folder=args.model_folder.resolve() if args.model_folder else None,
        repeats=args.repeats, throughput_seconds=args.throughput_seconds, threads=args.threads)
    try:
        report = run_bench(config)
    except KananaError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if report["answers_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
