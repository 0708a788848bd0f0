"""The package keeps its shape: names compared only where they belong, small modules, a light CLI.

The layer contract itself (imports one way only, no cycles) is import-linter's, run by `make
lint` and `make test` (`lint-imports`, contracts in pyproject.toml).
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

from kanana_eval.config.protocol import available_protocols, load_protocol
from kanana_eval.config.task_config import available_tasks
from kanana_eval.scoring.catalog import registered_scorers

PACKAGE = Path(__file__).resolve().parent.parent / "kanana_eval"
MAX_MODULE_LINES = 500
HEAVY = ("torch", "transformers", "lm_eval", "datasets", "vllm", "nltk", "pandas", "openai")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_bundled" not in p.parts)


def _compared_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that take part in a comparison (==, !=, in, not in) or a `case`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if (isinstance(node.ops[0], (ast.In, ast.NotIn)) and isinstance(node.left, ast.Constant)
                    and not isinstance(node.comparators[0], (ast.Tuple, ast.List, ast.Set))):
                continue  # `"key" in mapping`: a field lookup, not a name compared
            for operand in [node.left, *node.comparators]:
                items = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [
                    operand]
                found += [(node.lineno, i.value) for i in items
                          if isinstance(i, ast.Constant) and isinstance(i.value, str)]
        elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant):
            found.append((node.lineno, str(node.value.value)))
    return found


def test_no_scorer_or_benchmark_name_is_compared_outside_its_own_module_or_folder():
    owners: dict[str, set[Path]] = {}
    for name, scorer in registered_scorers().items():
        owners.setdefault(name, set()).add(Path(inspect.getfile(type(scorer))).resolve())
    for task in available_tasks():
        owners.setdefault(task, set()).add(PACKAGE / "tasks" / task)
    for protocol in available_protocols():
        for spec in load_protocol(protocol).benchmarks:
            owners.setdefault(spec.id, set()).add(PACKAGE / "tasks" / spec.task.name)
    offences = []
    for path in _modules():
        for line, value in _compared_strings(ast.parse(path.read_text(encoding="utf-8"))):
            allowed = owners.get(value)
            if allowed and not any(path == o or o in path.parents for o in allowed):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} compares '{value}'")
    assert offences == []


def test_no_module_of_the_package_exceeds_500_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_cli_answers_help_and_benchmarks_without_loading_a_model_stack():
    code = ("import sys; import kanana_eval.cli.main as m; m.build_parser(); "
            f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
