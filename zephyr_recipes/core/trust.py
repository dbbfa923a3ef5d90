"""Recipes that can run code are code: list everything they would run, and run it only when the user says so.

A recipe file is untrusted input (see docs/security.md). What in it can run code on this machine:

- a generator of ``type: function`` (``package.module:function``) or a judge of ``type: function`` (a module of
  rating functions), or a judge whose type is itself code (``type: package.module:Class``): running the recipe
  imports and calls them, and a function module is found in the working directory and the recipe's own folder
  (core/fingerprint.py), so a module lying beside a recipe someone sent is importable;
- a ``serve:`` command of an openai generator or judge: a program the runner starts;
- ``trust_remote_code: true`` (the model section, a generator's or judge's ``model_config``): transformers imports
  the Python files a model folder's ``config.json`` names in ``auto_map``;
- an lm-evaluation-harness task file of the recipe's own: lm-eval reads every task file in its folder, and their
  ``!function`` tags, ``include:`` chains, YAML tags and unsandboxed Jinja templates can all reach Python;
- ``hardware.slurm.setup`` lines: shell run on every node of the job.

`validate` and `show` list every such item; `run` refuses anything from outside this package unless the user
passes ``--trust-recipe-code`` on their own command line (the way transformers treats ``trust_remote_code``), and
it refuses before anything is imported or started. No recipe key can switch it on.
"""

from __future__ import annotations

import json
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


def _is_own(name: str) -> bool:
    return name.split(":")[0].split(".")[0] == OWN


def _auto_map_files(model: str) -> list[str]:
    """The Python files a local model folder's config.json names in auto_map (what trust_remote_code imports)."""
    path = Path(str(model)).expanduser()
    try:
        config = json.loads((path / "config.json").read_text()) if path.is_dir() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    files = []
    for ref in (auto_map or {}).values() if isinstance(auto_map, dict) else []:
        for item in ref if isinstance(ref, list) else [ref]:
            if isinstance(item, str) and "." in item:
                module = item.split("--")[-1].rsplit(".", 1)[0]
                files.append(f"{module}.py")
    return sorted(set(files))


def _task_folder(path: str) -> str:
    return str(Path(path).expanduser().resolve().parent)


def items(cfg, where: str = "") -> Iterator[tuple[str, str, bool]]:
    """(dotted path, what runs, own) for every piece of code a resolved config (or pipeline) can run; ``own``:
    code of this package, which needs no trust. It walks any mapping (a config, a pipeline, a sweep's configs by
    point, a lone section), so it reads keys, not a typed recipe."""
    if isinstance(cfg, dict):
        if isinstance(cfg.get("type"), str):  # a generator or judge: its Python function or module of functions
            for key in ("function", "module"):
                if isinstance(cfg.get(key), str):
                    yield f"{where}.{key}", cfg[key], _is_own(cfg[key])
            if ":" in cfg["type"]:  # a judge type the recipe's own code defines (package.module:Class)
                yield f"{where}.type", cfg["type"], _is_own(cfg["type"])
        if isinstance(cfg.get("serve"), str) and cfg["serve"].strip():
            yield f"{where}.serve", f"shell command `{cfg['serve']}`", False
        if cfg.get("trust_remote_code") is True:
            model = cfg.get("name_or_path") or cfg.get("model")
            files = _auto_map_files(model) if isinstance(model, str) else []
            named = f"the Python files of model {model}" if isinstance(model, str) else "a model's Python files"
            if files:
                named += f" ({', '.join(files)})"
            yield f"{where}.trust_remote_code", named, False
        if isinstance(cfg.get("model_config"), dict) and cfg["model_config"].get("trust_remote_code") is True:
            model = cfg.get("model")
            files = _auto_map_files(model) if isinstance(model, str) else []
            yield (f"{where}.model_config.trust_remote_code", f"the Python files of model {model}"
                   + (f" ({', '.join(files)})" if files else ""), False)
        # Task files in lm-eval's format (a benchmark's `tasks: [{yaml: ...}]`, wherever it sits): they can run code.
        if isinstance(cfg.get("tasks"), list):
            for i, task in enumerate(cfg["tasks"]):
                if isinstance(task, dict) and isinstance(task.get("yaml"), str):
                    yield (f"{where}.tasks[{i}].yaml", f"every lm-eval task file in {_task_folder(task['yaml'])} "
                           "(!function, include:, YAML tags and Jinja templates reach Python)", False)
        slurm = cfg.get("slurm") if where.endswith("hardware") or where == "hardware" else None
        if isinstance(slurm, dict) and slurm.get("setup"):
            lines = slurm["setup"] if isinstance(slurm["setup"], list) else [slurm["setup"]]
            yield f"{where}.slurm.setup", "shell lines on every node: " + "; ".join(map(str, lines)), False
        for key, value in cfg.items():
            if key == "model_config" and isinstance(value, dict):
                continue  # listed above, with the generator's model
            yield from items(value, f"{where}.{key}" if where else str(key))
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            yield from items(value, f"{where}[{i}]")


def callables(cfg, where: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, what runs) of every piece of code a resolved config (or pipeline) names."""
    for w, n, _own in items(cfg, where):
        yield w, n


def foreign(cfg) -> list[tuple[str, str]]:
    """The code from outside this package."""
    return [(w, n) for w, n, own in items(cfg) if not own]


def describe(cfg) -> list[str]:
    """Lines for `validate` and `show`."""
    out = []
    for w, n, own in items(cfg):
        function = w.endswith((".function", ".module", ".type"))
        out.append(f"{w} = {n}" + ("" if own else f"  (outside {OWN}: needs {FLAG})" if function else
                                   f"  (needs {FLAG})"))
    return out


def check(cfg) -> None:
    """Refuse to run code from outside the package unless the command line trusts it."""
    names = foreign(cfg)
    if names and not _trusted:
        listed = "; ".join(f"{w} = {n}" for w, n in names)
        raise ZephyrError(f"this recipe names code that the run would import, call or start: {listed}",
                          f"read that code; if you trust it, run again with {FLAG} on your own command line "
                          "(`zephyr-recipes validate` lists it; docs/security.md says why)")
