"""The runner's own configuration sections, documented once next to their defaults.

Trainer arguments are *not* described here: ``stage.trainer`` passes straight to TRL's config class for
the stage and is validated by introspecting that class (see :mod:`zephyr_recipes.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


def _f(default: Any, help: str, **kw):  # noqa: A002 - mirrors dataclasses' own vocabulary
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class RecipeInfo:
    description: str = _f("", "One line saying what the recipe does; shown by `zephyr-recipes list`.")
    paper: Optional[str] = _f(None, "Where the recipe's hyperparameters come from, if anywhere.")


@dataclass
class RunConfig:
    name: Optional[str] = _f(None, "Run name; defaults to the recipe's name with '/' replaced by '-'.")
    output_dir: Optional[str] = _f(None, "Run folder; defaults to runs/<run.name> under the current directory.")
    seed: int = _f(42, "Seed for data shuffling, initialisation of new weights and the trainer.")
    overwrite: bool = _f(False, "Replace a finished run folder. Without it a finished run is never touched.")
    resume: bool = _f(True, "Continue an unfinished run from its last checkpoint when the config matches.")


@dataclass
class ModelConfig:
    name_or_path: str = _f("???", "Hub id, local folder (start it with ./ or /), or builtin://tiny-mistral.")
    revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) of the weights and tokenizer.")
    tokenizer_name_or_path: Optional[str] = _f(None, "Tokenizer source when it differs from the model's.")
    chat_template: Optional[str] = _f(
        "zephyr", "A shipped template name (zephyr), a path to a .jinja file, or null to keep the tokenizer's own.")
    dtype: str = _f("auto", "Weights dtype: auto, bfloat16, float16 or float32. auto: fp32 weights with bf16/fp16 autocast on one "
        "process or DDP; 16-bit weights under ZeRO/FSDP (they keep fp32 masters) and for a frozen LoRA base.")
    trust_remote_code: bool = _f(False, "Allow model code from the hub. Off unless you trust the repository.")


@dataclass
class DatasetConfig:
    path: Optional[str] = _f(
        None, "Hub id, local file or folder (json, jsonl, parquet, csv, save_to_disk), or builtin://... "
              "Required unless dataset.mixture lists the sources.")
    name: Optional[str] = _f(None, "Hub dataset configuration name, if the dataset has several.")
    revision: Optional[str] = _f(None, "Hub revision of the dataset.")
    train_split: str = _f("train", "Split to train on.")
    test_split: Optional[str] = _f(None, "Split to evaluate on, or null for none.")
    columns: dict = _f({}, "Map from the stage's column names (messages, or prompt + completion; prompt, chosen, "
                           "rejected; for format ultrafeedback prompt and completions) to this dataset's.")
    format: str = _f(
        "auto", "How rows are read: chat (messages, ChatML or ShareGPT from/value), preference (prompt/chosen/"
                "rejected, text or conversations), ultrafeedback (raw openbmb/UltraFeedback, binarized), or auto.")
    roles: dict = _f({}, "Rename roles before the checks, e.g. {human: user, gpt: assistant} (ShareGPT's names "
                         "human and gpt are renamed by default).")
    binarize: dict = _f(
        {}, "Options for format ultrafeedback: rejected (random | lowest), score (mean of the aspect ratings | "
            "overall = overall_score), ties (drop | keep), seed (null = run.seed).")
    mixture: list = _f(
        [], "Sources to mix, each {path, split, weight, test_split, name, revision, columns, format, roles}; "
            "missing keys come from this section. weight below 1 subsamples, above 1 repeats (seeded).")
    test_fraction: Optional[float] = _f(
        None, "Carve this seeded fraction of each source's training rows out as the evaluation set "
              "(instead of test_split); the two never overlap.")
    strict: bool = _f(False, "Fail on the first bad row instead of dropping bad rows and counting them per reason.")
    cache: bool = _f(True, "Keep the prepared rows under $ZEPHYR_RECIPES_HOME/data, keyed by the data, the options, "
                           "the tokenizer and its chat template; a second run loads them at once.")
    decontaminate: list = _f(
        [], "Evaluation prompt files (MT-Bench question.jsonl, AlpacaEval json); training rows sharing an n-gram "
            "of words with one of their prompts are dropped and reported.")
    decontaminate_ngram: int = _f(13, "Length in words of the n-grams that decontamination matches.")
    max_train_samples: Optional[int] = _f(None, "Use at most this many training rows (seeded shuffle, not the first N).")
    max_test_samples: Optional[int] = _f(None, "Use at most this many evaluation rows.")
    max_prompt_tokens: Optional[int] = _f(
        None, "Drop preference rows whose prompt is longer than this many tokens (TRL's old max_prompt_length).")


@dataclass
class StageConfig:
    name: Literal["sft", "dpo"] = _f("sft", "Which step of the method: sft or dpo.")
    trainer: dict = _f({}, "Arguments for TRL's config class of the stage (SFTConfig, DPOConfig), passed as is.")
    ref_model: Optional[str] = _f(
        None, "DPO only: reference model. null means the policy's starting weights (model.name_or_path); with "
        "hardware.lora the reference is the base with adapters disabled and no copy is kept.")
    global_batch_size: Optional[int] = _f(
        None, "Sequences per optimizer step over all processes. When set, gradient accumulation is derived: "
        "global / (per-device batch x world size), so the recipe's batch holds on any number of GPUs.")


@dataclass
class HardwareConfig:
    """Where a recipe runs. The one place that knows about devices, processes, sharding and memory."""

    name: str = _f("cpu", "Profile name.")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "Where to train: cuda, cpu, or auto (cuda when present).")
    launcher: Literal["inprocess", "accelerate", "slurm"] = _f(
        "inprocess", "How processes start. inprocess: one process, the front end trains itself. accelerate: "
        "`accelerate launch` with the generated config (several processes on this machine). slurm: a generated "
        "sbatch script that runs one `accelerate launch` per node.")
    num_nodes: int = _f(1, "Machines. More than one needs launcher=slurm.")
    num_processes: int = _f(1, "Processes per node (one per GPU). World size = num_nodes x num_processes.")
    strategy: Literal["none", "ddp", "zero2", "zero3", "fsdp2"] = _f(
        "none", "How several processes share the work. none: one process. ddp: data parallel, full copies. "
        "zero2 / zero3: DeepSpeed ZeRO stage 2 (optimizer and gradients sharded) or 3 (weights too). "
        "fsdp2: PyTorch FSDP2 (weights, gradients and optimizer sharded).")
    offload: bool = _f(False, "zero3 / fsdp2 only: keep optimizer states (and weights) in CPU RAM between uses.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f(
        "auto", "Training precision. auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU.")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = _f(
        "auto", "Attention kernel. auto: flash_attention_2 when flash-attn and a CUDA device are present, else sdpa.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass to save memory.")
    per_device_batch_size: Optional[int] = _f(
        None, "When set, replaces stage.trainer.per_device_train_batch_size (and the eval one): what fits this "
        "profile's memory. With stage.global_batch_size the global batch stays the recipe's.")
    gpu_memory_gb: Optional[float] = _f(
        None, "Memory of one device in GB, for the memory plan. null: no plan check (the CPU).")
    load_in_4bit: bool = _f(False, "QLoRA: load the frozen base in 4-bit NF4 through bitsandbytes (needs lora).")
    lora: Optional[dict] = _f(
        None, "Train LoRA adapters instead of all weights: arguments for peft.LoraConfig (r, lora_alpha, "
        "lora_dropout, target_modules ...), passed as is. null: full fine-tuning.")
    main_process_port: int = _f(29500, "Rendezvous port of rank 0 for several processes.")
    slurm: dict = _f({}, "launcher=slurm only: #SBATCH options (partition, time, account, qos, cpus_per_task, "
                         "mem ...) written into the generated script, and `setup` (shell lines run first on each node).")
    ignore_memory_plan: bool = _f(
        False, "Launch even when `zephyr-recipes plan` estimates that the run does not fit the devices.")


SECTIONS: dict[str, type] = {
    "recipe": RecipeInfo,
    "run": RunConfig,
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "stage": StageConfig,
    "hardware": HardwareConfig,
}


@dataclass
class AIFStageConfig:
    """The AI feedback stage: generators answer the dataset's prompts, a judge rates, pairs are binarized."""

    name: Literal["aif"] = _f("aif", "The AI feedback step.")
    generators: list = _f([], "Models that answer: each {name, type: transformers|openai|function, model | "
                              "function | base_url, num_completions?, sampling?}. type openai may name "
                              "serve: \"<server command --port N>\" instead of base_url (started and stopped by "
                              "the runner; serve_timeout).")
    num_completions: int = _f(1, "Completions per prompt from each generator, unless the generator says otherwise.")
    sampling: dict = _f({"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256},
                        "Default sampling settings of every generator (temperature, top_p, max_new_tokens).")
    judge: dict = _f({}, "The judge: {type: function, module} | {type: transformers, model} | "
                         "{type: openai, base_url | serve, model, api_key_env}; optional prompt, aspects, scale, "
                         "max_retries.")
    self_agreement: float = _f(0.0, "Share of completions the judge rates a second time to measure its consistency.")
    binarize: dict = _f({"rejected": "random", "score": "mean", "ties": "drop"},
                        "Pair rule: rejected random|lowest, score mean|overall, ties drop|keep.")
    test_fraction: float = _f(0.1, "Share of prompts written to test_prefs instead of train_prefs (by prompt id).")
    prompt_offset: Optional[int] = _f(
        None, "Take dataset.max_train_samples distinct prompts starting at this position of the seeded shuffle, "
              "so the rounds of an iterative pipeline answer disjoint slices (null: the usual seeded sample).")


@dataclass
class EvalStageConfig:
    """Evaluation of model.name_or_path: MT-Bench, AlpacaEval (1, and 2.0 with the length-controlled win rate),
    Arena-Hard-Auto, Open LLM Leaderboard tasks (lm-evaluation-harness).

    Each benchmark's section is completed with the defaults of zephyr_recipes.stages.eval.DEFAULTS; its sets are
    named by a local path, a URL, hf://datasets/<owner>/<name>/<file> or a hub dataset id."""

    name: Literal["eval"] = _f("eval", "The evaluation step.")
    benchmarks: list = _f(["mt_bench", "alpaca_eval", "lm_eval"],
                          "Which to run: mt_bench, alpaca_eval, alpaca_eval_2, arena_hard, lm_eval.")
    model_id: Optional[str] = _f(None, "Name of the model in answer files and reports; defaults to run.name.")
    batch_size: Any = _f("auto", "Generation batch size of the model under test (auto: 64 on a GPU, 32 on the CPU).")
    judge: dict = _f({}, "The judge: {type: function, module} | {type: transformers, model} | "
                         "{type: openai, base_url, model, api_key_env}; optional max_retries, sampling, concurrency. "
                         "A benchmark's own `judge` key replaces it for that benchmark.")
    mt_bench: dict = _f({}, "questions, judge_prompts, reference_answers (path, URL or hub id), max_questions, "
                            "max_new_tokens, temperatures (per category; the rest 0.0), judge_max_new_tokens, "
                            "answers (FastChat model_answer jsonl to score instead of generating).")
    alpaca_eval: dict = _f({}, "instructions (with the baseline's outputs), prompt (the judge's ranking prompt), "
                               "max_samples (seeded sample; null for all), seed, both_orders, sampling, answers "
                               "(alpaca_eval model_outputs.json to score instead of generating).")
    alpaca_eval_2: dict = _f({}, "AlpacaEval 2.0: instructions (with the gpt4_turbo baseline's outputs), prompt "
                                 "(alpaca_eval_clf.txt; alpaca_eval:<path> reads the installed package's copy), "
                                 "df_gamed (alpaca_eval's df_gamed.csv), glm (length_controlled_v1 | "
                                 "length_controlled_minimal ...), logprobs, max_samples, seed, both_orders, sampling, "
                                 "judge_max_new_tokens, answers.")
    arena_hard: dict = _f({}, "Arena-Hard-Auto: version (v0.1 | v2.0; fills the null keys with that version's public "
                              "files), questions, baselines ({category: answer file}), system_prompts ({category: "
                              "text, file or file.py#NAME}), judge_settings (config/arena-hard-v*.yaml), "
                              "max_questions, seed, sampling, judge_max_new_tokens, strong_weight, bootstrap_rounds, "
                              "answers (Arena-Hard model_answer jsonl).")
    lm_eval: dict = _f({}, "tasks ([{name, num_fewshot, metric?, data_files? | yaml?}]), batch_size, limit, seed.")


STAGE_SECTIONS: dict[str, type] = {"sft": StageConfig, "dpo": StageConfig, "aif": AIFStageConfig,
                                   "eval": EvalStageConfig}
