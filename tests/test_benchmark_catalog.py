"""A benchmark is one folder: the catalog finds every folder, its card, its data plan, its fixture.

Cards are read strictly (a typo is one line naming the file); each dataset is planned by exactly
one folder and the benchmarks sharing it point at it through task.yaml's dataset_id.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kanana_eval.config.task_config import load_task
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.paths import benchmarks_dir
from kanana_eval.data.mirror.plan import DatasetContents, DatasetPlan
from kanana_eval.tasks import catalog
from kanana_eval.tasks.catalog import (
    benchmark_names,
    data_plans,
    dataset_owner,
    fixtures,
    load_card,
    read_card,
)

# Items of the full scored set as the Kanana README evaluates it (../shared/PROTOCOL.md).
PROTOCOL_ITEMS = {
    "mmlu": 14042, "kmmlu": 35030, "haerae": 1091, "humaneval": 164, "mbpp": 500, "gsm8k": 1319,
    "mt_bench": 80, "komt_bench": 80, "ifeval": 541, "humaneval_plus": 164, "mbpp_plus": 378,
    "gsm8k_boxed": 1319, "math": 5000, "mmlu_cot": 14042, "kmmlu_cot": 35030, "math500": 500,
    "functionchatbench": 1306,
    "niah": 132,
}
CARD = """---
title: ARC-Challenge
dataset_id: allenai/ai2_arc
source: https://huggingface.co/datasets/allenai/ai2_arc
licence: CC-BY-SA-4.0
items: 1172
---
# ARC-Challenge

- [I] lm-eval's `arc_challenge`.
"""


def test_every_benchmark_folder_is_found_and_has_a_card_with_its_item_count() -> None:
    assert benchmark_names() == sorted(PROTOCOL_ITEMS)
    for name in benchmark_names():
        card = load_card(name)
        assert card.items == PROTOCOL_ITEMS[name], name
        assert card.dataset_id == load_task(name).dataset_id
        assert card.title and card.licence and card.source and "[" in card.body, name


def test_each_dataset_is_planned_once_and_sharing_benchmarks_point_at_the_owner() -> None:
    plans = data_plans()
    ids = [plan.dataset_id for plan in plans]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        "cais/mmlu", "openai/gsm8k", "openai/openai_humaneval", "lm-sys/FastChat",
        "google/IFEval", "EleutherAI/hendrycks_math", "evalplus/HumanEvalPlus",
        "LGAI-EXAONE/KoMT-Bench", "LG-AI-EXAONE/KoMT-Bench",
    }
    # always-built (PyPI) plans come before the ones needing KANANA_SHARED_DATA
    shared = [plan.shared is not None for plan in plans]
    assert shared == sorted(shared)
    for name, owner in (("mmlu_cot", "mmlu"), ("gsm8k_boxed", "gsm8k"), ("kmmlu_cot", "kmmlu"),
                        ("math", "math"), ("math500", "math500"), ("mbpp_plus", "mbpp_plus")):
        assert dataset_owner(load_task(name).dataset_id) == owner, name
    # a folder's name selects what it owns (komt_bench: the hub questions and the repository)
    komt = [plan.dataset_id for plan in plans if "komt_bench" in plan.aliases]
    assert komt == ["LGAI-EXAONE/KoMT-Bench", "LG-AI-EXAONE/KoMT-Bench"]
    assert {fixture.dataset_id for fixture in fixtures()} == {
        "HAERAE-HUB/KMMLU", "HAERAE-HUB/HAE_RAE_BENCH", "google-research-datasets/mbpp",
        "HuggingFaceH4/MATH-500", "evalplus/MbppPlus",
    }


def test_a_card_is_read_from_its_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "card.md"
    path.write_text(CARD, encoding="utf-8")
    card = read_card(path, "arc")
    assert (card.title, card.dataset_id, card.items) == ("ARC-Challenge", "allenai/ai2_arc", 1172)
    assert card.body.startswith("# ARC-Challenge")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("licence:", "license:"), r"^tasks/arc/card\.md: unknown key 'license'; did you mean "
                                   r"'licence'\?$"),
        (("items: 1172\n", ""), r"^tasks/arc/card\.md: missing key 'items'$"),
        (("items: 1172", "items: many"), r"^tasks/arc/card\.md: items must be a positive"),
        (("---\ntitle", "title"), r"^tasks/arc/card\.md must start with YAML front matter"),
    ],
)
def test_a_card_typo_is_one_line_naming_the_file(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = tmp_path / "card.md"
    path.write_text(CARD.replace(*edit, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        read_card(path, "arc")
    assert "\n" not in str(caught.value)


def test_a_card_naming_another_dataset_than_its_task_is_refused(monkeypatch) -> None:
    wrong = read_card(benchmarks_dir() / "mmlu" / "card.md", "mmlu")
    monkeypatch.setattr(catalog, "read_card", lambda path, name: wrong)
    load_card.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"tasks/gsm8k/card\.md: dataset_id 'cais/mmlu' "
                                              r"differs from task\.yaml's 'openai/gsm8k'"):
            load_card("gsm8k")
    finally:
        load_card.cache_clear()


def test_two_folders_planning_one_dataset_is_an_error(monkeypatch) -> None:
    def contents() -> DatasetContents:
        raise AssertionError("not built")

    twice = [DatasetPlan("cais/mmlu", contents)]
    monkeypatch.setattr(catalog, "_declared", lambda name, module, attribute, kind: (
        twice if attribute == "PLANS" and name in ("mmlu", "mmlu_cot") else []))
    with pytest.raises(ConfigError, match=r"cais/mmlu is planned twice: in tasks/mmlu/data\.py "
                                          r"and tasks/mmlu_cot/data\.py"):
        data_plans()
