"""The generator and judge specs a stage section names, wherever they sit in it: a list of generators, the stage's
judge, a benchmark's own judge, an audit's judges. One walk over the checked mapping (the specs go to the backends
and the judge registry as the mappings they were checked as), shared by the checks that read them before a run:
validation's weight files, the pre-flight's keys, endpoints and paths (:mod:`.preflight`), and the tokenizers and
function modules of :mod:`.runcheck`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Iterator

from ..core.recipe import Recipe

if TYPE_CHECKING:
    from ..stages.base import Stage


def section(recipe: Recipe, stage: Stage | None = None) -> dict:
    """The recipe's stage section as the mapping the config holds; with ``stage``, without the settings this config
    does not use (``Stage.idle``: an unused judge)."""
    held = recipe.config.get("stage") or {}
    idle = stage.idle(recipe) if stage is not None else []
    if not idle:
        return held
    held = copy.deepcopy(held)
    for path in idle:
        *head, last = path.split(".")
        node = held
        for key in head:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return held


def specs(recipe: Recipe, stage: Stage | None = None) -> list[tuple[str, dict]]:
    """(where, spec) of every generator or judge spec (a mapping with a ``type``) in the recipe's stage section, in
    the order the section holds them; ``where`` names it as an error does (``stage.generators[0]``,
    ``stage.mt_bench.judge``). With ``stage``, the settings it does not use are left out (see :func:`section`)."""
    return list(_walk(section(recipe, stage), "stage"))


def _walk(obj, where: str) -> Iterator[tuple[str, dict]]:
    if isinstance(obj, dict):
        if isinstance(obj.get("type"), str):
            yield where, obj
        for key, value in obj.items():
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{where}[{i}]")


def with_model(recipe: Recipe, stage: Stage | None = None, where: str | None = None) -> list[tuple[str, dict]]:
    """The specs of :func:`specs` that name a model (a string ``model``) loaded here or served by the runner
    (``feedback.specs.model_location``): those whose weights or tokenizer this machine reads; ``where``: only those
    loaded so ("here", "served")."""
    found = [(where, spec) for where, spec in specs(recipe, stage) if isinstance(spec.get("model"), str)]
    if not found:
        return []
    from ..feedback.specs import model_location  # lazy: start-up (only a generator or judge with a model)

    return [(at, spec) for at, spec in found if model_location(spec) and where in (None, model_location(spec))]
