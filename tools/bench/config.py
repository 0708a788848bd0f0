"""What the bench can be asked (`BenchConfig`), its defaults and targets, and its one error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kanana_eval.core.errors import KananaError

DEFAULT_MODEL_KEY = "smollm2-135m-instruct"
# Fixed so numbers stay comparable between runs: one social-science, one "other", two STEM
# subjects, with 5-shot prompts of middling length (about 310-550 tokens on SmolLM2).
DEFAULT_SUBJECTS = ("high_school_geography", "marketing", "astronomy", "college_biology")
# 4 x 30 questions and 20 prompts: about 5 minutes on 2 idle cores, under 12 with other
# processes using a core meanwhile (measured), so `make bench` stays under 15 minutes.
DEFAULT_QUESTIONS = 30
# Timed pieces are run again under outside load only this long into the bench, for the same
# reason.
RETRY_WINDOW_S = 600.0
DEFAULT_PROMPTS = 20
DEFAULT_HISTORY = Path("results/bench/bench.jsonl")
JSON_SCHEMA = "kanana-bench/2"
# The targets: ours (prefix reuse) at most 0.3x plain lm-eval's wall time and within
# 1.3x of the reuse path's compute bound; batched generation at least 2x faster than batch 1.
TARGET_OURS_OVER_PLAIN = 0.3
TARGET_OURS_OVER_BOUND = 1.3
TARGET_GENERATION_SPEEDUP = 2.0


class BenchError(KananaError):
    """The bench cannot run as asked (bad option, too few documents, unknown subject)."""


@dataclass
class BenchConfig:
    """One bench invocation's options (recorded in the report as given)."""

    data_dir: Path
    subjects: int = len(DEFAULT_SUBJECTS)
    questions_per_subject: int = DEFAULT_QUESTIONS
    batch_size: int = 8
    humaneval_prompts: int = DEFAULT_PROMPTS
    max_gen_toks: int | None = None
    model_folder: Path | None = None
    repeats: int = 1
    throughput_seconds: float = 3.0
    threads: int | None = None
    retries: int = 1
    retry_above: float = 0.25
    vllm: bool = True  # the vLLM part, when vLLM is installed (tools/bench/vllm_side.py)
    niah: bool = True  # the NIAH part: a grid with shared prefixes vs its cells alone


def check_config(config: BenchConfig) -> None:
    """Refuse options that cannot run, before any model or data is loaded."""
    if config.questions_per_subject < 1 or config.batch_size < 1 or config.repeats < 1:
        raise BenchError("--questions-per-subject, --batch-size and --repeats must be >= 1")
    if config.humaneval_prompts < 0:
        raise BenchError(f"--humaneval-prompts must be >= 0, got {config.humaneval_prompts}")
    if config.max_gen_toks is not None and config.max_gen_toks < 1:
        raise BenchError(f"--max-gen-toks must be >= 1, got {config.max_gen_toks}")
    if not (config.data_dir / "cais" / "mmlu").is_dir():
        raise BenchError(f"{config.data_dir} holds no cais/mmlu mirror "
                         f"(build it with `kanana-eval data build-mirror {config.data_dir}`)")
    if config.threads is not None and config.threads < 1:
        raise BenchError(f"--threads must be >= 1, got {config.threads}")
    if config.retries < 0 or config.retry_above < 0:
        raise BenchError("--retries and --retry-above must be >= 0")
