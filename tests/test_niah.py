"""Needle in a haystack: the generated grid, shared-prefix generation, the run, YaRN, heatmaps."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from vllm_support import require_vllm

from kanana_eval.cli.main import main
from kanana_eval.cli.serve import check_yarn, yarn_server_args
from kanana_eval.config.registry import load_registry
from kanana_eval.config.run_config import RunConfig
from kanana_eval.engine.build import EngineConfig, build_lm, vllm_hf_overrides
from kanana_eval.engine.shared_prefix_generation import GridPrompt, SharedPrefixGenerator
from kanana_eval.pipeline.run import run
from kanana_eval.report.heatmap import heatmaps_of_run, to_png, to_svg
from kanana_eval.scoring.niah import verdict
from kanana_eval.tasks.niah import filler
from kanana_eval.tasks.niah import generator as niah

LENGTHS = (1024, 2048, 8192)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: Path):  # noqa: ANN201 - a transformers tokenizer
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy: transformers

    return AutoTokenizer.from_pretrained(tiny_llama)


def _encode(tok):  # noqa: ANN001, ANN202 - tokenizer in, encode function out
    return lambda text: tok.encode(text, add_special_tokens=False)


def _cells(tok, grid: niah.Grid, *, seed: int = 1234, context: int = 4096,
           source: niah.HaystackSource | None = None) -> list[niah.Cell]:
    return niah.build_cells(grid, "retrieval", seed=seed, encode=_encode(tok), frame=niah.Frame(),
                            max_new_tokens=8, context=context,
                            source=source or niah.HaystackSource())


# ------------------------------------------------------------------------- the generated data
@pytest.mark.parametrize("language", ["en", "ko"])
def test_filler_never_repeats_a_sentence_within_a_128k_token_haystack(language: str) -> None:
    # Every sentence is at least one token, so 128K sentences cover any 128K-token haystack.
    first = list(itertools.islice(filler.sentences(language, seed=7), 131_072))
    assert len(set(first)) == len(first)


def test_filler_holds_no_digit_and_no_needle_key() -> None:
    for language, lists in filler.LISTS.items():
        words = " ".join(w for words in lists for w in words)
        assert not re.search(r"\d", words)
        assert not any(key in words for key in niah._KEYS[language])


def test_the_grid_is_made_from_the_seed_and_its_sha256_is_the_fingerprint(tokenizer) -> None:
    grid = niah.Grid((1024, 2048), (0, 50, 100))
    first, again, other = (_cells(tokenizer, grid, seed=s) for s in (1, 1, 2))
    assert niah.fingerprint(first) == niah.fingerprint(again)
    assert niah.fingerprint(first) != niah.fingerprint(other)
    assert [c.tokens for c in first] == [c.tokens for c in again]


def test_every_cell_is_the_haystack_up_to_its_needle_and_fits_its_length(tokenizer) -> None:
    cells = _cells(tokenizer, niah.Grid((1024, 2048, 4096), (0, 25, 50, 100), ("en",)))
    needle = _encode(tokenizer)(cells[0].needle.text("needle"))
    haystack = next(c for c in cells if c.length == 4096 and c.depth == 100)  # needle at the end
    intro = len(_encode(tokenizer)(cells[0].needle.text("intro")))
    for cell in cells:
        assert len(cell.tokens) + 8 <= cell.length
        at = cell.needle_token
        assert cell.tokens[at:at + len(needle)] == needle  # the needle sits where it says
        assert cell.tokens[:at] == haystack.tokens[:at]  # one haystack for every cell
        assert cell.needle.value in cell.text and cell.text.count(cell.needle.value) == 1
        if cell.depth == 0:
            assert at == intro
    # depth is measured in the cell's own haystack, to the nearest sentence end
    mid = next(c for c in cells if c.length == 4096 and c.depth == 50)
    assert abs((mid.needle_token - intro) / mid.haystack_tokens - 0.5) < 0.05


def test_cells_beyond_the_context_are_skipped_never_truncated(tokenizer) -> None:
    cells = _cells(tokenizer, niah.Grid(LENGTHS, (0, 100)), context=4096)
    skipped = [c for c in cells if c.skipped]
    assert {c.length for c in skipped} == {8192}
    assert all(c.tokens == [] and "context (4096 tokens)" in c.skipped for c in skipped)


def test_the_default_grid_prefills_at_most_half_the_tokens_of_its_cells_alone(tokenizer) -> None:
    grid = niah.Grid(niah.default_lengths(8192))
    assert grid.lengths == (1024, 2048, 4096, 8192) and grid.depths == tuple(range(0, 101, 10))
    cells = _cells(tokenizer, grid, context=8192)
    alone = sum(len(c.tokens) for c in cells)
    assert niah.shared_prefix_tokens(c.tokens for c in cells) <= 0.5 * alone


def test_a_haystack_folder_is_cut_at_sentence_ends_and_refused_without_text(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("First line here. Second one! Third?\n\nFourth", "utf-8")
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe")
    source = niah.folder_haystack(tmp_path)
    assert source.segments_of_folder == (" First line here.", " Second one!", " Third?",
                                         " Fourth")
    assert list(source.files) == ["a.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.md").write_text("  \n", "utf-8")
    with pytest.raises(Exception, match="has no usable text"):
        niah.folder_haystack(empty)


def test_retrieval_is_exact_match_and_qa_needs_the_value_in_the_answer() -> None:
    assert verdict("retrieval", " 4821337.\n", "4821337") == ("4821337", True)
    assert verdict("retrieval", " 4,821,337", "4821337") == ("4821337", True)
    assert verdict("retrieval", " 12 and 4821337", "4821337") == ("12", False)
    assert verdict("qa", "The number is 4821337.", "4821337") == ("4821337", True)
    assert verdict("qa", "I do not know.", "4821337") == (None, False)


# ------------------------------------------------------------------------- shared prefixes
def test_shared_prefix_generation_answers_as_each_prompt_alone_prefilling_the_trie(
        tiny_llama: Path, tokenizer) -> None:
    lm = build_lm(EngineConfig(backend="hf", model=str(tiny_llama), dtype="float32",
                               device="cpu", batch_size=1))
    cells = [c for c in _cells(tokenizer, niah.Grid((512, 1024), (0, 50, 100)))]
    prompts = [GridPrompt(c.tokens, [], 4) for c in cells]
    shared: dict[int, list[int]] = {}
    generator = SharedPrefixGenerator(lm.runner, eos_ids=[], decode=tokenizer.decode)
    generator.run(prompts, on_done=lambda i, toks: shared.__setitem__(i, toks))
    alone: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        single = SharedPrefixGenerator(lm.runner, eos_ids=[], decode=tokenizer.decode)
        single.run([prompt], on_done=lambda _i, toks, i=i: alone.__setitem__(i, toks))
    assert shared == alone
    stats = generator.stats
    assert stats.shared and stats.prompts == len(prompts)
    assert stats.prefill_tokens == niah.shared_prefix_tokens(p.tokens for p in prompts)
    assert stats.prompt_tokens == sum(len(p.tokens) for p in prompts)
    assert stats.prefill_tokens < 0.65 * stats.prompt_tokens  # 3 depths; 11 give <= 0.5


# ------------------------------------------------------------------------- runs
def _run(model: str, out: Path, **options) -> Path:
    config = RunConfig(model=model, benchmarks=["niah"], backend="hf", output_dir=str(out),
                       use_cache=False, niah_lengths="1K,2K,8K", niah_depths="0,50,100",
                       **options)
    [run_dir] = run(config)
    return run_dir


@pytest.fixture(scope="module")
def base_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One niah@base run of the tiny Llama (context 4096) on {1K, 2K, 8K} x {0, 50, 100}%."""
    return _run(str(tiny_llama), tmp_path_factory.mktemp("niah-results"))


