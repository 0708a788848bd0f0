"""Bad input to any command: exit 2, one line on stderr, no traceback, every result untouched.

Add your command's cases here. Each `Case` in CASES is one bad input:

    Case("report-items-missing", "report {damaged} --out {new}", "is missing",
         damage=lambda run: _remove(run / "items" / "gsm8k@base.jsonl")),

* `argv` is the command line, split like a shell; placeholders: {run} a whole base run (its
  manifest replays `smollm2-135m-instruct` on gsm8k@instruct), {judged} a whole MT-Bench run,
  {damaged} this case's own copy of {run} after `damage(run_dir)` changed it, {file} a plain
  file, {latin1} a file that is not UTF-8, {completions} a valid completions file, {results} the
  results folder holding {run} and {judged}, {new} a path that does not exist yet, {model} a
  registry key no case may load;
* `expect` is a fragment the one error line must contain (so the right check refused it).

Every case runs in-process through `kanana-eval`'s own `main`, after a snapshot of the whole
test folder (results, damaged copies, inputs), with model work, scoring work and judge calls
replaced by a failure: a case passes only if the input is refused before any of them, with exit
status 2 and exactly one line `kanana-eval: error: ...` on stderr, and the folder is
byte-identical afterwards (nothing written, nothing removed). Any exception that escapes `main`
fails the case: that is the traceback a user would have seen.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from run_builder import TestBenchmark, build_test_run

from kanana_eval.cli.main import main
from kanana_eval.pipeline import rejudge, score_completions
from kanana_eval.pipeline import run as pipeline_run
from kanana_eval.results.writer import RunWriter
from kanana_eval.scoring.judge import stage as judge_stage

RUN_ID = "20260101T000000Z-00000000"
MODEL = "smollm2-135m-instruct"  # resolved from the registry; no case may load it
RUN_CONFIG = {"model": MODEL, "protocols": ["instruct"], "benchmarks": ["gsm8k@instruct"],
              "limit": 2, "output_dir": "results"}


# --------------------------------------------------------------------------- damage helpers


def _remove(path: Path) -> None:
    path.unlink()


def _cut(path: Path, keep: int = 200) -> None:
    """Truncate a file, as a kill or a full disk during a copy would."""
    path.write_bytes(path.read_bytes()[:keep])


def _append_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(path.read_bytes() + data)


def _drop_last_item(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _edit_items(path: Path, change: Callable[[list[dict]], None]) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    change(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _config(**values: object) -> Callable[[Path], None]:
    """Damage: the manifest's config (what `rerun` replays) gets these values."""
    return lambda run: _edit_json(run / "manifest.json", lambda m: m["config"].update(values))


GSM8K = Path("items") / "gsm8k@base.jsonl"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str
    expect: str
    damage: Callable[[Path], None] | None = None


