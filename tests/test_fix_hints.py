"""Every fix hint names a key that exists for the place the error is about.

The hints are collected from the source, not from running the errors: every ``ZephyrError(...)`` call (and its
subclasses') in zephyr_recipes/, its fix argument's text (string literals and the literal parts of f-strings; a
name assigned in the same function and a call of a function of the same module are followed to their strings).
Every dotted config key in it (``stage.trainer.max_length=``, ``model.chat_template``, ``dataset.columns.prompt``,
``hardware.gpu``, ``run.overwrite``) is walked through the schema: the sections' dataclasses (core/schema.py), every
stage's own schema from the stages registry (a hint in ``stages/<name>.py`` against that stage's), the generator and
judge specs of every type, the benchmarks' sections, and TRL's config classes (model/trainer_fields.py) for
``stage.trainer.*``. A placeholder of an f-string ends a key there (``stage.{name}`` is not checked).
"""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zephyr_recipes"
SECTIONS = ("run", "model", "dataset", "stage", "hardware")
KEY = re.compile(r"(?<![\w./-])(?:%s)(?:\.(?:[A-Za-z_]\w*|\d+))+" % "|".join(SECTIONS))
HOLE = "\x00"  # an f-string's placeholder: a key ends there
FILE_SUFFIXES = {"json", "yaml", "yml", "jsonl", "py", "safetensors", "md", "txt", "log", "png", "sh", "sbatch", "bin"}

# Keys a hint names that the schema walk cannot confirm, each with the reason it is right.
ALLOWED: dict[str, str] = {}


def _errors() -> set[str]:
    names = {"ZephyrError"}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) in names for b in node.bases):
                names.add(node.name)
    return names


def _text(node: ast.AST, scope: ast.AST | None, functions: dict[str, ast.AST], depth: int = 0) -> list[str]:
    """The literal text a fix expression can have: string constants, f-strings with their holes marked, and what
    a local name or a same-module function call returns (one level deep)."""
    out: list[str] = []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)]
    if isinstance(node, ast.Name) and scope is not None and depth < 2:
        for sub in ast.walk(scope):
            if isinstance(sub, ast.Assign) and any(getattr(t, "id", None) == node.id for t in sub.targets):
                out += _text(sub.value, scope, functions, depth + 1)
        return out
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None)
        if name in functions and depth < 2:
            for sub in ast.walk(functions[name]):
                if isinstance(sub, ast.Return) and sub.value is not None:
                    out += _text(sub.value, functions[name], functions, depth + 1)
    for child in ast.iter_child_nodes(node):
        out += _text(child, scope, functions, depth)
    return out


def collect() -> list[tuple[str, int, str]]:
    """(module path, line, key) for every dotted config key a fix hint names."""
    errors = _errors()
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        parents = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                parents[child] = parent
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in errors):
                continue
            fix = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "fix"), None)
            if fix is None:
                continue
            scope = node
            while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents[scope]
            for text in _text(fix, scope, functions):
                for key in KEY.findall(text):
                    if key.rsplit(".", 1)[-1] in FILE_SUFFIXES:  # a file name (run.json, model.safetensors)
                        continue
                    found.append((str(path.relative_to(ROOT.parent)), node.lineno, key))
    return found


# ------------------------------------------------------------------------------------------------- the schema
def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a dataclass made at run time: its fields carry real types
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _classes(kind) -> list:
    """The dataclasses a field's type can hold (Optional, list[...] and the _Typed families unwrapped); [] for
    free-form values (dict, Any, str ...)."""
    from zephyr_recipes.feedback.specs import GeneratorSpec, JudgeSpec

    origin = typing.get_origin(kind)
    if origin is not None:
        return [c for arg in typing.get_args(kind) for c in _classes(arg)]
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        for family in (GeneratorSpec, JudgeSpec):
            if kind is family:
                return list(family.TYPES.values())
        return [kind]
    return []


