"""The front end: find a recipe, compose it with Hydra, and hand back a plain dict.

Only this module uses Hydra. Workers read the frozen, resolved YAML that the front end writes into the
run folder and never compose again.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import stages
from ..core import fingerprint
from ..core.catalog import CONF_DIR, RECIPES_DIR, list_options, list_recipes
from ..core.errors import ZephyrError, did_you_mean
from ..core.safety import guard_destructive, refuse_env
from ..core.schema import recipe_defaults
from ..core.yamlsafe import load as load_bounded
from .inputs import check_recipe_tree, check_writes


def find_recipe(recipe: str) -> tuple[Path, str]:
    """Return (file, name) for a shipped recipe name (tiny/sft) or a path to any YAML file."""
    path = Path(recipe).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ZephyrError(f"recipe file {recipe} does not exist", "check the path, or `zephyr-recipes list`")
        return path.resolve(), path.stem if path.parent.name in ("", ".") else f"{path.parent.name}/{path.stem}"
    shipped = RECIPES_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped, recipe
    names = list_recipes()
    raise ZephyrError(f"no recipe named {recipe!r}",
                      did_you_mean(recipe, names, cutoff=0.5) or
                      f"shipped recipes: {', '.join(names)}; or give a path to a .yaml file")


def compose(recipe: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, str, Path]:
    """Compose a recipe with Hydra overrides; returns (resolved dict, recipe name, recipe file)."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path, name = find_recipe(recipe)
    fingerprint.add_search_path(path.parent)  # a function module may lie beside the recipe
    try:
        doc = load_bounded(read_recipe_text(path), path)  # size, depth, aliases, duplicate keys: before Hydra
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ZephyrError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}",
                          "fix the YAML syntax (indentation, a missing ':' or an unclosed quote)") from None
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else f"a YAML {type(doc).__name__.replace('str', 'string')}"
        raise ZephyrError(f"recipe {path} is {kind}, and a recipe must be a mapping",
                          "write it as `defaults:` (one option per group: model, dataset, stage, hardware, then "
                          "_self_) followed by the sections it overrides; start from `zephyr-recipes cp tiny/sft "
                          "my.yaml`")
    check_recipe_tree(doc, path)
    for o in overrides:
        if o.startswith("hydra.") or o.startswith("hydra/"):
            raise ZephyrError(f"override {o!r} changes Hydra itself", "override recipe keys only")
    overrides = [_upsert(o) for o in overrides]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None):
            cfg = hydra_compose(config_name=path.stem,
                                overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *overrides])
        # The schemas' defaults lie under the recipe, so an interpolation may name any key, set or not.
        try:
            if "pipeline" in cfg:
                raise TypeError("a pipeline: its stages are composed one by one")
            stage = stages.get(OmegaConf.select(cfg, "stage.name", default="sft"))
            cfg = OmegaConf.merge(OmegaConf.create(recipe_defaults(stage.schema)), cfg)  # type: ignore[assignment]
        except (OmegaConfBaseException, ZephyrError, TypeError):
            pass  # a malformed section or stage name: validation names it
        refuse_env(_mapping(OmegaConf.to_container(cfg, resolve=False)))  # before anything reads the environment
        container = _mapping(OmegaConf.to_container(cfg, resolve=True))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise _missing_key(str(exc), path, overrides) or \
            ZephyrError(_explain_hydra(str(exc)), _hydra_fix(str(exc))) from None
    finally:
        GlobalHydra.instance().clear()
    guard_destructive(container, overrides, name, path)
    check_writes(container, overrides, path, name)
    return container, name, path


def _mapping(container) -> dict:
    """A composed recipe's plain form: Hydra composes a mapping, always."""
    assert isinstance(container, dict)
    return container


