"""The runner's own configuration sections, documented once next to their defaults.

Trainer arguments are *not* described here: ``stage.trainer`` passes straight to TRL's config class for
the stage and is validated by introspecting that class (see :mod:`zephyr_recipes.runtime.validate`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar

from .errors import ZephyrError, unknown_key

T = TypeVar("T")


def option(default: Any, help: str, merge: bool = False, **kw):  # noqa: A002 - mirrors dataclasses' own vocabulary
    """A schema field: its default (a nested schema's class for a nested section) and its help text.

    ``merge``: a mapping the recipe gives is laid over the default key by key instead of replacing it."""
    meta = {"help": help, "merge": merge}
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return field(default_factory=default, metadata=meta, **kw)
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


# ------------------------------------------------------------------------------- value kinds
def kinds(annotation: Any) -> list:
    """A JSON-able description of what an annotation accepts: kinds, literal values, or 'any'."""
    if annotation is Any or isinstance(annotation, str) or annotation is None:
        return ["any"]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: list = []
        for member in typing.get_args(annotation):
            out += [k for k in kinds(member) if k not in out]
        return out
    if origin is typing.Literal:
        return [{"literal": list(typing.get_args(annotation))}]
    if annotation is type(None):
        return ["none"]
    if origin in (list, tuple, typing.List, typing.Tuple) or annotation in (list, tuple):
        return ["list"]
    if origin in (dict, typing.Dict) or annotation is dict:
        return ["dict"]
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if annotation is t:
            return [name]
    if isinstance(annotation, type) and issubclass(annotation, str):  # str-valued enums (IntervalStrategy ...)
        return ["str"]
    return ["any"]


def accepts(value: Any, allowed: list) -> bool:
    """True when value plausibly fits a description made by :func:`kinds`."""
    for k in allowed:
        if k == "any" or isinstance(k, dict) and value in k["literal"]:
            return True
        if isinstance(value, bool):
            if k == "bool":
                return True
        elif k == "none" and value is None or k == "str" and isinstance(value, str) \
                or k == "list" and isinstance(value, (list, tuple)) or k == "dict" and isinstance(value, dict) \
                or k == "int" and isinstance(value, int) or k == "float" and isinstance(value, (int, float)):
            return True
    return False


def describe_kinds(allowed: list) -> str:
    """'int or None', "one of 'a', 'b'" ..."""
    return " or ".join("one of " + ", ".join(map(repr, k["literal"])) if isinstance(k, dict) else
                       {"none": "None"}.get(k, k) for k in allowed)


def kinds_of(cls: type) -> dict[str, Any]:
    """For each field of a schema: the kinds of values it accepts, or the schema of a nested section."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # forward references to optional packages
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        members = [a for a in typing.get_args(hint) if a is not type(None)] \
            if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
        nested = [m for m in members if dataclasses.is_dataclass(m)]
        listed = [a for m in members if typing.get_origin(m) is list for a in typing.get_args(m)
                  if dataclasses.is_dataclass(a)]
        out[f.name] = nested[0] if nested else (listed[0],) if listed else kinds(hint)
    return out


def check_section(where: str, values: Any, cls: type) -> dict:
    """``values`` completed with ``cls``'s defaults; unknown keys, unset ``???`` values and wrong types refused.

    A field whose type is itself a schema (or a list of schemas) is checked the same way, one level down
    (``stage.mt_bench``, ``stage.generators[0]``). A schema with a ``variant(where, values)`` classmethod picks
    the subclass that checks the values (judges and generators by their ``type``); one with ``after_check(where,
    values)`` checks the completed values together.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ZephyrError(f"`{where}` must be a mapping of keys to values, got {type(values).__name__}",
                          f"write it as `{where}:` followed by indented `key: value` lines")
    if hasattr(cls, "variant"):
        cls = cls.variant(where, values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = kinds_of(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            if hasattr(cls, "unknown_key"):
                cls.unknown_key(where, key)
            raise unknown_key(where, key, fields)
        if value == "???":
            raise ZephyrError(f"`{where}.{key}` must be set", f"add `{where}.{key}=...` or pick a {where} option")
        if fields[key].metadata.get("merge") and isinstance(value, dict):
            value = {**fields[key].default_factory(), **value}  # type: ignore[operator]  # merge fields have one
        out[key] = _checked_value(f"{where}.{key}", value, hints[key], fields[key])
    for key, f in fields.items():
        if key in out:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ZephyrError(f"`{where}.{key}` is required", f.metadata.get("help"))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        if default == "???":
            raise ZephyrError(f"`{where}.{key}` must be set",
                              f"pick a {where.split('.')[0]} option in the recipe's defaults or add `{where}.{key}=...`")
        if isinstance(hints[key], type) and default is not None:
            default = check_section(f"{where}.{key}", {}, hints[key])
        out[key] = default
    out = {key: out[key] for key in fields}
    if hasattr(cls, "after_check"):
        cls.after_check(where, out)
    return out


def defaults_of(cls: type) -> dict:
    """A schema's keys and their defaults, nested sections as mappings (what a recipe starts from)."""
    out = {}
    for f in dataclasses.fields(cls):
        value = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "???")
        out[f.name] = defaults_of(type(value)) if dataclasses.is_dataclass(value) else value
    return out


