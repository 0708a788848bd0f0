"""Parity with plain lm-eval: our items equal lm-eval's `--log_samples`, item by item.

Each test runs `kanana-eval run` in-process on the real SmolLM2-135M-Instruct (fp32, CPU), then
runs plain lm-eval the way a user would: a task YAML that `include:`s lm-eval's own task file and
overrides only `dataset_path` (to the offline mirror) and the task name, `simple_evaluate` with
model "hf", the same batch size and the same documents (`samples=`), seeds left at lm-eval's
defaults. Any difference in prompts, few-shot examples, requests, batching or scoring shows up
as a per-item mismatch. `--no-cache` keeps our request cache from replaying an older run; the
model folder stays in the real cache (pointing KANANA_EVAL_CACHE elsewhere would reconvert it).
"""

from __future__ import annotations

import json
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanana_eval.cli.main import main
from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.results.io import read_jsonl
from kanana_eval.scoring.sandbox.api import run_programs
from kanana_eval.tasks.lm_eval_bridge import lm_eval_tasks_root

pytestmark = pytest.mark.slow

MODEL_KEY = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def model_folder() -> Path:
    return ensure_hf_folder(MODEL_KEY)


def run_ours(mirror: Path, out: Path, benchmark: str, limit: int, batch_size: int,
             ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """`kanana-eval run` in-process: (items, manifest, the benchmark's scores.json row)."""
    args = ["run", "--model", MODEL_KEY, "--data-dir", str(mirror),
            "--benchmarks", f"{benchmark}@base",
            "--limit", str(limit), "--batch-size", str(batch_size), "--output-dir", str(out),
            "--no-cache"]
    assert main(args) == 0
    (run_dir,) = list((out / MODEL_KEY).iterdir())
    items = read_jsonl(run_dir / "items" / f"{benchmark}@base.jsonl", kind="item")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scores = json.loads((run_dir / "scores.json").read_text())
    (row,) = [r for r in scores["scores"] if r["benchmark"] == f"{benchmark}@base"]
    assert manifest["engine"]["dtype"] == "float32"
    assert manifest["engine"]["batch_size"] == batch_size
    return items, manifest, row


def user_task_yaml(folder: Path, name: str, lm_eval_yaml: str, dataset_path: Path) -> str:
    """A user's task file: lm-eval's own YAML by absolute path, only the data location changed."""
    source = lm_eval_tasks_root() / lm_eval_yaml
    assert source.is_file(), source
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"include": str(source), "task": name, "dataset_path": str(dataset_path)}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return name


def run_plain(model_folder: Path, task_dir: Path, tasks: list[str], samples: dict[str, list[int]],
              batch_size: int, **kwargs: Any) -> dict[str, Any]:
    """Plain lm-eval as `lm_eval --model hf --include_path DIR --log_samples` runs it."""
    import lm_eval  # noqa: PLC0415 - heavy: plain lm-eval, only for the reference runs
    from lm_eval.tasks import TaskManager  # noqa: PLC0415 - heavy: as above

    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_folder), "dtype": "float32", "device": "cpu"},
        tasks=tasks, batch_size=batch_size, samples=samples, log_samples=True,
        task_manager=TaskManager(include_path=str(task_dir)), **kwargs,
    )
    assert results is not None
    return results


def samples_of(results: dict[str, Any], task: str, filter_name: str) -> dict[int, dict[str, Any]]:
    chosen = [s for s in results["samples"][task] if s["filter"] == filter_name]
    by_doc = {s["doc_id"]: s for s in chosen}
    assert len(by_doc) == len(chosen)
    return by_doc


def test_mmlu_loglikelihoods_choices_and_acc_match_plain_lm_eval(
        offline_mirror: Path, model_folder: Path, tmp_path: Path) -> None:
    ours, manifest, row = run_ours(offline_mirror, tmp_path / "ours", "mmlu", limit=12,
                                   batch_size=4)
    per_subtask = manifest["benchmarks"]["mmlu@base"]["samples_per_subtask"]
    counts = {leaf: n for leaf, n in per_subtask.items() if n}
    assert sum(counts.values()) == len(ours) == 12

    task_dir = tmp_path / "user_tasks"
    names = {leaf: user_task_yaml(task_dir, f"plain_{leaf}", f"mmlu/default/{leaf}.yaml",
                                  offline_mirror / "cais" / "mmlu") for leaf in counts}
    plain = run_plain(model_folder, task_dir, list(names.values()),
                      {names[leaf]: list(range(n)) for leaf, n in counts.items()},
                      batch_size=4, num_fewshot=5)

    plain_items: dict[str, dict[str, Any]] = {}
    for name in names.values():
        assert plain["configs"][name]["num_fewshot"] == 5
        subject = plain["configs"][name]["dataset_name"]
        for doc_id, sample in samples_of(plain, name, "none").items():
            plain_items[f"{subject}/{doc_id}"] = sample
    assert sorted(plain_items) == sorted(item["item_id"] for item in ours)  # same documents

    for item in ours:
        sample = plain_items[item["item_id"]]
        assert item["prompt"] == sample["arguments"][0][0]  # same few-shot context, byte for byte
        assert item["choices"] == [args[1] for args in sample["arguments"]]
        plain_lls = [float(resp[0][0]) for resp in sample["resps"]]
        assert len(item["loglikelihoods"]) == len(plain_lls) == 4
        for ours_ll, plain_ll in zip(item["loglikelihoods"], plain_lls, strict=True):
            # The few-shot prefix is computed once and reused (KV cache): the same sums in another
            # order, so log-likelihoods agree to 1e-4 in fp32 (the bound the speed issue sets) and
            # the chosen answer and its score below must be identical.
            assert math.isclose(ours_ll, plain_ll, rel_tol=0.0, abs_tol=1e-4), (
                item["item_id"], ours_ll, plain_ll)
        plain_best = max(range(4), key=lambda i: (plain_lls[i], -i))  # first maximum, as np.argmax
        assert item["output"] == item["choices"][plain_best].strip()
        assert item["score"] == float(sample["acc"])

    n_total = sum(counts.values())
    plain_mean = sum(plain["results"][names[leaf]]["acc,none"] * n
                     for leaf, n in counts.items()) / n_total
    assert row["n"] == n_total
    assert row["value"] == pytest.approx(plain_mean, abs=1e-12)