def _walk(classes: list, parts: list[str]) -> bool:
    """Whether the dotted path ``parts`` exists below one of ``classes``."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if head.isdigit():  # a list index (stage.generators.0.model)
        return _walk(classes, rest)
    for cls in classes:
        hints = _hints(cls)
        if head not in hints:
            continue
        inner = _classes(hints[head])
        if not rest or not inner and typing.get_origin(hints[head]) is not list:
            return True  # the key, or a free-form value below it (dataset.columns.prompt, hardware.lora.r)
        if inner and _walk(inner, rest):
            return True
        if not inner:  # a list of free-form values
            return True
    return False


def _stage_schemas(module: str) -> list:
    from zephyr_recipes import stages

    every = {name: stages.get(name) for name in stages.names()}
    mine = [s for s in every.values() if s.__class__.__module__ == module.removesuffix(".py").replace("/", ".")]
    return [s.schema for s in (mine or every.values())]


def _trainer_keys(module: str) -> set[str]:
    from zephyr_recipes import stages
    from zephyr_recipes.model import trainer_fields
    from zephyr_recipes.stages.base import TrainerStage

    trainers = [stages.get(n) for n in stages.names() if isinstance(stages.get(n), TrainerStage)]
    mine = [s for s in trainers if s.__class__.__module__ == module.removesuffix(".py").replace("/", ".")]
    return {k for s in (mine or trainers) for k in trainer_fields.fields(s)}


def exists(module: str, key: str) -> bool:
    from zephyr_recipes.core.schema import SECTIONS as SCHEMA

    section, *parts = key.split(".")
    if section == "stage" and parts[:1] == ["trainer"] and len(parts) > 1:
        return parts[1] in _trainer_keys(module)
    classes = _stage_schemas(module) if section == "stage" else [SCHEMA[section]]
    return _walk(classes, parts)


# -------------------------------------------------------------------------------------------------- the tests
def test_the_collector_finds_the_hints_it_should():
    """The collector reads what it claims to: keys of fix literals, f-strings, local names and same-module calls."""
    found = {(m, k) for m, _, k in collect()}
    assert ("zephyr_recipes/runtime/stageplan.py", "hardware.gradient_checkpointing") in found  # advice(cfg)'s return
    assert ("zephyr_recipes/stages/dpo.py", "stage.trainer.beta") in found
    assert any(k == "dataset.max_prompt_tokens" for _, k in found)
    assert not any(k.endswith((".json", ".safetensors")) for _, k in found)
    assert len(found) > 40


def test_the_schema_walk_accepts_real_keys_and_refuses_made_up_ones():
    assert exists("zephyr_recipes/stages/dpo.py", "stage.trainer.beta")
    assert not exists("zephyr_recipes/stages/sft.py", "stage.trainer.beta")  # SFTConfig has no beta
    assert exists("zephyr_recipes/stages/aif.py", "stage.generators.0.model_config.chat_template")
    assert exists("zephyr_recipes/stages/aif.py", "stage.judge.module")  # a function judge's key
    assert not exists("zephyr_recipes/stages/aif.py", "stage.generators.0.chat_template")
    assert not exists("zephyr_recipes/stages/aif.py", "stage.trainer")  # the AI feedback stage trains nothing
    assert exists("zephyr_recipes/stages/eval.py", "stage.mt_bench.judge.model")
    assert exists("zephyr_recipes/data/kinds.py", "dataset.columns.prompt")  # free-form below columns
    assert exists("zephyr_recipes/model/hardware.py", "hardware.lora.r")
    assert not exists("zephyr_recipes/model/hardware.py", "hardware.per_device_train_batch_size")
    assert not exists("zephyr_recipes/model/chat_format.py", "model.template")


def test_every_fix_hint_names_a_key_that_exists():
    wrong = [f"{m}:{line}: {key}" for m, line, key in collect() if key not in ALLOWED and not exists(m, key)]
    assert not wrong, "fix hints that name keys the schema does not have:\n" + "\n".join(wrong)


def test_every_allowed_key_is_still_named_by_a_hint():
    named = {k for _, _, k in collect()}
    stale = [key for key in ALLOWED if key not in named]
    assert not stale, f"allowed but named by no hint any more (drop them from ALLOWED): {stale}"


# ------------------------------------------------------------------- a hint about a generator names the generator
def test_a_generator_without_a_chat_template_is_told_its_own_key_and_the_fix_works_as_written(cli, tmp_path):
    """The generator's model section is stage.generators.<i>.model_config: `model.chat_template` would set the
    template of the recipe's model, which the AI feedback stage never loads."""
    from tests.byo_helpers import build_chatml_llama

    model = build_chatml_llama(tmp_path / "no-template", template="")
    base = ["tiny/aif", f"stage.generators=[{{name: plain, type: transformers, model: {model}}}]",
            "dataset.max_train_samples=3", "stage.num_completions=2", f"run.output_dir={tmp_path / 'aif'}"]
    code, out, err = cli(*base)
    assert code == 2
    fix = re.search(r"fix: set (\S+=\S+)", err)
    assert fix and fix.group(1) == "stage.generators.0.model_config.chat_template=zephyr", err
    assert "model.chat_template" not in err.replace("model_config.chat_template", "")
    assert exists("zephyr_recipes/stages/aif.py", fix.group(1).split("=")[0])
    code, out, err = cli(*base, fix.group(1))  # the fix, applied as written
    assert "no chat template" not in err
    answers = (tmp_path / "aif" / "completions.jsonl").read_text().splitlines()
    assert len(answers) == 3 * 2  # every prompt answered twice by the generator
