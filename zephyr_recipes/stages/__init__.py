"""The registry of stages: one module per step of the method, each defining one :class:`~.base.Stage`.

Adding a stage is one module (a ``Stage`` subclass and its ``stage`` section's schema), one
``conf/stage/<name>.yaml`` and one line below. Modules are imported when a stage is first asked for, so
listing or showing recipes does not import torch.
"""

from __future__ import annotations

import importlib

from ..core.errors import ZephyrError, did_you_mean
from .base import RunContext, Stage, TaskStage, TrainerStage  # noqa: F401 - the interface, re-exported

MODULES = {
    "sft": "zephyr_recipes.stages.sft",
    "aif": "zephyr_recipes.stages.aif",
    "dpo": "zephyr_recipes.stages.dpo",
    "kto": "zephyr_recipes.stages.kto",
    "reward": "zephyr_recipes.stages.reward",
    "eval": "zephyr_recipes.stages.eval",
}

_loaded: dict[str, Stage] = {}


def names() -> list[str]:
    return list(MODULES)


def get(name) -> Stage:
    """The stage called ``name``, or an error listing the stages."""
    if name not in MODULES:
        raise ZephyrError(f"stage.name={name!r} is not a stage",
                          did_you_mean(str(name), MODULES) or f"use one of: {', '.join(MODULES)}")
    if name not in _loaded:
        stage = importlib.import_module(MODULES[name]).STAGE
        if stage.name != name:
            raise ZephyrError(f"{MODULES[name]} defines stage {stage.name!r}, registered as {name!r}",
                              "make the registry line and the stage's name agree")
        _loaded[name] = stage
    return _loaded[name]