def explained(cfg: dict, stage_schema: type) -> str:
    """A resolved config as YAML with each key's help from its schema as a comment above it (`show --explain`)."""
    import yaml

    def value(v) -> str:
        return yaml.safe_dump(v, default_flow_style=True, width=10**6, allow_unicode=True).strip().removesuffix(
            "\n...").removesuffix("...").strip()

    def emit(d: dict, cls, pad: str, out: list) -> None:
        if cls is not None and hasattr(cls, "variant"):
            try:
                cls = cls.variant("", d)
            except ZephyrError:
                cls = None
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
        hints = kinds_of(cls) if cls is not None else {}
        for key, v in d.items():
            text = fields[key].metadata.get("help") if key in fields else None
            if text:
                out.append(f"{pad}# {text}")
            hint = hints.get(key)
            nested = hint if isinstance(hint, type) else None
            listed = hint[0] if isinstance(hint, tuple) else None
            if isinstance(v, dict) and v:
                out.append(f"{pad}{key}:")
                emit(v, nested, pad + "  ", out)
            elif listed is not None and v and all(isinstance(x, dict) and x for x in v):
                out.append(f"{pad}{key}:")
                for item in v:  # each a block: `- ` before its first key
                    lines: list[str] = []
                    emit(item, listed, pad + "    ", lines)
                    first = next(i for i, line in enumerate(lines) if not line.lstrip().startswith("#"))
                    lines[first] = f"{pad}  - " + lines[first][len(pad) + 4:]
                    out += lines
            else:
                out.append(f"{pad}{key}: {value(v)}")

    out: list[str] = []
    for name, cls in SECTIONS.items():
        if name in cfg:
            out.append(f"{name}:")
            emit(cfg[name], stage_schema if name == "stage" else cls, "  ", out)
    return "\n".join(out) + "\n"


def recipe_defaults(stage_schema: type) -> dict:
    """Every section's defaults, the stage section's from its stage's schema."""
    return {name: defaults_of(stage_schema if name == "stage" else cls) for name, cls in SECTIONS.items()}


def typed(cls: type[T], values: dict) -> T:
    """A checked section (what :func:`check_section` returns) as an instance of its schema ``cls``.

    Nested sections and lists of sections become instances too, of the variant their ``type`` picks (a generator
    of type openai is an ``OpenAIGenerator``), so code reads ``section.key`` with its type rather than
    ``section["key"]``. ``dataclasses.asdict`` turns a part back into the plain mapping it was checked as. A key the
    values leave out takes its default (the eval stage leaves out the sections of benchmarks it does not run).
    """
    variant = getattr(cls, "variant", None)
    if variant is not None:
        cls = variant("", values)
    sections = kinds_of(cls)
    out = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # a schema is a dataclass
        if f.name not in values:  # a key the config leaves out (an eval benchmark not chosen): its default
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
        kind, value = sections[f.name], values[f.name]
        if isinstance(kind, type) and isinstance(value, dict):
            value = typed(kind, value)
        elif isinstance(kind, tuple) and isinstance(value, list):
            value = [typed(kind[0], item) for item in value]
        out[f.name] = value
    return cls(**out)


