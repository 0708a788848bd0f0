"""protocols/base.yaml states the README's base table; its settings still match lm-eval's."""

from __future__ import annotations

import pytest

from kanana_eval.config.protocol import load_protocol, select_benchmarks
from kanana_eval.core.errors import UnknownBenchmarkError
from kanana_eval.tasks.lm_eval_bridge import lm_eval_tasks_root, load_yaml_with_refs


def test_base_protocol_is_the_readme_table_in_column_order():
    proto = load_protocol("base")
    table = [b for b in proto.benchmarks if not b.optional]  # optional ones are no README column
    assert [b.column for b in table] == ["MMLU", "KMMLU", "HAE-RAE", "HumanEval", "MBPP", "GSM8K"]
    shots = {b.id: b.num_fewshot for b in table}
    assert shots == {"mmlu@base": 5, "kmmlu@base": 5, "haerae@base": 5, "humaneval@base": 0,
                     "mbpp@base": 3, "gsm8k@base": 5}
    assert not proto.chat_template


@pytest.mark.parametrize("bench", ["humaneval@base", "mbpp@base", "gsm8k@base"])
def test_generation_settings_match_lm_eval_task_config(bench):
    spec = next(b for b in load_protocol("base").benchmarks if b.id == bench)
    cfg = load_yaml_with_refs(lm_eval_tasks_root() / spec.task.lm_eval_folder
                              / f"{spec.task.lm_eval_task}.yaml")
    upstream = cfg["generation_kwargs"]
    assert spec.generation["until"] == upstream["until"]
    assert spec.generation["do_sample"] is False and upstream.get("do_sample") is False
    assert spec.generation["max_gen_toks"] == upstream.get("max_gen_toks", 256)  # lm-eval's default


def test_benchmark_selection_by_id_or_name():
    assert [b.id for b in select_benchmarks(["base"], ["gsm8k", "mmlu@base"])] == [
        "mmlu@base", "gsm8k@base"]
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark.*nope"):
        select_benchmarks(["base"], ["nope"])
