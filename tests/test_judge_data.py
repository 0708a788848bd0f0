"""MT-Bench / KoMT-Bench data: the offline mirror, and the pinned downloads through a real local
HTTP server on 127.0.0.1 (never the internet). Files served are copies of the offline sources
(PyPI package, ../shared/data) made in tmp_path."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kanana_eval.core.errors import ConfigError, DataUnavailableError
from kanana_eval.core.hashing import file_sha256
from kanana_eval.data import judge_bench as judge_data
from kanana_eval.data.judge_bench import (
    FASTCHAT_RAW_ENV,
    KOMT_PINS,
    KOMT_RAW_ENV,
    MT_BENCH_PINS,
    load_judge_bench,
)
from kanana_eval.data.judge_sources import FASTCHAT_COMMIT, KOMT_COMMIT
from kanana_eval.data.judge_sources import MT_BENCH_SOURCES as SOURCES
from kanana_eval.data.judge_sources import mt_bench_file as source_file

CATEGORIES = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
              "humanities"]
SINGLE = ["single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"]
PACKAGE_FILES = {  # role -> the package's copy of FastChat's file
    "questions": "mt_bench_questions",
    "judge_prompts": "mt_bench_judge_prompts",
    "references": "mt_bench_references",
}
KOMT_SHARED = {  # role -> file in ../shared/data/komt_bench
    "judge_prompts": "judge_prompts_ko.jsonl",
    "references": "reference_answer_ko/gpt-4.jsonl",
}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A private download cache; no proxy between us and 127.0.0.1; no real raw root reachable."""
    monkeypatch.setenv("KANANA_EVAL_CACHE", str(tmp_path / "cache"))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    closed = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv(FASTCHAT_RAW_ENV, closed)
    monkeypatch.setenv(KOMT_RAW_ENV, closed)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A folder served over HTTP on 127.0.0.1, and the paths the server was asked for."""

    root: Path
    url: str
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def put(self, relpath: str, source: Path | bytes) -> Path:
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            shutil.copyfile(source, target)
        return target

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "served"
    root.mkdir()
    state = Served(root=root, url="")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            state.requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    state.server = server
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.stop()


def serve_fastchat(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's three files at FastChat's raw paths: <commit>/fastchat/llm_judge/data/..."""
    for role, key in PACKAGE_FILES.items():
        served.put(f"{FASTCHAT_COMMIT}/{MT_BENCH_PINS[role].path}", source_file(key))
    monkeypatch.setenv(FASTCHAT_RAW_ENV, served.url)


# ----------------------------------------------------------------------------------- mirror


def test_mt_bench_loads_from_the_mirror_as_fastchat_reads_it(offline_mirror: Path) -> None:
    data = load_judge_bench("mt_bench", offline_mirror)
    assert data.name == "mt_bench"
    assert data.questions == jsonl(source_file("mt_bench_questions"))  # records as in the file
    assert [q["question_id"] for q in data.questions] == list(range(81, 161))
    assert [q["category"] for q in data.questions] == [c for c in CATEGORIES for _ in range(10)]
    assert all(len(q["turns"]) == 2 for q in data.questions)
    for name in SINGLE:
        assert data.judge_prompts[name]["output_format"] == "[[rating]]"
        assert data.judge_prompts[name]["type"] == "single"
    assert "{ref_answer_1}" in data.judge_prompts["single-math-v1"]["prompt_template"]
    assert sorted(data.references) == list(range(101, 131))  # reasoning, math, coding
    assert data.references[111]["choices"][0]["turns"][0].startswith("To find the area")
    assert data.source["kind"] == "mirror" and data.source["commit"] == FASTCHAT_COMMIT
    assert data.source["mirror_record"]["revision"] == FASTCHAT_COMMIT
    files = data.source["files"]
    assert {role: files[role]["sha256"] for role in PACKAGE_FILES} == {
        role: SOURCES[key].sha256 for role, key in PACKAGE_FILES.items()
    }
    assert all(files[role]["pinned"] for role in PACKAGE_FILES)
    assert data.fingerprint.startswith("sha256:") and len(data.fingerprint) == 71


def test_komt_bench_loads_from_the_mirror_as_the_repository_files(
    offline_mirror: Path, shared_data_dir: Path
) -> None:
    data = load_judge_bench("komt_bench", offline_mirror)
    # questions come through the hub-layout folder, yet equal the repository's question file
    assert data.questions == jsonl(shared_data_dir / "komt_bench/question_ko.jsonl")
    assert [q["question_id"] for q in data.questions] == list(range(81, 161))
    assert sum("reference" in q for q in data.questions) == 39
    single = data.judge_prompts["single-v1"]
    assert single["output_format"] == "[[rating]]" and "점수: [[5]]" in single["prompt_template"]
    assert sorted(data.references) == list(range(81, 171))  # 161-170 have no question
    assert data.source["kind"] == "mirror" and data.source["commit"] == KOMT_COMMIT
    assert data.source["files"]["judge_prompts"]["sha256"] == KOMT_PINS["judge_prompts"].sha256
    assert data.source["files"]["questions"]["dataset_id"] == "LGAI-EXAONE/KoMT-Bench"


