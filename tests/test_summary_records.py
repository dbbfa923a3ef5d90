"""summary.json tells the truth (issue 29's smaller items): wall_seconds covers every invocation of a run folder,
binarization's tallies are disjoint, and the report says what a function judge's figures mean."""

from __future__ import annotations

import json

import pytest

from zephyr_recipes.data.binarize import Tally, binarize, binarize_tally
from zephyr_recipes.embedded import tasks
from zephyr_recipes.reports.report import function_judge_note


def _completion(name: str, rating: int) -> dict:
    return {"model": name, "response": name, "annotations": {a: {"Rating": str(rating)} for a in
            ("helpfulness", "honesty", "instruction_following", "truthfulness")}}


def test_binarize_tallies_are_disjoint():
    tally = Tally()
    assert binarize("p1", [_completion("a", 3), _completion("b", 3)], tally=tally) is None  # all tied: no pair
    pair = binarize("p2", [_completion("a", 5), _completion("b", 5), _completion("c", 2)], tally=tally)
    assert pair is not None and pair["chosen"][1]["content"] == "a"  # tied for best: the first listed
    assert binarize("p3", [_completion("a", 4)], tally=tally) is None  # too few
    parts = binarize_tally(tally)
    assert parts["skipped"] == {"all_tied": 1, "too_few_completions": 1}
    assert parts["chosen_among_tied_best"] == 1  # the pair of p2, never a prompt that was skipped
    # Every prompt is in exactly one place: skipped (by one reason) or paired.
    assert sum(parts["skipped"].values()) + 1 == 3


def test_the_report_tells_the_embedded_program_judge_from_a_users_function_judge():
    lexical = function_judge_note({"zephyr_recipes.embedded.lexical_judge"})
    program = function_judge_note({"zephyr_recipes.embedded.judge"})
    mine = function_judge_note({"my_judge"})
    assert "pipeline works, not model quality" in lexical
    assert "not model quality" not in program and "known answer of every embedded task" in program
    assert "not model quality" not in mine and "what that program checks" in mine and "my_judge" in mine
    assert function_judge_note(set()) == ""


@pytest.fixture(autouse=True)
def _own_code_path(monkeypatch):
    monkeypatch.delenv("ZEPHYR_RECIPES_CODE_PATH", raising=False)


def test_wall_seconds_covers_every_invocation(tmp_path, cli):
    prompts = [tasks.sample(__import__("random").Random(300 + i)).instruction for i in range(6)]
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in prompts) + "\n")
    recipe = tmp_path / "aif.yaml"
    recipe.write_text(
        "defaults:\n  - model: tiny\n  - dataset: tiny-ultrachat\n  - stage: aif\n  - hardware: cpu\n  - _self_\n"
        f"dataset:\n  path: {tmp_path / 'prompts.jsonl'}\n  train_split: train\n  test_split: null\n"
        "  columns: {prompt: prompt}\nstage:\n  test_fraction: 0.0\n  generators:\n"
        '    - {name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}\n'
        '    - {name: sloppy, type: function, function: "tests.helpers:sloppy"}\n'
        "  judge: {type: function, module: zephyr_recipes.embedded.judge}\n")
    out = tmp_path / "run"
    assert cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code")[0] == 0
    first = json.loads((out / "summary.json").read_text())
    assert first["wall_seconds"] == first["wall_seconds_this_invocation"] > 0
    assert cli(str(recipe), f"run.output_dir={out}", "--trust-recipe-code", "stage.binarize.rejected=lowest")[0] == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["wall_seconds"] == pytest.approx(first["wall_seconds"] + second["wall_seconds_this_invocation"],
                                                   abs=0.02)
    assert json.loads((out / "run.json").read_text())["wall_seconds"] == second["wall_seconds"]
