"""The `kanana-eval` command: run protocols, list models and benchmarks, render reports."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path

from kanana_eval.cli.compare import register as register_compare
from kanana_eval.cli.compare import run_compare
from kanana_eval.core.errors import KananaError

DEFAULT_MODEL = "smollm2-135m-instruct"

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
  kanana-eval run --model kanana-1.5-8b-instruct-2505 --benchmarks mt_bench,komt_bench   # OPENAI_API_KEY set
  kanana-eval judge results/kanana-1.5-8b-instruct-2505/<run-id> --judge-base-url http://127.0.0.1:8001/v1 --judge-model my-judge
  kanana-eval fastchat-export results/kanana-1.5-8b-instruct-2505/<run-id> fastchat_data
  kanana-eval compare results/kanana-1.5-8b-base/<baseline-run> my-checkpoint --junit junit.xml
"""


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _count(minimum: int):  # noqa: ANN202 - an argparse type factory
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return _count(1)(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or 'auto')") from None


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="registry key (see `kanana-eval models`), family alias such as "
                        "kanana-1.5-8b (runs base and instruct), HF hub id, or local folder")
    p.add_argument("--protocol", dest="protocols", type=_csv, default=None,
                   help="protocol(s) to run, comma-separated (default: the registry's for the model; "
                        "`base` for hub ids and folders)")
    p.add_argument("--benchmarks", type=_csv, default=None,
                   help="comma-separated benchmark ids or names (mmlu@base or mmlu); default: all")
    p.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm", "openai"],
                   help="inference engine: auto = vLLM when installed on a GPU machine, else transformers")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible completions endpoint for --backend openai, e.g. http://host:8000/v1")
    p.add_argument("--tokenizer", default=None, help="tokenizer id/folder when it differs from the model")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit); recorded")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="auto = float32 on CPU (fidelity), bfloat16 on GPU")
    p.add_argument("--batch-size", type=_batch_size, default="auto",
                   help="rows per forward pass, or auto (default): the transformers backend sizes "
                        "each batch from free memory and sequence length, so a run is never killed "
                        "for memory; vLLM schedules its own batches")
    p.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                   help="transformers backend: score every log-likelihood request on its full "
                        "context instead of computing a shared few-shot prefix once and reusing its "
                        "KV cache (answers agree to 1e-4; recorded in the manifest)")
    p.add_argument("--limit", type=_count(1), default=None,
                   help="N items per README column, spread over its subtasks in proportion to their "
                        "size (largest remainder); results are marked as a smoke run")
    p.add_argument("--data-dir", default=None,
                   help="local dataset mirror in hub layout (DIR/<hub id>/...); default: the hub")
    p.add_argument("--output-dir", default="results", help="where run folders go (default: results)")
    p.add_argument("--seed", type=int, default=1234, help="numpy/torch/few-shot seed (default 1234, as lm-eval)")
    p.add_argument("--yarn", action="store_true",
                   help="apply the README's YaRN rope_scaling override (128K context)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length cap for the engine")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallelism")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vLLM data parallel replicas")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM memory fraction")
    p.add_argument("--max-gen-toks", type=_count(1), default=None,
                   help="lower every benchmark's new-token limit to N (smoke runs on CPU); recorded, "
                        "generations cut by it are flagged, and the run is marked as a smoke run")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="do not read or write the on-disk request cache (resuming needs it)")
    p.add_argument("--no-judge", dest="judge", action="store_false",
                   help="MT-Bench/KoMT-Bench: store the answers only; judge later with `kanana-eval judge RUN`")
    _add_judge_options(p)


