"""The `kanana-eval` command: one module per subcommand, registered here, errors as one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from kanana_eval.cli import (
    benchmarks,
    data,
    fastchat_export,
    judge,
    models,
    report,
    rerun,
    run,
    score,
    serve,
)
from kanana_eval.cli import compare as compare_command
from kanana_eval.cli.errors import USAGE_ERROR, OneLineParser, error_line
from kanana_eval.core.errors import KananaError

DEFAULT_MODEL = "smollm2-135m-instruct"
COMMANDS = (run, score, judge, fastchat_export, models, benchmarks, rerun, report,
            compare_command, data, serve)

EPILOG = """\
examples:
  kanana-eval run --model smollm2-135m-instruct --data-dir data/mirror --limit 20
  kanana-eval run --model kanana-1.5-8b-base                 # GPU machine, data from the hub
  kanana-eval run --model ./my-checkpoint --benchmarks mmlu,gsm8k --backend hf
  kanana-eval run --model my-model --backend openai --base-url http://127.0.0.1:8000/v1
  kanana-eval report results/smollm2-135m-instruct/<run-id> --out reports/out
  kanana-eval report smollm2-135m-instruct --update README.md   # tables between marker comments
  kanana-eval rerun results/smollm2-135m-instruct/<run-id>
  kanana-eval score humaneval_plus samples.jsonl --data-dir data/mirror
  kanana-eval run --model kanana-1.5-8b-instruct-2505 --benchmarks mt_bench,komt_bench
  kanana-eval judge results/kanana-1.5-8b-instruct-2505/<run-id> \\
      --judge-base-url http://127.0.0.1:8001/v1 --judge-model my-judge
  kanana-eval fastchat-export results/kanana-1.5-8b-instruct-2505/<run-id> fastchat_data
  kanana-eval compare results/kanana-1.5-8b-base/<baseline-run> my-checkpoint --junit junit.xml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="kanana-eval",
        description="Reproduce the Kanana README's benchmark tables from a model checkpoint.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show lm-eval's own logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if not verbose:
        for name in ("lm_eval", "lm-eval", "datasets", "transformers", "httpx", "accelerate"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # Failed endpoint attempts are logged at ERROR before our one-line EngineError.
        logging.getLogger("lm_eval.models.api_models").setLevel(logging.CRITICAL)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.verbose)
    try:
        return args.handler(args)
    except KananaError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `kanana-eval models | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except OSError as exc:  # the file system refused (disk full, permissions): one line too
        where = f"{exc.filename}: " if exc.filename else ""
        print(error_line(f"{where}{exc.strerror or exc}"), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("kanana-eval: interrupted; finished model requests are cached, rerun to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
