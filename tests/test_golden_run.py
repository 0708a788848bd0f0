"""The restructured package gives the same run, byte for byte, as the copy made before it.

See tests/golden_run.py for what is removed before comparing (ids, paths, timings, versions)
and how a deliberate change of outputs regenerates the copy.
"""

from __future__ import annotations

import difflib

import pytest
from golden_run import GOLDEN_DIR, make_golden_run, normalised_files


@pytest.mark.slow
def test_small_smollm2_run_equals_the_golden_copy_byte_for_byte(tmp_path, shared_data_dir,
                                                                 monkeypatch, capsys):
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    run_dir = make_golden_run(tmp_path)
    capsys.readouterr()
    ours = normalised_files(run_dir, [str(tmp_path)])
    golden = {p.relative_to(GOLDEN_DIR).as_posix(): p.read_text(encoding="utf-8")
              for p in sorted(GOLDEN_DIR.rglob("*")) if p.is_file()}
    assert sorted(ours) == sorted(golden)
    for name, text in golden.items():
        if ours[name] != text:
            diff = "".join(difflib.unified_diff(text.splitlines(True), ours[name].splitlines(True),
                                                f"golden/{name}", f"now/{name}", n=2))
            pytest.fail(f"{name} differs from the golden copy:\n{diff[:6000]}")
