"""Check a composed recipe before anything expensive happens.

Our own sections are checked against the dataclasses in :mod:`zephyr_recipes.schema`. ``stage.trainer`` is
checked against TRL's config class for the stage by introspection, so the runner follows TRL as it moves:
a key TRL has is accepted, a key it removed gets the replacement named, anything else gets a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any

from .data import check_config as check_dataset
from .errors import ZephyrError
from .schema import SECTIONS, STAGE_SECTIONS

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

SECRET_KEY = re.compile(r"(^|_)(token|hf_token|hub_token|access_token|auth_token)$|api_?key|secret|password", re.I)
SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|Bearer\s+\S{16,})$")


def trainer_config_class(stage: str):
    import trl

    classes = {"sft": trl.SFTConfig, "dpo": trl.DPOConfig}
    if stage not in classes:
        raise ZephyrError(f"stage.name={stage!r} is not a stage", f"use one of: {', '.join(classes)}")
    return classes[stage]


def _suggest(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else ""


def _type_ok(value: Any, annotation: Any) -> bool:
    """True when value plausibly fits annotation. Unknown or string annotations accept anything."""
    if annotation is Any or isinstance(annotation, str) or annotation is None:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if origin in (list, tuple, typing.List, typing.Tuple):
        return isinstance(value, (list, tuple))
    if origin in (dict, typing.Dict):
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type):
        if issubclass(annotation, str):  # str-valued enums (IntervalStrategy, SchedulerType ...)
            return isinstance(value, str)
        if annotation in (dict, list):
            return isinstance(value, annotation)
        return True
    return True


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # forward references to optional packages (peft, bitsandbytes)
        return {f.name: f.type for f in dataclasses.fields(cls)}


def check_section(name: str, values: Any, cls: type | None = None) -> dict:
    cls = cls or SECTIONS[name]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ZephyrError(f"`{name}` must be a mapping of keys to values, got {type(values).__name__}",
                          f"write it as `{name}:` followed by indented `key: value` lines")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            hint = _suggest(key, fields)
            raise ZephyrError(f"unknown key `{name}.{key}`",
                              hint or f"known keys of `{name}`: {', '.join(fields)}")
        if value == "???":
            raise ZephyrError(f"`{name}.{key}` must be set", f"add `{name}.{key}=...` or pick a {name} option")
        if not _type_ok(value, hints[key]):
            raise ZephyrError(f"`{name}.{key}` is {value!r} but must be {_describe(hints[key])}",
                              f"{name}.{key}: {fields[key].metadata.get('help', '')}")
        out[key] = value
    for key, f in fields.items():
        if key not in out:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ZephyrError(f"`{name}.{key}` is required", f.metadata.get("help"))
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if default == "???":
                raise ZephyrError(f"`{name}.{key}` must be set",
                                  f"pick a {name} option in the recipe's defaults or add `{name}.{key}=...`")
            out[key] = default
    return {key: out[key] for key in fields}


def check_trainer(stage: str, trainer: dict) -> dict:
    cls = trainer_config_class(stage)
    fields = {f.name for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for key, value in trainer.items():
        where = f"stage.trainer.{key}"
        if key in RUNNER_OWNED:
            raise ZephyrError(f"`{where}` is set by the runner, not in stage.trainer", f"set {RUNNER_OWNED[key]}")
        if key not in fields:
            if key in REMOVED_KEYS:
                raise ZephyrError(f"`{where}` no longer exists in TRL/transformers ({cls.__name__} has no such field)",
                                  f"use {REMOVED_KEYS[key]}")
            hint = _suggest(key, fields)
            raise ZephyrError(f"unknown key `{where}`: trl.{cls.__name__} has no field `{key}`",
                              hint or f"see the fields of trl.{cls.__name__} in TRL's documentation")
        if not _type_ok(value, hints.get(key)):
            raise ZephyrError(f"`{where}` is {value!r} but trl.{cls.__name__} expects {_describe(hints[key])}",
                              f"give {key} a value of type {_describe(hints[key])}")
    return trainer


def find_secrets(obj: Any, path: str = "") -> list[str]:
    """Dotted paths of config values whose key names a secret (token, api_key ...)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            # pad_token and friends are vocabulary entries; *_env keys hold a variable's name, not its value.
            special = str(k) in ("pad_token", "eos_token", "bos_token", "unk_token") or str(k).endswith("_env")
            if not special and SECRET_KEY.search(str(k)) and isinstance(v, str) and v:
                found.append(p)
            found += find_secrets(v, p)
    elif isinstance(obj, str) and SECRET_VALUE.match(obj.strip()):
        found.append(path)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += find_secrets(v, f"{path}[{i}]")
    return found