def _checked_value(where: str, value: Any, kind: Any, f) -> Any:
    if isinstance(kind, type):  # a nested section (null where its default is null)
        return None if value is None and f.default is None else check_section(where, value, kind)
    if isinstance(kind, tuple):  # a list of sections
        if not isinstance(value, (list, tuple)):
            raise ZephyrError(f"`{where}` must be a list", f"{where}: {f.metadata.get('help', '')}")
        return [check_section(f"{where}[{i}]", item, kind[0]) for i, item in enumerate(value)]
    if not accepts(value, kind):
        raise ZephyrError(f"`{where}` is {value!r} but must be {describe_kinds(kind)}",
                          f"{where}: {f.metadata.get('help', '')}")
    return value


@dataclass
class RecipeInfo:
    description: str = option("", "One line saying what the recipe does; shown by `zephyr-recipes list`.")
    paper: Optional[str] = option(None, "Where the recipe's hyperparameters come from, if anywhere.")


@dataclass
class RunConfig:
    name: Optional[str] = option(None, "Run name; defaults to the recipe's name with '/' replaced by '-'.")
    output_dir: Optional[str] = option(None, "Run folder; defaults to runs/<run.name> under the current directory.")
    seed: int = option(42, "Seed for data shuffling, initialisation of new weights and the trainer.")
    overwrite: bool = option(False, "Replace a finished run folder. Without it a finished run is never touched.")
    resume: bool = option(True, "Continue an unfinished run from its last checkpoint when the config matches.")


@dataclass
class ModelConfig:
    name_or_path: str = option("???", "Hub id, local folder (start it with ./ or /), or builtin://tiny-mistral.")
    revision: Optional[str] = option(None, "Hub revision (branch, tag or commit) of the weights and tokenizer.")
    tokenizer_name_or_path: Optional[str] = option(None, "Tokenizer source when it differs from the model's.")
    chat_template: Optional[str] = option(
        "zephyr", "A shipped template name (zephyr), a path to a .jinja file, or null to keep the tokenizer's own.")
    dtype: str = option("auto", "Weights dtype: auto, bfloat16, float16 or float32. auto: fp32 weights with bf16/fp16 "
                            "autocast on one process or DDP; 16-bit weights under ZeRO/FSDP (they keep fp32 masters) and "
                            "for a frozen LoRA base.")
    trust_remote_code: bool = option(False, "Allow model code from the hub. Off unless you trust the repository.")


@dataclass
class BinarizeRule:
    """How a prompt's rated completions become one pair; the recipe keys of the AIF stage and of dataset.binarize."""

    rejected: Literal["random", "lowest"] = option("random", "random: one of the lower-rated completions, drawn with the "
                                                         "seed; lowest: the lowest-rated one.")
    score: Literal["mean", "overall"] = option("mean", "mean: the mean of the aspect ratings; overall: overall_score.")
    ties: Literal["drop", "keep"] = option("drop", "drop: rejected must score below chosen (prompts whose completions "
                                               "all tie are skipped); keep: a tie may be rejected.")


@dataclass
class DatasetBinarize(BinarizeRule):
    seed: Optional[int] = option(None, "Seed of the rejected draw; null: run.seed.")


