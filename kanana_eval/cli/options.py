"""Option types and option groups shared by several commands (`run`, `rerun`, `judge`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from kanana_eval.config.run_config import SEED_MAX
from kanana_eval.core.errors import ConfigError
from kanana_eval.scoring.judge.stage import Rejudge, parse_rejudge


def csv(value: str) -> list[str]:
    """A comma-separated list: `mmlu,gsm8k` -> ["mmlu", "gsm8k"]; an empty one is refused.

    (An empty `--benchmarks ""` used to mean "all of them", a silent full run.)
    """
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"'{value}' names nothing; give comma-separated names")
    return names


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def seed(value: str) -> int:
    """An argparse type: a seed numpy accepts, 0 to 2**32 - 1 (numpy refuses others mid-run)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if not 0 <= number <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must lie in 0..{SEED_MAX}, got {number}")
    return number


def batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return count(1)(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 'auto')") from None


def fraction(value: str) -> float:
    """An argparse type: a number in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number") from None
    if not 0.0 < number <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {value}")
    return number


def resolved_path(value: str | None) -> Path | None:
    """An absolute path (so a stored config replays from any folder), or None."""
    return Path(value).expanduser().resolve() if value else None


def rejudge(value: str) -> Rejudge:
    """An argparse type: the `--rejudge` choice (unparsable, all, question ids)."""
    try:
        return parse_rejudge(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_judge_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM judge (MT-Bench, KoMT-Bench)")
    g.add_argument("--judge-model", default="gpt-4o-2024-08-06",
                   help="judge model name (default gpt-4o-2024-08-06, as the Kanana README)")
    g.add_argument("--judge-base-url", default=None,
                   help="any OpenAI-compatible server, e.g. a local vLLM at "
                        "http://127.0.0.1:8001/v1 (default: the OpenAI API; key from "
                        "OPENAI_API_KEY)")
    g.add_argument("--judge-concurrency", type=count(1), default=8,
                   help="judge requests in flight (default 8); 429/5xx/timeouts back off and "
                        "retry")
    g.add_argument("--judge-max-tokens", type=count(1), default=2048,
                   help="judge reply limit (default 2048, FastChat's for OpenAI judges)")
    g.add_argument("--rejudge", type=rejudge, default=None, metavar="unparsable|all|IDS",
                   help="ask stored judgments again instead of reading the cache (paid again): "
                        "'unparsable' (no rating in 1-10), 'all', or question ids such as "
                        "81,82:2 (id:turn)")
    g.add_argument("--komt-language-penalty", action="store_true",
                   help="KoMT-Bench: square-root the score of an answer not in Korean, as the "
                        "KoMT-Bench repository does (questions 138, 140 exempt); off by default, "
                        "recorded")
