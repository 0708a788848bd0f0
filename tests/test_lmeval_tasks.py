"""lm-eval's own task configs, with our overrides, build offline without importing `evaluate`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kanana_eval.config.protocol import load_protocol
from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.tasks.lm_eval_bridge import build_tasks, leaf_task_names, task_config


def _spec(bench: str):
    return next(b for b in load_protocol("base").benchmarks if b.id == bench)


def test_groups_expand_to_their_subject_tasks():
    assert len(leaf_task_names("mmlu", "mmlu/default")) == 57
    assert len(leaf_task_names("kmmlu", "kmmlu/default")) == 45
    assert leaf_task_names("haerae", "haerae") == [
        "haerae_general_knowledge", "haerae_history", "haerae_loan_word", "haerae_rare_word",
        "haerae_standard_nomenclature"]
    assert leaf_task_names("gsm8k", "gsm8k") == ["gsm8k"]


def test_mbpp_fewshot_items_read_from_source_not_imported(tmp_path):
    cfg = task_config("mbpp", _spec("mbpp@base"), None)
    samples = cfg["fewshot_config"]["samples"]
    assert [s["task_id"] for s in samples] == [2, 3, 4]
    assert cfg["metric_list"] == [{"metric": "bypass"}]
    assert cfg["num_fewshot"] == 3


def test_code_tasks_build_without_loading_the_evaluate_metric(offline_mirror):
    # In a fresh interpreter: building humaneval must not import lm-eval's utils module, whose
    # import loads the hub `evaluate` metric (impossible offline, and it runs code in-process).
    code = (
        "import sys; from pathlib import Path\n"
        "from kanana_eval.tasks.lm_eval_bridge import build_tasks\n"
        "from kanana_eval.config.protocol import load_protocol\n"
        "spec = next(b for b in load_protocol('base').benchmarks if b.id == 'humaneval@base')\n"
        f"(bt,) = build_tasks(spec, Path({str(offline_mirror)!r}))\n"
        "assert len(bt.task.eval_docs) == 164, len(bt.task.eval_docs)\n"
        "assert 'lm_eval.tasks.humaneval.utils' not in sys.modules\n"
        "assert 'evaluate' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_mirror_dataset_path_override_and_kmmlu_fewshot(offline_mirror):
    """All 45 KMMLU subjects build from the mirror + hub fixtures (about 5 s), and lm-eval's own
    sampler and template make a 5-shot prompt from each subject's dev split."""
    built = build_tasks(_spec("kmmlu@base"), offline_mirror)
    assert len(built) == 45
    assert len({bt.task.config.dataset_name for bt in built}) == 45
    assert {bt.subtask for bt in built} == {bt.task.config.dataset_name for bt in built}
    local = str(offline_mirror / "HAERAE-HUB/KMMLU")
    for bt in built:
        task = bt.task
        assert task.config.dataset_path == local, bt.name
        assert task.config.num_fewshot == 5, bt.name
        assert len(task.eval_docs) > 0, bt.name
        dev = list(task.fewshot_docs())
        assert len(dev) == 5, bt.name
        task.set_fewshot_seed(1234)
        doc = task.eval_docs[0]
        prompt = task.fewshot_context(doc, num_fewshot=5)
        assert prompt.endswith("\n정답："), bt.name
        assert prompt.count("정답：") == 6, bt.name
        assert prompt.endswith(task.doc_to_text(doc))
        for shot in dev:  # each shot shows its own answer letter (hub answer 1-4 -> A-D)
            assert f"{task.doc_to_text(shot)} {'ABCD'[shot['answer'] - 1]}\n\n" in prompt, bt.name


def test_missing_dataset_in_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailableError, match="cais/mmlu is missing from the mirror"):
        build_tasks(_spec("mmlu@base"), tmp_path)
