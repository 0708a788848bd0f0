"""docs/adding-a-benchmark.md, followed step by step: one folder plus one protocol line is enough.

The project is copied to a temporary folder; every block of the page that names a file is
written there, the protocol line is added to the end of the protocol's `benchmarks:` list, and
nothing else is edited. The copy then lists the benchmark, writes its data stand-in, runs it on
a tiny model (twice), reports the run and compares the two runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "adding-a-benchmark.md"
COPIED = ("kanana_eval", "protocols", "results/reference", "reports/templates", "pyproject.toml")
_BLOCK = re.compile(r"^```\w+ (file|protocol)=(\S+)\n(.*?)^```$", re.S | re.M)


def guide_blocks() -> list[tuple[str, str, str]]:
    """(kind, path, text) of every block of the guide that names a file."""
    return _BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def copy_project(target: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / name)


def add_to_benchmarks_list(protocol: Path, line: str) -> None:
    """Insert `line` after the last entry of the top-level `benchmarks:` list."""
    lines = protocol.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("benchmarks:\n")
    end = start + 1
    for n in range(start + 1, len(lines)):
        if lines[n].startswith(" "):
            end = n + 1
        elif lines[n].strip() and not lines[n].startswith("#"):
            break
    lines.insert(end, line)
    protocol.write_text("".join(lines), encoding="utf-8")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_the_guide_adds_a_benchmark_that_runs_reports_and_compares(tmp_path, tiny_llama):
    project = tmp_path / "project"
    copy_project(project)
    before = tree(project)
    blocks = guide_blocks()
    assert {kind for kind, _, _ in blocks} == {"file", "protocol"}
    for kind, path, text in blocks:
        if kind == "file":
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            (project / path).write_text(text, encoding="utf-8")
        else:
            add_to_benchmarks_list(project / path, text)
    after = tree(project)
    changed = sorted(p for p in after if before.get(p) != after[p])
    new_folder = "kanana_eval/tasks/arc_challenge/"
    assert [p for p in changed if not p.startswith(new_folder)] == ["protocols/base.yaml"]

    env = {**os.environ, "PYTHONPATH": str(project), "KANANA_EVAL_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "kanana_eval.cli.main", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        return done

    listing = cli("benchmarks", "--protocol", "base").stdout
    assert "arc_challenge@base" in listing and "only when named" in listing

    mirror = tmp_path / "mirror"
    subprocess.run([sys.executable, "-c",
                    "import sys; from pathlib import Path; from kanana_eval.tasks.arc_challenge"
                    ".fixture import write_fixture; write_fixture(Path(sys.argv[1]))",
                    str(mirror / "allenai" / "ai2_arc")], cwd=project, env=env, check=True)

    results = tmp_path / "results"
    run_args = ["run", "--model", str(tiny_llama), "--benchmarks", "arc_challenge",
                "--data-dir", str(mirror), "--output-dir", str(results), "--batch-size", "1"]
    cli(*run_args)
    cli(*run_args, "--seed", "7")
    runs = sorted(p for p in (results / tiny_llama.name).iterdir() if not p.name.startswith("."))
    assert len(runs) == 2
    scores = json.loads((runs[0] / "scores.json").read_text(encoding="utf-8"))
    (row,) = scores["scores"]
    assert (row["benchmark"], row["n"], row["n_available"]) == ("arc_challenge@base", 4, 4)
    items = [json.loads(line) for line in
             (runs[0] / "items" / "arc_challenge@base.jsonl").read_text().splitlines()]
    assert sorted(i["item_id"] for i in items) == [f"ARC-fixture-{n}" for n in range(2, 6)]
    assert all(len(i["loglikelihoods"]) == len(i["choices"]) for i in items)

    report = tmp_path / "report"
    cli("report", str(runs[0]), "--out", str(report))
    assert "arc_challenge@base" in "".join(p.read_text(encoding="utf-8")
                                           for p in report.glob("*.html"))
    compared = cli("compare", str(runs[0]), str(runs[1]))
    assert compared.returncode == 0 and "arc_challenge@base" in compared.stdout
