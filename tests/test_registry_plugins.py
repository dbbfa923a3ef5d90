"""The registry and its plugins: an installed package adds a stage and a benchmark by entry point, without editing
this project, and the real command line lists, validates and runs them.

The package is a throwaway distribution written into tmp_path (its modules and a dist-info folder with
entry_points.txt, as pip would install it) and put on PYTHONPATH of a subprocess: nothing is downloaded and nothing
is installed into the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import install_distribution
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.core.registry import Registry

ROOT = Path(__file__).resolve().parent.parent

STAGE = '''
"""A plugin stage: counts the letters of a word, reads no model and no data."""
from dataclasses import dataclass

from zephyr_recipes.core.schema import StageSection, option
from zephyr_recipes.stages import TaskStage


@dataclass
class LettersConfig(StageSection):
    word: str = option("zephyr", "The word whose letters are counted.")


class Letters(TaskStage):
    """Counts the letters of stage.word (a plugin's stage)."""

    name = "letters"
    schema = LettersConfig

    def reads_model(self, recipe):
        return False

    def reads(self, recipe):
        return "stage.word"

    def check(self, recipe):
        if not recipe.stage.word:
            from zephyr_recipes.core.errors import ZephyrError
            raise ZephyrError("stage.word is empty", "stage.word=zephyr")

    def execute(self, recipe, folder):
        return {"letters": len(recipe.stage.word)}

    def card(self, recipe, prov, result):
        return f"# Letters\\n\\n{result['letters']} letters.\\n"

    def headline(self, result):
        return {"letters": result["letters"]}


STAGE = Letters()
'''

BENCHMARK = '''
"""A plugin benchmark: counts the vowels of a word (no model, no judge)."""
from dataclasses import dataclass

from zephyr_recipes.benchmarks import Benchmark, Metric
from zephyr_recipes.core.schema import option


@dataclass
class VowelsConfig:
    word: str = option("zephyr", "The word whose vowels are counted.")


class Vowels(Benchmark):
    name = "vowels"
    title = "Vowels"
    schema = VowelsConfig
    help = "Counts vowels (a plugin's benchmark)."
    optional = True
    failures_key = None
    metrics = (Metric("vowels_count", "Vowels", ("vowels",), digits=0),)

    def uses_model(self, sec):
        return False

    def run(self, ctx):
        return {"vowels": sum(c in "aeiouy" for c in ctx.section(self).word)}

    def protocol(self, sec, result):
        return "counts vowels"


BENCHMARK = Vowels()
'''

RECIPE = """\
defaults:
  - model: tiny
  - hardware: cpu
  - _self_

recipe:
  description: the plugin's stage

stage:
  name: letters
  word: {word}
"""


def install(site: Path) -> None:
    """Write the distribution zr-letters-plugin 0.1 into ``site`` as an installer would."""
    install_distribution(site, "zr_letters_plugin", {"letters.py": STAGE, "vowels.py": BENCHMARK}, """\
        [zephyr_recipes.stages]
        letters = zr_letters_plugin.letters

        [zephyr_recipes.benchmarks]
        vowels = zr_letters_plugin.vowels:BENCHMARK
        """)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """(run the CLI with the plugin installed, the working folder)."""
    tmp = tmp_path_factory.mktemp("plugin")
    install(tmp / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp / "site")]),
           "ZEPHYR_RECIPES_HOME": os.environ.get("ZEPHYR_RECIPES_HOME", str(tmp / "home")),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "zephyr_recipes", *args], capture_output=True, text=True,
                              env=env, cwd=tmp, timeout=600)

    return cli, tmp


def test_list_shows_the_plugins_stage_and_benchmark(plugin):
    cli, _ = plugin
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    stages = proc.stdout.split("\nstages")[1]
    assert "letters" in stages and "Counts the letters of stage.word" in stages and "zr-letters-plugin" in stages
    assert "sft" in stages and "dpo" in stages  # the built-in ones are still there
    assert "vowels" in proc.stdout.split("\nbenchmarks")[1] and "Vowels" in proc.stdout


def test_validate_and_a_run_of_the_plugins_stage(plugin):
    cli, tmp = plugin
    (tmp / "letters.yaml").write_text(RECIPE.format(word="zephyrs"))
    proc = cli("validate", "letters.yaml")
    assert proc.returncode == 0, proc.stderr
    proc = cli("show", "letters.yaml")
    assert proc.returncode == 0 and "word: zephyrs" in proc.stdout, proc.stderr
    (tmp / "empty.yaml").write_text(RECIPE.format(word="''"))
    proc = cli("validate", "empty.yaml")  # the plugin's own check runs before anything loads
    assert proc.returncode == 2 and "stage.word is empty" in proc.stderr
    out = tmp / "runs" / "letters"
    proc = cli("letters.yaml", f"run.output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete" and status["summary"] == {"letters": 7}
    assert "7 letters." in (out / "README.md").read_text()


@pytest.mark.slow  # installs and runs a plugin (make test-slow)
def test_validate_and_a_run_of_the_plugins_benchmark(plugin):
    cli, tmp = plugin
    args = ["tiny/eval", "stage.benchmarks=[vowels]", "stage.vowels.word=aurelia"]
    proc = cli("validate", *args)
    assert proc.returncode == 0, proc.stderr
    proc = cli("validate", "tiny/eval", "stage.benchmarks=[vowel]")
    assert proc.returncode == 2 and "vowels" in proc.stderr  # named among the choices
    out = tmp / "runs" / "vowels"
    proc = cli(*args, f"run.output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete" and status["summary"] == {"vowels_count": 5}
    proc = cli("report", str(out))
    assert proc.returncode == 0 and "| Vowels |" in proc.stdout, proc.stderr


@pytest.mark.slow  # installs a plugin and rehearses an eval recipe with it (make test-slow)
def test_a_rehearsal_runs_the_plugins_benchmark_with_the_default_stand_in(plugin):
    """The plugin says nothing about rehearsals: its section is kept (nothing of it is remote), the judge is still
    the rehearsal's, and its figure is the recipe's own."""
    cli, tmp = plugin
    proc = cli("rehearse", "tiny/eval", "stage.benchmarks=[vowels]", "stage.vowels.word=aurelia", "--out", "reh")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp / "reh" / "rehearsal.json").read_text())
    assert record["outcome"] == "complete"
    assert not [line for lines in record["swapped"].values() for line in lines if "stage." in line]
    status = json.loads((tmp / "reh" / "run" / "run.json").read_text())
    assert status["status"] == "complete" and status["summary"] == {"vowels_count": 5}


def test_without_the_package_the_names_are_unknown(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZEPHYR_RECIPES_HOME": str(tmp_path)}
    (tmp_path / "letters.yaml").write_text(RECIPE.format(word="zephyr"))
    proc = subprocess.run([sys.executable, "-m", "zephyr_recipes", "validate", "letters.yaml"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 2 and "stage.name='letters' is not a stage" in proc.stderr


def test_a_distribution_beside_the_recipe_is_not_a_plugin(tmp_path):
    """`python -m` puts the working directory on the path: a dist-info sent with a recipe is not an install."""
    install(tmp_path)
    (tmp_path / "letters.yaml").write_text(RECIPE.format(word="zephyr"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZEPHYR_RECIPES_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "zephyr_recipes", "validate", "letters.yaml"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 2 and "stage.name='letters' is not a stage" in proc.stderr
    assert "in the working directory is ignored" in proc.stderr


# ------------------------------------------------------------------------------------------- the registry itself
class Thing:
    def __init__(self, name):
        self.name = name


def test_a_registry_loads_a_module_only_when_its_name_is_asked_for(tmp_path, monkeypatch):
    (tmp_path / "zr_thing_a.py").write_text("from tests.test_registry_plugins import Thing\nTHING = Thing('a')\n")
    (tmp_path / "zr_thing_b.py").write_text("from tests.test_registry_plugins import Thing\nTHING = Thing('c')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[Thing] = Registry("thing", "zephyr_recipes.tests_things", "THING",
                                    {"a": "zr_thing_a", "b": "zr_thing_b"}, Thing)
    assert reg.names() == ["a", "b"] and "a" in reg and "z" not in reg
    assert "zr_thing_a" not in sys.modules and reg.loaded() == []
    assert reg.get("a").name == "a" and "zr_thing_a" in sys.modules and "zr_thing_b" not in sys.modules
    with pytest.raises(ZephyrError, match="defines thing 'c', registered as 'b'"):
        reg.get("b")
    with pytest.raises(ZephyrError, match="'x' is not a thing") as err:
        reg.get("x")
    assert "a, b" in err.value.fix
    reg.add("d", Thing("d"))
    with pytest.raises(ZephyrError, match="registered twice"):
        reg.add("d", Thing("d"))
    with pytest.raises(ZephyrError, match="registered twice"):
        reg.add("a", Thing("a"))
    with pytest.raises(ZephyrError, match="not a Thing"):
        reg.add("e", object())  # type: ignore[arg-type]
