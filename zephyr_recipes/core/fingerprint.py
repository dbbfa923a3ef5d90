"""Fingerprints of the code a stage runs by reference: part of a finished stage's identity.

A config names some code by reference rather than holding it: a function generator
(``package.module:function``), a function judge (``module``), the embedded judge and teacher, the builders of
``builtin://`` data and models. Two runs of the same config with different code are different runs, so every
stage declares what it runs by reference (``Stage.code_refs(cfg)``) and the runner records the fingerprint of
each in the run folder (``run.json``'s ``code``). A finished stage whose config *and* fingerprints match is
reused; a changed fingerprint runs the stage again, naming the code that changed.

A fingerprint is, in this order:

- the version the code declares: a module-level ``FINGERPRINT = "..."`` (or ``__version__``), read from the
  source without running it; bump it when the module computes something differently, and leave it when it
  does not (a comment, a refactoring);
- else ``sha256:`` of the module's source and of the modules beside it that it imports (the files in its own
  folder, followed through their own imports), so an edit to a helper the judge imports counts too.

Only the referenced module and its neighbours are read, never the whole package: upgrading zephyr-recipes
re-runs only the stages whose referenced code the new version changed.

Function modules are found as Python finds them, plus the recipe's folder and the working directory
(:func:`import_path`): a module lying beside the recipe is importable without ``PYTHONPATH``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

DECLARED = ("FINGERPRINT", "__version__")


@dataclass(frozen=True)
class CodeRef:
    """One piece of code a stage runs by reference.

    ``label`` names it in messages and in run.json (``zephyr_recipes.embedded.judge``, ``builtin://tiny-mistral``);
    ``module`` is the module whose source is fingerprinted; ``version``, when given, is the fingerprint itself (a
    version the code declares elsewhere, e.g. the embedded resources' ``VERSION``)."""

    label: str
    module: Optional[str] = None
    version: Optional[str] = None
    where: str = ""  # the config key that names it, for messages


# The recipe folders searched for a function module besides sys.path, set when a recipe is composed; an
# environment variable, so that the processes a launch starts search the same folders.
PATH_ENV = "ZEPHYR_RECIPES_CODE_PATH"


def add_search_path(folder: str | Path) -> None:
    """Find function modules in ``folder`` too (the recipe's folder), after the working directory."""
    path = str(Path(folder).expanduser().resolve())
    known = [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    if path not in known:
        os.environ[PATH_ENV] = os.pathsep.join([*known, path])


def search_paths() -> list[str]:
    """Where a function module is looked for before sys.path: the working directory, then the recipe folders."""
    out = [str(Path.cwd())]
    out += [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p and p not in out]
    return out


@contextlib.contextmanager
def import_path() -> Iterator[None]:
    """sys.path with the working directory and the recipe folders in front, for the block."""
    added = [p for p in search_paths() if p not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def module_file(module: str) -> Optional[Path]:
    """The source file of ``module`` (its package's ``__init__.py`` for a package), or None when not found.
    Parent packages are imported to find it (as importing the module would); the module itself is not."""
    with import_path():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError, AttributeError):
            return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def declared(source: str) -> Optional[str]:
    """The version a module's source declares at its top level (FINGERPRINT, else __version__), without running it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, (str, int, float)):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in DECLARED:
                    found[target.id] = str(node.value.value)
    return next((found[k] for k in DECLARED if k in found), None)


def _neighbours(path: Path, source: str) -> list[Path]:
    """The files of the modules ``source`` imports that lie in ``path``'s own folder."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    folder, names = path.parent, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                if node.module:
                    names.add(node.module.split(".")[0])
                else:
                    names.update(a.name.split(".")[0] for a in node.names)
            elif node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
    out = []
    for name in sorted(names):
        for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
            if candidate.is_file() and candidate != path:
                out.append(candidate)
                break
    return out


def source_digest(path: Path) -> str:
    """sha256 of a module file and of its neighbours' files (followed through their imports)."""
    seen: dict[Path, bytes] = {}
    todo = [path]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        data = p.read_bytes()
        seen[p] = data
        todo += _neighbours(p, data.decode("utf-8", "replace"))
    h = hashlib.sha256()
    for p in sorted(seen, key=lambda q: q.name):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(seen[p]).digest())
    return "sha256:" + h.hexdigest()[:16]


def of_module(module: str) -> str:
    """The fingerprint of a module: its declared version, else its source's digest; ``missing`` when not found."""
    path = module_file(module)
    if path is None:
        return "missing"
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "missing"
    version = declared(source)
    return f"declared:{version}" if version is not None else source_digest(path)


def of_refs(refs: list[CodeRef]) -> dict[str, str]:
    """{label: fingerprint} of the code refs (a label named twice is fingerprinted once)."""
    out: dict[str, str] = {}
    for ref in refs:
        if ref.label in out:
            continue
        if ref.version is not None:
            out[ref.label] = f"declared:{ref.version}"
        elif ref.module:
            out[ref.label] = of_module(ref.module)
    return dict(sorted(out.items()))


def changed(recorded: Optional[dict], now: dict) -> list[str]:
    """The labels whose fingerprint differs between what a run folder recorded and the code now (code no longer
    referenced counts as changed only through the config, which names it). None recorded: nothing known, so
    nothing counts as changed (a folder finished before fingerprints were recorded)."""
    if recorded is None:
        return []
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def describe(labels: list[str], recorded: Optional[dict], now: dict) -> str:
    """'zephyr_recipes.embedded.judge (sha256:ab.. -> sha256:cd..)' for messages."""
    parts = []
    for label in labels:
        a, b = (recorded or {}).get(label), now.get(label)
        parts.append(f"{label} ({a or 'not used'} -> {b or 'not used'})")
    return ", ".join(parts)
