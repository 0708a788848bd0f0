"""The example CI workflow for new checkpoints only calls commands, flags and targets that exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from kanana_eval.cli.compare import register
from kanana_eval.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "checkpoint-eval.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def job(workflow) -> dict:
    (only,) = workflow["jobs"].values()
    return only


def _scripts(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _commands(job: dict, program: str, subcommand: str | None = None) -> list[list[str]]:
    """Every shell command running `program` [subcommand], split into words (variables kept)."""
    found = []
    for script in _scripts(job):
        for line in script.replace("\\\n", " ").splitlines():
            words = shlex.split(line.strip())
            if words and Path(words[0]).name == program and (
                    subcommand is None or words[1:2] == [subcommand]):
                found.append(words)
    return found


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.M))


def _makefile_variables() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z_]+)\s*[?:]?=", text, flags=re.M))


def test_it_is_started_with_a_checkpoint_path_and_runs_on_a_self_hosted_gpu_runner(workflow, job):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["checkpoint"]["required"] is True
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    # inputs reach scripts via env only
    assert "${{ inputs.checkpoint }}" in job["env"]["CHECKPOINT"]
    assert all("${{ inputs." not in script for script in _scripts(job))


def test_make_calls_name_real_targets_and_variables(job):
    calls = _commands(job, "make")
    assert calls, "the workflow runs the protocol through make"
    targets, variables = _makefile_targets(), _makefile_variables()
    for words in calls:
        goals = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        assert set(goals) <= targets, goals
        assert {w.split("=")[0] for w in words[1:] if "=" in w} <= variables
    (evaluation,) = [w for w in calls if "eval" in w]
    assert 'MODEL=$CHECKPOINT' in evaluation and "CONSTRAINTS=" in evaluation


def test_kanana_eval_run_options_in_make_args_are_real(job):
    (evaluation,) = [w for w in _commands(job, "make") if "eval" in w]
    (args,) = [w.split("=", 1)[1] for w in evaluation if w.startswith("ARGS=")]
    build_parser().parse_args(["run", "--model", "x", *shlex.split(args)])


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kanana-eval")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_the_compare_step_uses_real_flags_and_writes_every_output(workflow, job):
    (words,) = _commands(job, "kanana-eval", "compare")
    extra = words.index("$COMPARE_ARGS")  # the input, word-split: empty by default, or e.g. ...
    inputs = workflow["on" if "on" in workflow else True]["workflow_dispatch"]["inputs"]
    example = shlex.split(inputs["compare_args"]["description"].split("e.g.")[1])
    for value in ([], example):
        args = _compare_parser().parse_args([*words[1:extra], *value, *words[extra + 1:]])
    assert args.command == "compare"
    assert args.baseline == "$BASELINE"
    assert args.markdown and args.json and args.junit
    step = next(s for s in job["steps"] if "kanana-eval compare" in s.get("run", ""))
    assert "set +e" in step["run"] and 'status=$status" >> "$GITHUB_OUTPUT"' in step["run"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in step["run"]


def test_outputs_are_uploaded_even_on_failure_and_a_regression_fails_the_job(job):
    steps = job["steps"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    uploaded = set(upload["with"]["path"].split())
    assert {job["env"]["OUT"], job["env"]["REPORT_DIR"], job["env"]["COMPARE_DIR"]} <= uploaded
    compare = next(s for s in steps if "kanana-eval compare" in s.get("run", ""))
    gate = steps[-1]
    assert gate["if"] == f"steps.{compare['id']}.outputs.status != '0'"
    assert gate["run"].rstrip().endswith("exit 1")
    assert steps.index(upload) < steps.index(gate)
