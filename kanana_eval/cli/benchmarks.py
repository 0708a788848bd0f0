"""`kanana-eval benchmarks`: every protocol's benchmarks, with shots, metric, tool and data."""

from __future__ import annotations

import argparse

from kanana_eval.config.protocol import available_protocols, load_protocol
from kanana_eval.scoring.catalog import check_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmarks", help="list the benchmarks of each protocol")
    p.add_argument("--protocol", default=None, help="only this protocol")
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    names = [args.protocol] if args.protocol else available_protocols()
    for name in names:
        proto = load_protocol(name)
        chat = "yes" if proto.chat_template else "no"
        print(f"protocol {proto.name}: {proto.title} (chat template: {chat})")
        print(f"  {'benchmark':24} {'column':19} {'shots':>5}  {'metric':18} {'task / tool':14} "
              "data source")
        for b in proto.benchmarks:
            scorer = check_spec(b)
            tool = b.task.lm_eval_task or b.task.scorer  # evalplus tasks have no lm-eval YAML
            source = f"{scorer.data_source} {b.task.dataset_id}"
            note = "  (only when named in --benchmarks)" if b.optional else ""
            print(f"  {b.id:24} {b.column:19} {b.num_fewshot:>5}  {b.metric:18} {tool:14} "
                  f"{source}{note}")
    return 0