@dataclass
class DatasetConfig:
    path: Optional[str] = option(
        None, "Hub id, local file or folder (json, jsonl, parquet, csv, save_to_disk), or builtin://... "
              "Required unless dataset.mixture lists the sources.")
    name: Optional[str] = option(None, "Hub dataset configuration name, if the dataset has several.")
    revision: Optional[str] = option(None, "Hub revision of the dataset.")
    train_split: str = option("train", "Split to train on.")
    test_split: Optional[str] = option(None, "Split to evaluate on, or null for none.")
    columns: dict = option({}, "Map from the stage's column names (messages, or prompt + completion; prompt, chosen, "
                           "rejected; for format ultrafeedback prompt and completions) to this dataset's.")
    format: str = option(
        "auto", "How rows are read: chat (messages, ChatML or ShareGPT from/value), preference (prompt/chosen/"
                "rejected, text or conversations), ultrafeedback (raw openbmb/UltraFeedback, binarized), or auto.")
    roles: dict = option({}, "Rename roles before the checks, e.g. {human: user, gpt: assistant} (ShareGPT's names "
                         "human and gpt are renamed by default).")
    binarize: DatasetBinarize = option(DatasetBinarize, "For format ultrafeedback: how the raw ratings become pairs.")
    mixture: list = option(
        [], "Sources to mix, each {path, split, weight, test_split, name, revision, columns, format, roles}; "
            "missing keys come from this section. weight below 1 subsamples, above 1 repeats (seeded).")
    test_fraction: Optional[float] = option(
        None, "Carve this seeded fraction of each source's training rows out as the evaluation set "
              "(instead of test_split); the two never overlap.")
    strict: bool = option(False, "Fail on the first bad row instead of dropping bad rows and counting them per reason.")
    cache: bool = option(True, "Keep the prepared rows under $ZEPHYR_RECIPES_HOME/data, keyed by the data, the options, "
                           "the tokenizer and its chat template; a second run loads them at once.")
    decontaminate: list = option(
        [], "Evaluation prompt files (MT-Bench question.jsonl, AlpacaEval json); training rows sharing an n-gram "
            "of words with one of their prompts are dropped and reported.")
    decontaminate_ngram: int = option(13, "Length in words of the n-grams that decontamination matches.")
    max_train_samples: Optional[int] = option(None, "Use at most this many training rows (seeded shuffle, not the first N).")
    max_test_samples: Optional[int] = option(None, "Use at most this many evaluation rows.")
    max_prompt_tokens: Optional[int] = option(
        None, "Drop preference rows whose prompt is longer than this many tokens (TRL's old max_prompt_length).")


@dataclass
class StageSection:
    """The `stage` section: which step of the method. Each stage extends it with its own keys."""

    name: str = option("sft", "Which step of the method (see `zephyr-recipes list`): sft, aif, dpo, eval ...")


@dataclass
class TrainerStageConfig(StageSection):
    """The `stage` section of a stage that trains with a TRL trainer."""

    trainer: dict = option({}, "Arguments for TRL's config class of the stage (SFTConfig, DPOConfig ...), passed as is "
                           "and checked against that class.")
    global_batch_size: Optional[int] = option(
        None, "Sequences per optimizer step over all processes. When set, gradient accumulation is derived: "
        "global / (per-device batch x world size), so the recipe's batch holds on any number of GPUs.")


@dataclass
class HardwareConfig:
    """Where a recipe runs. The one place that knows about devices, processes, sharding and memory."""

    name: str = option("cpu", "Profile name.")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "Where to train: cuda, cpu, or auto (cuda when present).")
    launcher: Literal["inprocess", "accelerate", "slurm"] = option(
        "inprocess", "How processes start. inprocess: one process, the front end trains itself. accelerate: "
        "`accelerate launch` with the generated config (several processes on this machine). slurm: a generated "
        "sbatch script that runs one `accelerate launch` per node.")
    num_nodes: int = option(1, "Machines. More than one needs launcher=slurm.")
    num_processes: int = option(1, "Processes per node (one per GPU). World size = num_nodes x num_processes.")
    strategy: Literal["none", "ddp", "zero2", "zero3", "fsdp2"] = option(
        "none", "How several processes share the work. none: one process. ddp: data parallel, full copies. "
        "zero2 / zero3: DeepSpeed ZeRO stage 2 (optimizer and gradients sharded) or 3 (weights too). "
        "fsdp2: PyTorch FSDP2 (weights, gradients and optimizer sharded).")
    offload: bool = option(False, "zero3 / fsdp2 only: keep optimizer states (and weights) in CPU RAM between uses.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = option(
        "auto", "Training precision. auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU.")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = option(
        "auto", "Attention kernel. auto: flash_attention_2 when flash-attn and a CUDA device are present, else sdpa.")
    gradient_checkpointing: bool = option(False, "Recompute activations in the backward pass to save memory.")
    per_device_batch_size: Optional[int] = option(
        None, "When set, replaces stage.trainer.per_device_train_batch_size (and the eval one): what fits this "
        "profile's memory. With stage.global_batch_size the global batch stays the recipe's.")
    gpu_memory_gb: Optional[float] = option(
        None, "Memory of one device in GB, for the memory plan. null: no plan check (the CPU).")
    gpu: Optional[str] = option(
        None, "The GPU model, for the time and cost plan (h100-80gb, h200, a100-80gb, a100-40gb, l40s, l4, rtx4090); "
        "null: the plan gives FLOPs and tokens but no hours.")
    load_in_4bit: bool = option(False, "QLoRA: load the frozen base in 4-bit NF4 through bitsandbytes (needs lora).")
    lora: Optional[dict] = option(
        None, "Train LoRA adapters instead of all weights: arguments for peft.LoraConfig (r, lora_alpha, "
        "lora_dropout, target_modules ...), passed as is. null: full fine-tuning.")
    main_process_port: int = option(29500, "Rendezvous port of rank 0 for several processes.")
    slurm: dict = option({}, "launcher=slurm only: #SBATCH options (partition, time, account, qos, cpus_per_task, "
                         "mem ...) written into the generated script, and `setup` (shell lines run first on each node).")
    ignore_memory_plan: bool = option(
        False, "Launch even when `zephyr-recipes plan` estimates that the run does not fit the devices.")


