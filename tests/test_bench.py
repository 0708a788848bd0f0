"""`python -m kanana_eval.bench`: the report's shape, its token counts and the answer check.

Timings are never asserted (they are what the bench prints, measured against a reference in
the same run); the tiny random Llama keeps the end-to-end run short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kanana_eval.bench import BenchError, MMLUWorkload, TokenCounter, distinct_prefix_tokens, main


def test_distinct_prefix_tokens_counts_each_shared_prefix_once() -> None:
    # trie nodes: 1, 12, 123, 124, 15, 9 -> 6; the repeated row adds nothing
    rows = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3], [9]]
    assert distinct_prefix_tokens(rows) == 6
    assert distinct_prefix_tokens([[1, 2], [1, 2, 3]]) == 3
    assert distinct_prefix_tokens([]) == 0


class _Echo(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return input_ids


def test_token_counter_skips_right_padding_and_uses_the_mask() -> None:
    model = _Echo()
    counter = TokenCounter().attach(model)
    model(torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]]))  # lm-eval style: right-padded, no mask
    model(input_ids=torch.tensor([[0, 3, 4]]), attention_mask=torch.tensor([[0, 1, 1]]))
    # a cached decoding step: one new token, the mask covers the whole sequence
    model(input_ids=torch.tensor([[8]]), attention_mask=torch.tensor([[0, 1, 1, 1]]))
    counter.detach()
    model(torch.tensor([[1, 2, 3]]))  # after detach: not counted
    assert counter.rows == [3, 2, 2, 1]
    assert counter.tokens == 8
    assert counter.positions == 8 + 3 + 1
    assert counter.forwards == 3


def test_too_few_documents_is_a_one_line_error(offline_mirror: Path) -> None:
    with pytest.raises(BenchError, match="fewer than --questions-per-subject"):
        MMLUWorkload(offline_mirror, ["astronomy"], 100_000)


def test_bench_end_to_end_on_tiny_llama(tiny_llama: Path, offline_mirror: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["--data-dir", str(offline_mirror), "--model-folder", str(tiny_llama),
                 "--subjects", "1", "--questions-per-subject", "2", "--batch-size", "4",
                 "--throughput-seconds", "0.2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["schema"] == "kanana-bench/1"
    assert report["answers_agree"] is True
    (row,) = report["workloads"]
    assert row["detail"]["subjects"] == ["high_school_geography"]
    assert row["items"] == 2 and row["disagreements"] == []
    assert row["max_abs_ll_diff"] is not None and row["max_abs_ll_diff"] < 1e-4
    # MMLU letters are one token, so lm-eval runs one forward row per question
    assert 0 < row["needed_tokens"] <= row["tokens_fed"] <= row["positions_computed"]
    assert row["ours_tokens_fed"] == row["tokens_fed"]  # ours is lm-eval's path, for now
    assert row["typical_length"] == round(row["tokens_fed"] / 2)
    for key in ("ours_s", "plain_s", "throughput_tok_s", "bound_s", "needed_bound_s"):
        assert row[key] > 0, key
    assert row["ours_over_plain"] == pytest.approx(row["ours_s"] / row["plain_s"])
    assert row["bound_s"] == pytest.approx(row["tokens_fed"] / row["throughput_tok_s"])
    assert "mmlu-5shot 1x2" in printed and "✓" in printed and "summary:" in printed
