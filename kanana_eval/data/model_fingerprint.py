"""What identifies a model's weights: the resolved hub revision, or a hash of a local folder.

It keys the request cache, so a resumed run reuses work only for the very same weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kanana_eval.core.hashing import file_sha256
from kanana_eval.core.paths import cache_dir

_HASHED_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".json", ".model", ".txt", ".jinja")
# Records about a folder rather than its weights: the offline conversion's own record holds the
# time it ran, so hashing it gave every conversion of the same weights a new fingerprint.
_NOT_WEIGHTS = frozenset({"kanana_conversion.json"})

def folder_fingerprint(folder: Path) -> str:
    """sha256 over the folder's weight, config and tokenizer files (names and contents).

    Hashing gigabytes takes a while, so the answer is remembered per (path, size, mtime).
    """
    folder = folder.resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _HASHED_SUFFIXES
                   and p.name not in _NOT_WEIGHTS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    stamp = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo_path = cache_dir() / "fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, json.JSONDecodeError):
        memo = {}
    key = hashlib.sha256(json.dumps([str(folder), stamp]).encode()).hexdigest()
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode() + b"\0" + file_sha256(p).encode() + b"\n")
    value = f"sha256:{digest.hexdigest()}"
    memo[key] = value
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo, indent=1))
    os.replace(tmp, memo_path)
    return value


def hub_revision(hub_id: str, revision: str | None) -> str | None:
    """The commit a hub revision points at: asked of the hub, or read from the local HF cache."""
    try:
        if not os.environ.get("HF_HUB_OFFLINE"):
            from huggingface_hub import HfApi  # noqa: PLC0415 - heavy: hub client, hub models only

            return HfApi().model_info(hub_id, revision=revision or "main").sha
    except Exception:  # network or auth trouble: fall back to the local cache
        pass
    try:
        from huggingface_hub import (  # noqa: PLC0415 - heavy: hub client, hub models only
            snapshot_download,
        )

        path = snapshot_download(hub_id, revision=revision or "main", local_files_only=True)
        return Path(path).name
    except Exception:
        return None


def hub_fingerprint(hub_id: str, revision: str | None) -> tuple[str, str | None]:
    """(fingerprint, resolved commit or None). An unresolved revision keys on its name."""
    commit = hub_revision(hub_id, revision)
    return f"hub:{hub_id}@{commit or revision or 'main'}", commit
