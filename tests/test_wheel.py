"""The built wheel carries the design-card folders and every benchmark folder, and its installed
CLI runs from them alone.

An editable install hides packaging mistakes (the repository is always on disk), so this builds
the real wheel, installs it into a throwaway target and runs its console script with that target
first on the path, from a directory outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = "kanana_eval/_bundled"
# Source folder -> the file pattern that must reach the wheel under kanana_eval/_bundled/<folder>.
BUNDLED_FOLDERS = {
    "protocols": "*.yaml",
    "results/reference": "*.json",
    "reports/templates": "*.j2",
}
# Package data that lives inside kanana_eval/ itself: schemas, the model registry, and every
# benchmark folder (task.yaml, card.md, and the code that owns its data).
PACKAGE_DATA = {
    "kanana_eval/results/schemas": "*.json",
    "kanana_eval/config": "models.yaml",
    "kanana_eval/tasks": "*/*.*",
}
BUILD_LITTER = ("build", "dist", "kanana_eval.egg-info", "kanana_eval/_bundled")


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --wheel --no-isolation` of the source tree, written outside the repo."""
    missing = [m for m in ("build", "hatchling") if importlib.util.find_spec(m) is None]
    assert not missing, f"install {missing} into the venv (dev extra) to build the wheel offline"
    litter_before = {p for p in BUILD_LITTER if (ROOT / p).exists()}
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
          str(ROOT)], env, cwd=out)
    litter_after = {p for p in BUILD_LITTER if (ROOT / p).exists()}
    assert litter_after == litter_before, (
        f"the build wrote into the repo: {litter_after - litter_before}")
    (whl,) = out.glob("kanana_eval-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[str, str], Path]:
    """The wheel installed with `pip --target T`; env puts T ahead of the venv's editable
    install."""
    target = tmp_path_factory.mktemp("target")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
          "--target", str(target), str(wheel)], env, cwd=target)
    env["PYTHONPATH"] = str(target)
    env["KANANA_EVAL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    cwd = tmp_path_factory.mktemp("cwd")  # outside the repo: nothing relative to it resolves
    return target, env, cwd


def test_wheel_contains_design_card_folders_and_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        contents = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
    tops = {name.split("/", 1)[0] for name in contents}
    assert tops == {"kanana_eval", "kanana_eval-0.1.0.dist-info"}, tops
    assert not [n for n in contents if "__pycache__" in n or n.endswith(".pyc")]
    expected: dict[str, Path] = {}
    for folder, pattern in BUNDLED_FOLDERS.items():
        for src in (ROOT / folder).glob(pattern):
            expected[f"{BUNDLED}/{folder}/{src.name}"] = src
    for folder, pattern in PACKAGE_DATA.items():
        for src in (ROOT / folder).glob(pattern):
            if "__pycache__" not in src.parts:
                expected[src.relative_to(ROOT).as_posix()] = src
    for required in (f"{BUNDLED}/protocols/base.yaml", "kanana_eval/tasks/mmlu/task.yaml",
                     "kanana_eval/tasks/mmlu/card.md", "kanana_eval/tasks/mmlu/data.py",
                     "kanana_eval/config/models.yaml",
                     "kanana_eval/results/schemas/manifest.v1.schema.json"):
        assert required in expected, f"{required} is missing from the source tree itself"
    for folder in (*BUNDLED_FOLDERS, "schemas", "tasks"):
        assert any(f"/{folder}/" in name for name in expected), (
            f"no {folder} files in the source tree")
    assert not [n for n in contents if n.startswith("tests/") or "/fixtures/" in n]
    missing = sorted(set(expected) - set(contents))
    assert not missing, f"the wheel lacks: {missing}"
    stale = sorted(name for name, src in expected.items() if contents[name] != src.read_bytes())
    assert not stale, f"the wheel's copies differ from the source tree: {stale}"
    entry_points = contents["kanana_eval-0.1.0.dist-info/entry_points.txt"].decode()
    assert "kanana-eval = kanana_eval.cli.main:main" in entry_points


def test_installed_package_and_resources_come_from_the_target(installed) -> None:
    target, env, cwd = installed
    code = ("import kanana_eval; from kanana_eval.core.paths import benchmarks_dir, resource_dir; "
            "print(kanana_eval.__file__); print(benchmarks_dir()); "
            "print(*(resource_dir(n) for n in "
            "('protocols', 'results/reference', 'reports/templates')), sep='\\n')")
    lines = _run([sys.executable, "-c", code], env, cwd).stdout.splitlines()
    assert len(lines) == 5, lines
    for line in lines:
        assert Path(line).resolve().is_relative_to(target.resolve()), line
    assert Path(lines[1]) == target / "kanana_eval" / "tasks"
    assert Path(lines[2]) == target / BUNDLED / "protocols"


def test_installed_package_lists_every_benchmark_folder_with_its_card_and_data(installed) -> None:
    """The catalog of the installed package finds the same benchmark folders as the source tree,
    reads every card and imports every data plan and fixture writer (code that ships)."""
    target, env, cwd = installed
    code = ("from kanana_eval.tasks.catalog import benchmark_names, load_card, data_plans, "
            "fixtures; import kanana_eval.tasks.catalog as c; print(c.__file__); "
            "print(' '.join(f'{n}:{load_card(n).items}' for n in benchmark_names())); "
            "print(' '.join(p.dataset_id for p in data_plans())); "
            "print(' '.join(f.dataset_id for f in fixtures()))")
    lines = _run([sys.executable, "-c", code], env, cwd).stdout.splitlines()
    assert Path(lines[0]).resolve().is_relative_to(target.resolve()), lines[0]
    folders = sorted(p.parent.name for p in (ROOT / "kanana_eval" / "tasks").glob("*/task.yaml"))
    assert [entry.split(":")[0] for entry in lines[1].split()] == folders
    assert all(int(entry.split(":")[1]) > 0 for entry in lines[1].split())
    assert "cais/mmlu" in lines[2].split() and "evalplus/MbppPlus" in lines[3].split()


def test_installed_cli_help(installed) -> None:
    target, env, cwd = installed
    out = _run([str(target / "bin" / "kanana-eval"), "--help"], env, cwd).stdout
    assert out.startswith("usage: kanana-eval")
    for command in ("run", "models", "benchmarks", "rerun", "report", "data"):
        assert command in out


def test_installed_cli_lists_benchmarks_of_the_base_protocol(installed) -> None:
    target, env, cwd = installed
    out = _run([str(target / "bin" / "kanana-eval"), "benchmarks"], env, cwd).stdout
    source = yaml.safe_load((ROOT / "protocols" / "base.yaml").read_text(encoding="utf-8"))
    expected = [b["id"] for b in source["benchmarks"]]  # optional ones listed too, marked so
    table = [b["id"] for b in source["benchmarks"] if not b.get("optional")]
    assert table[0] == "mmlu@base" and table[-1] == "gsm8k@base"
    listed = [line.split()[0] for line in out.splitlines() if "@base" in line]
    assert listed == expected, out


def test_installed_cli_lists_the_model_registry(installed) -> None:
    target, env, cwd = installed
    out = _run([str(target / "bin" / "kanana-eval"), "models"], env, cwd).stdout
    source = yaml.safe_load((ROOT / "kanana_eval" / "config" / "models.yaml").read_text(
        encoding="utf-8"))
    table = out.split("\n\n", 1)[0].splitlines()[1:]  # rows between the header and the blank line
    listed = [line.split()[0] for line in table]
    assert listed == list(source["models"]), out
    assert "aliases:" in out


def test_installed_cli_renders_the_published_tables(installed, tmp_path: Path) -> None:
    target, env, cwd = installed
    out_dir = tmp_path / "report"
    _run([str(target / "bin" / "kanana-eval"), "report", "--out", str(out_dir)], env, cwd)
    html = (out_dir / "base.html").read_text(encoding="utf-8")
    assert "Kanana-Flag-1.5-32.5B" in html
    assert (out_dir / "base.md").is_file()
