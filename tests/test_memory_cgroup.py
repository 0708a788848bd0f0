"""A real run inside a memory cgroup stays inside it: the issue's proof, with the peak recorded.

Gemma-3-270m (262k vocabulary, sliding-window layers: the right-padded log-likelihood path) on
60 MMLU questions with the default `--batch-size auto` once reached 22 GB and was killed, and
killed again under a 10 GB cgroup. Here it runs in a child process the test puts in a 6 GB
memory cgroup it creates itself (v1 here, v2 elsewhere): the run must finish, the kernel must
have killed nothing, and the cgroup's peak is recorded (printed, and as a junit property). Under
CI=true a machine where the cgroup cannot be created fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from memory_cgroup import CgroupUnavailable, MemoryCgroup

GiB = 1 << 30
LIMIT = 6 * GiB
RUN = ("import sys; from kanana_eval.cli.main import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture
def memory_cgroup():  # noqa: ANN201 - yields the cgroup
    try:
        group = MemoryCgroup.create(LIMIT)
    except (CgroupUnavailable, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a memory cgroup is required under CI: {exc}")
        pytest.skip(f"no memory cgroup here: {exc}")
    try:
        yield group
    finally:
        group.remove()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2 minutes on a quiet machine; a loaded one is much slower
def test_gemma_mmlu_60_with_auto_batches_stays_inside_a_6gb_cgroup(
        memory_cgroup: MemoryCgroup, offline_mirror: Path, tmp_path: Path,
        record_property: pytest.RecordProperty) -> None:
    out = tmp_path / "results"
    args = ["run", "--model", "gemma-3-270m", "--benchmarks", "mmlu@base", "--limit", "60",
            "--data-dir", str(offline_mirror), "--no-cache", "--output-dir", str(out)]
    log_out, log_err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(log_out, "w") as out_file, open(log_err, "w") as err_file:
        child = subprocess.Popen([sys.executable, "-c", RUN, *args], stdout=out_file,
                                 stderr=err_file, text=True,
                                 preexec_fn=memory_cgroup.enter)  # noqa: PLW1509 - before exec
        try:
            child.wait(timeout=1700)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    stdout, stderr = log_out.read_text(), log_err.read_text()
    peak = memory_cgroup.peak_bytes()
    kills = memory_cgroup.oom_kills()
    record = {"limit_mib": LIMIT >> 20, "cgroup_peak_mib": None if peak is None else peak >> 20,
              "oom_kills": kills, "exit": child.returncode, "cgroup_version": memory_cgroup.version}
    print("memory cgroup run:", json.dumps(record))
    for key, value in record.items():
        record_property(key, value)
    assert child.returncode == 0 and kills == 0, f"{record}\n{stderr[-3000:]}"
    assert peak is not None and 0 < peak <= LIMIT
    (run_dir,) = (out / "gemma-3-270m").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    batching = manifest["engine"]["speed"]["batching"]
    assert batching["mode"] == "memory"  # the default auto: sized by the planner, not fixed
    chosen = batching["chosen"]["loglikelihood"]
    assert chosen["decisions"] >= 1 and chosen["max"] > 1  # it batched, within the limit
    assert (chosen["max_estimate_mib"] << 20) < LIMIT
    assert 0 < batching["peak_rss_mib"] <= LIMIT >> 20
    scores = json.loads((run_dir / "scores.json").read_text())
    assert {row["benchmark"]: row["n"] for row in scores["scores"]} == {"mmlu@base": 60}
    assert "SMOKE RUN" in stdout
