"""A schema-exact stand-in for google-research-datasets/mbpp (not to be had offline), for tests.

Schema (from copies of the dataset card found with the search tool): Parquet, config `full`:
`full/<split>-00000-of-00001.parquet`, features task_id int32, text, code, test_list
sequence<string>, test_setup_code, challenge_test_list sequence<string>; hub splits
train/test/validation/prompt, here test (our own problems, ids 11-14) and prompt (task ids 2, 3,
4 as in lm-eval's few-shot list). Only those three few-shot items are taken from lm-eval's own
`tasks/mbpp/utils.py::list_fewshot_samples`, read with `ast` because importing that module loads
a hub metric.

Regenerate the committed copy (tests/fixtures/hub/google-research-datasets/mbpp) with
`python tests/fixtures/make_hub_fixtures.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from kanana_eval.core.errors import DataUnavailableError
from kanana_eval.data.mirror.plan import SchemaFixture
from kanana_eval.data.mirror.writer import card_configs, write_card, write_parquet
from kanana_eval.data.offline_sources import package_dir

DATASET_ID = "google-research-datasets/mbpp"
FEATURES_YAML = [
    {"name": "task_id", "dtype": "int32"},
    {"name": "text", "dtype": "string"},
    {"name": "code", "dtype": "string"},
    {"name": "test_list", "sequence": "string"},
    {"name": "test_setup_code", "dtype": "string"},
    {"name": "challenge_test_list", "sequence": "string"},
]

TEST_ITEMS: list[dict[str, Any]] = [
    {
        "task_id": 11,
        "text": "Write a function to count the vowels in a string.",
        "code": "def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in 'aeiou')",
        "test_list": [
            "assert count_vowels('hello') == 2",
            "assert count_vowels('Python') == 1",
            "assert count_vowels('AEIOU') == 5",
        ],
    },
    {
        "task_id": 12,
        "text": "Write a function to find the second largest distinct number in a list.",
        "code": "def second_largest(nums):\n    values = sorted(set(nums))\n    return values[-2]",
        "test_list": [
            "assert second_largest([1, 2, 3, 4]) == 3",
            "assert second_largest([5, 5, 4]) == 4",
            "assert second_largest([10, -1, 7, 7]) == 7",
        ],
    },
    {
        "task_id": 13,
        "text": "Write a python function to check whether a string is a palindrome, ignoring case.",
        "code": "def is_palindrome(s):\n    t = s.lower()\n    return t == t[::-1]",
        "test_list": [
            "assert is_palindrome('Level') == True",
            "assert is_palindrome('abc') == False",
            "assert is_palindrome('Noon') == True",
        ],
    },
    {
        "task_id": 14,
        "text": "Write a function to merge two sorted lists into one sorted list.",
        "code": (
            "def merge_sorted(a, b):\n    result = []\n    i = j = 0\n"
            "    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n"
            "            result.append(a[i])\n            i += 1\n        else:\n"
            "            result.append(b[j])\n            j += 1\n"
            "    return result + a[i:] + b[j:]"
        ),
        "test_list": [
            "assert merge_sorted([1, 3, 5], [2, 4, 6]) == [1, 2, 3, 4, 5, 6]",
            "assert merge_sorted([], [1, 2]) == [1, 2]",
            "assert merge_sorted([0, 0], [0]) == [0, 0, 0]",
        ],
    },
]


def lm_eval_mbpp_fewshot() -> list[dict[str, Any]]:
    """The literal list returned by lm-eval's `tasks/mbpp/utils.py::list_fewshot_samples`."""
    package = package_dir("lm_eval")  # found, not imported
    if package is None:
        raise DataUnavailableError("lm-eval is not installed")
    source = package / "tasks" / "mbpp" / "utils.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples":
            for statement in node.body:
                if isinstance(statement, ast.Return) and statement.value is not None:
                    return ast.literal_eval(statement.value)
    raise DataUnavailableError(f"list_fewshot_samples not found in {source}")


def mbpp_row(item: dict[str, Any]) -> dict[str, Any]:
    """One row with every hub column (no setup code or challenge tests in these items)."""
    return {
        "task_id": item["task_id"],
        "text": item["text"],
        "code": item["code"],
        "test_list": list(item["test_list"]),
        "test_setup_code": "",
        "challenge_test_list": [],
    }


def write_mbpp(folder: Path) -> None:
    """The hub layout at `folder`: config `full` with `test` and `prompt` shards, and the card."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {
        "test": [mbpp_row(item) for item in TEST_ITEMS],
        "prompt": [mbpp_row(item) for item in lm_eval_mbpp_fewshot()],
    }
    split_info = []
    for split, rows in splits.items():
        nbytes = write_parquet(
            rows, FEATURES_YAML, folder / "full" / f"{split}-00000-of-00001.parquet"
        )
        split_info.append({"name": split, "num_bytes": nbytes, "num_examples": len(rows)})
    write_card(
        folder,
        dataset_info=[
            {"config_name": "full", "features": FEATURES_YAML, "splits": split_info}
        ],
        configs=card_configs({"full": [(s, f"full/{s}-*") for s in splits]}, "full"),
        body="# MBPP (kanana-eval test fixture)\n\nConfig `full` with a `test` split of problems "
        "written for tests (ids 11-14) and the `prompt` split holding lm-eval's three few-shot "
        "items (task ids 2, 3, 4). No train/validation split, no `sanitized` config.",
    )


FIXTURES = (SchemaFixture(DATASET_ID, f"hub/{DATASET_ID}", write_mbpp),)