def validate(cfg: dict, recipe_name: str = "recipe") -> dict:
    """Return the config with every section complete, or raise ZephyrError naming the first problem."""
    if not isinstance(cfg, dict):
        raise ZephyrError("a recipe must be a YAML mapping", "start from `zephyr-recipes cp tiny/sft my.yaml`")
    unknown = [k for k in cfg if k not in SECTIONS]
    if unknown:
        key = unknown[0]
        hint = _suggest(key, SECTIONS)
        raise ZephyrError(f"unknown top-level key `{key}`",
                          hint or f"a recipe has the sections {', '.join(SECTIONS)}")
    stage_raw = cfg.get("stage") or {}
    stage_name = stage_raw.get("name", "sft") if isinstance(stage_raw, dict) else "sft"
    if stage_name not in STAGE_SECTIONS:
        raise ZephyrError(f"stage.name={stage_name!r} is not a stage", f"use one of: {', '.join(STAGE_SECTIONS)}")
    if stage_name == "eval" and not (cfg.get("dataset") or {}).get("path"):
        # Evaluation sets are named in the stage section; the dataset section is unused.
        cfg = {**cfg, "dataset": {**(cfg.get("dataset") or {}), "path": "none"}}
    out = {name: check_section(name, cfg.get(name), STAGE_SECTIONS[stage_name] if name == "stage" else None)
           for name in SECTIONS}
    stage = out["stage"]
    if stage_name == "aif":
        from .stages.aif import check_config

        check_config(out)
    elif stage_name == "eval":
        from .stages.eval import check_config as check_eval

        check_eval(out)
    else:
        check_trainer(stage["name"], stage["trainer"])
    secrets = find_secrets(out)
    if secrets:
        raise ZephyrError(f"`{secrets[0]}` holds a secret; secrets never go into recipes or run folders",
                          "remove it and set the HF_TOKEN (or the service's) environment variable instead")
    if stage["name"] == "sft" and stage["ref_model"] is not None:
        raise ZephyrError("`stage.ref_model` only applies to dpo", "remove stage.ref_model")
    if stage["name"] != "dpo" and out["dataset"]["max_prompt_tokens"] is not None:
        raise ZephyrError("`dataset.max_prompt_tokens` filters preference pairs and only applies to dpo",
                          "remove dataset.max_prompt_tokens, or use stage.trainer.max_length to truncate")
    check_dataset(out["dataset"], stage["name"])
    hw = out["hardware"]
    if hw["device"] == "cpu" and hw["precision"] == "fp16":
        raise ZephyrError("hardware.precision=fp16 needs a CUDA GPU, but hardware.device=cpu",
                          "use hardware.precision=fp32 (or bf16) on the CPU, or hardware=1gpu")
    if hw["device"] == "cpu" and hw["attn_implementation"] == "flash_attention_2":
        raise ZephyrError("hardware.attn_implementation=flash_attention_2 needs a CUDA GPU, but hardware.device=cpu",
                          "use hardware.attn_implementation=auto (sdpa on the CPU)")
    from . import hardware

    hardware.check(out)
    run = out["run"]
    run["name"] = run["name"] or recipe_name.replace("/", "-")
    run["output_dir"] = run["output_dir"] or f"runs/{run['name']}"
    if stage_name not in ("aif", "eval"):
        _check_training_values(out["stage"])
        _check_trl_accepts(out)
    return out


def _number(trainer: dict, key: str, default):
    value = trainer.get(key, default)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _check_training_values(stage: dict) -> None:
    """Values TRL and transformers accept but that train nothing, or train wrongly, without a word."""
    trainer = stage["trainer"]
    epochs, steps = _number(trainer, "num_train_epochs", 3.0), _number(trainer, "max_steps", -1)
    if steps <= 0 and epochs <= 0:
        raise ZephyrError(f"stage.trainer.num_train_epochs={epochs} and max_steps={steps}: the run would make no "
                          "optimizer step", "set stage.trainer.num_train_epochs to a positive number "
                          "(or stage.trainer.max_steps to a positive count, which takes precedence)")
    lr = _number(trainer, "learning_rate", 1.0)
    if lr <= 0:
        raise ZephyrError(f"stage.trainer.learning_rate={lr}: the weights would not move (or move the wrong way)",
                          "set a positive learning rate, e.g. stage.trainer.learning_rate=2e-5")
    if stage["name"] == "dpo" and _number(trainer, "beta", 0.1) <= 0:
        raise ZephyrError(f"stage.trainer.beta={trainer.get('beta')}: DPO's beta must be positive",
                          "the Zephyr paper uses 0.01 to 0.1: stage.trainer.beta=0.01")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if _number(trainer, key, 1) < 1:
            raise ZephyrError(f"stage.trainer.{key}={trainer.get(key)} must be at least 1",
                              f"set stage.trainer.{key} to 1 or more")


def _check_trl_accepts(cfg: dict) -> None:
    """Let TRL's own __post_init__ judge the values (scheduler names, strategies, ranges)."""
    import tempfile
    import warnings

    cls = trainer_config_class(cfg["stage"]["name"])
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(output_dir=tmp, bf16=False, fp16=False, use_cpu=True, **cfg["stage"]["trainer"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ZephyrError(f"trl.{cls.__name__} refuses stage.trainer: {str(exc).strip().splitlines()[0]}",
                          "correct the value in the recipe or on the command line") from None