def read_recipe_text(path: Path) -> str:
    """A recipe file's text, or an error naming what is wrong with the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ZephyrError(f"cannot read recipe {path}: {exc.strerror or exc}",
                          "check the path and its permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ZephyrError(f"recipe {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
                          "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or check that it is a recipe "
                          "and not a binary file") from None


_DOTTED = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+=")


def _upsert(override: str) -> str:
    """`section.key=value` sets the key whether or not the recipe wrote it (Hydra's `++`).

    Keys are checked afterwards against the schema and TRL, which give a did-you-mean, so there is no need
    to make users remember `+` for keys that a recipe happens to leave at their defaults.
    """
    return f"++{override}" if _DOTTED.match(override) else override


def _missing_key(message: str, path: Path, overrides) -> ZephyrError | None:
    """An interpolation ${...} that names no key: in the recipe file (or a file it pulls in) unless an override
    wrote it."""
    m = re.search(r"Interpolation key '([^']+)' not found", message)
    if not m:
        return None
    key = m.group(1)
    if any("${" in o and key in o for o in overrides):
        return ZephyrError(f"the interpolation ${{{key}}} in an override names a key that does not exist",
                           f"set {key} too, or fix the name in the override")
    return ZephyrError(f"{path} (or a file its defaults pull in) has the interpolation ${{{key}}}, and no key "
                       f"{key} exists in the composed recipe",
                       f"fix the name in the file, or set the key: {key}=<value> on the command line or in the "
                       "recipe")


def _explain_hydra(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "composition failed"
    return f"cannot compose the recipe: {first}"


def _hydra_fix(message: str) -> str:
    if "Ambiguous value" in message:
        return "a comma list is a sweep: run it with -m (zephyr-recipes -m RECIPE key=a,b), or quote one value: key='a,b'"
    if "Could not find" in message or "not found in" in message:
        opts = list_options()
        return "available options: " + "; ".join(f"{g}: {', '.join(o)}" for g, o in opts.items())
    if "Could not override" in message or "Key '" in message:
        return "to add a key that the recipe lacks, prefix it with '+' (+stage.trainer.max_steps=10)"
    if "LexerNoViableAlt" in message or "mismatched input" in message or "token recognition error" in message:
        return ("check the override syntax: key=value, +key=value, ~key, group=option; a value with characters "
                "such as < > | [ ] { } , = or spaces goes in quotes inside the override, and the override in the "
                "shell's own quotes: \"stage.trainer.eos_token='<|im_end|>'\"")
    return "check the override syntax: key=value, +key=value, ~key, group=option"


def parse_sweep(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A sweep's overrides (``-m``): (plain overrides, [(key, values)] of the swept ones), read by Hydra's override
    parser (comma lists, ``range()``, ``choice()``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ZephyrError(f"cannot read the sweep: {str(exc).strip().splitlines()[0]}",
                          "write sweeps as key=a,b,c or key=range(1,4) or key=choice(a,b)") from None
    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for o in parsed:
        if not o.is_sweep_override():
            fixed.append(str(o.input_line))
            continue
        try:
            values = list(o.sweep_string_iterator())
        except Exception as exc:  # interval() and other sweeps that need an optimiser
            raise ZephyrError(f"{o.input_line}: {exc}", "list the values, or use range() or choice()") from None
        if not values:
            raise ZephyrError(f"{o.input_line}: the sweep has no values (an empty range or list), so there is no "
                              "point to run", "give at least one value, e.g. key=range(1,4) or key=a,b")
        if o.get_key_element().startswith("~"):
            raise ZephyrError(f"{o.input_line}: a deletion cannot be swept", "sweep key=a,b instead")
        swept.append((o.get_key_element(), values))
    if not swept:
        raise ZephyrError("-m runs a sweep, but no override sweeps anything",
                          "give a key several values: stage.trainer.beta=0.01,0.1 (or drop -m)")
    keys = [k for k, _ in swept]
    if len(set(k.lstrip("+") for k in keys)) < len(keys):
        raise ZephyrError("a key is swept twice", "give each key one list of values")
    return fixed, swept
