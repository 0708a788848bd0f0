"""What the README does not say about its tables: table ids, kinds, benchmark ids and scales.

`python -m kanana_eval.report.readme_extract --extract` turns each README table named here into
`results/reference/<id>.json`; the parser needs nothing else, so adding a table is adding a spec.
A column's benchmark id is the one a protocol uses when the README column is the same benchmark
measured the same way, whatever its printed header ("MMLU" in the Kanana 1.0 General
Benchmarks table is the 0-shot CoT MMLU of the 1.5 instruct table: the Kanana-Nano-2.1B numbers
are identical). Ids no protocol runs are reference-only: reports show the published numbers and
leave a run's cell empty, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from kanana_eval.config.protocol import available_protocols, load_protocol
from kanana_eval.results.reference import Column, ReferenceTable


@dataclass(frozen=True)
class TableSpec:
    """What the README does not say about a table: its id, title, kind and benchmark ids."""

    id: str
    title: str
    kind: str
    path: tuple[str, ...]
    columns: dict[str, tuple[str, str]]  # header as printed -> (benchmark id, scale)
    orientation: str = "models_as_rows"


# Kanana 1.5 "Evaluation Protocol" (README) and Kanana 1.0 base table alike: MMLU, KMMLU,
# HAE-RAE 5-shot log-likelihood; HumanEval 0-shot; MBPP 3-shot; GSM8K 5-shot strict-match.
# (Kanana-Flag-32.5B prints the same six numbers in both releases' base tables.)
BASE_COLUMNS = {
    "MMLU": ("mmlu@base", "percent"),
    "KMMLU": ("kmmlu@base", "percent"),
    "HAE-RAE": ("haerae@base", "percent"),
    "HumanEval": ("humaneval@base", "percent"),
    "MBPP": ("mbpp@base", "percent"),
    "GSM8K": ("gsm8k@base", "percent"),
}

# MT-Bench / KoMT-Bench (issue 4) and FunctionChatBench (reference only) get ids now, so the
# stored reference data never has to be renamed when they start running.
INSTRUCT_COLUMNS = {
    "MT-Bench": ("mt_bench@instruct", "judge_1_10"),
    "KoMT-Bench": ("komt_bench@instruct", "judge_1_10"),
    "IFEval": ("ifeval@instruct", "percent"),
    "HumanEval+": ("humaneval_plus@instruct", "percent"),
    "MBPP+": ("mbpp_plus@instruct", "percent"),
    "GSM8K (0-shot)": ("gsm8k@instruct", "percent"),
    "MATH": ("math@instruct", "percent"),
    "MMLU (0-shot, CoT)": ("mmlu_cot@instruct", "percent"),
    "KMMLU (0-shot, CoT)": ("kmmlu_cot@instruct", "percent"),
    "FunctionChatBench": ("functionchatbench@instruct", "percent"),
}

# Kanana 1.0 instruction following: judge scores printed with three decimals, IFEval as a
# 0-1 fraction (the same mean of strict prompt- and instruction-level accuracy: Nano-2.1B's
# 0.720 is the 1.5 table's 71.97). LogicKor and WildBench are reference-only; WildBench prints
# its WB-Score (judge scores rescaled to -100..100), not a share of items.
INSTRUCTION_FOLLOWING_COLUMNS = {
    "MT-Bench": ("mt_bench@instruct", "judge_1_10"),
    "LogicKor": ("logickor@instruct", "judge_1_10"),
    "KoMT-Bench": ("komt_bench@instruct", "judge_1_10"),
    "WildBench": ("wildbench@instruct", "wb_score"),
    "IFEval": ("ifeval@instruct", "fraction"),
}

# Kanana 1.0 general benchmarks of the instruct models: the 1.5 instruct protocol under short
# headers (Nano-2.1B's MMLU 52.48, KMMLU 38.51, GSM8K 72.32, MATH 29.26 ... equal the 1.5
# table's 0-shot CoT / 0-shot columns). HAE-RAE has no 1.5 instruct column and is not the 5-shot
# base measurement (Flag-32.5B: 68.18 here, 90.47 as a base model): reference-only.
GENERAL_COLUMNS = {
    "MMLU": ("mmlu_cot@instruct", "percent"),
    "KMMLU": ("kmmlu_cot@instruct", "percent"),
    "HAE-RAE": ("haerae@instruct", "percent"),
    "HumanEval+": ("humaneval_plus@instruct", "percent"),
    "MBPP+": ("mbpp_plus@instruct", "percent"),
    "GSM8K": ("gsm8k@instruct", "percent"),
    "MATH": ("math@instruct", "percent"),
}

# Kanana 1.0 embedding models, by backbone; the README names no benchmark beyond the language,
# and "Avg." is the mean of the two. Reference-only.
EMBEDDING_COLUMNS = {
    "English": ("english@embedding", "percent"),
    "Korean": ("korean@embedding", "percent"),
    "Avg.": ("english_korean_avg@embedding", "percent"),
}

_V15 = ("Kanana 1.5", "Performance")
_V10 = ("Kanana 1.0", "Performance")

# The tables `--extract` writes, in README order.
TABLE_SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        "kanana-1.5-base",
        "Kanana 1.5: Base Model Evaluation",
        "base",
        (*_V15, "Base Model Evaluation"),
        BASE_COLUMNS,
    ),
    TableSpec(
        "kanana-1.5-base-open",
        "Kanana 1.5: Open-source Base Model Evaluation",
        "base",
        (*_V15, "Base Model Evaluation", "Open-source Base Model Evaluation"),
        BASE_COLUMNS,
    ),
    TableSpec(
        "kanana-1.5-instruct",
        "Kanana 1.5: Instruct Model Evaluation",
        "instruct",
        (*_V15, "Instruct Model Evaluation"),
        INSTRUCT_COLUMNS,
    ),
    TableSpec(
        "kanana-1.5-instruct-open",
        "Kanana 1.5: Open-source Instruct Model Evaluation",
        "instruct",
        (*_V15, "Instruct Model Evaluation", "Open-source Instruct Model Evaluation"),
        INSTRUCT_COLUMNS,
    ),
    TableSpec(
        "kanana-1.0-base",
        "Kanana 1.0: Base Model Evaluation",
        "base",
        (*_V10, "Base Model Evaluation"),
        BASE_COLUMNS,
    ),
    TableSpec(
        "kanana-1.0-instruct-following",
        "Kanana 1.0: Instruction-following Benchmarks",
        "instruct",
        (*_V10, "Instruct Model Evaluation", "Instruction-following Benchmarks"),
        INSTRUCTION_FOLLOWING_COLUMNS,
    ),
    TableSpec(
        "kanana-1.0-instruct-general",
        "Kanana 1.0: General Benchmarks (instruct models)",
        "instruct",
        (*_V10, "Instruct Model Evaluation", "General Benchmarks"),
        GENERAL_COLUMNS,
    ),
    TableSpec(
        "kanana-1.0-embedding",
        "Kanana 1.0: Embedding Model Performance",
        "embedding",
        (*_V10, "Embedding Model Performance"),
        EMBEDDING_COLUMNS,
        orientation="models_as_columns",
    ),
)


def runnable_benchmark_ids() -> frozenset[str]:
    """Every benchmark id some protocol in `protocols/` can run (optional ones included)."""
    return frozenset(b.id for p in available_protocols() for b in load_protocol(p).benchmarks)


def reference_only_columns(table: ReferenceTable) -> tuple[Column, ...]:
    """The table's columns no protocol runs yet: published numbers only, a run's cells empty."""
    runnable = runnable_benchmark_ids()
    return tuple(c for c in table.columns if c.benchmark not in runnable)
