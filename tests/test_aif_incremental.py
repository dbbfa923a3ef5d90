"""Incremental AI feedback and code in a stage's identity (issue 29 item 1, issue 28 item 1).

Real runs of the AIF stage through the command line, on the embedded task with function generators and judges;
what was generated and rated is counted from the records themselves (completions.jsonl, ratings.jsonl), which are
append-only: every request a run makes adds one line.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from zephyr_recipes.embedded import tasks

PROMPTS = [tasks.sample(__import__("random").Random(100 + i)).instruction for i in range(12)]
P = len(PROMPTS)

MY_GENERATOR = '''
from zephyr_recipes.embedded import tasks


def answer(messages):
    return tasks.solve(messages[-1]["content"]) + "{suffix}"
'''

# A judge module of the user's: rates the length of the answer (short is good), so its ratings differ from the
# embedded judge's.
MY_JUDGE = '''
def rate(messages, response):
    rating = max(1, 5 - len(response.split()) // 3)
    return {a: {"Rating": rating, "Rationale": "length"} for a in
            ("helpfulness", "honesty", "instruction_following", "truthfulness")}
'''



@pytest.fixture(autouse=True)
def _own_code_path(monkeypatch):
    """Each command line searches the folder of its own recipe; in one test process, only this test's."""
    monkeypatch.delenv("ZEPHYR_RECIPES_CODE_PATH", raising=False)
    for name in ("my_judge", "my_generator", "needs_more"):  # modules of the same name another test wrote
        monkeypatch.delitem(sys.modules, name, raising=False)

def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS) + "\n")
    return path


def _recipe(tmp_path: Path, generators: list[str], judge: str, extra: str = "") -> Path:
    path = tmp_path / "recipes" / "aif.yaml"
    path.parent.mkdir(exist_ok=True)
    gens = "".join(f"    - {g}\n" for g in generators)
    path.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        f"dataset:\n  path: {tmp_path / 'prompts.jsonl'}\n  train_split: train\n  test_split: null\n"
        f"  columns: {{prompt: prompt}}\nstage:\n  test_fraction: 0.0\n  generators:\n{gens}  judge: {judge}\n{extra}")
    return path


TEACHER = '{name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}'
CHATTY = '{name: chatty, type: function, function: "zephyr_recipes.embedded.tasks:chatty_teacher"}'
SLOPPY = '{name: sloppy, type: function, function: "tests.helpers:sloppy"}'
SLOPPY_WARM = '{name: sloppy, type: function, function: "tests.helpers:sloppy", sampling: {temperature: 0.3}}'
MINE_EMBEDDED = ('{name: teacher2, type: function, function: "zephyr_recipes.embedded.tasks:teacher", '
                 'sampling: {top_p: 0.5}}')
MINE = '{name: mine, type: function, function: "my_generator:answer"}'
EMBEDDED_JUDGE = "{type: function, module: zephyr_recipes.embedded.judge}"
MY_JUDGE_SPEC = "{type: function, module: my_judge}"


def _run(cli, recipe: Path, out: Path, *extra: str) -> tuple[str, list[dict], list[dict]]:
    """One run; returns its log and the completion and rating records it added."""
    before_c, before_r = len(_lines(out / "completions.jsonl")), len(_lines(out / "ratings.jsonl"))
    code, _, err = cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code", *extra)
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    return err, _lines(out / "completions.jsonl")[before_c:], _lines(out / "ratings.jsonl")[before_r:]