def test_a_mirror_file_other_than_the_pinned_one_loads_and_names_no_commit(
    offline_mirror: Path, tmp_path: Path
) -> None:
    shutil.copytree(offline_mirror / "lm-sys", tmp_path / "m/lm-sys")
    prompts = tmp_path / "m/lm-sys/FastChat" / MT_BENCH_PINS["judge_prompts"].path
    text = prompts.read_text(encoding="utf-8")
    prompts.write_text(text.replace("Avoid any position biases", "Avoid any positional biases"),
                       encoding="utf-8")
    data = load_judge_bench("mt_bench", tmp_path / "m")
    assert data.source["commit"] is None
    assert data.source["files"]["judge_prompts"]["pinned"] is False
    assert data.source["files"]["questions"]["pinned"] is True
    assert data.fingerprint != load_judge_bench("mt_bench", offline_mirror).fingerprint


# ----------------------------------------------------------------------------------- downloads


def test_mt_bench_download_is_verified_cached_and_reused_without_http(
    served: Served, monkeypatch: pytest.MonkeyPatch, offline_mirror: Path
) -> None:
    serve_fastchat(served, monkeypatch)
    data = load_judge_bench("mt_bench", None)
    assert sorted(served.requests) == sorted(
        f"/{FASTCHAT_COMMIT}/{pin.path}" for pin in MT_BENCH_PINS.values()
    )
    assert data.source["kind"] == "download" and data.source["commit"] == FASTCHAT_COMMIT
    assert data.source["files"]["references"]["url"] == (
        f"{served.url}/{FASTCHAT_COMMIT}/fastchat/llm_judge/data/mt_bench/reference_answer/"
        "gpt-4.jsonl"
    )
    for pin in MT_BENCH_PINS.values():
        assert file_sha256(pin.cache_path) == pin.sha256
        assert str(pin.cache_path).startswith(str(Path(judge_data.cache_dir(), "judge_data")))
    # same bytes, same fingerprint, whichever way they came
    assert data.fingerprint == load_judge_bench("mt_bench", offline_mirror).fingerprint
    served.stop()  # the second load must not need the server at all
    again = load_judge_bench("mt_bench", None)
    assert again.questions == data.questions and again.fingerprint == data.fingerprint
    assert len(served.requests) == 3