def test_a_run_stores_one_item_per_cell_skips_beyond_the_context_and_pairs_in_compare(
        base_run: Path, tmp_path: Path) -> None:
    run_dir = base_run
    items = [json.loads(line) for line in (run_dir / "items" / "niah@base.jsonl").open()]
    assert len(items) == 3 * 3 * 2
    assert {i["item_id"] for i in items} == {f"retrieval/{lang}/{n}/{d:03d}"
                                             for lang in ("en", "ko") for n in LENGTHS
                                             for d in (0, 50, 100)}
    skipped = [i for i in items if i["verdict"] == "unscored"]
    assert {i["details"]["length"] for i in skipped} == {8192} and len(skipped) == 6
    assert all(i["score"] is None for i in skipped)
    [row] = json.loads((run_dir / "scores.json").read_text())["scores"]
    assert (row["n"], row["n_available"], row["n_skipped"], row["n_failed"]) == (12, 18, 6, 0)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    data = manifest["benchmarks"]["niah@base"]["data"]
    assert data["source"] == "generated" and data["generated"]["grid"]["lengths"] == list(LENGTHS)
    grid = manifest["engine"]["grids"]["niah@base"]
    assert grid["path"] == "shared-prefix generation"
    assert grid["prefill_tokens"] == grid["trie_tokens"] < grid["prompt_tokens"]
    again = tmp_path / "again"  # the same run again, stored apart: compare pairs cell by cell
    shutil.copytree(run_dir, again)
    assert main(["compare", str(run_dir), str(again), "--json", str(tmp_path / "v.json")]) == 0
    [bench] = json.loads((tmp_path / "v.json").read_text())["benchmarks"]
    assert bench["benchmark"] == "niah@base" and bench["n_paired"] == 12


