"""`--backend openai` against a real OpenAI-compatible server on 127.0.0.1 serving the tiny Llama.

The server (tests/openai_completions_server.py) runs as its own process on port 0 and answers
lm-eval's LocalCompletionsAPI requests from the same weights the hf backend loads, so an openai
run must reproduce an hf run: same MMLU choices and log-likelihoods, same GSM8K generations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from openai_completions_server import CompletionsServer, FailingApp
from transformers import AutoModelForCausalLM, AutoTokenizer

from kanana_eval.cli.main import main
from kanana_eval.core.errors import EngineError
from kanana_eval.engine.build import EngineConfig, build_lm
from kanana_eval.results.io import load_run, read_jsonl

SERVED = "kanana-tests/tiny-llama"
SERVER_SCRIPT = Path(__file__).with_name("openai_completions_server.py")
# Above the tiny Llama's 4096 positions, so neither backend truncates the 5-shot prompts
# (one MMLU prompt of the smoke plan has ~4,700 tokens under the tiny tokenizer).
CONTEXT = 8192


@pytest.fixture(scope="module")
def server_url(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The completions server as a separate process (one torch thread), stopped afterwards."""
    log = tmp_path_factory.mktemp("openai-server") / "stderr.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), str(tiny_llama), "--name", SERVED, "--port", "0",
             "--threads", "1", "--max-model-len", str(CONTEXT)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("serving "):
            pytest.fail(f"the completions server did not start: {line!r} {log.read_text()[-2000:]}")
        yield line.split(" at ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{url}/completions", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - 127.0.0.1
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def reference(tiny_llama: Path) -> tuple[Any, Any]:
    """The same weights loaded here, to check the server's arithmetic against."""
    return (AutoModelForCausalLM.from_pretrained(tiny_llama).eval(),
            AutoTokenizer.from_pretrained(tiny_llama))


# ------------------------------------------------------------------ the server itself
def test_models_lists_the_served_name_and_context(server_url):
    with urllib.request.urlopen(f"{server_url}/models", timeout=30) as response:  # noqa: S310
        listing = json.load(response)
    assert [(m["id"], m["max_model_len"]) for m in listing["data"]] == [(SERVED, CONTEXT)]


def test_echo_logprobs_are_the_models_prompt_logprobs(server_url, reference):
    model, tok = reference
    ids = tok("Question: Janet's ducks lay 16 eggs.\nAnswer: #### 18").input_ids
    status, body = _post(server_url, {"model": SERVED, "prompt": [ids], "echo": True, "logprobs": 1,
                                      "max_tokens": 1, "temperature": 0})
    assert status == 200
    lp = body["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1  # the prompt, then the one generated token
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
    expected = [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
    assert lp["token_logprobs"][1:len(ids)] == pytest.approx(expected, abs=1e-5)
    for i in range(1, len(ids) + 1):  # lm-eval's is_greedy: token logprob == best alternative
        best = max(lp["top_logprobs"][i].values())
        assert best == pytest.approx(float(logp[i - 1].max()), abs=1e-5)
        is_argmax = i < len(ids) and int(logp[i - 1].argmax()) == ids[i]
        assert (lp["token_logprobs"][i] == best) == (is_argmax or i == len(ids))
    assert lp["tokens"][len(ids)] == tok.decode([int(logp[-1].argmax())])


def test_generation_is_greedy_and_cut_at_the_first_stop_string(server_url, reference):
    model, tok = reference
    cases = [("def add(a, b):", []), ("0123456789", ["789", "345"]),
             ("대한민국의 수도는", ["도는 수"])]
    for prompt, stops in cases:
        ids = tok(prompt).input_ids
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)
        greedy = tok.decode(out[0, len(ids):], skip_special_tokens=True)
        status, body = _post(server_url, {"model": SERVED, "prompt": [ids], "max_tokens": 24,
                                          "temperature": 0, "stop": stops})
        assert status == 200
        choice = body["choices"][0]
        if not stops:
            assert choice["text"] == greedy and choice["finish_reason"] == "length"
            assert body["usage"]["completion_tokens"] == 24
        else:  # cut at the earliest occurrence of any stop string, whatever its place in the list
            assert all(stop in greedy for stop in stops), (
                "the greedy output must hold the stop strings")
            cut = min(greedy.index(stop) for stop in stops)
            assert choice["text"] == greedy[:cut] and choice["finish_reason"] == "stop"


@pytest.mark.parametrize("payload,status,message", [
    ({"model": "other/model", "prompt": "a", "temperature": 0}, 404, "does not exist"),
    ({"model": SERVED, "prompt": "a", "temperature": 0.7}, 400, "only greedy"),
    ({"model": SERVED, "prompt": "a", "temperature": 0, "max_tokens": CONTEXT}, 400,
     "maximum context length"),
    ({"model": SERVED, "prompt": [], "temperature": 0}, 400, "prompt must be"),
])
def test_server_refuses_what_it_does_not_serve(server_url, payload, status, message):
    got, body = _post(server_url, payload)
    assert got == status and message in body["error"]["message"]


# ------------------------------------------------------------------ the engine against it
def test_engine_takes_the_served_context_and_checks_the_served_name(server_url, tiny_llama):
    cfg = EngineConfig(backend="openai", model=SERVED, base_url=server_url,
                       tokenizer=str(tiny_llama))
    lm = build_lm(cfg)
    assert lm.base_url == f"{server_url}/completions"
    assert lm.max_length == CONTEXT - 1  # lm-eval keeps one position for the generated token
    assert build_lm(dataclasses.replace(cfg, max_model_len=1024)).max_length == 1023  # flag wins
    with pytest.raises(EngineError, match=f"does not serve 'other/model' \\(it serves {SERVED}\\)"):
        build_lm(dataclasses.replace(cfg, model="other/model"))


# ------------------------------------------------------------------ kanana-eval runs
def _run_args(model: str, mirror: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", model, "--data-dir", str(mirror), "--benchmarks", "mmlu,gsm8k",
            "--limit", "3", "--output-dir", str(out), "--no-cache", *extra]


@pytest.fixture(scope="module")
def openai_and_hf_runs(server_url, tiny_llama, offline_mirror,
                       tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("openai-vs-hf")
    assert main(_run_args(SERVED, offline_mirror, out / "openai", "--backend", "openai",
                          "--base-url", server_url, "--tokenizer", str(tiny_llama))) == 0
    assert main(_run_args(str(tiny_llama), offline_mirror, out / "hf", "--backend", "hf",
                          "--max-model-len", str(CONTEXT))) == 0
    (openai_run,) = (out / "openai").glob("*/*")
    (hf_run,) = (out / "hf").glob("*/*")
    return openai_run, hf_run


@pytest.mark.slow
def test_openai_run_succeeds_and_records_the_endpoint(openai_and_hf_runs, server_url, tiny_llama):
    run_dir, _ = openai_and_hf_runs
    manifest, scores = load_run(run_dir)
    engine = manifest["engine"]
    assert engine["backend"] == "openai" and engine["base_url"] == server_url
    assert engine["model"] == SERVED and engine["tokenizer"] == str(tiny_llama)
    assert manifest["model"]["source"] == "endpoint"
    assert server_url in manifest["model"]["fingerprint"]
    assert [(r["benchmark"], r["n"]) for r in scores["scores"]] == [("mmlu@base", 3),
                                                                    ("gsm8k@base", 3)]


@pytest.mark.slow
def test_openai_run_matches_the_hf_run_on_the_same_weights(openai_and_hf_runs):
    openai_run, hf_run = openai_and_hf_runs
    api = read_jsonl(openai_run / "items" / "mmlu@base.jsonl")
    hf = read_jsonl(hf_run / "items" / "mmlu@base.jsonl")
    assert [i["item_id"] for i in api] == [i["item_id"] for i in hf] and len(api) == 3
    for a, h in zip(api, hf, strict=True):
        assert (a["prompt"] == h["prompt"] and a["output"] == h["output"]
                and a["score"] == h["score"])
        assert a["loglikelihoods"] == pytest.approx(h["loglikelihoods"], abs=1e-4)
    api = read_jsonl(openai_run / "items" / "gsm8k@base.jsonl")
    hf = read_jsonl(hf_run / "items" / "gsm8k@base.jsonl")
    assert [(i["item_id"], i["output"]) for i in api] == [(i["item_id"], i["output"]) for i in hf]
    assert all(i["output"] for i in api)  # non-empty generations, so the equality says something


# ------------------------------------------------------------------ failing endpoints
@pytest.mark.parametrize("models_ok,message", [
    (False, "GET /models answered HTTP 500"),  # caught before any request is built
    (True, "completions answered HTTP 500"),  # caught after lm-eval's retries
])
def test_failing_endpoint_is_one_line_exit_2_and_no_run_folder(models_ok, message, tiny_llama,
                                                                offline_mirror, tmp_path, capsys):
    app = FailingApp(500, models_ok=models_ok, name=SERVED)
    out = tmp_path / "results"
    with CompletionsServer(app) as server:
        code = main(["run", "--model", SERVED, "--backend", "openai", "--base-url", server.base_url,
                     "--tokenizer", str(tiny_llama), "--data-dir", str(offline_mirror),
                     "--benchmarks", "gsm8k", "--limit", "3", "--output-dir", str(out),
                     "--no-cache"])
    assert code == 2
    # lm-eval's unfinished progress bar may precede it on the terminal line, so search, not split
    errors = re.findall(r"kanana-eval: [^\r\n]*", capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith("kanana-eval: error:") and message in errors[0]
    assert not out.exists() or not any(out.rglob("*"))
    # bounded: /models before data loading and again when the engine is built, then at most
    # 3 attempts for each of the 3 generation requests
    assert 1 <= app.requests <= 2 + 3 * 3
