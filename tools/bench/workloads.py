"""The work every side runs: 5-shot MMLU log-likelihood and HumanEval generation.

Each workload is built once (data loaded, untimed) and then run by every side on the same
documents, so the sides differ only in the engine and path that compute them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kanana_eval.config.protocol import BenchmarkSpec, select_benchmarks
from kanana_eval.pipeline.collect import cap_generation, collect_items
from kanana_eval.scoring.base import item_id
from kanana_eval.tasks.lm_eval_bridge import build_tasks, leaf_task_names, lm_eval_tasks_root
from tools.bench.config import DEFAULT_SUBJECTS, BenchError


@dataclass
class RunOutput:
    """What one side produced: comparable answers, plus the requests of log-likelihood work."""

    answers: dict[str, Any]
    loglikelihoods: dict[str, list[float]] = field(default_factory=dict)
    # (context, continuation) requests, grouped by the unit whose prefix may be shared.
    requests: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def merge(self, other: RunOutput) -> None:
        """Add another piece of the same side's work (pieces cover different subjects)."""
        self.answers.update(other.answers)
        self.loglikelihoods.update(other.loglikelihoods)
        for unit, requests in other.requests.items():
            self.requests.setdefault(unit, []).extend(requests)


def _argmax(values: Sequence[float]) -> int:
    """The first maximum, as np.argmax picks it (so ties answer alike on every side)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


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


def mmlu_spec() -> BenchmarkSpec:
    """The base protocol's MMLU: the log-likelihood workload follows its shots and task."""
    return select_benchmarks(["base"], ["mmlu"])[0]


def choose_subjects(n: int) -> list[str]:
    """The fixed default subjects first, then lm-eval's remaining MMLU subjects in its order."""
    task = mmlu_spec().task
    leaves = leaf_task_names(task.lm_eval_task or task.name, task.lm_eval_folder or task.name)
    known = [leaf.removeprefix("mmlu_") for leaf in leaves]
    ordered = list(DEFAULT_SUBJECTS) + [s for s in known if s not in DEFAULT_SUBJECTS]
    if not 1 <= n <= len(ordered):
        raise BenchError(f"--subjects must be between 1 and {len(ordered)}, got {n}")
    return ordered[:n]


class MMLUWorkload:
    """5-shot MMLU log-likelihood on fixed subjects, the first Q test documents of each."""

    def __init__(self, data_dir: Path, subjects: Sequence[str], questions: int) -> None:
        self.data_dir = data_dir
        self.subjects = list(subjects)
        self.questions = questions
        self.spec = mmlu_spec()
        self.name = f"mmlu-{self.spec.num_fewshot}shot {len(subjects)}x{questions}"
        self._ours = self._build_ours()
        self._plain = self._build_plain()

    def describe(self) -> dict[str, Any]:
        """The workload as the report records it."""
        return {"name": self.name, "benchmark": self.spec.id,
                "num_fewshot": self.spec.num_fewshot, "subjects": self.subjects,
                "questions_per_subject": self.questions,
                "items": len(self.subjects) * self.questions}

    def _check_size(self, leaf: str, task: Any) -> None:
        if len(task.eval_docs) < self.questions:
            raise BenchError(f"{leaf} has {len(task.eval_docs)} test documents, fewer than "
                             f"--questions-per-subject {self.questions}")

    def _build_ours(self) -> list[Any]:
        """Our BuiltTasks for the chosen subjects only (all 57 would take ~10 s to load)."""
        built = build_tasks(self.spec, self.data_dir,
                            only=[f"mmlu_{s}" for s in self.subjects])
        for bt in built:
            self._check_size(bt.name, bt.task)
        return built

    def _build_plain(self) -> list[Any]:
        """Task objects from lm-eval's own YAML, only dataset_path pointed at the mirror."""
        from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy: lm-eval's task index
        from lm_eval.tasks._yaml_loader import load_yaml  # noqa: PLC0415 - heavy, as above

        folder = lm_eval_tasks_root() / str(self.spec.task.lm_eval_folder)
        manager = TaskManager(include_path=str(folder), include_defaults=False)
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
        wanted = {f"mmlu_{s}" for s in (subjects or self.subjects)}
        built = [bt for bt in self._ours if bt.name in wanted]
        plan = {self.spec.id: {bt.name: self.questions for bt in built}}
        items = collect_items(lm, [self.spec], {self.spec.id: built}, plan, cache_path=None)
        out = RunOutput(answers={})
        for item in items[self.spec.id]:
            if item.loglikelihoods is None:
                raise BenchError(f"{item.item_id}: the runner returned no log-likelihoods")
            out.answers[item.item_id] = _argmax(item.loglikelihoods)
            out.loglikelihoods[item.item_id] = item.loglikelihoods
        return out

    def run_plain(self, lm: Any, subjects: Sequence[str] | None = None) -> RunOutput:
        """The same work (or part) through lm_eval.simple_evaluate on lm-eval's own task YAML."""
        import lm_eval  # noqa: PLC0415 - heavy: lm-eval's evaluator

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
        """Tokens the reuse path needs: each subject's distinct prefixes once, as lm-eval
        tokenizes them."""
        total = 0
        for requests in plain.requests.values():
            rows = []
            for context, continuation in requests:
                ctx, cont = lm._encode_pair(context, continuation)
                rows.append((ctx + cont)[:-1])  # the last token is predicted, never fed
            total += distinct_prefix_tokens(rows)
        return total


class HumanEvalWorkload:
    """The first N HumanEval prompts as lm-eval builds them from our task config and the mirror.

    The requests go straight to each engine's `generate_until`: what is timed is generation, not
    the sandbox that later runs the programs.
    """

    def __init__(self, data_dir: Path, prompts: int, max_gen_toks: int | None = None) -> None:
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
        """The workload as the report records it."""
        return {"name": self.name, "benchmark": self.spec.id, "prompts": len(self.requests),
                "task_ids": self.ids, "until": self.generation.get("until"),
                "max_gen_toks": self.generation.get("max_gen_toks"),
                "do_sample": self.generation.get("do_sample")}

    def run(self, lm: Any) -> list[str]:
        """Every prompt through the engine's own `generate_until`, outputs in prompt order."""
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