CASES = [
    # ---------------------------------------------------------------- run
    Case("run-max-model-len-negative", "run --model {model} --max-model-len -5",
         "argument --max-model-len: must be at least 1"),
    Case("run-limit-zero", "run --model {model} --limit 0", "argument --limit"),
    Case("run-batch-size-word", "run --model {model} --batch-size many", "argument --batch-size"),
    Case("run-seed-negative", "run --model {model} --seed -1", "argument --seed"),
    Case("run-seed-too-big", "run --model {model} --seed 4294967296", "argument --seed"),
    Case("run-gpu-memory-above-one", "run --model {model} --gpu-memory-utilization 5",
         "argument --gpu-memory-utilization"),
    Case("run-gpu-memory-word", "run --model {model} --gpu-memory-utilization most",
         "argument --gpu-memory-utilization"),
    Case("run-tensor-parallel-zero", "run --model {model} --tensor-parallel-size 0",
         "argument --tensor-parallel-size"),
    Case("run-max-gen-toks-zero", "run --model {model} --max-gen-toks 0",
         "argument --max-gen-toks"),
    Case("run-judge-concurrency-zero", "run --model {model} --judge-concurrency 0",
         "argument --judge-concurrency"),
    Case("run-benchmarks-empty", "run --model {model} --benchmarks ''",
         "argument --benchmarks: '' names nothing"),
    Case("run-protocol-empty", "run --model {model} --protocol ,", "argument --protocol"),
    Case("run-dtype-unknown", "run --model {model} --dtype float8", "argument --dtype"),
    Case("run-model-missing", "run --limit 2", "required: --model"),
    Case("run-model-unknown", "run --model no-such-model-xyz", "unknown model"),
    Case("run-benchmark-unknown", "run --model {model} --benchmarks bogus", "unknown benchmark"),
    Case("run-niah-haystack-without-text", "run --model {model} --benchmarks niah "
         "--haystack-dir {results}", "has no usable text"),
    Case("run-niah-grid-beyond-every-context", "run --model {model} --benchmarks niah "
         "--niah-lengths 64K,128K", "longer than the model's context (8192 tokens)"),
    Case("score-niah-grid", "score niah@base {completions} --output-dir {new}",
         "is a generated grid"),
    Case("run-niah-depth-above-100", "run --model {model} --benchmarks niah --niah-depths 0,150",
         "--niah-depths"),
    Case("run-output-dir-is-a-file",
         "run --model {model} --benchmarks gsm8k@instruct --output-dir {file}",
         "--output-dir"),
    Case("run-output-dir-under-a-file",
         "run --model {model} --benchmarks gsm8k@instruct --output-dir {file}/results",
         "is not a folder"),
    Case("run-data-dir-missing",
         "run --model {model} --benchmarks gsm8k@instruct --data-dir {new} --output-dir {new}",
         "--data-dir"),
    Case("run-data-dir-is-a-file",
         "run --model {model} --benchmarks gsm8k@instruct --data-dir {file} --output-dir {new}",
         "is not a folder"),
    # ---------------------------------------------------------------- score
    Case("score-not-utf8", "score gsm8k@instruct {latin1} --output-dir {new}", "not UTF-8"),
    Case("score-file-missing", "score gsm8k@instruct {new} --output-dir {new}", "cannot read"),
    Case("score-file-is-a-folder", "score gsm8k@instruct {results} --output-dir {new}",
         "cannot read"),
    Case("score-bad-json-line", "score gsm8k@instruct {file} --output-dir {new}",
         "is not valid JSON"),
    Case("score-output-dir-is-a-file", "score gsm8k@instruct {completions} --output-dir {file}",
         "--output-dir"),
    Case("score-data-dir-missing",
         "score gsm8k@instruct {completions} --data-dir {new} --output-dir {new}", "--data-dir"),
    Case("score-workers-zero", "score gsm8k@instruct {completions} --workers 0",
         "argument --workers"),
    Case("score-benchmark-unknown", "score bogus {completions}", "is unknown"),
    Case("score-loglikelihood-benchmark", "score mmlu@base {completions}", "needs a model"),
    # ---------------------------------------------------------------- judge
    Case("judge-run-missing", "judge {new}", "does not exist"),
    Case("judge-items-missing", "judge {damaged}", "is missing",
         damage=lambda run: _remove(run / GSM8K)),
    Case("judge-output-dir-is-a-file", "judge {judged} --output-dir {file}", "--output-dir"),
    Case("judge-no-mt-bench", "judge {run} --output-dir {new}", "no MT-Bench"),
    Case("judge-concurrency-zero", "judge {judged} --judge-concurrency 0",
         "argument --judge-concurrency"),
    # ---------------------------------------------------------------- fastchat-export
    Case("fastchat-export-dir-is-a-file", "fastchat-export {judged} {file}", "is a file"),
    Case("fastchat-export-scores-truncated", "fastchat-export {damaged} {new}",
         "scores.json is not valid JSON", damage=lambda run: _cut(run / "scores.json")),
    Case("fastchat-export-no-mt-bench", "fastchat-export {run} {new}", "no MT-Bench"),
    Case("fastchat-export-run-missing", "fastchat-export {new} {new}", "does not exist"),
    # ---------------------------------------------------------------- report
    Case("report-out-is-a-file", "report {run} --out {file}", "--out"),
    Case("report-manifest-truncated", "report {damaged} --out {new}",
         "manifest.json is not valid JSON", damage=lambda run: _cut(run / "manifest.json")),
    Case("report-scores-truncated", "report {damaged} --out {new}",
         "scores.json is not valid JSON", damage=lambda run: _cut(run / "scores.json")),
    Case("report-manifest-not-utf8", "report {damaged} --out {new}",
         "manifest.json is not UTF-8",
         damage=lambda run: _append_bytes(run / "manifest.json", b"\xff\xfe")),
    Case("report-manifest-fails-schema", "report {damaged} --out {new}",
         "manifest.json: manifest record fails schema",
         damage=lambda run: _edit_json(run / "manifest.json", lambda m: m.pop("benchmarks"))),
    Case("report-items-missing", "report {damaged} --out {new}", "gsm8k@base.jsonl is missing",
         damage=lambda run: _remove(run / GSM8K)),
    Case("report-items-short", "report {damaged} --out {new}",
         "holds 3 items, but manifest.json says 4",
         damage=lambda run: _drop_last_item(run / GSM8K)),
    Case("report-items-truncated", "report {damaged} --out {new}", "is not valid JSON",
         damage=lambda run: _cut(run / GSM8K)),
    Case("report-items-not-utf8", "report {damaged} --out {new}", "is not UTF-8",
         damage=lambda run: _append_bytes(run / GSM8K, b"\xff\n")),
    Case("report-item-of-another-benchmark", "report {damaged} --out {new}",
         "is an item of mmlu@base, not gsm8k@base",
         damage=lambda run: _edit_items(run / GSM8K, lambda rows: rows[0].update(
             benchmark="mmlu@base"))),
    Case("report-item-repeated", "report {damaged} --out {new}", "repeats item",
         damage=lambda run: _edit_items(run / GSM8K, lambda rows: rows[1].update(
             item_id=rows[0]["item_id"]))),
    Case("report-item-invalid", "report {damaged} --out {new}", "is not a valid item: verdict",
         damage=lambda run: _edit_items(run / GSM8K, lambda rows: rows[0].update(
             verdict="maybe"))),
    Case("report-folder-mixes-two-runs", "report {damaged} --out {new}", "mixes two runs",
         damage=lambda run: _edit_json(run / "scores.json", lambda s: s.update(run_id="other"))),
    Case("report-scores-lack-a-benchmark", "report {damaged} --out {new}",
         "list different benchmarks",
         damage=lambda run: _edit_json(run / "scores.json",
                                       lambda s: s.update(scores=s["scores"][:1]))),
    Case("report-run-is-a-file", "report {file} --out {new}", "is a file, not a run folder"),
    Case("report-model-unknown", "report no-such-model --results-dir {results} --out {new}",
         "neither a run folder nor a model"),
    Case("report-update-not-utf8", "report {run} --update {latin1}", "is not UTF-8"),
    Case("report-update-is-a-folder", "report {run} --update {results}", "is a folder"),
    Case("report-update-missing", "report {run} --update {new}", "cannot read"),
    # ---------------------------------------------------------------- compare
    Case("compare-candidate-items-missing", "compare {run} {damaged}", "is missing",
         damage=lambda run: _remove(run / GSM8K)),
    Case("compare-baseline-manifest-truncated", "compare {damaged} {run}",
         "manifest.json is not valid JSON", damage=lambda run: _cut(run / "manifest.json")),
    Case("compare-items-short", "compare {run} {damaged}", "holds 3 items",
         damage=lambda run: _drop_last_item(run / GSM8K)),
    Case("compare-json-is-a-folder", "compare {run} {run} --json {results}", "is a folder"),
    Case("compare-junit-under-a-file", "compare {run} {run} --junit {file}/junit.xml",
         "is not a folder"),
    Case("compare-seed-negative", "compare {run} {run} --seed -1", "argument --seed"),
    Case("compare-alpha-above-one", "compare {run} {run} --alpha 2", "argument --alpha"),
    Case("compare-bootstrap-zero", "compare {run} {run} --bootstrap 0", "argument --bootstrap"),
    Case("compare-min-drop-malformed", "compare {run} {run} --min-drop gsm8k", "--min-drop"),
    Case("compare-run-missing", "compare {run} {new}", "neither a run folder nor a model"),
    # ---------------------------------------------------------------- rerun
    Case("rerun-items-short", "rerun {damaged} --output-dir {new}", "holds 3 items",
         damage=lambda run: _drop_last_item(run / GSM8K)),
    Case("rerun-manifest-not-utf8", "rerun {damaged} --output-dir {new}", "is not UTF-8",
         damage=lambda run: _append_bytes(run / "manifest.json", b"\xff")),
    Case("rerun-config-limit-word", "rerun {damaged} --output-dir {new}",
         "manifest.json: run config key 'limit' must be a whole number",
         damage=_config(limit="five")),
    Case("rerun-config-seed-negative", "rerun {damaged} --output-dir {new}",
         "key 'seed' must be at least 0", damage=_config(seed=-1)),
    Case("rerun-config-batch-size-word", "rerun {damaged} --output-dir {new}",
         "key 'batch_size'", damage=_config(batch_size="big")),
    Case("rerun-config-gpu-memory-above-one", "rerun {damaged} --output-dir {new}",
         "key 'gpu_memory_utilization' must lie in (0, 1]",
         damage=_config(gpu_memory_utilization=2)),
    Case("rerun-config-flag-as-number", "rerun {damaged} --output-dir {new}",
         "key 'use_cache' must be true or false", damage=_config(use_cache=1)),
    Case("rerun-config-benchmarks-not-a-list", "rerun {damaged} --output-dir {new}",
         "key 'benchmarks'", damage=_config(benchmarks="gsm8k")),
    Case("rerun-config-model-number", "rerun {damaged} --output-dir {new}",
         "key 'model' must be a string", damage=_config(model=7)),
    Case("rerun-config-unknown-key", "rerun {damaged} --output-dir {new}", "unknown keys",
         damage=_config(turbo=True)),
    Case("rerun-output-dir-is-a-file", "rerun {run} --output-dir {file}", "--output-dir"),
    Case("rerun-run-missing", "rerun {new}", "does not exist"),
    # ---------------------------------------------------------------- models, benchmarks
    Case("models-extra-argument", "models extra", "unrecognized arguments: extra"),
    Case("benchmarks-protocol-unknown", "benchmarks --protocol nope", "protocol 'nope'"),
    # ---------------------------------------------------------------- data build-mirror
    Case("build-mirror-dir-is-a-file", "data build-mirror {file}", "is a file, not a folder"),
    Case("build-mirror-dir-under-a-file", "data build-mirror {file}/mirror", "is not a folder"),
    Case("build-mirror-dir-missing", "data build-mirror", "required: dir"),
    Case("build-mirror-record-not-utf8", "data build-mirror {damaged}",
         "cannot read mirror record", damage=lambda run: (run / "kanana_mirror.json").write_bytes(
             b"\xff\xfe{")),
    # ---------------------------------------------------------------- serve (vLLM)
    Case("serve-port-zero-after-model", "serve {model} --port 0", "argument --port"),
    Case("serve-port-too-big", "serve {model} --port 70000", "--port must be 1-65535"),
    Case("serve-unknown-option-before-dashdash", "serve {model} --max-num-seqs 4",
         "unrecognized arguments: --max-num-seqs"),
    Case("serve-model-missing", "serve", "required: model"),
    # ---------------------------------------------------------------- any command
    Case("command-unknown", "evaluate --model x", "invalid choice: 'evaluate'"),
]