def test_changing_one_generator_or_the_judge_redoes_only_that(tmp_path, cli):
    _prompts(tmp_path)
    (tmp_path / "recipes").mkdir()
    # A function module lying beside the recipe is found there (not on PYTHONPATH, not in the working directory).
    (tmp_path / "recipes" / "my_generator.py").write_text(MY_GENERATOR.format(suffix=""))
    (tmp_path / "recipes" / "my_judge.py").write_text(MY_JUDGE)
    out = tmp_path / "aif"

    # Three generators, the embedded judge: every answer asked and rated once.
    _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, CHATTY, SLOPPY], EMBEDDED_JUDGE), out)
    assert Counter(r["model"] for r in new_c) == {"teacher": P, "chatty": P, "sloppy": P}
    assert len(new_r) == 3 * P and all("annotations" in r for r in new_r)
    first = json.loads((out / "summary.json").read_text())
    assert first["pairs"]["train_prefs"] == P and first["completions"] == 3 * P

    # The same again: a finished run of the same config and code, nothing to do.
    err, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, CHATTY, SLOPPY], EMBEDDED_JUDGE), out)
    assert not new_c and not new_r and "nothing to do" in err

    # One generator's sampling changes: only its answers are asked again, and only those are rated.
    err, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, CHATTY, SLOPPY_WARM], EMBEDDED_JUDGE), out)
    assert Counter(r["model"] for r in new_c) == {"sloppy": P}
    assert len(new_r) == P and {r["completion"] for r in new_r} == {r["key"] for r in new_c}
    assert "config changed (stage.generators" in err and "reusing all 12 answers" in err
    assert "generator sloppy: reusing 0 answers, asking 12" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["work"]["teacher"] == {"reused": P, "asked": 0} and summary["work"]["sloppy"] == {"reused": 0,
                                                                                                   "asked": P}
    assert summary["work"]["judge"] == {"reused": 2 * P, "asked": P}

    # A fourth generator is added: only its answers are asked and rated.
    gens4 = [TEACHER, CHATTY, SLOPPY_WARM, MINE]
    _, new_c, new_r = _run(cli, _recipe(tmp_path, gens4, EMBEDDED_JUDGE), out)
    assert Counter(r["model"] for r in new_c) == {"mine": P} and len(new_r) == P

    # The judge is swapped: nothing is generated, every current answer is rated once by the new judge.
    err, new_c, new_r = _run(cli, _recipe(tmp_path, gens4, MY_JUDGE_SPEC), out)
    assert not new_c and len(new_r) == 4 * P
    assert len({r["completion"] for r in new_r}) == 4 * P and len({r["judge"] for r in new_r}) == 1
    assert "judge: reusing 0 ratings, asking 48" in err
    assert all(r["annotations"]["helpfulness"]["Rationale"] == "length" for r in new_r)
    import datasets

    raw = datasets.load_dataset(str(out / "raw"), split="train")  # the pairs are made from the new judge's ratings
    assert {c["annotations"]["honesty"]["Rationale"] for row in raw for c in row["completions"]} == {"length"}

    # Binarization alone changes: nothing generated, nothing rated, the pairs are made again.
    err, new_c, new_r = _run(cli, _recipe(tmp_path, gens4, MY_JUDGE_SPEC), out, "stage.binarize.rejected=lowest")
    assert not new_c and not new_r and "config changed (stage.binarize.rejected)" in err
    assert json.loads((out / "summary.json").read_text())["binarize"]["rejected"] == "lowest"

    # A generator is removed: its answers leave the pairs and the raw data, and stay on disk.
    on_disk = len(_lines(out / "completions.jsonl"))
    _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, CHATTY, MINE], MY_JUDGE_SPEC), out)
    assert not new_c and not new_r and len(_lines(out / "completions.jsonl")) == on_disk
    raw = datasets.load_dataset(str(out / "raw"), split="train")
    assert all(set(row["models"]) == {"teacher", "chatty", "mine"} for row in raw)
    assert json.loads((out / "summary.json").read_text())["completions"] == 3 * P

    # The generator's module is edited: its answers are asked again (and rated), naming the code that changed.
    (tmp_path / "recipes" / "my_generator.py").write_text(MY_GENERATOR.format(suffix=" ok"))
    sys.modules.pop("my_generator", None)  # the command line is a new process each time: it imports the module anew
    err, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, CHATTY, MINE], MY_JUDGE_SPEC), out)
    assert Counter(r["model"] for r in new_c) == {"mine": P} and len(new_r) == P
    assert "code changed: my_generator (sha256:" in err
    assert all(r["response"].endswith(" ok") for r in new_c)

    # The history of what changed is kept; config.yaml is the last config.
    history = [json.loads(line) for line in (out / "revisions.jsonl").read_text().splitlines()]
    assert len(history) == 6 and history[-1]["code_changed"] == ["my_generator"]
    assert history[0]["previous_config"]["stage"]["generators"][2].get("sampling") in ({}, None)
    import yaml

    assert [g["name"] for g in yaml.safe_load((out / "config.yaml").read_text())["stage"]["generators"]] == \
        ["teacher", "chatty", "mine"]


def test_a_folder_written_before_identities_were_recorded_is_reused(tmp_path, cli):
    """Old records (keys prompt:name:index, no generator or judge field) count as those of the generator of that
    name in the config that made them: reused where its settings are the same, asked again where they changed."""
    _prompts(tmp_path)
    out = tmp_path / "aif"
    recipe = _recipe(tmp_path, [TEACHER, SLOPPY], EMBEDDED_JUDGE)
    _run(cli, recipe, out)
    # Rewrite the records as the runner wrote them before identities: no generator/judge fields, old keys.
    old_c = []
    for rec in _lines(out / "completions.jsonl"):
        key = f"{rec['prompt_id']}:{rec['model']}:{rec['index']}"
        old_c.append({"key": key, "prompt_id": rec["prompt_id"], "model": rec["model"], "index": rec["index"],
                      "response": rec["response"]})
    rename = {rec["key"]: old["key"] for rec, old in zip(_lines(out / "completions.jsonl"), old_c)}
    old_r = [{"key": f"{rename[r['completion']]}:r0", "completion": rename[r["completion"]],
              "annotations": r["annotations"], "raw": r["raw"]} for r in _lines(out / "ratings.jsonl")]
    (out / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_c))
    (out / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_r))
    status = json.loads((out / "run.json").read_text())
    status.pop("code")
    (out / "run.json").write_text(json.dumps(status))

    # The same config: nothing asked, nothing rated (the folder is taken as made by the code as it is).
    err, new_c, new_r = _run(cli, recipe, out, "stage.binarize.rejected=lowest")
    assert not new_c and not new_r, err
    assert "24 answers taken as those of the generator of the same name" in err
    # One generator changed: only it is asked again.
    _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, SLOPPY_WARM], EMBEDDED_JUDGE), out)
    assert Counter(r["model"] for r in new_c) == {"sloppy": P} and len(new_r) == P