def _add_judge_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM judge (MT-Bench, KoMT-Bench)")
    g.add_argument("--judge-model", default="gpt-4o-2024-08-06",
                   help="judge model name (default gpt-4o-2024-08-06, as the Kanana README)")
    g.add_argument("--judge-base-url", default=None,
                   help="any OpenAI-compatible server, e.g. a local vLLM at http://127.0.0.1:8001/v1 "
                        "(default: the OpenAI API; key from OPENAI_API_KEY)")
    g.add_argument("--judge-concurrency", type=_count(1), default=8,
                   help="judge requests in flight (default 8); 429/5xx/timeouts back off and retry")
    g.add_argument("--komt-language-penalty", action="store_true",
                   help="KoMT-Bench: square-root the score of an answer not in Korean, as the "
                        "KoMT-Bench repository does (questions 138, 140 exempt); off by default, recorded")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kanana-eval",
        description="Reproduce the Kanana README's benchmark tables from a model checkpoint.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show lm-eval's own logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="evaluate a model on its protocol(s) and store the results",
                         description="Evaluate a model and write results/<model>/<run-id>/ "
                                     "(manifest.json, scores.json, items/<benchmark>.jsonl).",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    _add_run_options(run)

    score = sub.add_parser(
        "score", help="score a stored completions file without a model",
        description="Score completions made elsewhere with the scorers of a run and store a run "
                    "folder (model source `completions`). FILE is JSON Lines: {\"item_id\", "
                    "\"response\"} (or a run's items/<benchmark>.jsonl); for humaneval_plus / "
                    "mbpp_plus also evalplus' samples format {\"task_id\", \"solution\" | "
                    "\"completion\"}. Only the items in FILE are scored.")
    score.add_argument("benchmark", help="benchmark id, e.g. gsm8k@instruct, humaneval_plus")
    score.add_argument("file", help="completions file (JSON Lines)")
    score.add_argument("--data-dir", default=None, help="local dataset mirror (default: the hub)")
    score.add_argument("--output-dir", default="results", help="where the run folder goes")
    score.add_argument("--workers", type=_count(1), default=None,
                       help="parallel sandboxes for code (default: CPU count)")

    judge = sub.add_parser(
        "judge", help="judge (or re-judge) the MT-Bench/KoMT-Bench answers of a stored run",
        description="Judge the stored two-turn answers of RUN with an LLM judge and write a new run "
                    "folder beside it (same answers, the judge's scores, `judged_from` naming RUN). "
                    "Judgments are cached by (judge model, prompt): a rerun never pays twice.")
    judge.add_argument("run_dir", help="a run folder (results/<model>/<run-id>)")
    judge.add_argument("--data-dir", default=None,
                       help="where the questions, judge prompts and references are (default: the run's)")
    judge.add_argument("--output-dir", default=None, help="results folder for the new run (default: RUN's)")
    _add_judge_options(judge)

    export = sub.add_parser(
        "fastchat-export", help="write a run's MT-Bench answers and judgments in FastChat's formats",
        description="Write DIR/<bench>/model_answer/<model>.jsonl and DIR/<bench>/model_judgment/"
                    "<judge>_single.jsonl, the files FastChat's llm_judge tools (show_result) read.")
    export.add_argument("run_dir", help="a run folder")
    export.add_argument("dir", help="output folder (FastChat's data/ layout)")

    sub.add_parser("models", help="list the model registry")
    bench = sub.add_parser("benchmarks", help="list the benchmarks of each protocol")
    bench.add_argument("--protocol", default=None, help="only this protocol")

    rerun = sub.add_parser("rerun", help="repeat a stored run from its manifest")
    rerun.add_argument("run_dir", help="a run folder (results/<model>/<run-id>)")
    rerun.add_argument("--output-dir", default=None, help="where the new run goes (default: as stored)")

    report = sub.add_parser("report", help="render README tables (HTML, Markdown) from stored runs")
    report.add_argument("runs", nargs="*",
                        help="run folders, or model names standing for their latest run, to show "
                             "beside the published numbers (none: the published numbers alone)")
    report.add_argument("--results-dir", default="results", help="where model names are looked up")
    report.add_argument("--out", default="reports/out", help="output folder (default reports/out)")
    report.add_argument("--update", metavar="README", default=None,
                        help="instead of writing pages, regenerate the tables between "
                             "'<!-- kanana-eval:table TABLE-ID [format=markdown] -->' and "
                             "'<!-- /kanana-eval:table -->' in README; every other byte is kept")

    register_compare(sub)

    data = sub.add_parser("data", help="dataset utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    mirror = data_sub.add_parser("build-mirror",
                                 help="write the offline data as a local mirror in hub layout")
    mirror.add_argument("dir", help="target folder (use it as --data-dir)")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from kanana_eval.pipeline.run import RunConfig, run, summary_line

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "verbose")}
    if fields["data_dir"]:  # absolute, so `rerun` works from any folder
        fields["data_dir"] = str(Path(fields["data_dir"]).expanduser().resolve())
    for run_dir in run(RunConfig(**fields)):
        print(summary_line(run_dir))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from kanana_eval.pipeline.run import summary_line
    from kanana_eval.pipeline.score_completions import score_completions

    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else None
    run_dir = score_completions(args.benchmark, Path(args.file), data_dir=data_dir,
                                output_dir=Path(args.output_dir), workers=args.workers)
    print(summary_line(run_dir))
    return 0


def _judge_options(args: argparse.Namespace) -> object:
    from kanana_eval.scoring.judge.client import JudgeConfig
    from kanana_eval.scoring.judge.stage import JudgeOptions

    return JudgeOptions(JudgeConfig(model=args.judge_model, base_url=args.judge_base_url,
                                    concurrency=args.judge_concurrency),
                        language_penalty=args.komt_language_penalty)


