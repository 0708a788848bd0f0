"""A schema-exact stand-in for evalplus' MbppPlus v0.2.0 release (not to be had offline).

Seven real MBPP problems in the exact record schema of evalplus's MbppPlus v0.2.0 release
(task_id, prompt, entry_point, canonical_solution, base_input, atol, plus_input, contract,
assertion), read by evalplus's own `get_mbpp_plus`. Prompts and canonical solutions are the
MBPP / MBPP+ ones; base inputs are the original three or four asserts; plus inputs are a few
edge cases written here (the release has hundreds generated per task). The picks exercise what
evalplus special-cases: Mbpp/2 (inputs deserialised to tuples, set-equality oracle), Mbpp/7
(set-equality oracle), Mbpp/14 (float comparison), Mbpp/737 (output-not-None oracle).

Committed at tests/fixtures/evalplus/MbppPlus-v0.2.0-fixture.jsonl.gz; a test mirror holds it
where `--data-dir` puts the release (DIR/evalplus/MbppPlus/MbppPlus-v0.2.0.jsonl.gz).
Regenerate it with `python tests/fixtures/make_evalplus_fixture.py` (deterministic).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

from kanana_eval.data.mirror.plan import SchemaFixture

DATASET_ID = "evalplus/MbppPlus"  # evalplus' release file, not a hub dataset
RELEASE_FILE = "MbppPlus-v0.2.0.jsonl.gz"  # the name evalplus gives the release


def _prompt(text: str, assertion: str) -> str:
    """MBPP+'s prompt: the problem text and its first assertion in a docstring."""
    return f'"""\n{text}\n{assertion}\n"""\n'


def _contract(*lines: str) -> str:
    """evalplus' input contract: one marked assert per condition."""
    return "".join(f'\n    assert {line}, "invalid inputs" # $_CONTRACT_$' for line in lines) + "\n"


def _task(number: int, entry_point: str, text: str, asserts: list[str], solution: str,
          base: list[list[Any]], plus: list[list[Any]], contract: str, atol: float = 0) -> dict:
    """One release record, its fields in the release's order."""
    return {
        "task_id": f"Mbpp/{number}",
        "prompt": _prompt(text, asserts[0]),
        "entry_point": entry_point,
        "canonical_solution": solution,
        "base_input": base,
        "atol": atol,
        "plus_input": plus,
        "contract": contract,
        "assertion": "\n" + "\n".join(asserts) + "\n",
    }


