"""Where the shipped recipes and config options live, and what they name.

The options (``conf/<group>/<name>.yaml``) and recipes (``recipes/<family>/<name>.yaml``) sit beside the package
in a source checkout and inside it (``_conf``, ``_recipes``) in an installed wheel. Composing them is the front
end's (:mod:`zephyr_recipes.runtime.compose`); knowing where they are and which recipe writes which default run
folder is everyone's, so it lives here, below every layer that asks.
"""

from __future__ import annotations

from pathlib import Path

GROUPS = ("model", "dataset", "stage", "hardware")


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


PACKAGE = Path(__file__).resolve().parent.parent
CONF_DIR = _first_existing(PACKAGE.parent / "conf", PACKAGE / "_conf")
RECIPES_DIR = _first_existing(PACKAGE.parent / "recipes", PACKAGE / "_recipes")


def list_recipes() -> list[str]:
    return sorted(str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in RECIPES_DIR.rglob("*.yaml"))


def list_options() -> dict[str, list[str]]:
    # Files starting with "_" are building blocks of the options (conf/hardware/_base.yaml), not options.
    return {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml") if not p.stem.startswith("_")) for g in GROUPS}


def producing_recipe(folder: Path) -> tuple[str, str] | None:
    """(recipe, command) of the shipped recipe whose default run folder this is (runs/tiny-sft: tiny/sft)."""
    if folder.parent.name != "runs":
        return None
    stem = folder.name
    for i in [i for i, c in enumerate(stem) if c == "-"]:
        recipe = f"{stem[:i]}/{stem[i + 1:]}"
        if (RECIPES_DIR / f"{recipe}.yaml").is_file():
            make = f"`make {stem[i + 1:]}` or " if stem[:i] == "tiny" else ""
            return recipe, f"{make}`zephyr-recipes {recipe}`"
    return None
