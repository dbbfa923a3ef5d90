"""YAML a user hands us is bounded before it is built in memory.

A recipe (and every file it pulls in), a run folder's ``config.yaml`` and a pipeline file are read through
:func:`check_text` first. It walks PyYAML's event stream (an iterative parser: no recursion, nothing built) and
refuses, naming the file and the fix:

- a file over :data:`MAX_BYTES`, or one holding NUL bytes (a binary file, not a recipe);
- nesting deeper than :data:`MAX_DEPTH` (5,000 nested brackets would end in ``RecursionError`` when composed);
- more than :data:`MAX_NODES` nodes once aliases are expanded (a "billion laughs" alias bomb: a few lines that
  Hydra and OmegaConf would copy into billions of nodes);
- the same key twice in one mapping (YAML keeps the last silently, so the first setting would vanish).

:func:`load` is ``yaml.safe_load`` behind that check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ZephyrError

MAX_BYTES = 4 * 1024 * 1024  # the largest shipped recipe is a few KiB; a resolved config.yaml stays far below
MAX_DEPTH = 64  # the deepest shipped config nests 6 levels
MAX_NODES = 200_000  # nodes after alias expansion


def _where(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _too_big(where, size: int) -> ZephyrError:
    return ZephyrError(f"{where} is {size:,} bytes, over the {MAX_BYTES:,} bytes a recipe or config may have",
                       "check that it is the recipe you meant (recipes are a few KiB); split data out of it")


def check_text(text: str, where: str | Path) -> None:
    """Refuse YAML text that is too large, too deep, expands too far or repeats a key (see the module)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise _too_big(where, size)
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise ZephyrError(f"{where} holds a NUL byte (line {line}): it is a binary file, not YAML text",
                          "save the recipe as plain UTF-8 text, or check that the path names a recipe")
    depth = 0
    total = 0
    sizes: dict[str, int] = {}
    # one frame per open collection: [anchor, total at its start, is mapping, expecting a key, keys seen]
    frames: list[list] = []

    def node_done(event, value_key: str | None) -> None:
        if frames and frames[-1][2]:
            frame = frames[-1]
            if frame[3] and value_key is not None:
                if value_key in frame[4]:
                    raise ZephyrError(f"{where} sets the key `{value_key}` twice in one mapping"
                                      f"{_where(event.start_mark)}, and YAML would silently keep only the last",
                                      f"keep one `{value_key}:` in that mapping")
                frame[4].add(value_key)
            frame[3] = not frame[3]

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ZephyrError(f"{where} nests deeper than {MAX_DEPTH} levels{_where(event.start_mark)}",
                                      "flatten the recipe: no recipe needs that depth (is it generated or "
                                      "hostile?)")
                frames.append([event.anchor, total, isinstance(event, yaml.MappingStartEvent), True, set()])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                anchor, start, *_ = frames.pop()
                total += 1
                if anchor:
                    sizes[anchor] = total - start
                node_done(event, None)
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.anchor:
                    sizes[event.anchor] = 1
                node_done(event, event.value)
            elif isinstance(event, yaml.AliasEvent):
                total += sizes.get(event.anchor or "", 1)
                node_done(event, None)
            if total > MAX_NODES:
                raise ZephyrError(f"{where} expands to more than {MAX_NODES:,} values once its aliases (*name) are "
                                  f"expanded{_where(event.start_mark)}: an alias bomb",
                                  "write the values out, or use fewer nested aliases (&name / *name)")
    except RecursionError:  # not expected from the iterative parser; kept as a bound of last resort
        raise ZephyrError(f"{where} nests too deeply to read", "flatten the recipe") from None


def load(text: str, where: str | Path) -> Any:
    """``yaml.safe_load`` of text that passed :func:`check_text` (YAML syntax errors propagate as YAMLError)."""
    check_text(text, where)
    return yaml.safe_load(text)


def read(path: Path, what: str = "file") -> Any:
    """Read and load a YAML file, every fault (missing, unreadable, not UTF-8, not YAML, hostile) a ZephyrError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _too_big(path, size)  # without reading the file
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ZephyrError(f"cannot read {what} {path}: {exc.strerror or exc}", "check the path and its permissions") \
            from None
    except UnicodeDecodeError:
        raise ZephyrError(f"{what} {path} is not UTF-8 text", "save it as UTF-8, or check that it is the right file") \
            from None
    try:
        return load(text, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ZephyrError(f"{what} {path} is not valid YAML{_where(mark)}: {getattr(exc, 'problem', exc)}",
                          "fix the YAML syntax, or restore the file") from None