def _cmd_judge(args: argparse.Namespace) -> int:
    from kanana_eval.pipeline.rejudge import describe, judge_run

    run_dir = judge_run(Path(args.run_dir), _judge_options(args),  # type: ignore[arg-type]
                        output_dir=Path(args.output_dir) if args.output_dir else None,
                        data_dir=Path(args.data_dir).expanduser().resolve() if args.data_dir else None)
    print(f"{describe(run_dir)} -> {run_dir}")
    return 0


def _cmd_fastchat_export(args: argparse.Namespace) -> int:
    from kanana_eval.pipeline.rejudge import export_fastchat

    paths = export_fastchat(Path(args.run_dir), Path(args.dir))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_models(_: argparse.Namespace) -> int:
    from kanana_eval.config.registry import load_registry

    reg = load_registry()
    print(f"{'key':32} {'kind':9} {'ctx':>6}  {'licence':18} {'protocols':10} source / README rows")
    for key, e in reg.models.items():
        source = e.hub_id or f"offline: {e.offline_package}"
        rows = ", ".join(e.readme_rows) or "-"
        print(f"{key:32} {e.kind:9} {e.context_length:>6}  {e.license:18} {','.join(e.protocols):10} {source}  [{rows}]")
    print("\naliases: " + "; ".join(f"{a} -> {', '.join(m)}" for a, m in reg.aliases.items()))
    print("YaRN 128K override (--yarn): " + ", ".join(f"{k}={v}" for k, v in reg.yarn_rope_scaling.items()))
    return 0


def _cmd_benchmarks(args: argparse.Namespace) -> int:
    from kanana_eval.config.protocol import available_protocols, load_protocol

    names = [args.protocol] if args.protocol else available_protocols()
    for name in names:
        proto = load_protocol(name)
        print(f"protocol {proto.name}: {proto.title} (chat template: {'yes' if proto.chat_template else 'no'})")
        print(f"  {'benchmark':24} {'column':19} {'shots':>5}  {'metric':18} {'task / tool':14} data source")
        for b in proto.benchmarks:
            tool = b.task.lm_eval_task or b.task.scorer  # evalplus tasks have no lm-eval YAML
            kind = {"evalplus": "evalplus release", "judge": "LLM judge; data"}.get(b.task.scorer, "hub")
            source = f"{kind} {b.task.dataset_id}"
            note = "  (only when named in --benchmarks)" if b.optional else ""
            print(f"  {b.id:24} {b.column:19} {b.num_fewshot:>5}  {b.metric:18} {tool:14} {source}{note}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from kanana_eval.pipeline.run import RunConfig, run, summary_line
    from kanana_eval.results.io import read_json

    manifest = read_json(Path(args.run_dir) / "manifest.json", "manifest")
    config = RunConfig.from_dict(manifest["config"])
    if args.output_dir:
        config.output_dir = args.output_dir
    if manifest["model"]["source"] == "completions":  # a `score` run: score the same file again
        from kanana_eval.pipeline.score_completions import score_completions

        assert config.benchmarks
        data_dir = Path(config.data_dir) if config.data_dir else None
        run_dir = score_completions(config.benchmarks[0], Path(config.model), data_dir=data_dir,
                                    output_dir=Path(config.output_dir), workers=config.execution_workers)
        print(summary_line(run_dir))
        return 0
    for run_dir in run(config):
        print(summary_line(run_dir))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from kanana_eval.report.render import render_report
    from kanana_eval.results.io import resolve_run_arg

    run_dirs = [p for value in args.runs for p in resolve_run_arg(value, Path(args.results_dir))]
    if args.update:
        from kanana_eval.report.tables import load_run_row
        from kanana_eval.report.update import update_readme

        updated = update_readme(Path(args.update), [load_run_row(d) for d in run_dirs])
        print(f"updated {len(updated)} table(s) in {args.update}: {', '.join(updated)}")
        return 0
    paths = render_report(run_dirs, Path(args.out))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from kanana_eval.data.mirror import main_build_mirror

    return main_build_mirror(args.dir)


COMMANDS = {"run": _cmd_run, "score": _cmd_score, "models": _cmd_models, "benchmarks": _cmd_benchmarks,
            "rerun": _cmd_rerun, "report": _cmd_report, "data": _cmd_data, "judge": _cmd_judge,
            "fastchat-export": _cmd_fastchat_export, "compare": run_compare}


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
        return COMMANDS[args.command](args)
    except KananaError as exc:
        print(f"kanana-eval: error: {textwrap.shorten(str(exc), 400)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `kanana-eval models | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("kanana-eval: interrupted; finished model requests are cached, rerun to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