# --------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class World:
    root: Path
    places: dict[str, str]

    def argv(self, case: Case) -> list[str]:
        places = {**self.places, "damaged": str(self.root / "damaged" / case.id / RUN_ID)}
        return [part.format(**places) for part in shlex.split(case.argv)]


def _write_run(results: Path, model: str, benchmarks: dict) -> Path:
    run = build_test_run(benchmarks, model=model, run_id=RUN_ID)
    run.manifest.config = dict(RUN_CONFIG, output_dir=str(results))
    return RunWriter(results, model, RUN_ID).write(run.manifest, run.scores, run.items)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A results folder with a base run and an MT-Bench run, each case's damaged copy, inputs."""
    root = tmp_path_factory.mktemp("bad-input")
    results = root / "results"
    run = _write_run(results, "ckpt", {"mmlu@base": [1.0, 0.0], "gsm8k@base": [1.0, 0.0, 1.0, 0.0]})
    judged = _write_run(results, "judged", {"mt_bench@instruct": TestBenchmark(
        items=[("81", 1, 7.0), ("81", 2, 6.0)])})
    for case in CASES:
        if case.damage is not None:
            copy = root / "damaged" / case.id / RUN_ID
            shutil.copytree(run, copy)
            case.damage(copy)
    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "plain.txt").write_text("not a folder, not JSON\n", encoding="utf-8")
    latin1 = '{"item_id": "0", "response": "café"}\n'.encode("latin-1")
    (inputs / "latin1.jsonl").write_bytes(latin1)
    (inputs / "completions.jsonl").write_text('{"item_id": "0", "response": "18"}\n',
                                              encoding="utf-8")
    places = {"run": str(run), "judged": str(judged), "results": str(results), "model": MODEL,
              "file": str(inputs / "plain.txt"), "latin1": str(inputs / "latin1.jsonl"),
              "completions": str(inputs / "completions.jsonl"), "new": str(root / "not-yet")}
    return World(root, places)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under root, by relative path."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch, judge_env: None) -> None:
    """Model work, scoring and judging fail the case: bad input must be refused before them."""
    def started(*_: object, **__: object) -> None:
        raise AssertionError("work started before the bad input was refused")

    monkeypatch.setattr(pipeline_run, "run_model", started)
    monkeypatch.setattr(score_completions, "build_tasks", started)
    monkeypatch.setattr(judge_stage, "judge_items", started)
    monkeypatch.setattr(rejudge, "preflight", started)


def test_cases_have_unique_ids_and_say_what_they_expect():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert all(case.expect for case in CASES)


COMMANDS = {"run", "score", "judge", "fastchat-export", "report", "compare", "rerun", "models",
            "benchmarks", "data", "serve"}


def test_every_command_has_cases():
    assert COMMANDS <= {shlex.split(case.argv)[0] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case: Case, world: World, no_work: None,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(world.root)
    before = _snapshot(world.root)
    capsys.readouterr()
    try:
        status = main(world.argv(case))
    except SystemExit as exc:  # argparse's own refusals exit through SystemExit
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("kanana-eval") and ": error: " in err, err
    assert "Traceback" not in err
    assert case.expect in err, err
    assert _snapshot(world.root) == before


def test_the_installed_command_prints_the_same_single_line(world: World):
    """The real entry point, in a fresh interpreter: the same one line, no traceback."""
    case = next(c for c in CASES if c.id == "report-items-short")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "kanana_eval.cli.main", *world.argv(case)],
                          capture_output=True, text=True, env=env, cwd=world.root, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and case.expect in done.stderr
    assert done.stdout == ""