def test_a_judge_that_rates_answers_together_rates_the_group_again_when_a_generator_joins(tmp_path, cli):
    """A judge type that rates the answers of a prompt together (``rates_together``) names the group in its
    ratings' identity: adding a generator changes every prompt's group, so every answer is rated again, and nothing
    is generated but the new generator's answers."""
    from dataclasses import dataclass
    from typing import ClassVar

    from zephyr_recipes.feedback import specs
    from zephyr_recipes.feedback.judges import FunctionJudge

    @dataclass
    class TogetherSpec(specs.JudgeSpec):
        rates_together: ClassVar[bool] = True

    specs.register_judge("together", TogetherSpec, lambda spec, hw: FunctionJudge("zephyr_recipes.embedded.judge"))
    try:
        _prompts(tmp_path)
        out = tmp_path / "aif"
        _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, SLOPPY], "{type: together}"), out)
        assert len(new_c) == 2 * P and len(new_r) == 2 * P and all(len(r["rated_with"]) == 2 for r in new_r)
        _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, SLOPPY, CHATTY], "{type: together}"), out)
        assert Counter(r["model"] for r in new_c) == {"chatty": P}
        assert len(new_r) == 3 * P and all(len(r["rated_with"]) == 3 for r in new_r)
        # A judge that rates each answer alone would have rated only the new answers.
        _, _, new_r = _run(cli, _recipe(tmp_path, [TEACHER, SLOPPY, CHATTY], EMBEDDED_JUDGE), out)
        assert len(new_r) == 3 * P  # another judge: all rated once
        _, new_c, new_r = _run(cli, _recipe(tmp_path, [TEACHER, SLOPPY, CHATTY, MINE_EMBEDDED], EMBEDDED_JUDGE), out)
        assert len(new_c) == P and len(new_r) == P and "rated_with" not in new_r[0]
    finally:
        specs.JudgeSpec.TYPES.pop("together", None)
        specs.JUDGE_MAKERS.pop("together", None)


@pytest.mark.parametrize("change", ["edit", "none"])
@pytest.mark.slow  # whole pipelines, twice; make test's budget on a slower 2-core machine (make test-slow)
def test_a_pipeline_reruns_a_stage_whose_code_changed_and_the_stages_reading_it(tmp_path, cli, change):
    """aif (a function generator of the user's) -> aif2 (prompts from aif's pairs): editing the generator's module
    runs aif again (its answers only) and aif2 after it; without an edit everything is skipped."""
    _prompts(tmp_path)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "my_generator.py").write_text(MY_GENERATOR.format(suffix=""))
    _recipe(tmp_path, [TEACHER, SLOPPY, MINE], EMBEDDED_JUDGE)
    pipe = tmp_path / "pipe"
    (recipes / "zephyr.yaml").write_text(f"""pipeline:
  output_dir: pipe
  stages:
    - {{name: aif, recipe: {recipes / 'aif.yaml'}}}
    - name: aif2
      recipe: {recipes / 'aif.yaml'}
      overrides:
        dataset.path: ${{pipeline.output_dir}}/aif
        dataset.train_split: train_prefs
""")
    code, _, err = cli(str(recipes / "zephyr.yaml"), f"pipeline.output_dir={pipe}", "--trust-recipe-code")
    assert code == 0, err
    started = {s: json.loads((pipe / s / "run.json").read_text())["started"] for s in ("aif", "aif2")}
    lines = len(_lines(pipe / "aif" / "completions.jsonl"))
    if change == "edit":
        (recipes / "my_generator.py").write_text(MY_GENERATOR.format(suffix=" !"))
        sys.modules.pop("my_generator", None)
    import time

    time.sleep(1.1)  # run.json's times are in whole seconds
    code, _, err = cli(str(recipes / "zephyr.yaml"), f"pipeline.output_dir={pipe}", "--trust-recipe-code")
    assert code == 0, err
    if change == "none":
        assert "aif finished already" in err and "aif2 finished already" in err
        assert {s: json.loads((pipe / s / "run.json").read_text())["started"] for s in started} == started
        return
    assert "pipeline: aif runs again: its code changed: my_generator (sha256:" in err
    assert f"pipeline: aif2 runs again: it reads {pipe / 'aif'}, which ran again" in err
    assert len(_lines(pipe / "aif" / "completions.jsonl")) == lines + P  # only the edited generator's answers
    assert all(json.loads((pipe / s / "run.json").read_text())["started"] != started[s] for s in started)
    code, _, err = cli(str(recipes / "zephyr.yaml"), f"pipeline.output_dir={pipe}", "--trust-recipe-code")
    assert code == 0 and "aif finished already" in err and "aif2 finished already" in err
