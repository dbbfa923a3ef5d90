"""The canary of an evaluation judge: a real eval run re-judges published AlpacaEval judgments (a slice of
falcon-7b-instruct's, tests/data) before it scores, and its card says whether its figures are comparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zephyr_recipes.embedded.tasks import teacher
from zephyr_recipes.evaluation.alpaca import load_instructions

SLICE = Path(__file__).parent / "data" / "alpaca_eval" / "falcon-7b-instruct_ae2_annotations_slice.json"


@pytest.fixture
def answers(tmp_path):
    rows = load_instructions("builtin://tiny-zephyr-eval/alpaca_eval.json", 8, 0)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps([{"instruction": r["instruction"], "generator": "teacher-file",
                                 "output": teacher([{"role": "user", "content": r["instruction"]}])} for r in rows]))
    return path


def _run(cli, tmp_path, answers, name, sample=30):
    out = tmp_path / name
    code, _, err = cli("tiny/eval-heldout", "stage.benchmarks=[alpaca_eval]", "stage.alpaca_eval.max_samples=8",
                       f"stage.alpaca_eval.answers={answers}", "stage.judge.module=tests.canary_judge",
                       f"stage.canary.annotations={SLICE}", f"stage.canary.sample={sample}",
                       f"run.output_dir={out}", "--trust-recipe-code")
    assert code == 0, err
    return json.loads((out / "scores.json").read_text())["canary"], (out / "README.md").read_text()


def test_canary_reports_agreement_and_says_when_figures_are_not_comparable(tmp_path, cli, answers, monkeypatch):
    monkeypatch.setenv("CANARY_ANNOTATIONS", str(SLICE))
    monkeypatch.setenv("CANARY_JUDGE", "published")
    same, card = _run(cli, tmp_path, answers, "published", sample=40)  # the slice holds one win of falcon's
    assert same["asked"] == 40 and same["agreement"]["value"] == 1.0 and same["comparable"] is True
    assert "weighted_alpaca_eval_gpt4_turbo" in card and "not comparable" not in card

    monkeypatch.setenv("CANARY_JUDGE", "longer")
    longer, card = _run(cli, tmp_path, answers, "longer")
    low, high = longer["agreement"]["interval"]
    assert low <= longer["agreement"]["value"] <= high and longer["agreement"]["n"] > 0
    # GPT-4 Turbo's answers are the longer ones and nearly always won: a length-only judge agrees often, but no
    # more than always siding with the published majority, so its figures are not comparable.
    assert longer["agreement"]["value"] <= longer["majority"]["value"] and longer["comparable"] is False
    assert "not comparable with the leaderboard's" in card


def test_canary_config_errors(cli, tmp_path):
    code, _, err = cli("validate", "tiny/eval-heldout", f"stage.canary.annotations={tmp_path / 'missing.json'}")
    assert code == 2 and "stage.canary.annotations" in err and "does not exist" in err
    code, _, err = cli("validate", "tiny/eval-heldout", f"stage.canary.annotations={SLICE}", "stage.canary.sample=0")
    assert code == 2 and "stage.canary.sample is 0" in err