SECTIONS: dict[str, type] = {
    "recipe": RecipeInfo,
    "run": RunConfig,
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "stage": StageSection,  # completed by the stage's own schema (zephyr_recipes.stages)
    "hardware": HardwareConfig,
}


# Keys that TRL or transformers removed or renamed, with what to write instead. An entry only applies while
# the installed TRL config class lacks the key, so a key that comes back is accepted again.
REMOVED_KEYS: dict[str, str] = {
    "max_seq_length": "stage.trainer.max_length",
    "max_prompt_length": "dataset.max_prompt_tokens (prompts longer than this are dropped before training)",
    "max_completion_length": "stage.trainer.max_length (the limit on prompt plus completion)",
    "max_target_length": "stage.trainer.max_length",
    "warmup_ratio": "stage.trainer.warmup_steps with a float below 1 (warmup_steps: 0.1 means 10% of the steps)",
    "torch_dtype": "model.dtype",
    "evaluation_strategy": "stage.trainer.eval_strategy",
    "overwrite_output_dir": "run.overwrite=true",
    "per_gpu_train_batch_size": "stage.trainer.per_device_train_batch_size",
    "per_gpu_eval_batch_size": "stage.trainer.per_device_eval_batch_size",
    "no_cuda": "hardware.device=cpu",
    "use_mps_device": "hardware.device",
    "logging_dir": "nothing: metrics and curves are written into the run folder",
    "push_to_hub_token": "the HF_TOKEN environment variable",
    "use_flash_attention_2": "hardware.attn_implementation=flash_attention_2",
    "rpo_alpha": "stage.trainer.loss_type=[sigmoid,sft] with stage.trainer.loss_weights",
    "generate_during_eval": "nothing: generate with `zephyr-recipes` evaluation after training",
    "ref_model_init_kwargs": "stage.ref_model",
    "fp16_backend": "hardware.precision",
}

# Trainer keys that the runner sets itself from another section; writing them in stage.trainer would be
# silently overridden, so they are refused with the place to set them.
RUNNER_OWNED: dict[str, str] = {
    "output_dir": "run.output_dir",
    "bf16": "hardware.precision=bf16",
    "fp16": "hardware.precision=fp16",
    "use_cpu": "hardware.device=cpu",
    "gradient_checkpointing": "hardware.gradient_checkpointing=true",
    "activation_checkpointing": "hardware.gradient_checkpointing=true",
    "resume_from_checkpoint": "nothing: re-running the same command resumes from the last checkpoint",
    "hub_token": "the HF_TOKEN environment variable (tokens never go into recipes)",
    "model_init_kwargs": "the model section (model.dtype, model.revision, model.trust_remote_code)",
    "chat_template_path": "model.chat_template",
    "trust_remote_code": "model.trust_remote_code",
    "seed": "run.seed",
    "deepspeed": "hardware.strategy=zero2 or zero3 (the runner generates the DeepSpeed config from the profile)",
    "fsdp": "hardware.strategy=fsdp2 (the runner generates the FSDP config from the profile)",
    "fsdp_config": "hardware.strategy=fsdp2 and hardware.offload / hardware.gradient_checkpointing",
}
