"""A checked, resolved config as typed sections: what stages, the data layer and the model layer read.

The command line composes and checks a plain mapping (:mod:`zephyr_recipes.core.schema`); below it, code reads
``recipe.model.dtype`` and ``recipe.run.seed`` with their types rather than ``cfg["model"]["dtype"]``. The help
text of every key stays on the schema's fields (``option(...)``). What is written to a file (config.yaml, the
provenance, the card) is the mapping the recipe was made from, ``recipe.config``: the frozen config as it is on
disk, so files and run-folder fingerprints are the same whichever way the config is read. ``as_dict`` turns the
typed sections back into plain mappings (``dataclasses.asdict``) for code that takes mappings.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .schema import (
    DatasetConfig,
    HardwareConfig,
    ModelConfig,
    RecipeInfo,
    RunConfig,
    StageSection,
    TrainerStageConfig,
    typed,
)

S = TypeVar("S", bound=StageSection)
T = TypeVar("T")
SECTION_NAMES = ("recipe", "run", "model", "dataset", "stage", "hardware")


@dataclass
class Recipe(Generic[S]):
    """One run's config, each section an instance of its schema; ``stage`` is of the stage's own schema."""

    recipe: RecipeInfo
    run: RunConfig
    model: ModelConfig
    dataset: DatasetConfig
    stage: S
    hardware: HardwareConfig
    # The checked mapping the sections were made from (config.yaml's contents): what files are written from.
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, dict]:
        """The typed sections as plain mappings (``dataclasses.asdict``), for code that reads mappings."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTION_NAMES}

    def replaced(self, section: str, **values: Any) -> Recipe[S]:
        """This recipe with ``values`` set in one section, in its typed section and in the mapping files are written
        from alike (a sweep point's folder and name, a pipeline stage run again over its folder)."""
        config = {**self.config, section: {**(self.config.get(section) or {}), **values}}
        typed_section = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, config=config, **{section: typed_section})


def recipe_of(cfg: dict, stage_schema: type[S]) -> Recipe[S]:
    """A checked, resolved config (what validation returns and config.yaml holds) as a :class:`Recipe`, its stage
    section typed by ``stage_schema`` (the stage's ``schema``). A key the config leaves out takes its default."""
    return Recipe(recipe=_typed_once(RecipeInfo, cfg.get("recipe")), run=_typed_once(RunConfig, cfg.get("run")),
                  model=_typed_once(ModelConfig, cfg.get("model")), dataset=_typed_once(DatasetConfig, cfg.get("dataset")),
                  stage=_typed_once(stage_schema, cfg.get("stage")),
                  hardware=_typed_once(HardwareConfig, cfg.get("hardware")), config=cfg)


def is_config(cfg: Any) -> bool:
    """Whether ``cfg`` (a config.yaml read back) has the shape of a run's config, a mapping with a stage section:
    what a stage's name is looked up in and its recipe made from."""
    return isinstance(cfg, dict) and isinstance(cfg.get("stage"), dict)


# The sections typed in this process, newest last: (schema, a copy of the mapping, its typed section). The front end
# reads one config several times (validation, the pre-flight, the plan, the run): each section is typed once per
# contents, and the same contents read again get the same object; read it, never change it.
_MADE: list[tuple[type, dict, Any]] = []


def _typed_once(cls: type[T], values: dict | None) -> T:
    values = values or {}
    for made_cls, seen, out in reversed(_MADE):
        if made_cls is cls and seen == values:
            return out
    out = typed(cls, values)
    _MADE.append((cls, copy.deepcopy(values), out))
    del _MADE[:-64]  # a process runs a few configs (a sweep, the tests): the latest are kept
    return out


def section_of(cls: type[T], values: T | dict | None) -> T:
    """A section as an instance of its schema ``cls``: ``values`` itself when it is one, else the mapping typed (keys
    it leaves out take their defaults). For the callers that still hold plain mappings (the command line, a
    generator's ``model_config``)."""
    if isinstance(values, cls):
        return values
    return typed(cls, dict(values or {}))  # type: ignore[arg-type]  # a mapping, when not an instance


def as_recipe(cfg: Recipe | dict) -> Recipe:
    """``cfg`` as a :class:`Recipe`: itself, or a checked mapping whose stage section is read as a trainer stage's
    (``trainer``, ``global_batch_size``; a stage without them gets their defaults)."""
    return cfg if isinstance(cfg, Recipe) else recipe_of(cfg, TrainerStageConfig)
