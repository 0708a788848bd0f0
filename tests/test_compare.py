"""`kanana-eval compare`: paired verdicts on synthetic runs whose true difference is known."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from run_builder import TestBenchmark, metric_of, scorer_of, write_test_run

from kanana_eval.cli.compare import main as compare_main
from kanana_eval.cli.main import main as kanana_main
from kanana_eval.compare.gate import (
    BETTER,
    NOT_COMPARED,
    SAME,
    WORSE,
    BenchmarkInput,
    Pairing,
    compare_runs,
    evaluate,
    pair_items,
)
from kanana_eval.config.protocol import _regression_rule, load_protocol
from kanana_eval.core.errors import ConfigError, ResultsError
from kanana_eval.results.records import Scale
from kanana_eval.scoring.catalog import get_scorer

FAST_BOOT = ["--bootstrap", "400"]


# ---------------------------------------------------------------------------------------------
# Synthetic runs: in memory, or as run folders written by `run_builder` (the package's RunWriter)


def judged(bench: str) -> bool:
    """The benchmark's scorer asks a judge: its items are 1-10 scores of two turns."""
    return get_scorer(scorer_of(bench)).needs_judge


def binary(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    return (rng.uniform(size=len(probs)) < probs).astype(int)


def drifted(rng: np.random.Generator, base: np.ndarray, drop_points: float,
            churn: float = 0.02) -> np.ndarray:
    """A candidate that loses `drop_points` on average, on top of `churn` flips each way."""
    n, passed = len(base), int(base.sum())
    loss_rate = churn + drop_points / 100 * n / passed
    u = rng.uniform(size=n)
    cand = base.copy()
    cand[(base == 1) & (u < loss_rate)] = 0
    cand[(base == 0) & (u < churn)] = 1
    return cand


def judge_scores(rng: np.random.Generator, quality: np.ndarray) -> list[tuple[str, int, float]]:
    """Two judged turns per question around its quality, 1-10."""
    return [(str(81 + q), turn, float(np.clip(round(quality[q] + rng.normal(0, 1.5)), 1, 10)))
            for q in range(len(quality)) for turn in (1, 2)]


def _input(bench: str, base: np.ndarray | list, cand: np.ndarray | list) -> BenchmarkInput:
    """In-memory pairing of one benchmark, as compare_runs builds it from item files."""
    if judged(bench):
        keys = [(i, t) for i, t, _ in base]
        pairing = Pairing(keys, np.array([s for *_, s in base]), np.array([s for *_, s in cand]))
    else:
        keys = [(str(i), None) for i in range(len(base))]
        pairing = Pairing(keys, np.asarray(base, float), np.asarray(cand, float))
    return BenchmarkInput(bench, pairing, scorer=scorer_of(bench), metric=metric_of(bench))


def _binomial_upper_limit(n: int, p: float, tail: float) -> int:
    """Smallest k with P(Bin(n, p) > k) < tail: the most false alarms chance allows."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if 1 - cdf < tail:
            return k
    return n


def run_cli(*argv: str) -> int:
    return compare_main([*map(str, argv), *FAST_BOOT])


# ---------------------------------------------------------------------------------------------
# What must hold: false alarms within alpha, real drops caught, small changes never regressions

SUITE = {"mmlu@base": 1000, "gsm8k@base": 400, "humaneval@base": 164, "mbpp@base": 378,
         "ifeval@instruct": 541, "mt_bench@instruct": 80}


def _unchanged_pair(seed: int) -> list[BenchmarkInput]:
    """Two checkpoints of equal quality: each item drawn twice from the same success probability."""
    rng = np.random.default_rng(seed)
    out = []
    for bench, n in SUITE.items():
        if judged(bench):
            quality = rng.uniform(3, 9, size=n)
            out.append(_input(bench, judge_scores(rng, quality), judge_scores(rng, quality)))
        else:
            probs = rng.beta(0.3, 0.3, size=n)
            out.append(_input(bench, binary(rng, probs), binary(rng, probs)))
    return out


def test_unchanged_checkpoints_give_a_false_worse_at_most_alpha_of_the_time():
    alpha, pairs = 0.05, 200
    no_drop = dict.fromkeys(SUITE, 0.0)  # the statistics alone, no minimum drop to hide behind
    any_worse = any_raw = 0
    for seed in range(pairs):
        results = evaluate(_unchanged_pair(seed), alpha=alpha, min_drops=no_drop, n_boot=300,
                           seed=seed)
        any_worse += any(r.verdict == WORSE for r in results)
        any_raw += any(r.p_worse < alpha for r in results)
    assert any_worse <= _binomial_upper_limit(pairs, alpha, 0.001), any_worse
    # Without the Holm adjustment six benchmarks would raise false alarms far more often.
    assert any_raw > _binomial_upper_limit(pairs, alpha, 0.001), any_raw


def test_a_real_drop_of_five_points_on_500_items_is_caught():
    caught = 0
    rule = load_protocol("base").regression
    for seed in range(40):
        benches = _unchanged_pair(1000 + seed)
        rng = np.random.default_rng(seed)
        base = binary(rng, np.full(500, 0.6))
        benches[1] = _input("gsm8k@base", base, drifted(rng, base, drop_points=5.0))
        drops = {b.benchmark: rule.min_drop(b.benchmark) for b in benches}
        drops |= {"mt_bench@instruct": 0.25, "ifeval@instruct": 2.0}
        results = evaluate(benches, alpha=0.05, min_drops=drops, n_boot=300, seed=seed)
        caught += results[1].verdict == WORSE
    assert caught >= 36, caught


@pytest.mark.parametrize("drop_items", [25, 200, 299])
def test_a_change_smaller_than_the_minimum_drop_is_never_a_regression(drop_items):
    """20,000 items: a 1.5-point drop is overwhelmingly significant, yet below a 1.5+ minimum."""
    n = 20_000
    base = np.zeros(n)
    base[: n // 2] = 1
    cand = base.copy()
    cand[:drop_items] = 0  # exactly drop_items / 200 points lost, no gains
    bench = _input("mmlu@base", base, cand)
    (result,) = evaluate([bench], alpha=0.05, min_drops={"mmlu@base": 1.5}, n_boot=200)
    assert result.p_worse_adj < 1e-6
    assert result.verdict == SAME
    assert "below the minimum drop" in " ".join(result.notes)
    (strict,) = evaluate([bench], alpha=0.05, min_drops={"mmlu@base": drop_items / 200}, n_boot=200)
    assert strict.verdict == WORSE  # reaching the minimum exactly is a regression


def test_holm_counts_every_benchmark_compared():
    """p = 0.016 alone is a regression at 0.05; among five more benchmarks (x6) it is not."""
    base = np.array([1] * 6 + [0] * 94)
    cand = np.array([0] * 6 + [0] * 94)  # 6 losses, 0 wins: p_worse = 1/64
    alone = evaluate([_input("gsm8k@base", base, cand)], alpha=0.05, min_drops={"gsm8k@base": 1.0})
    assert alone[0].p_worse == pytest.approx(1 / 64) and alone[0].verdict == WORSE
    quiet = [_input(b, np.ones(50), np.ones(50)) for b in ("mmlu@base", "kmmlu@base", "haerae@base",
                                                            "mbpp@base", "humaneval@base")]
    crowd = evaluate([_input("gsm8k@base", base, cand), *quiet], alpha=0.05,
                     min_drops=dict.fromkeys(["gsm8k@base", *SUITE], 1.0))
    assert crowd[0].p_worse_adj == pytest.approx(6 / 64)
    assert crowd[0].verdict == SAME


def test_a_real_gain_is_better_and_the_exit_status_stays_zero(tmp_path):
    base = [1] * 100 + [0] * 300
    cand = [1] * 150 + [0] * 250
    b = write_test_run(tmp_path / "a", {"gsm8k@base": base})
    c = write_test_run(tmp_path / "b", {"gsm8k@base": cand})
    comparison = compare_runs(b, c, n_boot=300)
    assert comparison.results[0].verdict == BETTER
    assert comparison.results[0].diff == pytest.approx(12.5)
    assert comparison.exit_code == 0


# ---------------------------------------------------------------------------------------------
# End to end through run folders and the command line


@pytest.fixture
def dropped_runs(tmp_path: Path) -> tuple[Path, Path]:
    """Baseline and a candidate that lost 6 points of GSM8K on 500 items; MMLU unchanged."""
    rng = np.random.default_rng(0)
    mmlu = binary(rng, np.full(300, 0.5)).tolist()
    gsm = [1] * 300 + [0] * 200
    gsm_cand = list(gsm)
    for i in range(5, 40):  # 35 items lost...
        gsm_cand[i] = 0
    for i in range(300, 305):  # ...and 5 gained: a net drop of 30 items = 6 points
        gsm_cand[i] = 1
    results = tmp_path / "results"
    base = write_test_run(results, {"mmlu@base": mmlu, "gsm8k@base": gsm}, model="base-ckpt")
    cand = write_test_run(results, {"mmlu@base": mmlu, "gsm8k@base": gsm_cand}, model="new-ckpt")
    return base, cand


def test_a_regression_exits_1_and_writes_every_output(dropped_runs, tmp_path, capsys):
    base, cand = dropped_runs
    out = tmp_path / "out"
    status = run_cli(base, cand, "--markdown", out / "summary.md", "--json", out / "verdict.json",
                     "--junit", out / "junit.xml")
    assert status == 1
    table = capsys.readouterr().out
    assert "REGRESSION in gsm8k@base" in table
    assert "35 passed before, fail now: 5, 6, 7" in table
    assert "5 failed before, pass now: 300, 301, 302, 303, 304" in table

    verdict = json.loads((out / "verdict.json").read_text())
    assert ((verdict["format"], verdict["version"], verdict["exit_code"])
            == ("kanana-eval-compare", 1, 1))
    assert verdict["regressions"] == ["gsm8k@base"]
    gsm = {b["benchmark"]: b for b in verdict["benchmarks"]}["gsm8k@base"]
    assert gsm["method"] == "exact McNemar" and gsm["verdict"] == WORSE
    assert gsm["diff"] == pytest.approx(-6.0)
    assert gsm["ci"][0] < -6.0 < gsm["ci"][1]
    assert [f["item_id"] for f in gsm["flips"]["worse"]] == [str(i) for i in range(5, 40)]
    assert [f["item_id"] for f in gsm["flips"]["better"]] == [str(i) for i in range(300, 305)]

    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"mmlu@base", "gsm8k@base"}
    assert cases["gsm8k@base"].find("failure") is not None
    assert cases["mmlu@base"].find("failure") is None
    assert suite.get("failures") == "1" and suite.get("tests") == "2"

    md = (out / "summary.md").read_text()
    assert md.startswith("## Checkpoint comparison: ❌ REGRESSION in gsm8k@base")
    assert "| `gsm8k@base` | 60.00 | 54.00 | -6.00 |" in md
    assert "35 passed before, fail now" in md and "Holm-adjusted over 2 benchmark(s)" in md


def test_an_unchanged_candidate_exits_0(dropped_runs, tmp_path):
    base, _ = dropped_runs
    same = write_test_run(tmp_path / "results",
                          {"mmlu@base": [1, 0] * 150, "gsm8k@base": [1] * 300 + [0] * 200},
                          model="base-ckpt", run_id="20260102T000000Z-00000000")
    assert run_cli(base, same, "--json", tmp_path / "v.json") == 0
    assert json.loads((tmp_path / "v.json").read_text())["verdict"] == "no regression"


def test_min_drop_and_alpha_overrides_change_the_verdict(dropped_runs, capsys):
    base, cand = dropped_runs
    assert run_cli(base, cand, "--min-drop", "gsm8k=7") == 0  # by name: 6 points < 7
    assert run_cli(base, cand, "--min-drop", "gsm8k@base=6") == 1
    assert run_cli(base, cand, "--alpha", "1e-9") == 0  # p ~ 1e-6 is not below 1e-9
    capsys.readouterr()


def test_a_model_name_stands_for_its_latest_run(dropped_runs, tmp_path, capsys):
    results = tmp_path / "results"
    assert run_cli("base-ckpt", "new-ckpt", "--results-dir", results) == 1
    assert "new-ckpt 20260101T000000Z-00000000" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["nowhere", "{cand}"], "neither a run folder nor a model"),
    (["{base}", "{cand}", "--min-drop", "gsm9k=2"], "unknown benchmark(s): gsm9k"),
])
def test_usage_and_data_errors_exit_2_with_one_line(dropped_runs, tmp_path, capsys, argv, message):
    base, cand = dropped_runs
    argv = [a.format(base=base, cand=cand) for a in argv]
    assert run_cli(*argv, "--results-dir", tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert err.startswith("kanana-eval: error:") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("bad", [["--alpha", "1.5"], ["--min-drop", "gsm8k"],
                                 ["--min-drop", "gsm8k=-1"], ["--bootstrap", "0"]])
def test_bad_option_values_exit_2(dropped_runs, bad, capsys):
    base, cand = dropped_runs
    with pytest.raises(SystemExit) as exc:
        compare_main([str(base), str(cand), *bad])
    assert exc.value.code == 2
    capsys.readouterr()


def test_runs_with_different_data_fingerprints_are_refused_unless_forced(tmp_path, capsys):
    base = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="a")
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="b",
                          fingerprint="sha256:data-v2")
    assert run_cli(base, cand) == 2
    err = capsys.readouterr().err
    assert "data fingerprints differ" in err and "--force" in err
    assert run_cli(base, cand, "--force", "--json", tmp_path / "v.json") == 0
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["forced"] is True
    assert any("forced: gsm8k@base: data fingerprints differ" in n for n in verdict["notes"])


def test_runs_with_different_protocol_settings_are_refused(tmp_path, capsys):
    base = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="a")
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="b", max_gen_toks=96)
    assert run_cli(base, cand) == 2
    assert "protocol settings differ (generation)" in capsys.readouterr().err


def test_judged_runs_by_different_judges_are_refused(tmp_path, capsys):
    turns = [(str(q), t, 7.0) for q in range(81, 91) for t in (1, 2)]
    base = write_test_run(tmp_path / "r", {"mt_bench@instruct": turns}, model="a")
    cand = write_test_run(tmp_path / "r", {"mt_bench@instruct": turns}, model="b",
                          judge_model="local-judge")
    assert run_cli(base, cand) == 2
    assert "judged by different models" in capsys.readouterr().err


def test_a_changed_protocol_file_alone_is_a_note_not_a_refusal(tmp_path):
    base = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="a")
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="b",
                          protocol_sha="b" * 64)
    comparison = compare_runs(base, cand, n_boot=100)
    assert any("protocols/base.yaml differs" in w for w in comparison.warnings)


def test_items_in_only_one_run_are_reported_never_dropped(tmp_path, capsys):
    base_items = [(str(i), None, 1) for i in range(100)]
    base = write_test_run(tmp_path / "r", {"gsm8k@base": base_items}, model="a")
    cand_items = [(str(i), None, 1) for i in range(3, 100)] + [("extra-1", None, 0),
                                                               ("extra-2", None, 1)]
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": cand_items}, model="b")
    assert run_cli(base, cand, "--json", tmp_path / "v.json") == 0
    assert ("not paired: 3 item(s) only in the baseline, 2 item(s) only in the candidate"
            in capsys.readouterr().out)
    gsm = json.loads((tmp_path / "v.json").read_text())["benchmarks"][0]
    assert gsm["n_paired"] == 97
    assert gsm["unpaired"]["only_in_baseline"] == [{"item_id": i} for i in ("0", "1", "2")]
    assert gsm["unpaired"]["only_in_candidate"] == [{"item_id": "extra-1"}, {"item_id": "extra-2"}]


def test_benchmarks_in_one_run_only_are_listed_and_skipped_in_junit(tmp_path, capsys):
    base = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50, "mmlu@base": [1] * 20},
                          model="a")
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0] * 50}, model="b")
    assert run_cli(base, cand, "--junit", tmp_path / "j.xml") == 0
    assert "benchmarks only in the baseline (not compared): mmlu@base" in capsys.readouterr().out
    skipped = [c.get("name") for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
               if c.find("skipped") is not None]
    assert skipped == ["mmlu@base"]


def test_judged_turns_pair_by_item_and_turn_and_unscored_turns_are_reported(tmp_path, capsys):
    rng = np.random.default_rng(5)
    quality = rng.uniform(4, 8, size=40)
    base_items = judge_scores(rng, quality)
    cand_items = [(i, t, max(1.0, s - 2)) for i, t, s in base_items]  # 2 points worse everywhere
    cand_items[0] = (cand_items[0][0], 1, None)  # one turn without a readable judgment
    base = write_test_run(tmp_path / "r", {"mt_bench@instruct": base_items}, model="a")
    cand = write_test_run(tmp_path / "r", {"mt_bench@instruct": cand_items}, model="b")
    assert run_cli(base, cand, "--json", tmp_path / "v.json") == 1
    out = capsys.readouterr().out
    assert "1 item(s) without a score in the candidate" in out
    assert "81 (turn 2):" in out  # judged items list their scores, turn included
    mt = json.loads((tmp_path / "v.json").read_text())["benchmarks"][0]
    assert mt["method"] == "paired bootstrap" and mt["unit"] == "score points"
    assert mt["n_paired"] == 79
    assert mt["unpaired"]["unscored_in_candidate"] == [{"item_id": "81", "turn": 1}]
    drops = [s - max(1.0, s - 2) for _, _, s in base_items[1:]]
    assert mt["diff"] == pytest.approx(-np.mean(drops))
    assert "resamples whole questions" in " ".join(mt["notes"])


def test_ifeval_is_compared_by_bootstrap_on_prompt_level_strict_and_says_so(tmp_path, capsys):
    base = write_test_run(tmp_path / "r",
                          {"ifeval@instruct": TestBenchmark([1, 0] * 100, value=0.55)}, model="a")
    cand = write_test_run(tmp_path / "r", {"ifeval@instruct": TestBenchmark(
        [1, 1, 1, 1] + [1, 0] * 98, value=0.56)}, model="b")
    assert run_cli(base, cand, "--json", tmp_path / "v.json") == 0
    out = capsys.readouterr().out
    assert "per-item prompt-level strict score" in out
    assert "ifeval@instruct: 2 failed before, pass now: 1, 3\n" in out  # pass/fail items flip
    ifeval = json.loads((tmp_path / "v.json").read_text())["benchmarks"][0]
    assert ifeval["method"] == "paired bootstrap" and ifeval["verdict"] == SAME
    assert (ifeval["baseline"]["value"], ifeval["candidate"]["value"]) == (0.55, 0.56)
    assert ifeval["baseline"]["paired_mean"] == 0.5 and ifeval["diff"] == pytest.approx(1.0)


def test_smoke_runs_can_be_compared_and_the_output_says_so(tmp_path, capsys):
    base = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0, 1, 1, 0]}, model="a", smoke=True,
                          limit=5)
    cand = write_test_run(tmp_path / "r", {"gsm8k@base": [1, 0, 0, 1, 0]}, model="b", smoke=True,
                          limit=5)
    assert run_cli(base, cand, "--markdown", tmp_path / "s.md", "--json", tmp_path / "v.json") == 0
    assert "SMOKE RUN (baseline and candidate)" in capsys.readouterr().out
    assert "SMOKE RUN" in (tmp_path / "s.md").read_text()
    assert json.loads((tmp_path / "v.json").read_text())["smoke"] is True


def test_the_same_seed_gives_the_same_verdict(dropped_runs, tmp_path):
    base, cand = dropped_runs
    for name in ("a.json", "b.json"):
        run_cli(base, cand, "--seed", "7", "--json", tmp_path / name)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_help_states_the_rule_the_outputs_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exc:
        compare_main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("Holm-adjusted over the benchmarks compared, is below alpha AND the drop is at "
                   "least", "exact McNemar", "paired bootstrap", "prompt-level strict",
                   "--min-drop BENCH=POINTS", "--junit PATH", "--force",
                   "0 nothing regressed, 1 a regression, 2 a usage or data error"):
        assert phrase in text, phrase


def test_duplicate_item_ids_cannot_be_paired():
    with pytest.raises(ResultsError, match="appears twice"):
        pair_items([{"item_id": "1", "score": 1}, {"item_id": "1", "score": 0}], [])


def test_a_benchmark_without_paired_items_is_not_compared():
    pairing = pair_items([{"item_id": "1", "turn": 1, "score": None}],
                         [{"item_id": "1", "turn": 1, "score": 5.0}])
    (result,) = evaluate([BenchmarkInput("mt_bench@instruct", pairing, scorer="judge")],
                         alpha=0.05, min_drops={})
    assert result.verdict == NOT_COMPARED
    assert pairing.unscored_baseline == [("1", 1)]


# ---------------------------------------------------------------------------------------------
# The protocols' regression section


@pytest.mark.parametrize("name", ["base", "instruct"])
def test_protocols_state_alpha_and_a_min_drop_for_every_benchmark(name):
    proto = load_protocol(name)
    assert proto.regression.alpha == 0.05
    assert {b.id for b in proto.benchmarks} == set(proto.regression.min_drops)
    for bench in proto.benchmarks:
        drop = proto.regression.min_drop(bench.id)
        judged_scale = Scale(get_scorer(bench.task.scorer).scale) is Scale.JUDGE_1_10
        assert (0 < drop < 1) if judged_scale else (1 <= drop <= 3)


@pytest.mark.parametrize("raw, message", [
    ({"alpha": 1.5}, "strictly between 0 and 1"),
    ({"min_drop": {"gsm8k@base": -1}}, "cannot be negative"),
    ({"min_drop": {"nope@base": 1}}, "unknown benchmark"),
    ({"min_drop": ["gsm8k@base"]}, "malformed"),
    ({"alpha": "high"}, "malformed"),
])
def test_a_malformed_regression_section_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        _regression_rule("base", raw, {"gsm8k@base"})


def test_the_kanana_eval_command_has_compare(dropped_runs, capsys):
    base, cand = dropped_runs
    assert kanana_main(["compare", str(base), str(cand), "--bootstrap", "200"]) == 1
    assert kanana_main(["compare", "nowhere", str(cand)]) == 2
    assert "kanana-eval: error:" in capsys.readouterr().err
