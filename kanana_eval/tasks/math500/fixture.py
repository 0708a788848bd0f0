"""A 5-row stand-in for HuggingFaceH4/MATH-500 in the hub's layout, from the MATH test set.

The hub repo (main, commit ff5b202) holds `test.jsonl` and a short README.md with no `configs:`
block, so `datasets` names the config `default` and the split `test` from the file name: what
lm-eval's `hendrycks_math500` asks for (dataset_name default, test_split test). Each line is one
JSON object with, in this order, problem, solution, answer (strings), subject (MATH's `type`,
e.g. "Precalculus"), level (int, from "Level 2") and unique_id (the problem's path in the MATH
release, e.g. "test/precalculus/807.json").

Rows: the first three are rows of the real MATH-500 (ids seen in copies of its test.jsonl); the
last two are MATH test problems picked for their answers (a `\\text{(C)}` choice followed by more
text, an interval union) whose membership in MATH-500 we did not check. problem and solution are
copied from ../shared/data/math (MIT), read through the `math` folder's source; answer is the
content of the solution's last \\boxed{} (MATH-500's answers were extracted the same way; a few
of its 500 may be normalised differently: unsure), written out below and checked against the
solution. The README body is ours (the hub's text was not seen).

Regenerate the committed copy (tests/fixtures/hub/HuggingFaceH4/MATH-500) with
`KANANA_SHARED_DATA=../shared/data python tests/fixtures/make_math500_fixture.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data.mirror.plan import SchemaFixture
from kanana_eval.data.offline_sources import shared_source_path
from kanana_eval.tasks.math.data import SOURCE as MATH_TEST

DATASET_ID = "HuggingFaceH4/MATH-500"
# unique_id -> answer: the content of the solution's last \boxed{...}
ANSWERS = {
    "test/precalculus/807.json": "\\left( 3, \\frac{\\pi}{2} \\right)",
    "test/algebra/2584.json": "\\frac{14}{3}",
    "test/number_theory/572.json": "9",
    "test/algebra/2687.json": "\\text{(C)}",
    "test/algebra/1089.json": "(-\\infty,-8)\\cup (8,\\infty)",
}
# The README is part of the committed fixture (and of its fingerprint): kept as it was written.
README = """# MATH-500 (kanana-eval test fixture)

Five rows in the schema of HuggingFaceH4/MATH-500 (`test.jsonl`: problem, solution, answer,
subject, level, unique_id), taken from the MATH test set. See
tests/fixtures/make_math500_fixture.py.
"""


def math500_row(math_test: Path, unique_id: str) -> dict[str, object]:
    """One MATH-500 row from the original MATH file at `unique_id` (test/<subject>/<n>.json)."""
    record = json.loads((math_test / unique_id.removeprefix("test/")).read_text(encoding="utf-8"))
    answer = ANSWERS[unique_id]
    if f"\\boxed{{{answer}}}" not in record["solution"]:  # a changed source is refused
        raise DataUnavailableError(f"{unique_id}: the solution has no \\boxed{{{answer}}}")
    return {
        "problem": record["problem"],
        "solution": record["solution"],
        "answer": answer,
        "subject": record["type"],
        "level": int(record["level"].removeprefix("Level ")),
        "unique_id": unique_id,
    }


def write_math500(folder: Path) -> None:
    """`test.jsonl` and the README at `folder`, as the hub repo holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    math_test = shared_source_path(MATH_TEST)
    lines = [json.dumps(math500_row(math_test, uid)) for uid in ANSWERS]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(README, encoding="utf-8")


FIXTURES = (
    SchemaFixture(DATASET_ID, f"hub/{DATASET_ID}", write_math500, needs_shared_data=True),
)
