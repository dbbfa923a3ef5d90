"""Check a composed recipe before anything expensive happens.

Every section is checked against its schema (:mod:`zephyr_recipes.core.schema`; the `stage` section against the
schema of the stage it names, from :mod:`zephyr_recipes.stages`). ``stage.trainer`` is checked against TRL's
config class for the stage (described once per TRL version, :mod:`zephyr_recipes.model.trainer_fields`), so the runner
follows TRL as it moves: a key TRL has is accepted, a key it removed gets the replacement named, anything else
gets a did-you-mean. Then the stage's own ``check`` and the dataset and hardware checks run.
"""

from __future__ import annotations

import re
from typing import Any

from .. import stages
from ..core.catalog import CONF_DIR
from ..core.errors import ZephyrError, did_you_mean
from ..core.recipe import Recipe
from ..core.schema import (
    REMOVED_KEYS,
    RUNNER_OWNED,
    SECTIONS,
    TrainerStageConfig,
    accepts,
    check_section,
    describe_kinds,
)
from ..data import check_config as check_dataset
from ..embedded import builtin
from ..model import hardware, trainer_fields
from ..model.modeling import check_weight_files, is_local_path
from ..reports import readcheck
from . import stagespecs
from .inputs import check_run

SECRET_KEY = re.compile(r"(^|_)(token|hf_token|hub_token|access_token|auth_token)$|api_?key|secret|password", re.I)
SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|Bearer\s+\S{16,})$")


def check_trainer(stage, trainer: dict) -> dict:
    """``stage.trainer`` against the fields of TRL's config class for ``stage``."""
    cls = f"trl.{stage.trl_config}"
    fields = trainer_fields.fields(stage)
    for key, value in trainer.items():
        where = f"stage.trainer.{key}"
        if key in RUNNER_OWNED:
            raise ZephyrError(f"`{where}` is set by the runner, not in stage.trainer", f"set {RUNNER_OWNED[key]}")
        if key not in fields:
            if key in REMOVED_KEYS:
                raise ZephyrError(f"`{where}` no longer exists in TRL/transformers ({cls} has no such field)",
                                  f"use {REMOVED_KEYS[key]}")
            raise ZephyrError(f"unknown key `{where}`: {cls} has no field `{key}`",
                              did_you_mean(key, fields) or f"see the fields of {cls} in TRL's documentation")
        if not accepts(value, fields[key]["kinds"]):
            expected = describe_kinds(fields[key]["kinds"])
            raise ZephyrError(f"`{where}` is {value!r} but {cls} expects {expected}",
                              f"give {key} a value of type {expected}")
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


def validate(cfg: dict, recipe_name: str = "recipe", deep: bool = True) -> Recipe:
    """Return the checked config as its stage's typed :class:`Recipe` (``recipe.config``: the mapping with every
    section complete, what config.yaml holds), or raise ZephyrError naming the first problem.

    ``deep`` also lets TRL's config class judge stage.trainer's values (it imports TRL, seconds); `show` skips it.
    """
    if not isinstance(cfg, dict):
        raise ZephyrError("a recipe must be a YAML mapping", "start from `zephyr-recipes cp tiny/sft my.yaml`")
    if "pipeline" in cfg:
        raise ZephyrError(f"{recipe_name} is a pipeline recipe, and a single stage is expected here",
                          "run the pipeline itself (zephyr-recipes run <pipeline>), or name one of its stage recipes")
    unknown = [k for k in cfg if k not in SECTIONS]
    if unknown:
        raise ZephyrError(f"unknown top-level key `{unknown[0]}`",
                          did_you_mean(unknown[0], SECTIONS) or f"a recipe has the sections {', '.join(SECTIONS)}")
    stage_raw = cfg.get("stage") or {}
    stage = stages.get(stage_raw.get("name", "sft") if isinstance(stage_raw, dict) else "sft")
    if stage.rows is None and not (cfg.get("dataset") or {}).get("path"):
        # The stage reads no dataset (evaluation names its sets in its own section).
        cfg = {**cfg, "dataset": {**(cfg.get("dataset") or {}), "path": "none"}}
    out = {name: check_section(name, cfg.get(name), stage.schema if name == "stage" else cls)
           for name, cls in SECTIONS.items()}
    recipe = stage.recipe(out)  # the checked sections, read typed from here on
    trainer = stage if isinstance(stage, stages.TrainerStage) else None
    trains = trainer is not None
    if trains:
        check_trainer(stage, recipe.stage.trainer)
        _check_training_values(recipe.stage)
    secrets = find_secrets(out)
    if secrets:
        raise ZephyrError(f"`{secrets[0]}` holds a secret; secrets never go into recipes or run folders",
                          "remove it and set the HF_TOKEN (or the service's) environment variable instead")
    if not (stage.rows and stage.rows.limits_prompts) and recipe.dataset.max_prompt_tokens is not None:
        raise ZephyrError(f"`dataset.max_prompt_tokens` drops long prompts of preference and unpaired rows and does "
                          f"not apply to {stage.name}",
                          "remove dataset.max_prompt_tokens, or use stage.trainer.max_length to truncate")
    if stage.rows is not None:
        check_dataset(out["dataset"], stage.rows)
    hw = recipe.hardware
    if hw.device == "cpu" and hw.precision == "fp16":
        raise ZephyrError("hardware.precision=fp16 needs a CUDA GPU, but hardware.device=cpu",
                          "use hardware.precision=fp32 (or bf16) on the CPU, or hardware=1gpu")
    if hw.device == "cpu" and hw.attn_implementation == "flash_attention_2":
        raise ZephyrError("hardware.attn_implementation=flash_attention_2 needs a CUDA GPU, but hardware.device=cpu",
                          "use hardware.attn_implementation=auto (sdpa on the CPU)")
    if stage.one_process and (hw.launcher != "inprocess" or hw.num_processes > 1 or hw.num_nodes > 1):
        raise ZephyrError(f"the {stage.name} stage runs in one process, and hardware profile {hw.name!r} launches "
                          "several", "use hardware=1gpu (or cpu); to generate on many GPUs, serve the model with "
                          "vLLM or TGI and name it as an openai generator or judge")

    hardware.check(out, trainer)
    stage.check(recipe)
    # The run's name and folder are filled in the mapping validation returns (and config.yaml holds).
    name = recipe.run.name or recipe_name.replace("/", "-")
    run = {**out["run"], "name": name, "output_dir": recipe.run.output_dir or f"runs/{name}"}
    out["run"] = run
    check_run(run)  # seed range, a name a folder can have, an output_dir that is no file
    if deep:
        _check_weight_files(recipe, trains)
    if trainer is not None and deep:
        _check_positions(recipe)
        trainer_fields.check_accepts(trainer, recipe.stage.trainer)
    return stage.recipe(out)  # typed again: the run section now holds the run's name and folder


