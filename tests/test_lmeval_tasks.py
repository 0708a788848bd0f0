"""lm-eval's own task configs, with our overrides, build offline without importing `evaluate`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kanana_eval.errors import DataUnavailableError
from kanana_eval.lmeval_tasks import build_tasks, leaf_task_names, task_config
from kanana_eval.protocol import load_protocol


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
        "from kanana_eval.lmeval_tasks import build_tasks\n"
        "from kanana_eval.protocol import load_protocol\n"
        "spec = next(b for b in load_protocol('base').benchmarks if b.id == 'humaneval@base')\n"
        f"(bt,) = build_tasks(spec, Path({str(offline_mirror)!r}))\n"
        "assert len(bt.task.eval_docs) == 164, len(bt.task.eval_docs)\n"
        "assert 'lm_eval.tasks.humaneval.utils' not in sys.modules\n"
        "assert 'evaluate' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_mirror_dataset_path_override_and_kmmlu_fewshot(offline_mirror):
    built = build_tasks(_spec("kmmlu@base"), offline_mirror) if (offline_mirror / "HAERAE-HUB/KMMLU").is_dir() else None
    if built is None:
        pytest.fail("KMMLU fixture missing from the mirror fixture set")
    present = [bt for bt in built if len(bt.task.eval_docs)]
    assert present, "no KMMLU subject of the fixture loaded"
    assert all(bt.task.config.num_fewshot == 5 for bt in built)


def test_missing_dataset_in_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(DataUnavailableError, match="cais/mmlu is missing from the mirror"):
        build_tasks(_spec("mmlu@base"), tmp_path)
