"""Recipes that name Python code are code: list what they would import, and run it only when the user says so.

A generator of ``type: function`` names ``package.module:function``; a judge of ``type: function`` names a module of
rating functions; an lm-evaluation-harness task file of the recipe's own may name functions with ``!function``.
Running the recipe imports and calls them, and ``python -m`` puts the current folder on the import path, so a
module lying beside a recipe someone sent is importable. `validate` and `show` list every such name; `run` refuses
names from outside this package unless the user passes ``--trust-recipe-code`` on their own command line (the way
transformers treats ``trust_remote_code``). No recipe key can switch it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .errors import ZephyrError

OWN = "zephyr_recipes"
FLAG = "--trust-recipe-code"

_trusted = False


def allow(trusted: bool) -> None:
    """Set from the command line only."""
    global _trusted
    _trusted = bool(trusted)


def trusted() -> bool:
    """Whether this command line said --trust-recipe-code."""
    return _trusted


def _task_file_code(path: str) -> bool:
    """Whether an lm-evaluation-harness task file names Python (its `!function` tags import modules beside it);
    a file that cannot be read here is assumed to."""
    try:
        return "!function" in Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError):
        return True


def callables(cfg, where: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, name) of every piece of Python code a resolved config (or pipeline) names."""
    if isinstance(cfg, dict):
        if cfg.get("type") == "function":
            for key in ("function", "module"):
                if isinstance(cfg.get(key), str):
                    yield f"{where}.{key}", cfg[key]
        if where.endswith("lm_eval") and isinstance(cfg.get("tasks"), list):
            for i, task in enumerate(cfg["tasks"]):
                if isinstance(task, dict) and isinstance(task.get("yaml"), str) and _task_file_code(task["yaml"]):
                    yield f"{where}.tasks[{i}].yaml", f"{task['yaml']} (its !function tags)"
        for key, value in cfg.items():
            yield from callables(value, f"{where}.{key}" if where else str(key))
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            yield from callables(value, f"{where}[{i}]")


def foreign(cfg) -> list[tuple[str, str]]:
    """The names of code from outside this package."""
    return [(w, n) for w, n in callables(cfg) if n.split(":")[0].split(".")[0] != OWN]


def describe(cfg) -> list[str]:
    """Lines for `validate` and `show`."""
    return [f"{w} = {n}" + ("" if n.split(":")[0].split(".")[0] == OWN else f"  (outside {OWN}: needs {FLAG})")
            for w, n in callables(cfg)]


def check(cfg) -> None:
    """Refuse to run code from outside the package unless the command line trusts it."""
    names = foreign(cfg)
    if names and not _trusted:
        listed = "; ".join(f"{w} = {n}" for w, n in names)
        raise ZephyrError(f"this recipe names Python code that the run would import and call: {listed}",
                          f"read that code; if you trust it, run again with {FLAG} on the command line")
