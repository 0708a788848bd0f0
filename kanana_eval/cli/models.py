"""`kanana-eval models`: the model registry, its aliases and the YaRN override."""

from __future__ import annotations

import argparse

from kanana_eval.config.registry import load_registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(handler=execute)


def execute(_: argparse.Namespace) -> int:
    reg = load_registry()
    print(f"{'key':32} {'kind':9} {'ctx':>6}  {'licence':18} {'protocols':10} "
          "source / README rows")
    for key, e in reg.models.items():
        source = e.hub_id or f"offline: {e.offline_package}"
        rows = ", ".join(e.readme_rows) or "-"
        print(f"{key:32} {e.kind:9} {e.context_length:>6}  {e.license:18} "
              f"{','.join(e.protocols):10} {source}  [{rows}]")
    print("\naliases: " + "; ".join(f"{a} -> {', '.join(m)}" for a, m in reg.aliases.items()))
    print("YaRN 128K override (--yarn): "
          + ", ".join(f"{k}={v}" for k, v in reg.yarn_rope_scaling.items()))
    return 0