class _CodeEvalStandIn:
    """Answers humaneval/utils.py's import-time smoke call of `evaluate.load("code_eval")`."""

    def __init__(self) -> None:
        self.calls = 0

    def compute(self, references: list[str], predictions: list[list[str]], k: list[int]) -> Any:
        self.calls += 1
        return {f"pass@{i}": 0.0 for i in k}, {}


@pytest.fixture
def evaluate_stand_in() -> Iterator[_CodeEvalStandIn]:
    """Let lm-eval's humaneval utils module import offline; never used to score anything.

    lm_eval/tasks/humaneval/utils.py runs `evaluate.load("code_eval")` at import, which fetches
    the metric from the hub and fails offline. Only in this test, a stand-in `evaluate` module
    answers that one call. The run is predict-only (lm-eval's metric is replaced by `bypass`),
    and the programs are scored by kanana_eval.scoring.sandbox; the test checks the stand-in was
    called only at import. sys.modules is restored afterwards, so no later import sees the
    stand-in.
    """
    metric = _CodeEvalStandIn()

    def load(name: str, *args: Any, **kwargs: Any) -> _CodeEvalStandIn:
        assert name == "code_eval", f"unexpected evaluate.load({name!r})"
        return metric

    stand_in = types.ModuleType("evaluate")
    stand_in.load = load  # type: ignore[attr-defined]
    utils_name = "lm_eval.tasks.humaneval.utils"
    saved = {name: sys.modules.get(name) for name in ("evaluate", utils_name)}
    sys.modules["evaluate"] = stand_in
    sys.modules.pop(utils_name, None)
    try:
        yield metric
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_humaneval_generations_byte_identical_and_same_verdicts(
        offline_mirror: Path, model_folder: Path, tmp_path: Path,
        evaluate_stand_in: _CodeEvalStandIn) -> None:
    ours, _, row = run_ours(offline_mirror, tmp_path / "ours", "humaneval", limit=3, batch_size=1)
    assert [item["item_id"] for item in ours] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]

    task_dir = tmp_path / "user_tasks"
    name = user_task_yaml(task_dir, "plain_humaneval", "humaneval/humaneval.yaml",
                          offline_mirror / "openai" / "openai_humaneval")
    plain = run_plain(model_folder, task_dir, [name], {name: [0, 1, 2]}, batch_size=1,
                      predict_only=True, confirm_run_unsafe_code=True)
    assert evaluate_stand_in.calls == 1  # the import-time smoke call only: nothing scored with it
    samples = samples_of(plain, name, "create_test")
    assert sorted(samples) == [0, 1, 2]

    programs = []
    for doc_id, item in enumerate(ours):
        sample = samples[doc_id]
        assert sample["doc"]["task_id"] == item["item_id"]
        assert item["prompt"] == sample["arguments"][0][0]
        assert item["output"].encode() == sample["resps"][0][0].encode()  # byte-identical
        # code_eval's program: candidate (lm-eval's filter: prompt + completion) + "\n" + test.
        (candidate,) = sample["filtered_resps"][0]
        program = f"{candidate}\n{sample['target']}"
        assert program == item["details"]["program"]
        programs.append(program)

    verdicts = run_programs(programs, timeout_s=3.0, memory_mb=2048)
    assert [v.status for v in verdicts] == [item["verdict"] for item in ours]
    assert row["value"] == pytest.approx(sum(v.status == "passed" for v in verdicts) / 3, abs=1e-12)


def test_gsm8k_outputs_byte_identical_and_strict_match_equal(
        offline_mirror: Path, model_folder: Path, tmp_path: Path) -> None:
    ours, _, row = run_ours(offline_mirror, tmp_path / "ours", "gsm8k", limit=4, batch_size=1)
    assert [item["item_id"] for item in ours] == ["0", "1", "2", "3"]

    task_dir = tmp_path / "user_tasks"
    name = user_task_yaml(task_dir, "plain_gsm8k", "gsm8k/gsm8k.yaml",
                          offline_mirror / "openai" / "gsm8k")
    plain = run_plain(model_folder, task_dir, [name], {name: [0, 1, 2, 3]}, batch_size=1)
    assert plain["configs"][name]["num_fewshot"] == 5  # lm-eval's own default, as the protocol
    samples = samples_of(plain, name, "strict-match")
    assert sorted(samples) == [0, 1, 2, 3]

    for doc_id, item in enumerate(ours):
        sample = samples[doc_id]
        assert item["prompt"] == sample["arguments"][0][0]  # same shots in the same order
        assert item["output"].encode() == sample["resps"][0][0].encode()  # byte-identical
        extracted = sample["filtered_resps"][0]
        assert item["extracted"] == (None if extracted == "[invalid]" else extracted)
        assert item["score"] == float(sample["exact_match"])
    assert row["value"] == pytest.approx(plain["results"][name]["exact_match,strict-match"],
                                         abs=1e-12)
