"""The fields of TRL's config classes (SFTConfig, DPOConfig ...): names, accepted types and defaults.

``stage.trainer`` passes straight to TRL's config class, and is checked against that class. Importing it costs
seconds (TRL imports transformers, which imports torch), so the fields are described once per installed
TRL/transformers version and kept as JSON under ``$ZEPHYR_RECIPES_HOME/trainer-fields/``; `show` and `validate`
read that description, and only fall back on importing TRL when the versions change (or the file is missing).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import tempfile
import typing
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import ZephyrError
from ..core.schema import kinds

FORMAT = 1


class TrainsWithTRL(Protocol):
    """What this layer needs of a training stage (:class:`zephyr_recipes.stages.base.TrainerStage` is one): the
    name of its TRL config class, and the class."""

    @property
    def trl_config(self) -> str: ...

    def config_class(self) -> type: ...

    def __hash__(self) -> int: ...  # its description is cached per stage


def _home() -> Path:
    return Path(os.environ.get("ZEPHYR_RECIPES_HOME", Path.home() / ".cache" / "zephyr-recipes"))


def _versions() -> str:
    def v(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "none"

    return f"trl-{v('trl')}_transformers-{v('transformers')}_v{FORMAT}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if value is dataclasses.MISSING:
        return None
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _introspect(stage: TrainsWithTRL) -> dict:
    cls, class_name = stage.config_class(), stage.trl_config
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # forward references to optional packages (peft, bitsandbytes)
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    fields = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        fields[f.name] = {"kinds": kinds(hints.get(f.name)), "default": _jsonable(default)}
    return {"class": class_name, "fields": fields}


def _class_key(stage: TrainsWithTRL) -> str:
    """The config class's name, with its module when that is not ``trl`` (trl.experimental has a KTOConfig beside
    trl's own): trl's own classes keep their plain names, so earlier descriptions stay valid."""
    module = getattr(stage, "trl_module", "trl")
    return stage.trl_config if module == "trl" else f"{module}.{stage.trl_config}"


@lru_cache(maxsize=None)
def describe(stage: TrainsWithTRL) -> dict:
    """{"class": name, "fields": {field: {"kinds": [...], "default": ...}}} for the stage's TRL config class (the
    class comes from ``stage.config_class()``, so one in trl.experimental is found like the others)."""
    path = _home() / "trainer-fields" / _versions() / f"{_class_key(stage)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    desc = _introspect(stage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
            json.dump(desc, fh)
        os.replace(fh.name, path)  # atomic: concurrent processes never read half a file
    except OSError:
        pass  # a read-only home: introspect every time
    return desc


def fields(stage: TrainsWithTRL) -> dict:
    return describe(stage)["fields"]


def default(stage: TrainsWithTRL, key: str):
    return (fields(stage).get(key) or {}).get("default")


def _accepted_marker(stage: TrainsWithTRL, trainer: dict) -> Path:
    import hashlib

    key = hashlib.sha256(json.dumps([_class_key(stage), trainer], sort_keys=True, default=str).encode()).hexdigest()
    return _home() / "trainer-fields" / _versions() / "accepted" / key[:24]


def check_accepts(stage: TrainsWithTRL, trainer: dict) -> None:
    """Let TRL's own __post_init__ judge stage.trainer's values (scheduler names, strategies, ranges).

    A trainer section TRL accepted once is remembered for this TRL/transformers version (building the config
    class imports TRL and torch: seconds), so validating an unchanged recipe again is quick."""
    import warnings

    marker = _accepted_marker(stage, trainer)
    if marker.exists():
        return
    cls = stage.config_class()
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(output_dir=tmp, bf16=False, fp16=False, use_cpu=True, **trainer)
    except (ValueError, TypeError, KeyError) as exc:
        raise ZephyrError(f"trl.{cls.__name__} refuses stage.trainer: {str(exc).strip().splitlines()[0]}",
                          "correct the value in the recipe or on the command line") from None
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
