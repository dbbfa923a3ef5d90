"""Broken and hostile input caught where it enters, before anything is read into memory or written.

- :func:`check_recipe_tree`: every YAML file a recipe pulls in through ``defaults:`` is bounded like the recipe
  (:mod:`zephyr_recipes.core.yamlsafe`), and no entry may leave the recipe's folder and ``conf/`` (``../`` or a
  symlink shipped in the recipe's folder that points elsewhere).
- :func:`check_writes`: the run folder a recipe (not the command line) picks may not lie behind a symlink shipped in
  the recipe's folder that points outside it, and a run folder that is a file is refused before any lock is made.
- :func:`check_run`: ``run.seed``, ``run.name`` and ``run.output_dir`` at ``validate`` rather than a traceback
  minutes later.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from ..core.catalog import CONF_DIR
from ..core.errors import ZephyrError
from ..core.yamlsafe import check_text

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
NAME_MAX = 200  # bytes: a file name may have 255, and run folders get suffixes (.dry-run, .lock, -seedN)


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == r or r in resolved.parents for r in roots)


def _entries(doc: dict) -> list[tuple[str, str | None]]:
    """(group or name, option) of a `defaults:` list."""
    out: list[tuple[str, str | None]] = []
    for entry in doc.get("defaults") or [] if isinstance(doc.get("defaults"), list) else []:
        if isinstance(entry, str):
            out.append((entry, None))
        elif isinstance(entry, dict):
            for k, v in entry.items():
                out.append((str(k), None if v is None else str(v)))
    return out


def check_recipe_tree(doc: dict, path: Path, seen: set[Path] | None = None) -> None:
    """Refuse a `defaults:` entry that leaves the recipe folder and conf/, and bound every file it names."""
    import yaml

    seen = set() if seen is None else seen
    seen.add(path.resolve())
    recipe_dir = path.parent
    roots = [recipe_dir.resolve(), CONF_DIR.resolve()]
    for group, option in _entries(doc):
        group = re.sub(r"^(override|optional)\s+", "", group.strip())
        for part in (group, option or ""):
            bits = part.replace("\\", "/").split("/")
            if ".." in bits or part.startswith("~") or re.match(r"^[A-Za-z]:[/\\]", part):
                raise ZephyrError(f"{path}: the defaults entry `{group}{': ' + option if option else ''}` leaves the "
                                  "recipe's folder (`..`), and a recipe may only pull in files beside it or in "
                                  "conf/", "copy the file it names next to the recipe and name it without `..`")
        rel = group.lstrip("/") + ("/" + option if option else "")
        if group == "_self_" or option == "null":
            continue
        for base in (recipe_dir, CONF_DIR):
            candidate = base / f"{rel}.yaml"
            if not (candidate.exists() or candidate.is_symlink()):
                continue
            if not _inside(candidate, roots):
                raise ZephyrError(f"{candidate} is a symlink that points outside the recipe's folder and conf/ "
                                  f"(to {candidate.resolve()})",
                                  "copy the file into the recipe's folder instead of linking to it")
            if candidate.resolve() in seen or not candidate.is_file():
                break
            try:
                text = candidate.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                break  # composing names it
            check_text(text, candidate)
            try:
                sub = yaml.safe_load(text)
            except yaml.YAMLError:
                break  # composing names it
            if isinstance(sub, dict) and base == recipe_dir:
                check_recipe_tree(sub, candidate, seen)
            break


def _overridden(overrides, key: str) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in overrides)


def check_writes(cfg: dict, overrides, recipe: Path, name: str) -> None:
    """The run folder a recipe picks stays inside the places the command line names (see the module)."""
    run = cfg.get("run")
    run = run if isinstance(run, dict) else {}
    out = run.get("output_dir") or f"runs/{run.get('name') or name.replace('/', '-')}"
    if not isinstance(out, str):
        return
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ZephyrError(f"run.output_dir {out} is a file, not a folder",
                          "choose another run.name or run.output_dir (the file is left as it is)")
    if _overridden(overrides, "run.output_dir"):
        return  # the user's own command line named it
    recipe_dir = recipe.parent.resolve()
    current = Path(folder.anchor) if folder.is_absolute() else Path.cwd()
    for part in folder.parts[1:] if folder.is_absolute() else folder.parts:
        current = current / part
        if current.is_symlink():
            inside_recipe = current.parent.resolve() == recipe_dir or recipe_dir in current.parent.resolve().parents
            if inside_recipe and not _inside(current, [recipe_dir]):
                raise ZephyrError(f"the run folder {out} lies behind {current}, a symlink in the recipe's folder that "
                                  f"points outside it (to {current.resolve()})",
                                  "name the run folder on your command line if you mean it: "
                                  f"run.output_dir={current.resolve()}/..., or remove the link")


def check_run(run: dict) -> None:
    """run.seed, run.name and run.output_dir, before anything is written."""
    seed = run.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= SEED_MAX:
        raise ZephyrError(f"run.seed={seed} is outside 0 .. {SEED_MAX} (numpy and torch take an unsigned 32-bit "
                          "seed)", "give run.seed a value in that range, e.g. run.seed=42")
    name = run.get("name")
    if isinstance(name, str):
        bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or c in "/\\"), None)
        if bad is not None:
            raise ZephyrError(f"run.name {name!r} contains {bad!r}, which a folder name cannot hold safely "
                              "(a path separator, a newline or another control character)",
                              "use letters, digits, '-', '_' and '.', e.g. run.name=my-run")
        if name.strip() in ("", ".", ".."):
            raise ZephyrError(f"run.name {name!r} is not a folder name", "give a name, e.g. run.name=my-run")
        if len(name.encode("utf-8")) > NAME_MAX:
            raise ZephyrError(f"run.name is {len(name.encode('utf-8'))} bytes long, over the {NAME_MAX} a run folder's "
                              "name may have (file systems allow 255, and the runner adds suffixes)",
                              "give a shorter run.name")
    out = run.get("output_dir")
    if isinstance(out, str):
        if "\x00" in out or "\n" in out:
            raise ZephyrError(f"run.output_dir {out!r} contains a NUL or newline", "give a plain path")
        longest = max((len(p.encode("utf-8")) for p in Path(out).parts), default=0)
        if longest > NAME_MAX:
            raise ZephyrError(f"run.output_dir has a path component {longest} bytes long, over the {NAME_MAX} a "
                              "folder name may have", "give a shorter run.output_dir")
        folder = Path(out).expanduser()
        if folder.exists() and not folder.is_dir():
            raise ZephyrError(f"run.output_dir {out} is a file, not a folder",
                              "choose another run.name or run.output_dir (the file is left as it is)")
        if os.path.lexists(folder) and folder.is_symlink() and not folder.exists():
            raise ZephyrError(f"run.output_dir {out} is a symlink to nothing ({os.readlink(folder)})",
                              "remove the link or give another run.output_dir")
