"""One whole bench: load the model twice, measure both workloads, project; the report as data.

The report is plain JSON-able data: `format.format_report` prints it and the history file
keeps it, one line per invocation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from kanana_eval.data.offline_models import ensure_hf_folder
from kanana_eval.engine.build import EngineConfig, build_lm
from kanana_eval.pipeline.model_source import package_versions
from tools.bench.config import (
    DEFAULT_MODEL_KEY,
    JSON_SCHEMA,
    RETRY_WINDOW_S,
    TARGET_GENERATION_SPEEDUP,
    TARGET_OURS_OVER_BOUND,
    TARGET_OURS_OVER_PLAIN,
    BenchConfig,
    BenchError,
    check_config,
)
from tools.bench.measure import RetryPolicy, measure_generation, measure_loglikelihood, warm_up
from tools.bench.memory import measure_loaded
from tools.bench.niah import measure_niah
from tools.bench.probes import PhaseLog
from tools.bench.projection import project_protocol
from tools.bench.vllm_side import measure_vllm
from tools.bench.workloads import HumanEvalWorkload, MMLUWorkload, choose_subjects

_MIB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


def _engines(folder: Path, batch_size: int) -> tuple[Any, Any]:
    """(ours, plain): two separately loaded copies of the same weights, fp32 on CPU."""
    from lm_eval.models.huggingface import HFLM  # noqa: PLC0415 - heavy: loads transformers

    ours = build_lm(EngineConfig(backend="hf", model=str(folder), dtype="float32",
                                 batch_size=batch_size, device="cpu", prefix_cache=True))
    plain = HFLM(pretrained=str(folder), dtype="float32", batch_size=batch_size, device="cpu")
    return ours, plain


def git_record(root: Path | None = None) -> dict[str, Any] | None:
    """The checkout's commit and whether tracked files differ from it (read-only git calls)."""
    root = root or REPO_ROOT
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "--no-optional-locks", "-C", str(root), "status",
                                 "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_record() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, torch threads, memory, load."""
    import torch  # noqa: PLC0415 - heavy: torch's thread count

    cpu = platform.processor() or None
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "memory_total_mib": round(psutil.virtual_memory().total / _MIB),
            "load_avg_start": _load_avg()}


def _model_folder(config: BenchConfig) -> tuple[Path, str]:
    """(HF folder, the name the report gives it): --model-folder, else the default offline model."""
    if config.model_folder is None:
        return ensure_hf_folder(DEFAULT_MODEL_KEY), DEFAULT_MODEL_KEY
    if not (config.model_folder / "config.json").is_file():
        raise BenchError(f"--model-folder {config.model_folder} is not a Hugging Face model folder")
    return config.model_folder, str(config.model_folder)


def _targets(loglik: dict[str, Any], generation: dict[str, Any] | None) -> dict[str, Any]:
    """Each speed target of the issue: the measured value, the target, and whether it holds."""
    targets = {
        "ours_over_plain": {"value": loglik["ours_over_plain"], "target": TARGET_OURS_OVER_PLAIN,
                            "pass": loglik["ours_over_plain"] <= TARGET_OURS_OVER_PLAIN},
        "ours_over_reuse_bound": {"value": loglik["ours_over_reuse_bound"],
                                  "target": TARGET_OURS_OVER_BOUND,
                                  "pass": loglik["ours_over_reuse_bound"]
                                  <= TARGET_OURS_OVER_BOUND},
    }
    if generation is not None:
        targets["generation_speedup"] = {"value": generation["speedup"],
                                         "target": TARGET_GENERATION_SPEEDUP,
                                         "pass": generation["speedup"]
                                         >= TARGET_GENERATION_SPEEDUP}
    return targets


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Load the model twice, measure both workloads, return the report as plain data."""
    import torch  # noqa: PLC0415 - heavy: torch's thread count for every side

    check_config(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # every side and the bound run in this process
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = machine_record()
    phases = PhaseLog()
    folder, model_name = _model_folder(config)
    with phases.phase("data"):
        mmlu = MMLUWorkload(config.data_dir, choose_subjects(config.subjects),
                            config.questions_per_subject)
        humaneval = (HumanEvalWorkload(config.data_dir, config.humaneval_prompts,
                                       config.max_gen_toks)
                     if config.humaneval_prompts else None)
    with phases.phase("model load (ours and plain)"):
        ours_lm, plain_lm = _engines(folder, config.batch_size)
        for lm in (ours_lm, plain_lm):
            warm_up(lm.model, config.batch_size)
    retry = RetryPolicy(config.retries, config.retry_above, until=started + RETRY_WINDOW_S)
    loglik = measure_loglikelihood(mmlu, ours_lm, plain_lm, batch_size=config.batch_size,
                                   phases=phases, repeats=config.repeats,
                                   min_seconds=config.throughput_seconds, retry=retry)
    generation = (measure_generation(humaneval, ours_lm, plain_lm, batch_size=config.batch_size,
                                     phases=phases, retry=retry)
                  if humaneval is not None else None)
    with phases.phase("niah: shared prefixes vs cells alone"):
        niah_result = measure_niah(ours_lm) if config.niah else None
    engine_record = ours_lm.speed_record() if hasattr(ours_lm, "speed_record") else None
    with phases.phase("batch memory: estimate vs peak"):
        estimate_vs_peak = measure_loaded(ours_lm.model)
    projection = project_protocol(
        loglik["sides"]["reuse"]["requests_per_s"],
        generation["sides"]["ours_batched"]["seconds_per_prompt"] if generation else None)
    vllm = None
    if config.vllm:
        del ours_lm, plain_lm  # vLLM's engine gets the memory the two hf copies held
        with phases.phase("vllm (ours and raw)"):
            vllm = measure_vllm(folder, mmlu, humaneval, {
                "loglikelihood": loglik["sides"]["reuse"]["seconds"],
                "generation": generation["sides"]["ours_batched"]["seconds"]
                if generation else None})
    machine["load_avg_end"] = _load_avg()
    outputs_identical = generation["outputs_identical"] if generation else None
    return {
        "schema": JSON_SCHEMA,
        "started_at": started_at,
        "git": git_record(),
        "model": {"name": model_name, "folder": str(folder), "dtype": "float32", "device": "cpu"},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": machine,
        "versions": package_versions(),
        "engine": engine_record,
        "total_s": round(time.perf_counter() - started, 3),
        "loglikelihood": loglik,
        "generation": generation,
        "memory": {"phases": phases.phases, "estimate_vs_peak": estimate_vs_peak},
        "projection": projection,
        "targets": _targets(loglik, generation),
        "vllm": vllm,
        "niah": niah_result,
        "answers_agree": loglik["answers_agree"],
        "outputs_identical": outputs_identical,
        "ok": loglik["answers_agree"] and outputs_identical is not False,
    }


def append_history(path: Path, report: dict[str, Any]) -> None:
    """One compact JSON line per invocation, so a file of them shows changes over time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as history:
        history.write(json.dumps(report, sort_keys=True, ensure_ascii=False) + "\n")