def _check_weight_files(recipe: Recipe, trains: bool) -> None:
    """An empty or cut-short weight file of a local model is named before any weights load (``trains``: the stage
    trains the recipe's model, else only the generator and judge specs of its stage section, wherever they sit)."""
    from pathlib import Path

    names = [recipe.model.name_or_path] if trains else []
    names += [spec["model"] for _, spec in stagespecs.with_model(recipe, where="here")]
    for name in names:
        if is_local_path(name) and Path(name).expanduser().is_dir():
            readcheck.check(Path(name).expanduser())  # a finished run folder's records are whole
            check_weight_files(str(Path(name).expanduser()), name)
    data = recipe.dataset.path
    if isinstance(data, str) and is_local_path(data) and Path(data).expanduser().is_dir():
        readcheck.check(Path(data).expanduser())  # e.g. an AI-feedback run folder's pairs


def _stage_default(stage: str, key: str):
    """A trainer value the stage's conf file sets (conf/stage/<stage>.yaml), or None."""
    import yaml

    try:
        doc = yaml.safe_load((CONF_DIR / "stage" / f"{stage}.yaml").read_text()) or {}
        return (doc.get("trainer") or {}).get(key)
    except (OSError, yaml.YAMLError, AttributeError):
        return None


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def _check_positions(recipe: Recipe[TrainerStageConfig]) -> None:
    """A max_length the model has no positions for trains on positions it never learned (or fails hours in)."""
    import json
    from pathlib import Path


    max_length = recipe.stage.trainer.get("max_length")
    name = recipe.model.name_or_path
    if not isinstance(max_length, int) or isinstance(max_length, bool):
        return
    try:
        if builtin.is_builtin(name):
            folder = Path(builtin.resolve(name))
        elif is_local_path(name):
            folder = Path(name).expanduser()
        else:
            return  # a hub id: its config is not read before the run
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, ZephyrError):
        return  # the run reports a folder without a readable config.json
    limit = next((config[k] for k in POSITION_KEYS if isinstance(config.get(k), int)), None)
    if limit is not None and max_length > limit:
        if max_length == _stage_default(recipe.stage.name, "max_length"):
            import logging

            logging.getLogger("zephyr_recipes").warning(
                "stage.trainer.max_length=%d (the %s stage's default) is above the %d positions of model %s: a "
                "longer row would fail; set stage.trainer.max_length=%d to be sure", max_length, recipe.stage.name,
                limit, name, limit)
            return
        raise ZephyrError(f"stage.trainer.max_length={max_length} is above the {limit} positions of model {name} "
                          f"(max_position_embeddings in its config.json)",
                          f"set stage.trainer.max_length={limit} or less")


def _number(trainer: dict, key: str, default):
    value = trainer.get(key, default)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _check_training_values(stage: TrainerStageConfig) -> None:
    """Values TRL and transformers accept but that train nothing, or train wrongly, without a word."""
    trainer = stage.trainer
    epochs, steps = _number(trainer, "num_train_epochs", 3.0), _number(trainer, "max_steps", -1)
    if steps <= 0 and epochs <= 0:
        raise ZephyrError(f"stage.trainer.num_train_epochs={epochs} and max_steps={steps}: the run would make no "
                          "optimizer step", "set stage.trainer.num_train_epochs to a positive number "
                          "(or stage.trainer.max_steps to a positive count, which takes precedence)")
    import math

    for key, value in trainer.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ZephyrError(f"stage.trainer.{key}={value} is not a finite number",
                              f"give stage.trainer.{key} a real value (e.g. the recipe's default)")
    raw_steps = trainer.get("max_steps")
    if isinstance(raw_steps, int) and not isinstance(raw_steps, bool) and raw_steps < -1:
        raise ZephyrError(f"stage.trainer.max_steps={raw_steps} is negative, and TRL would silently treat it as "
                          "unset (training by epochs)", "give a positive number of steps, or -1 (no limit: train "
                          "stage.trainer.num_train_epochs)")
    lr = _number(trainer, "learning_rate", 1.0)
    if lr <= 0:
        raise ZephyrError(f"stage.trainer.learning_rate={lr}: the weights would not move (or move the wrong way)",
                          "set a positive learning rate, e.g. stage.trainer.learning_rate=2e-5")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if _number(trainer, key, 1) < 1:
            raise ZephyrError(f"stage.trainer.{key}={trainer.get(key)} must be at least 1",
                              f"set stage.trainer.{key} to 1 or more")
