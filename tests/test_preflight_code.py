"""The pre-flight of what a run will run later (runtime/runcheck.py): a judge module that cannot be imported, a
judge that cannot parse its own reply and a generator without a chat template each fail in seconds, before any
answer is generated, and the fix each error gives, applied as written, lets the run proceed."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

from zephyr_recipes.embedded import tasks

PROMPTS = [tasks.sample(__import__("random").Random(200 + i)).instruction for i in range(4)]

GOOD_JUDGE = '''
from zephyr_recipes.embedded.judge import rate  # noqa: F401 - the embedded judge, under the user's name
'''
# Returns words where the stage reads ratings from 1 to 5: nothing it says can be used.
BAD_JUDGE = '''
def rate(messages, response):
    return {a: {"Rating": "great", "Rationale": "?"} for a in
            ("helpfulness", "honesty", "instruction_following", "truthfulness")}
'''



@pytest.fixture(autouse=True)
def _own_code_path(monkeypatch):
    """Each command line searches the folder of its own recipe; in one test process, only this test's."""
    monkeypatch.delenv("ZEPHYR_RECIPES_CODE_PATH", raising=False)
    for name in ("my_judge", "my_generator", "needs_more"):  # modules of the same name another test wrote
        monkeypatch.delitem(sys.modules, name, raising=False)

def _setup(tmp_path: Path, generators: str, judge: str) -> tuple[Path, Path]:
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS) + "\n")
    recipes = tmp_path / "recipes"
    recipes.mkdir(exist_ok=True)
    recipe = recipes / "aif.yaml"
    recipe.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        f"dataset:\n  path: {tmp_path / 'prompts.jsonl'}\n  train_split: train\n  test_split: null\n"
        f"  columns: {{prompt: prompt}}\nstage:\n  test_fraction: 0.0\n  sampling: {{max_new_tokens: 8}}\n"
        f"  generators:\n{generators}  judge: {judge}\n")
    return recipe, tmp_path / "run"


GENERATORS = ('    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}\n'
              '    - {name: sloppy, type: function, function: "tests.helpers:sloppy"}\n')


def _fails_before_generation(cli, recipe: Path, out: Path, *extra: str) -> tuple[str, str]:
    started = time.time()
    code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code", *extra)
    seconds = time.time() - started
    assert code == 2, err
    assert seconds < 30, f"the pre-flight took {seconds:.0f} s"
    assert not out.exists(), "the run folder was made: something ran before the check"
    problem = next(line for line in err.splitlines() if line.startswith("error: "))
    fix = next(line for line in err.splitlines() if line.strip().startswith("fix: "))
    return problem, fix.strip()[len("fix: "):]


def _proceeds(cli, recipe: Path, out: Path, *extra: str) -> dict:
    code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code", *extra)
    assert code == 0, err
    return json.loads((out / "summary.json").read_text())


def test_a_judge_module_that_cannot_be_imported_fails_first(tmp_path, cli):
    recipe, out = _setup(tmp_path, GENERATORS, "{type: function, module: my_judge}")
    problem, fix = _fails_before_generation(cli, recipe, out)
    assert "stage.judge.module = my_judge" in problem and "nothing was generated" in problem
    assert "put my_judge.py in the recipe's folder or the working directory" in fix
    # The fix as written: the module in the recipe's folder (not on PYTHONPATH, not the working directory).
    (recipe.parent / "my_judge.py").write_text(GOOD_JUDGE)
    sys.modules.pop("my_judge", None)
    assert _proceeds(cli, recipe, out)["completions"] == 2 * len(PROMPTS)


def test_a_judge_module_whose_own_import_fails_names_what_it_misses(tmp_path, cli):
    recipe, out = _setup(tmp_path, GENERATORS, "{type: function, module: needs_more}")
    (recipe.parent / "needs_more.py").write_text("import not_a_package_here_xyz\n" + GOOD_JUDGE)
    problem, fix = _fails_before_generation(cli, recipe, out)
    assert "No module named 'not_a_package_here_xyz'" in problem
    assert "needs_more itself imports not_a_package_here_xyz, which is not installed" in fix
    (recipe.parent / "needs_more.py").write_text(GOOD_JUDGE)  # the fix: remove that import
    sys.modules.pop("needs_more", None)
    assert _proceeds(cli, recipe, out)["pairs"]["train_prefs"] >= 1


def test_a_judge_that_cannot_parse_its_own_reply_fails_first(tmp_path, cli):
    recipe, out = _setup(tmp_path, GENERATORS, "{type: function, module: my_judge}")
    (recipe.parent / "my_judge.py").write_text(BAD_JUDGE)
    sys.modules.pop("my_judge", None)
    problem, fix = _fails_before_generation(cli, recipe, out)
    assert "stage.judge could not rate a constructed answer before the run" in problem
    assert "my_judge.rate returned" in problem and fix.startswith("fix my_judge.rate")
    (recipe.parent / "my_judge.py").write_text(GOOD_JUDGE)
    sys.modules.pop("my_judge", None)
    assert _proceeds(cli, recipe, out)["judge_failures"] == 0


def test_a_model_judge_whose_reply_does_not_parse_fails_in_seconds(tmp_path, cli):
    """The untrained embedded model as judge: it answers, and its answer is not the rubric's JSON."""
    recipe, out = _setup(tmp_path, GENERATORS, '{type: transformers, model: "builtin://tiny-mistral", '
                         "model_config: {chat_template: zephyr}, max_retries: 0, sampling: {max_new_tokens: 8}}")
    problem, fix = _fails_before_generation(cli, recipe, out)
    assert "stage.judge could not rate a constructed answer" in problem
    assert "stage.judge.prompt=" in fix


def test_a_generator_without_a_chat_template_fails_first_and_the_fix_names_its_key(tmp_path, cli):
    gens = GENERATORS + '    - {name: tiny, type: transformers, model: "builtin://tiny-mistral"}\n'
    recipe, out = _setup(tmp_path, gens, "{type: function, module: zephyr_recipes.embedded.judge}")
    problem, fix = _fails_before_generation(cli, recipe, out)
    assert problem.startswith("error: stage.generators[2]: the tokenizer of builtin://tiny-mistral has no chat")
    assert fix.startswith("set stage.generators.2.model_config.chat_template=zephyr on the command line")
    override = fix.split()[1]
    summary = _proceeds(cli, recipe, out, *shlex.split(override))
    assert summary["completions"] == 3 * len(PROMPTS)
