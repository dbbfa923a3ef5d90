# zephyr-recipes: `make sft`, `make dpo`, `make test`. The first target you run sets up .venv by itself.
#   make zephyr                               the whole method on the embedded default: dSFT -> AIF -> dDPO,
#                                             the paper's ablation (Table 3) and the report (CPU, ~2 minutes)
#   make zephyr-ablation                      the same over three seeds (SEEDS), mean and spread
#   make sft                                  dSFT of the embedded tiny model (CPU, under a minute)
#   make aif                                  AI feedback with that SFT run among the generators
#   make dpo                                  dDPO of that SFT run
#   make eval                                 MT-Bench, AlpacaEval, lm-eval of that DPO run, then the report
#                                             (EVAL_DATA=<folder> names local copies of the benchmark files)
#   make sft RECIPE=zephyr-7b-beta ARGS="hardware=1gpu stage.trainer.learning_rate=1e-5"
#   make show RECIPE=zephyr-7b-beta STAGE=dpo print the resolved config, run nothing
#   make list                                 shipped recipes and config options
#   make test                                 the test suite (offline, CPU)
#   make bench                                speed against plain TRL on this machine (bench-results/, ~15 min)
#   make gpu-check                            acceptance run on one CUDA GPU (gpu-check/results.*, <= 8 min)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RECIPE ?= tiny
STAGE  ?= sft
ARGS   ?=
TORCH  ?= torch==2.13.0

.PHONY: setup sft dpo aif eval report zephyr zephyr-ablation run show validate list test bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

sft: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/sft $(ARGS)

dpo: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/dpo $(ARGS)

aif: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/aif $(ARGS)

# Local copies of the MT-Bench and AlpacaEval files (FastChat's and alpaca_eval's layouts) replace the hub ids
# and URLs of the eval recipes when EVAL_DATA names a folder; by default ../shared/data when it exists.
EVAL_DATA ?= $(wildcard ../shared/data)
EVAL_DIR   = $(abspath $(EVAL_DATA))
EVAL_ARGS  = $(if $(EVAL_DATA),stage.mt_bench.questions=$(EVAL_DIR)/mt_bench/question.jsonl \
	stage.mt_bench.judge_prompts=$(EVAL_DIR)/mt_bench/judge_prompts.jsonl \
	stage.mt_bench.reference_answers=$(EVAL_DIR)/mt_bench/reference_answer_gpt-4.jsonl \
	stage.alpaca_eval.instructions=$(EVAL_DIR)/alpaca_eval/text_davinci_003_outputs.json \
	stage.alpaca_eval.prompt=$(EVAL_DIR)/alpaca_eval/alpaca_eval_gpt4_judge_prompt.txt)
REPORT_RUNS ?= runs/$(RECIPE)-eval

eval: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/eval $(EVAL_ARGS) $(ARGS)
	$(PY) -m zephyr_recipes report $(REPORT_RUNS) --out runs/report

report: setup
	$(PY) -m zephyr_recipes report $(REPORT_RUNS) --out runs/report

zephyr: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/zephyr $(ARGS)

# One pipeline per seed (the first is `make zephyr`'s own, so a finished one is reused), then Table 3 over them.
SEEDS ?= 42 43 44
zephyr-ablation: setup
	for s in $(SEEDS); do \
	  $(PY) -m zephyr_recipes run $(RECIPE)/zephyr pipeline.seed=$$s \
	    pipeline.output_dir=runs/$(RECIPE)-zephyr$$(test $$s = 42 || echo -seed$$s) $(ARGS) || exit 1; \
	done
	$(PY) -m zephyr_recipes report $(foreach s,$(SEEDS),runs/$(RECIPE)-zephyr$(if $(filter 42,$(s)),,-seed$(s))) \
	  --out runs/$(RECIPE)-zephyr-ablation

run: setup
	$(PY) -m zephyr_recipes run $(RECIPE)/$(STAGE) $(ARGS)

show: setup
	$(PY) -m zephyr_recipes show $(RECIPE)/$(STAGE) $(ARGS)

validate: setup
	$(PY) -m zephyr_recipes validate $(RECIPE)/$(STAGE) $(ARGS)

list: setup
	$(PY) -m zephyr_recipes list

test: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m bench.run $(BENCH_ARGS)

# Exit code 2 and nothing written on a machine without a CUDA GPU.
gpu-check: setup
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf runs
