"""Shared fixtures: offline mode for every test, and the shared data folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from model_threads import one_thread
from openai_judge_server import JudgeServer
from tiny_llama import build_tiny_llama
from varied_llama import build_varied_llama

from kanana_eval.data.mirror.build import build_mirror
from kanana_eval.tasks.catalog import data_plans, fixtures

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data via KANANA_SHARED_DATA: skipped when unset locally, a failure under CI."""
    value = os.environ.get("KANANA_SHARED_DATA")
    if not value or not Path(value).is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("KANANA_SHARED_DATA must point at ../shared/data under CI")
        pytest.skip("KANANA_SHARED_DATA is not set")
    return Path(value).resolve()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama folder, built once per test session."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def build_offline_mirror(out: Path) -> Path:
    """The offline data as a hub-layout mirror, plus the schema-exact fixtures of what is missing.

    Every benchmark folder's data plan is built (`data build-mirror`), then every fixture a
    benchmark folder declares is copied from tests/fixtures to its place in the mirror (KMMLU,
    HAE-RAE, MBPP and MATH-500 in hub layout, MBPP+ as evalplus' release file).
    """
    build_mirror(out, data_plans())
    for fixture in fixtures():
        committed, target = FIXTURES / fixture.committed, out / fixture.mirror_relpath
        if committed.is_dir():
            shutil.copytree(committed, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(committed, target)
    return out


@pytest.fixture(scope="session")
def offline_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline data as a hub-layout mirror, plus schema-exact fixtures of what is missing."""
    return build_offline_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture
def judge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dummy OpenAI key; the default base URL points at a closed local port; no proxies.

    So a judge test can only ever reach the local server it starts, never the real API.
    """
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def judge_server(judge_env: None):  # noqa: ANN201 - yields the test server object
    """A real OpenAI-compatible judge server on 127.0.0.1 (tests/openai_judge_server.py)."""
    with JudgeServer() as server:
        yield server


@pytest.fixture
def single_thread():  # noqa: ANN201 - yields nothing; one torch thread for the test
    with one_thread():
        yield


@pytest.fixture(scope="session")
def varied_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_llama with untied, wide random weights: output that depends on the context."""
    return build_varied_llama(tiny_llama, tmp_path_factory.mktemp("varied-llama"))
