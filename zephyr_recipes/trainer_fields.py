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
from typing import Any

from .schema import kinds

FORMAT = 1


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


def _introspect(class_name: str) -> dict:
    import trl

    cls = getattr(trl, class_name)
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


@lru_cache(maxsize=None)
def describe(class_name: str) -> dict:
    """{"class": name, "fields": {field: {"kinds": [...], "default": ...}}} for trl.<class_name>."""
    path = _home() / "trainer-fields" / _versions() / f"{class_name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    desc = _introspect(class_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
            json.dump(desc, fh)
        os.replace(fh.name, path)  # atomic: concurrent processes never read half a file
    except OSError:
        pass  # a read-only home: introspect every time
    return desc


def fields(stage) -> dict:
    return describe(stage.trl_config)["fields"]


def default(stage, key: str):
    return (fields(stage).get(key) or {}).get("default")