TASKS = [
    _task(
        2, "similar_elements",
        "Write a function to find the shared elements from the given two lists.",
        ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
         "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
         "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))"],
        "\ndef similar_elements(test_tup1, test_tup2):\n"
        "  return tuple(set(test_tup1) & set(test_tup2))\n",
        [[[3, 4, 5, 6], [5, 7, 4, 10]], [[1, 2, 3, 4], [5, 4, 3, 7]],
         [[11, 12, 14, 13], [17, 15, 14, 13]]],
        [[[], []], [[1, 2, 3], []], [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], [[1, 1, 2], [1]],
         [[-1, 0, 1], [1, 0, -1, 7]]],
        _contract("isinstance(test_tup1, tuple)", "isinstance(test_tup2, tuple)"),
    ),
    _task(
        3, "is_not_prime",
        "Write a python function to identify non-prime numbers.",
        ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
         "assert is_not_prime(35) == True", "assert is_not_prime(37) == False"],
        "\nimport math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
        "    for i in range(2, int(math.sqrt(n))+1):\n        if n % i == 0:\n"
        "            return True\n    return False\n",
        [[2], [10], [35], [37]],
        [[1], [4], [97], [7919], [1000003], [999999]],
        _contract("isinstance(n, int)", "n > 0"),
    ),
    _task(
        4, "heap_queue_largest",
        "Write a function to find the n largest integers from a given list of numbers, "
        "returned in descending order.",
        ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65]",
         "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75]",
         "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)"
         "==[85, 75, 65, 58, 35]"],
        "\nimport heapq as hq\ndef heap_queue_largest(nums: list,n: int) -> list:\n"
        "  largest_nums = hq.nlargest(n, nums)\n  return largest_nums\n",
        [[[25, 35, 22, 85, 14, 65, 75, 22, 58], 3], [[25, 35, 22, 85, 14, 65, 75, 22, 58], 2],
         [[25, 35, 22, 85, 14, 65, 75, 22, 58], 5]],
        [[[1, 2, 3], 0], [[5, 5, 5, 1], 2], [[-1, -5, 3, 10], 4], [[7], 1]],
        _contract("isinstance(nums, list)", "isinstance(n, int)", "0 <= n <= len(nums)"),
    ),
    _task(
        6, "differ_At_One_Bit_Pos",
        "Write a python function to check whether the two numbers differ at one bit position "
        "only or not.",
        ["assert differ_At_One_Bit_Pos(13,9) == True",
         "assert differ_At_One_Bit_Pos(15,8) == False",
         "assert differ_At_One_Bit_Pos(2,4) == False", "assert differ_At_One_Bit_Pos(2, 3) == True",
         "assert differ_At_One_Bit_Pos(5, 1) == True",
         "assert differ_At_One_Bit_Pos(1, 5) == True"],
        "\ndef is_Power_Of_Two(x: int): \n    return x > 0 and (x & (x - 1)) == 0\n"
        "def differ_At_One_Bit_Pos(a: int,b: int):\n    return is_Power_Of_Two(a ^ b)\n",
        [[13, 9], [15, 8], [2, 4], [2, 3], [5, 1], [1, 5]],
        [[0, 1], [8, 8], [1024, 0], [7, 5], [-1, -2], [0, 0]],
        _contract("isinstance(a, int)", "isinstance(b, int)"),
    ),
    _task(
        7, "find_char_long",
        "Write a function to find all words which are at least 4 characters long in a string.",
        ["assert set(find_char_long('Please move back to stream')) "
         "== set(['Please', 'move', 'back', 'stream'])",
         "assert set(find_char_long('Jing Eco and Tech')) == set(['Jing', 'Tech'])",
         "assert set(find_char_long('Jhingai wulu road Zone 3')) "
         "== set(['Jhingai', 'wulu', 'road', 'Zone'])"],
        '\nimport re\ndef find_char_long(text):\n  return (re.findall(r"\\b\\w{4,}\\b", text))\n',
        [["Please move back to stream"], ["Jing Eco and Tech"], ["Jhingai wulu road Zone 3"]],
        [["a bb cccc ddddd"], [""], ["word1 w2 wordy_ x"], ["Tab\tseparated\nlines here"]],
        _contract("isinstance(text, str)"),
    ),
    _task(
        14, "find_Volume",
        "Write a python function to find the volume of a triangular prism.",
        ["assert find_Volume(10,8,6) == 240", "assert find_Volume(3,2,2) == 6",
         "assert find_Volume(1,2,1) == 1"],
        "\ndef find_Volume(l,b,h) : \n    return ((l * b * h) / 2) \n",
        [[10, 8, 6], [3, 2, 2], [1, 2, 1]],
        [[1.5, 2.5, 3.5], [0, 5, 5], [3, 3, 3], [0.1, 0.2, 0.3]],
        _contract("isinstance(l, (int, float))", "isinstance(b, (int, float))",
                  "isinstance(h, (int, float))"),
    ),
    _task(
        737, "check_str",
        "Write a function to check whether the given string is starting with a vowel or not "
        "using regex.",
        ['assert check_str("annie")', 'assert not check_str("dawood")', 'assert check_str("Else")'],
        "\nimport re \ndef check_str(string): \n\tregex = '^[aeiouAEIOU][A-Za-z0-9_]*'\n"
        "\treturn re.search(regex, string)\n",
        [["annie"], ["dawood"], ["Else"]],
        [["Apple"], ["zebra"], [""], ["_a"], ["e"]],
        _contract("isinstance(string, str)"),
    ),
]


def write_mbpp_plus(out: Path) -> None:
    """The release file at `out`: gzipped JSON Lines, gzip mtime 0 so the bytes never change."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(task) + "\n" for task in TASKS).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as handle:
        handle.write(lines)
    out.write_bytes(buffer.getvalue())


FIXTURES = (
    SchemaFixture(
        DATASET_ID,
        "evalplus/MbppPlus-v0.2.0-fixture.jsonl.gz",
        write_mbpp_plus,
        mirror_path=f"{DATASET_ID}/{RELEASE_FILE}",
    ),
)
