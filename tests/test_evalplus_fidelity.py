"""Same samples file, same verdicts: our sandboxed checker against evalplus's own `evaluate`.

HumanEval+ uses all 164 v0.1.10 problems (evalplus requires a sample for each): canonical
solutions for most, broken ones (wrong, plus-only wrong, early exits, slow, hanging, crashing)
for a dozen. MBPP+ uses the fixture with several samples per task. evalplus runs in a subprocess
with its caches under a temporary XDG_CACHE_HOME (never ~/.cache), after ours, which run while
busy processes load every core. For HumanEval+ its ground
truth cache is seeded with ours (the same `get_groundtruth` file) so both sides apply identical
time limits, and computing it once is enough; for MBPP+ evalplus computes its own and the
expected outputs are compared too. Compared: every sample's base and plus status, and pass@1.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from cpu_load import every_core_busy

from kanana_eval.data.evalplus_release import load_problems
from kanana_eval.scoring.evalplus.execute import check_solutions, expected_outputs

pytestmark = pytest.mark.slow

MBPP_FIXTURE = Path(__file__).parent / "fixtures" / "evalplus" / "MbppPlus-v0.2.0-fixture.jsonl.gz"
WORKERS = 2

_EVALUATE = """
import os, sys
from evalplus.evaluate import evaluate
evaluate(dataset=sys.argv[1], samples=sys.argv[2], parallel=int(sys.argv[3]))
sys.stdout.flush()
os._exit(0)  # evaluate leaves a watchdog thread sleeping up to 20 s
"""


def _plus_only_wrong(problem: dict) -> str:
    """The canonical solution, answering None to every input the base tests do not use."""
    base = sorted({repr(list(inp)) for inp in problem["base_input"]})
    name = problem["entry_point"]
    return (problem["prompt"] + problem["canonical_solution"] + "\n\n"
            f"_BASE = set({base!r})\n_canonical = {name}\n\n"
            f"def {name}(*args):\n    if repr(list(args)) not in _BASE:\n        return None\n"
            "    return _canonical(*args)\n")


def _humaneval_specials(problems: dict[str, dict]) -> dict[str, str]:
    def canonical(task_id: str) -> str:
        return problems[task_id]["prompt"] + problems[task_id]["canonical_solution"]

    hang_on_base = (  # swallows evalplus's per-input alarm on the base input only
        "\nimport time\n_unique = unique\n\ndef unique(l: list):\n"
        "    if l == [5, 3, 5, 2, 3, 3, 9, 0, 123]:\n        while True:\n            try:\n"
        "                time.sleep(10)\n            except BaseException:\n                pass\n"
        "    return _unique(l)\n")
    return {
        "HumanEval/0": "def has_close_elements(numbers, threshold):\n    return False\n",
        "HumanEval/1": "def separate_paren_groups(paren_string:\n    return []\n",
        "HumanEval/3": "import os\nos._exit(0)\n" + canonical("HumanEval/3"),
        "HumanEval/4": "import sys\nsys.exit(0)\n" + canonical("HumanEval/4"),
        "HumanEval/5": "exit(0)\n" + canonical("HumanEval/5"),
        "HumanEval/6": canonical("HumanEval/6").replace(
            "def parse_nested_parens", "import time\ndef parse_nested_parens", 1).replace(
            '    return [', "    time.sleep(2)\n    return [", 1),
        "HumanEval/7": _plus_only_wrong(problems["HumanEval/7"]),
        "HumanEval/8": "_block = bytearray(64 * 1024 ** 3)\n" + canonical("HumanEval/8"),
        "HumanEval/9": canonical("HumanEval/9").replace("def rolling_max", "def rolling_maximum"),
        "HumanEval/11": _plus_only_wrong(problems["HumanEval/11"]),
        "HumanEval/12": "print('noise ' * 10000)\n" + canonical("HumanEval/12"),
        "HumanEval/29": _plus_only_wrong(problems["HumanEval/29"]),
        "HumanEval/34": canonical("HumanEval/34") + hang_on_base,
    }


def _mbpp_samples(problems: dict[str, dict]) -> list[tuple[str, str]]:
    samples = [(t, p["prompt"] + p["canonical_solution"]) for t, p in problems.items()]
    return samples + [
        ("Mbpp/3", "def is_not_prime(n):\n    return n % 2 == 0\n"),
        ("Mbpp/3", "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, n))\n"),
        ("Mbpp/3", "import os\nos._exit(0)\n"),
        ("Mbpp/2", "def similar_elements(a, b):\n"
                   "    return tuple(sorted(set(a) & set(b)))[::-1]\n"),
        ("Mbpp/737", "def check_str(string):\n    return string[:1].lower() in tuple('aeiou')\n"),
        ("Mbpp/737", "def check_str(string):\n    return 'always'\n"),
        ("Mbpp/14", "def find_Volume(l, b, h):\n    return int(l * b * h / 2)\n"),
        ("Mbpp/4", "def heap_queue_largest(nums, n):\n    return sorted(nums)[-n:][::-1]\n"),
        ("Mbpp/6", "import time\ndef differ_At_One_Bit_Pos(a, b):\n    time.sleep(1.5)\n"
                   "    return bin(a ^ b).count('1') == 1\n"),
    ]


def _write_samples(path: Path, samples: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for task_id, solution in samples:
            handle.write(json.dumps({"task_id": task_id, "solution": solution}) + "\n")


def _evalplus(dataset: str, samples: Path, release: Path, xdg: Path) -> dict[str, list[tuple]]:
    """evalplus's own evaluate on the samples file: task_id → [(base, plus)] by completion id."""
    override = "HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH"
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg), override: str(release)}
    done = subprocess.run([sys.executable, "-c", _EVALUATE, dataset, str(samples), str(WORKERS)],
                          env=env, cwd=samples.parent, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(samples.with_name(samples.stem + "_eval_results.json").read_text())
    return {task_id: [(r["base_status"], r["plus_status"]) for r in rows]
            for task_id, rows in results["eval"].items()}


def _ours(dataset: str, problems: dict, samples: list[tuple[str, str]],
          scratch: Path) -> dict[str, list[tuple]]:
    """Our verdicts, computed while busy processes load every core (evalplus' run later on an
    unloaded machine must still agree: our time limits do not stretch with load)."""
    with every_core_busy():
        results = check_solutions(dataset, problems, samples, scratch_dir=scratch,
                                  workers=WORKERS)
    by_task: dict[str, list[tuple]] = defaultdict(list)
    for result in results:
        by_task[result.task_id].append((result.base_status, result.plus_status))
    return dict(by_task)


def _pass_at_1(by_task: dict[str, list[tuple]]) -> tuple[float, float]:
    """evalplus's pass@1 (mean over tasks of the fraction correct): base, and base + plus."""
    base = [sum(b == "pass" for b, _ in rows) / len(rows) for rows in by_task.values()]
    plus = [sum(b == p == "pass" for b, p in rows) / len(rows) for rows in by_task.values()]
    return sum(base) / len(base), sum(plus) / len(plus)


@pytest.fixture(scope="module")
def humaneval_groundtruth(shared_data_dir, tmp_path_factory) -> tuple[Path, dict, Path]:
    """Release, problems and a scratch folder holding their ground truth (its own setup time)."""
    release = shared_data_dir / "humaneval_plus" / "HumanEvalPlus.jsonl.gz"
    problems = load_problems("humaneval", version="v0.1.10", source=release)
    scratch = tmp_path_factory.mktemp("scratch")
    expected_outputs("humaneval", problems, scratch)
    return release, problems, scratch


def test_humaneval_plus_verdicts_equal_evalplus_evaluate(humaneval_groundtruth, tmp_path):
    release, problems, scratch = humaneval_groundtruth
    assert len(problems) == 164
    specials = _humaneval_specials(problems)
    samples = [(t, specials.get(t, p["prompt"] + p["canonical_solution"]))
               for t, p in problems.items()]
    ours = _ours("humaneval", problems, samples, scratch)

    xdg = tmp_path / "xdg"
    (xdg / "evalplus").mkdir(parents=True)
    (gt,) = scratch.glob("humaneval-*.pkl")
    evalplus_key = hashlib.md5(release.read_bytes()).hexdigest()  # get_human_eval_plus_hash
    os.link(gt, xdg / "evalplus" / f"{evalplus_key}.pkl")
    path = tmp_path / "samples.jsonl"
    _write_samples(path, samples)
    theirs = _evalplus("humaneval", path, release, xdg)

    assert ours == theirs
    assert _pass_at_1(ours) == _pass_at_1(theirs)
    special = {t: ours[t][0] for t in specials}  # the broken samples cover every status
    assert special["HumanEval/0"] == ("fail", "fail")
    assert special["HumanEval/3"] == ("timeout", "timeout")
    assert special["HumanEval/7"] == special["HumanEval/29"] == ("pass", "fail")
    assert special["HumanEval/34"] == ("timeout", "pass")
    assert special["HumanEval/12"] == ("pass", "pass")
    # evalplus 0.3.1's find_zero oracle `continue`s before counting the input as checked, so
    # untrusted_check sees too few results and even the canonical HumanEval/32 fails; we agree.
    assert ours["HumanEval/32"] == [("fail", "fail")]
    canonical = [rows[0] for t, rows in ours.items() if t not in specials and t != "HumanEval/32"]
    assert set(canonical) == {("pass", "pass")}


def test_mbpp_plus_verdicts_and_expected_outputs_equal_evalplus(tmp_path):
    problems = load_problems("mbpp", version="v0.2.0", source=MBPP_FIXTURE)
    samples = _mbpp_samples(problems)
    scratch = tmp_path / "scratch"
    ours = _ours("mbpp", problems, samples, scratch)

    path = tmp_path / "samples.jsonl"
    _write_samples(path, samples)
    xdg = tmp_path / "xdg"
    theirs = _evalplus("mbpp", path, MBPP_FIXTURE, xdg)

    assert ours == theirs
    assert _pass_at_1(ours) == _pass_at_1(theirs)
    assert ours["Mbpp/3"] == [("pass", "pass"), ("fail", "fail"), ("pass", "fail"),
                              ("timeout", "timeout")]
    assert ours["Mbpp/14"][1] == ours["Mbpp/4"][1] == ("pass", "fail")
    assert ours["Mbpp/6"][1] == ("fail", "fail")

    (mine,) = scratch.glob("mbpp-*.pkl")
    (evalplus_gt,) = (xdg / "evalplus").glob("*.pkl")
    with open(mine, "rb") as a, open(evalplus_gt, "rb") as b:
        left, right = pickle.load(a), pickle.load(b)
    assert {t: (o["base"], o["plus"]) for t, o in left.items()} == {
        t: (o["base"], o["plus"]) for t, o in right.items()}
