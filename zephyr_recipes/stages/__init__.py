"""The registry of stages: one module per step of the method, each defining one :class:`~.base.Stage`.

Adding a stage is one module (a ``Stage`` subclass and its ``stage`` section's schema), one
``conf/stage/<name>.yaml`` and one line below. Modules are imported when a stage is first asked for, so
listing or showing recipes does not import torch. An installed package adds a stage through the entry-point group
``zephyr_recipes.stages`` (:mod:`zephyr_recipes.core.registry`).
"""

from __future__ import annotations

from ..core.errors import did_you_mean
from ..core.recipe import Recipe
from ..core.registry import Registry
from .base import RunContext, Stage, TaskStage, TrainerStage  # noqa: F401 - the interface, re-exported

MODULES = {
    "sft": "zephyr_recipes.stages.sft",
    "aif": "zephyr_recipes.stages.aif",
    "dpo": "zephyr_recipes.stages.dpo",
    "kto": "zephyr_recipes.stages.kto",
    "orpo": "zephyr_recipes.stages.orpo",
    "reward": "zephyr_recipes.stages.reward",
    "eval": "zephyr_recipes.stages.eval",
}


def _unknown(name, known: list[str]) -> tuple[str, str]:
    return f"stage.name={name!r} is not a stage", did_you_mean(str(name), known) or f"use one of: {', '.join(known)}"


REGISTRY: Registry[Stage] = Registry("stage", "zephyr_recipes.stages", "STAGE", MODULES, Stage, _unknown)


def names() -> list[str]:
    return REGISTRY.names()


def get(name) -> Stage:
    """The stage called ``name``, or an error listing the stages."""
    return REGISTRY.get(name)


def of(cfg: dict | Recipe) -> Stage:
    """The stage a checked config (or a frozen config.yaml) names: the one look-up of the stage's name, which says
    whose schema types the rest (``of(cfg).recipe(cfg)``); of a typed recipe, the stage its section names."""
    if isinstance(cfg, Recipe):
        return REGISTRY.get(cfg.stage.name)
    return REGISTRY.get(cfg["stage"]["name"])
