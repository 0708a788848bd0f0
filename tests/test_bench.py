"""`python -m tools.bench`: the report's shape, its token counts, the agreement checks, the history.

Timings are never asserted (they are what the bench prints, measured against a reference in
the same run); the tiny random Llama keeps the end-to-end run short.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import pytest
import torch

from kanana_eval.config.protocol import load_protocol
from kanana_eval.tasks.catalog import load_card
from tools.bench import measure, probes, projection
from tools.bench.cli import build_parser, history_path, main
from tools.bench.config import JSON_SCHEMA, BenchError
from tools.bench.probes import PhaseLog, TokenCounter
from tools.bench.projection import project_protocol
from tools.bench.run import append_history
from tools.bench.workloads import MMLUWorkload, distinct_prefix_tokens


def test_distinct_prefix_tokens_counts_each_shared_prefix_once() -> None:
    # trie nodes: 1, 12, 123, 124, 15, 9 -> 6; the repeated row adds nothing
    rows = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3], [9]]
    assert distinct_prefix_tokens(rows) == 6
    assert distinct_prefix_tokens([[1, 2], [1, 2, 3]]) == 3
    assert distinct_prefix_tokens([]) == 0


class _Echo(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return input_ids


def test_token_counter_skips_right_padding_and_uses_the_mask() -> None:
    model = _Echo()
    counter = TokenCounter().attach(model)
    model(torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]]))  # lm-eval style: right-padded, no mask
    model(input_ids=torch.tensor([[0, 3, 4]]), attention_mask=torch.tensor([[0, 1, 1]]))
    # a cached decoding step: one new token, the mask covers the whole sequence
    model(input_ids=torch.tensor([[8]]), attention_mask=torch.tensor([[0, 1, 1, 1]]))
    counter.detach()
    inside = counter.forward_seconds
    assert inside > 0
    model(torch.tensor([[1, 2, 3]]))  # after detach: not counted
    assert counter.forward_seconds == inside
    assert counter.rows == [3, 2, 2, 1]
    assert counter.tokens == 8
    assert counter.positions == 8 + 3 + 1
    assert counter.forwards == 3


def _touch_new_pages(size: int) -> None:
    """Make `size` bytes resident that the process never had, then give them back.

    A bytes object may be carved from heap memory an earlier test freed but malloc kept: already
    resident, so the peak would not grow. A fresh anonymous mapping is new pages for sure, and
    writing one byte per page makes every page resident.
    """
    with mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as block:
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1


def test_phase_log_reads_the_peak_of_each_phase() -> None:
    log = PhaseLog()
    with log.phase("allocate"):
        _touch_new_pages(96 * 1024 * 1024)
    with log.phase("idle"):
        pass
    with log.phase("idle"):  # a second piece of a phase joins its record
        pass
    allocate, idle = log.phases
    assert [allocate["phase"], idle["phase"]] == ["allocate", "idle"]
    assert (allocate["pieces"], idle["pieces"]) == (1, 2)
    assert idle["others_cpu_s"] is None or idle["others_cpu_s"] >= 0
    assert allocate["peak_source"] in ("VmHWM", "ru_maxrss")
    # reset per phase: the second phase forgets the first's peak
    if allocate["peak_source"] == "VmHWM":
        assert allocate["peak_rss_mib"] >= allocate["rss_start_mib"] + 90
        assert idle["peak_rss_mib"] < allocate["peak_rss_mib"] - 50


class _Lm:
    def __init__(self) -> None:
        self.model = _Echo()
        self.calls = 0

    def run(self, lm: _Lm) -> str:
        self.calls += 1
        lm.model(torch.tensor([[1, 2, 3]]))
        return "out"


def test_a_piece_timed_under_outside_load_is_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter(range(0, 10_000, 1_000))  # each reading: 1,000 more CPU seconds machine-wide
    monkeypatch.setattr(probes, "machine_busy_seconds", lambda: float(next(ticks)))
    lm, log = _Lm(), PhaseLog()
    out, figures = measure._timed(lm.run, lm, log, "piece", "loglikelihood",
                                  measure.RetryPolicy(retries=2))
    assert out == "out" and lm.calls == 3 and figures["attempts"] == 3
    # one attempt's figures, not three
    assert figures["tokens_fed"] == 3 and figures["forwards"] == 1
    assert log.get("piece")["pieces"] == 3

    monkeypatch.setattr(probes, "machine_busy_seconds", lambda: 0.0)  # a quiet machine: one attempt
    lm = _Lm()
    _, figures = measure._timed(lm.run, lm, log, "quiet", "loglikelihood",
                                measure.RetryPolicy(retries=2))
    assert lm.calls == 1 and figures["attempts"] == 1 and figures["others_cpu_s"] == 0.0


def test_projection_derives_request_counts_from_the_protocol() -> None:
    proj = project_protocol(10.0, 2.0)
    assert proj["kind"] == "projection"
    rows = {r["benchmark"]: r for r in proj["benchmarks"]}
    assert list(rows) == ["mmlu@base", "kmmlu@base", "haerae@base", "humaneval@base", "mbpp@base",
                          "gsm8k@base"]
    # log-likelihood: items x lm-eval's doc_to_choice
    assert (rows["mmlu@base"]["items"], rows["mmlu@base"]["requests"]) == (14_042, 56_168)
    assert (rows["kmmlu@base"]["items"], rows["kmmlu@base"]["requests"]) == (35_030, 140_120)
    assert (rows["haerae@base"]["items"], rows["haerae@base"]["requests"]) == (1_091, 5_455)
    assert rows["mmlu@base"]["subtasks"] == 57 and rows["kmmlu@base"]["subtasks"] == 45
    # generation: one request per item
    generation = ("humaneval@base", "mbpp@base", "gsm8k@base")
    assert [rows[b]["requests"] for b in generation] == [164, 500, 1_319]
    assert rows["mmlu@base"]["projected_s"] == pytest.approx(56_168 / 10.0)
    assert rows["gsm8k@base"]["projected_s"] == pytest.approx(1_319 * 2.0)
    assert proj["total_s"] == pytest.approx(sum(r["projected_s"] for r in rows.values()))
    assert project_protocol(10.0, None)["total_s"] is None  # no generation rate: no full total


def test_projection_takes_item_counts_from_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    # adding a benchmark never means editing the bench: counts come from `protocol_items` alone
    # (today a table, later each benchmark folder's card)
    unknown = {"kmmlu"}
    monkeypatch.setattr(projection, "protocol_items",
                        lambda name: (None, "unknown") if name in unknown else (10, f"card {name}"))
    proj = project_protocol(10.0, 2.0)
    rows = {r["benchmark"]: r for r in proj["benchmarks"]}
    assert (rows["mmlu@base"]["items"], rows["mmlu@base"]["items_source"]) == (10, "card mmlu")
    assert rows["mmlu@base"]["requests"] == 40 and rows["gsm8k@base"]["requests"] == 10
    assert rows["kmmlu@base"]["requests"] is None and rows["kmmlu@base"]["projected_s"] is None
    assert proj["total_s"] is None  # one benchmark without a count: no full total, a partial one
    assert proj["partial_total_s"] == pytest.approx(
        sum(r["projected_s"] for r in rows.values() if r["projected_s"] is not None))


def test_item_counts_come_from_each_benchmark_card() -> None:
    for spec in load_protocol("base").benchmarks:
        items, source = projection.protocol_items(spec.task.name)
        assert items == load_card(spec.task.name).items
        assert source.startswith(f"tasks/{spec.task.name}/card.md")
    assert projection.protocol_items("mmlu")[0] == 14_042


def test_history_appends_one_line_per_invocation(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bench.jsonl"
    append_history(path, {"schema": JSON_SCHEMA, "n": 1})
    append_history(path, {"schema": JSON_SCHEMA, "n": 2, "text": "정답"})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2]


def test_too_few_documents_is_a_one_line_error(offline_mirror: Path) -> None:
    with pytest.raises(BenchError, match="fewer than --questions-per-subject"):
        MMLUWorkload(offline_mirror, ["astronomy"], 100_000)


def test_bench_end_to_end_on_tiny_llama(tiny_llama: Path, offline_mirror: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    history = tmp_path / "history" / "bench.jsonl"
    code = main(["--data-dir", str(offline_mirror), "--model-folder", str(tiny_llama),
                 "--subjects", "2", "--questions-per-subject", "2", "--batch-size", "4",
                 "--humaneval-prompts", "2", "--max-gen-toks", "12", "--throughput-seconds", "0.1",
                 "--retries", "0", "--no-vllm",  # vLLM's part: tests/test_vllm_bench.py
                 "--json", str(out), "--history", str(history)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    (line,) = history.read_text(encoding="utf-8").splitlines()
    assert json.loads(line) == report  # the history line is the whole report
    assert report["schema"] == JSON_SCHEMA == "kanana-bench/2"
    assert {"started_at", "git", "model", "config", "machine", "versions", "engine", "total_s",
            "loglikelihood", "generation", "memory", "projection", "targets", "answers_agree",
            "outputs_identical", "ok"} <= set(report)
    assert report["ok"] is True and report["answers_agree"] is True
    assert report["outputs_identical"] is True
    assert {"cpu_count", "torch_threads", "load_avg_start", "load_avg_end"} <= set(
        report["machine"])
    assert report["versions"]["lm_eval"] and report["config"]["batch_size"] == 4

    ll = report["loglikelihood"]
    assert ll["workload"]["subjects"] == ["high_school_geography", "marketing"]
    assert ll["items"] == 4 and ll["requests"] == 16 and ll["disagreements"] == []
    assert set(ll["sides"]) == {"plain", "reuse", "no_reuse"}
    assert all(d is not None and d < 1e-4 for d in ll["max_abs_ll_diff"].values())
    plain, reuse, no_reuse = (ll["sides"][s] for s in ("plain", "reuse", "no_reuse"))
    # MMLU letters are one token: every side feeds one row per question; reuse feeds each
    # subject's 5-shot prefix once, and nothing can feed fewer than the distinct prefixes
    assert no_reuse["tokens_fed"] == plain["tokens_fed"]
    assert (0 < ll["needed_tokens"] <= reuse["tokens_fed"] < plain["tokens_fed"]
            <= plain["positions_computed"])
    assert ll["typical_length"] == round(plain["tokens_fed"] / 4)
    for side in (plain, reuse, no_reuse):
        assert side["seconds"] > 0 and side["requests"] == 16 and side["peak_rss_mib"] > 0
        assert len(side["runs_s"]) == 1 and "others_cores" in side
        assert 0 < side["forward_s"] <= side["seconds"]
    assert ll["ours_over_plain"] == pytest.approx(reuse["seconds"] / plain["seconds"])
    assert ll["plain_bound_s"] == pytest.approx(plain["tokens_fed"] / ll["forward_rate_tok_s"])
    assert ll["reuse_bound_s"] == pytest.approx(
        ll["needed_tokens"] / ll["forward_rate_last_logits_tok_s"])

    gen = report["generation"]
    assert gen["workload"]["task_ids"] == ["HumanEval/0", "HumanEval/1"]
    assert gen["workload"]["max_gen_toks"] == 12 and "\ndef" in gen["workload"]["until"]
    assert gen["outputs_identical"] is True and gen["mismatched"] == []
    assert gen["identical_prompts"] == 2
    assert {s: gen["sides"][s]["batch_size"] for s in gen["sides"]} == {
        "ours_batched": 4, "ours_b1": 1, "plain_b1": 1}
    assert gen["speedup"] == pytest.approx(gen["sides"]["ours_b1"]["seconds"]
                                           / gen["sides"]["ours_batched"]["seconds"])

    assert set(report["targets"]) == {"ours_over_plain", "ours_over_reuse_bound",
                                      "generation_speedup"}
    assert all(isinstance(t["pass"], bool) for t in report["targets"].values())
    pieces = {p["phase"]: p["pieces"] for p in report["memory"]["phases"]}
    # subject by subject
    assert pieces["mmlu ours, prefix reuse"] == pieces["mmlu plain lm-eval"] == 2
    phases = list(pieces)
    assert phases[:2] == ["data", "model load (ours and plain)"]
    assert "mmlu ours, prefix reuse" in phases and "humaneval plain lm-eval, batch 1" in phases
    assert report["projection"]["kind"] == "projection" and report["projection"]["total_s"] > 0
    estimates = report["memory"]["estimate_vs_peak"]
    assert [e["layout"] for e in estimates] == ["padded", "packed"]  # tiny Llama packs on a prefix
    assert all(e["estimate_mib"] >= 0 and e["peak_mib"] >= 0 for e in estimates)

    niah = report["niah"]  # a 1K/2K grid: shared prefixes prefill fewer tokens, same answers
    assert niah["answers_agree"] is True and niah["grid"]["cells"] == 10
    assert niah["sides"]["shared"]["prefill_tokens"] < niah["sides"]["alone"]["prefill_tokens"]
    assert niah["token_ratio"] == pytest.approx(niah["sides"]["shared"]["prefill_tokens"]
                                                / niah["sides"]["alone"]["prefill_tokens"])
    assert "NIAH grid" in printed

    for text in ("mmlu-5shot 2x2", "compute bound, reuse path", "ours, no reuse", "ours, batch 4",
                 "plain lm-eval, batch 1", "byte-identical", "PROJECTION", "peak resident memory",
                 "memory estimate vs the measured peak",
                 "summary:", "appended to"):
        assert text in printed, text


def test_history_option_defaults_to_results_bench_and_can_be_turned_off() -> None:
    parser = build_parser()
    assert history_path(parser.parse_args(["--data-dir", "m"])) == Path("results/bench/bench.jsonl")
    given = parser.parse_args(["--data-dir", "m", "--history", "h.jsonl"])
    assert history_path(given) == Path("h.jsonl")
    assert history_path(parser.parse_args(["--data-dir", "m", "--no-history"])) is None


def test_token_counter_counts_every_position_of_a_packed_row() -> None:
    model = _Echo()
    counter = TokenCounter().attach(model)
    # prefix reuse packs suffixes into one row with a 4-D block mask: no padding to skip
    model(input_ids=torch.tensor([[5, 6, 7, 0, 9]]), attention_mask=torch.zeros((1, 1, 5, 8)))
    counter.detach()
    assert counter.rows == [5] and counter.positions == 5