def test_download_with_other_bytes_is_refused_and_leaves_nothing_cached(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_fastchat(served, monkeypatch)
    pin = MT_BENCH_PINS["judge_prompts"]
    original = source_file("mt_bench_judge_prompts").read_bytes()
    served.put(f"{FASTCHAT_COMMIT}/{pin.path}", original.replace(b"position biases",
                                                                   b"positional biases"))
    with pytest.raises(DataUnavailableError) as caught:
        load_judge_bench("mt_bench", None)
    message = str(caught.value)
    assert "\n" not in message and "not the pinned fd283293406d" in message
    assert "nothing was cached" in message and f"lm-sys/FastChat@{FASTCHAT_COMMIT[:12]}" in message
    assert not pin.cache_path.exists()
    assert list(pin.cache_path.parent.glob(".download-*")) == []


def test_a_cached_file_that_changed_is_downloaded_again(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_fastchat(served, monkeypatch)
    load_judge_bench("mt_bench", None)
    pin = MT_BENCH_PINS["references"]
    pin.cache_path.write_text("{}\n", encoding="utf-8")
    data = load_judge_bench("mt_bench", None)
    assert served.requests[3:] == [f"/{FASTCHAT_COMMIT}/{pin.path}"]
    assert file_sha256(pin.cache_path) == pin.sha256 and len(data.references) == 30


def test_unreachable_download_names_data_dir_and_build_mirror() -> None:
    with pytest.raises(DataUnavailableError) as caught:  # the raw root is a closed local port
        load_judge_bench("mt_bench", None)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot download http://127.0.0.1:")
    assert "--data-dir" in message and "kanana-eval data build-mirror" in message
    assert not (judge_data.cache_dir() / "judge_data" / "lm-sys").exists()


def test_komt_bench_download_reads_the_hub_rows_and_the_pinned_repository_files(
    served: Served, monkeypatch: pytest.MonkeyPatch, offline_mirror: Path, shared_data_dir: Path
) -> None:
    # the mirror's hub-layout folder stands in for the hub: same load_dataset call, same rows
    monkeypatch.setattr(judge_data, "KOMT_HUB_ID", str(offline_mirror / "LGAI-EXAONE/KoMT-Bench"))
    for role, name in KOMT_SHARED.items():
        served.put(f"{KOMT_COMMIT}/{KOMT_PINS[role].path}", shared_data_dir / "komt_bench" / name)
    monkeypatch.setenv(KOMT_RAW_ENV, served.url)
    data = load_judge_bench("komt_bench", None)
    assert sorted(served.requests) == sorted(f"/{KOMT_COMMIT}/{p.path}" for p in KOMT_PINS.values())
    assert data.source["kind"] == "hub+download" and data.source["commit"] == KOMT_COMMIT
    assert data.source["files"]["questions"]["hub"]["num_rows"] == 80
    assert data.fingerprint == load_judge_bench("komt_bench", offline_mirror).fingerprint


def test_komt_bench_without_the_hub_is_one_line_naming_the_mirror(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # HF_DATASETS_OFFLINE=1 (conftest); an id no cache can hold keeps this independent of ~/.cache
    monkeypatch.setattr(judge_data, "KOMT_HUB_ID", "kanana-eval-tests/not-on-the-hub")
    with pytest.raises(DataUnavailableError) as caught:
        load_judge_bench("komt_bench", None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot load kanana-eval-tests/not-on-the-hub")
    assert "--data-dir" in message and "kanana-eval data build-mirror" in message


# ----------------------------------------------------------------------------------- errors


def test_missing_mirror_data_names_build_mirror(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match=r"no MT-Bench questions file .*`kanana-eval "
                                                    r"data build-mirror .*`"):
        load_judge_bench("mt_bench", tmp_path)
    with pytest.raises(DataUnavailableError, match=r"no LGAI-EXAONE/KoMT-Bench folder: .*"
                                                    r"build-mirror.* KANANA_SHARED_DATA"):
        load_judge_bench("komt_bench", tmp_path)


def test_unknown_benchmark_is_a_config_error(offline_mirror: Path) -> None:
    with pytest.raises(ConfigError, match="unknown judged benchmark 'vicuna_bench'"):
        load_judge_bench("vicuna_bench", offline_mirror)


def _broken_line(lines: list[str], number: int, change: Any) -> list[str]:
    record = json.loads(lines[number - 1])
    change(record)
    return [*lines[: number - 1], json.dumps(record), *lines[number:]]


def _drop(name: str) -> Any:
    return lambda lines: [line for line in lines if f'"name": "{name}"' not in line]


# (file role, how to break its lines, expected message after `path:` or `path:line:`)
BROKEN = {
    "not_json": ("questions", lambda lines: [*lines[:4], "{not json", *lines[5:]],
                 ":5: not valid JSON"),
    "one_turn": ("questions",
                 lambda lines: _broken_line(lines, 3, lambda r: r.update(turns=r["turns"][:1])),
                 ":3: turns is not a list of two non-empty strings"),
    "category": ("questions",
                 lambda lines: _broken_line(lines, 1, lambda r: r.update(category="roleplay")),
                 ": category writing has 9 questions, expected 10"),
    "missing_question": ("questions", lambda lines: lines[:-1],
                         ": 79 questions, expected the 80 with question_id 81-160"),
    "missing_prompt": ("judge_prompts", _drop("single-math-v1-multi-turn"),
                       ": judge prompt single-math-v1-multi-turn is missing"),
    "output_format": ("judge_prompts",
                      lambda lines: _broken_line(lines, 5,
                                                 lambda r: r.update(output_format="[[A]]")),
                      ":5: single-v1 is not a single-answer prompt with output format [[rating]]"),
    "template_field": ("judge_prompts",
                       lambda lines: _broken_line(lines, 6, lambda r: r.update(
                           prompt_template=r["prompt_template"].replace("{ref_answer_1}", ""))),
                       ":6: single-math-v1 template lacks {ref_answer_1}"),
    "missing_reference": ("references",
                          lambda lines: [ln for ln in lines if '"question_id": 111,' not in ln],
                          ": no two-turn reference answer for math question 111"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_mirror_file_is_one_line_naming_the_file(
    case: str, offline_mirror: Path, tmp_path: Path
) -> None:
    role, breaker, expected = BROKEN[case]
    shutil.copytree(offline_mirror / "lm-sys", tmp_path / "lm-sys")
    path = tmp_path / "lm-sys/FastChat" / MT_BENCH_PINS[role].path
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(breaker(lines)) + "\n", encoding="utf-8")
    with pytest.raises(DataUnavailableError) as caught:
        load_judge_bench("mt_bench", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{expected}"), message