def test_a_cell_that_fails_is_recorded_and_the_grid_goes_on(
        tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = SharedPrefixGenerator._answer
    calls = {"n": 0}

    def flaky(self, prompt, cache, keep):  # noqa: ANN001, ANN202 - the method's own signature
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of memory (simulated)")
        return real(self, prompt, cache, keep)

    monkeypatch.setattr(SharedPrefixGenerator, "_answer", flaky)
    run_dir = _run(str(tiny_llama), tmp_path / "results", niah_languages="en")
    items = [json.loads(line) for line in (run_dir / "items" / "niah@base.jsonl").open()]
    failed = [i for i in items if i["verdict"] == "error"]
    assert len(failed) == 1 and "simulated" in failed[0]["details"]["error"]
    [row] = json.loads((run_dir / "scores.json").read_text())["scores"]
    assert (row["n"], row["n_failed"], row["n_skipped"]) == (5, 1, 3)


def test_yarn_on_a_yarn_capable_test_registry_model_loads_the_override_and_runs_past_its_context(
        tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = yaml.safe_load(Path("kanana_eval/config/models.yaml").read_text())
    registry["models"] = {"tiny-yarn": {"local_path": str(tiny_llama), "kind": "base",
                                        "context_length": 4096, "license": "test",
                                        "protocols": ["base"], "yarn_128k": True},
                          "tiny-32k-only": {"local_path": str(tiny_llama), "kind": "base",
                                            "context_length": 4096, "license": "test",
                                            "protocols": ["base"], "yarn_128k": False}}
    registry["aliases"] = {}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(registry))
    monkeypatch.setenv("KANANA_MODEL_REGISTRY", str(path))
    override = load_registry().yarn_rope_scaling
    assert override["factor"] == 4.4 and override["original_max_position_embeddings"] == 32768
    run_dir = _run("tiny-yarn", tmp_path / "results", yarn=True, niah_languages="en")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["yarn"] is True
    assert manifest["engine"]["rope_scaling"] == override
    generated = manifest["benchmarks"]["niah@base"]["data"]["generated"]
    loaded = generated["rope_parameters_loaded"]
    assert {k: loaded[k] for k in override} == override and loaded["rope_type"] == "yarn"
    assert generated["yarn"] is True and generated["skipped"] == 0
    items = [json.loads(line) for line in (run_dir / "items" / "niah@base.jsonl").open()]
    beyond = [i for i in items if i["details"]["length"] == 8192]
    assert beyond and all(i["verdict"] != "unscored" and i["details"]["prompt_tokens"] > 4096
                          for i in beyond)
    assert main(["run", "--model", "tiny-32k-only", "--benchmarks", "niah", "--yarn",
                 "--output-dir", str(tmp_path / "r2")]) == 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--haystack-dir", "{empty}"], "has no usable text"),
    (["--niah-lengths", "64K,128K"], "longer than the model's context"),
])
def test_bad_niah_input_is_one_line_and_exit_2(tiny_llama: Path, tmp_path: Path, capsys,
                                              extra: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["run", "--model", str(tiny_llama), "--benchmarks", "niah", "--output-dir",
            str(tmp_path / "r")] + [a.replace("{empty}", str(empty)) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kanana-eval: error:") and message in err[0]
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- pictures
def test_heatmaps_are_written_as_png_and_svg_and_linked_from_the_reports(
        base_run: Path, tmp_path: Path) -> None:
    run_dir = base_run
    heats = heatmaps_of_run(run_dir)
    assert [h.language for h in heats] == ["en", "ko"]
    svg = to_svg(heats[0])
    assert re.findall(r'class="x-tick"[^>]*>([^<]+)<', svg) == ["1K", "2K", "8K"]
    assert re.findall(r'class="y-tick"[^>]*>([^<]+)<', svg) == ["0%", "50%", "100%"]
    assert "overall" in svg and svg.count('class="cell"') == 9 and "skip" in svg
    assert to_png(heats[0]).startswith(b"\x89PNG")
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    md = (out / "base.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((niah/[^)]+\.png)\)", md)
    assert len(links) == 2 and all((out / link).is_file() for link in links)
    html = (out / "base.html").read_text()
    assert len(re.findall(r'<img src="niah/[^"]+\.svg"', html)) == 2


def test_the_heatmap_page_loads_its_images_in_headless_chromium(base_run: Path,
                                                                 tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing under CI: `make install` installs the Debian package")
        pytest.skip("chromium is not installed (make install installs it)")
    run_dir = base_run
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    probe = out / "probe.html"
    probe.write_text((out / "base.html").read_text().replace(
        "</body>", "<script>window.addEventListener('load', () => { document.body.setAttribute("
        "'data-images', [...document.images].filter(i => i.src.includes('niah/'))"
        ".map(i => i.naturalWidth + 'x' + i.naturalHeight).join(',')); });</script></body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
             "--allow-file-access-from-files"]
    dom = subprocess.run(flags + ["--dump-dom", probe.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    sizes = re.search(r'data-images="([^"]*)"', dom).group(1).split(",")
    assert len(sizes) == 2 and all(int(s.split("x")[0]) > 100 for s in sizes)



def test_serve_yarn_passes_the_override_to_vllms_server_and_refuses_32k_only_models(
        tiny_llama: Path) -> None:
    override = load_registry().yarn_rope_scaling
    assert yarn_server_args(str(tiny_llama), False) == []
    flag, value = yarn_server_args(str(tiny_llama), True)
    rope = json.loads(value)["rope_scaling"]
    assert flag == "--hf-overrides" and {k: rope[k] for k in override} == override
    assert rope["rope_type"] == "yarn" and rope["rope_theta"] == 10000.0  # the model's own
    [small] = load_registry().resolve("kanana-1.5-2.1b-instruct-2505")
    with pytest.raises(Exception, match="does not take the YaRN 128K override"):
        check_yarn(small, True)
    check_yarn(small, False)


def test_vllms_config_reads_back_the_yarn_override(tiny_llama: Path) -> None:
    require_vllm()  # make install installs it; under CI=true its absence fails
    from vllm.config import ModelConfig  # noqa: PLC0415 - heavy: vLLM

    override = load_registry().yarn_rope_scaling
    cfg = EngineConfig(backend="vllm", model=str(tiny_llama), rope_scaling=override)
    config = ModelConfig(model=str(tiny_llama), hf_overrides=vllm_hf_overrides(cfg),
                         dtype="float32")
    rope = config.hf_config.rope_parameters or config.hf_config.rope_scaling
    assert {k: rope[k] for k in override} == override and rope["rope_type"] == "yarn"
