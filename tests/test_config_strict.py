"""Protocol and task files are read strictly: a typo is one line naming file, key and nearest key.

And every protocol entry agrees with its scorer (options, metric, aggregation, answer path),
checked before any model work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kanana_eval.cli.main import main
from kanana_eval.config.protocol import load_protocol, read_protocol
from kanana_eval.config.task_config import load_task, read_task, task_path
from kanana_eval.core.errors import ConfigError
from kanana_eval.core.paths import resource_dir
from kanana_eval.scoring.catalog import check_spec, get_scorer


def _protocol_copy(tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a callable editing the YAML
    raw = yaml.safe_load((resource_dir("protocols") / "base.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_a_misspelt_benchmark_key_names_the_file_the_key_and_the_nearest_key(tmp_path):
    def typo(raw: dict) -> None:
        raw["benchmarks"][5]["genration"] = raw["benchmarks"][5].pop("generation")

    with pytest.raises(ConfigError) as err:
        read_protocol(_protocol_copy(tmp_path, typo), "base")
    message = str(err.value)
    assert "protocols/base.yaml" in message and "'genration'" in message
    assert "did you mean 'generation'" in message and "\n" not in message


@pytest.mark.parametrize("edit, key, nearest", [
    (lambda raw: raw.update(chat_templat=True), "chat_templat", "chat_template"),
    (lambda raw: raw["benchmarks"][3]["generation"].update(max_gen_tokens=5), "max_gen_tokens",
     "max_gen_toks"),
    (lambda raw: raw["benchmarks"][3]["execution"].update(timeout=5), "timeout", "timeout_s"),
    (lambda raw: raw["regression"].update(min_drops={}), "min_drops", "min_drop"),
])
def test_unknown_keys_at_every_level_are_refused(tmp_path, edit, key, nearest):
    with pytest.raises(ConfigError, match=f"unknown key '{key}'; did you mean '{nearest}'"):
        read_protocol(_protocol_copy(tmp_path, edit), "base")


def test_a_missing_required_key_and_a_wrong_protocol_id_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing key 'metric'"):
        read_protocol(_protocol_copy(tmp_path, lambda raw: raw["benchmarks"][0].pop("metric")),
                      "base")

    def wrong_id(raw: dict) -> None:
        raw["benchmarks"][0]["id"] = "mmlu@instruct"

    with pytest.raises(ConfigError, match="id must be <name>@base"):
        read_protocol(_protocol_copy(tmp_path, wrong_id), "base")


def test_a_misspelt_task_key_names_the_task_file(tmp_path):
    raw = yaml.safe_load(task_path("mmlu").read_text(encoding="utf-8"))
    raw["scorer_option"] = {}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tasks/mmlu/task.yaml: unknown key 'scorer_option'; "
                                          r"did you mean 'scorer_options'"):
        read_task(path, "mmlu")


def test_a_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_bytes(b"protocol: base\ntitle: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_protocol(path, "base")


def _spec(bench: str, **changes: object):  # noqa: ANN202 - a BenchmarkSpec
    proto = load_protocol(bench.split("@")[1])
    spec = next(b for b in proto.benchmarks if b.id == bench)
    return dataclasses.replace(spec, **changes)


@pytest.mark.parametrize("bench, changes, message", [
    ("mmlu@base", {"metric": "exact_match"}, "metric 'exact_match' does not fit scorer "
                                             "'multiple_choice'"),
    ("ifeval@instruct", {"aggregation": "micro"}, "aggregation 'micro' does not fit scorer "
                                                  r"'ifeval' \(it gives ifeval\)"),
    ("mt_bench@instruct", {"metric": "acc"}, "does not fit scorer 'judge'"),
])
def test_metric_and_aggregation_must_fit_the_scorer(bench, changes, message):
    with pytest.raises(ConfigError, match=message):
        check_spec(_spec(bench, **changes))


def test_an_unknown_scorer_names_the_nearest_one():
    spec = _spec("gsm8k@base")
    task = dataclasses.replace(spec.task, scorer="filtered_exact_mach")
    with pytest.raises(ConfigError, match="unknown scorer 'filtered_exact_mach'; did you mean "
                                          "'filtered_exact_match'"):
        check_spec(dataclasses.replace(spec, task=task))


def test_scorer_options_are_checked_against_the_scorer():
    task = load_task("mmlu_cot")
    scorer = get_scorer(task.scorer)
    with pytest.raises(ConfigError, match=r"missing \['letters'\]"):
        scorer.check(dataclasses.replace(task, scorer_options={
            k: v for k, v in task.scorer_options.items() if k != "letters"}))
    with pytest.raises(ConfigError, match="did you mean 'pattern'"):
        scorer.check(dataclasses.replace(task, scorer_options={**task.scorer_options,
                                                               "patern": "x"}))


def test_an_lm_eval_scorer_without_an_lm_eval_task_is_refused():
    spec = _spec("mmlu@base")
    task = dataclasses.replace(spec.task, lm_eval_task=None, lm_eval_folder=None)
    with pytest.raises(ConfigError, match="needs an lm-eval task"):
        check_spec(dataclasses.replace(spec, task=task))


def test_every_shipped_protocol_entry_fits_its_scorer(capsys):
    assert main(["benchmarks"]) == 0  # the listing checks every entry against its scorer
    listing = capsys.readouterr().out
    assert "mt_bench@instruct" in listing and "LLM judge; data" in listing
