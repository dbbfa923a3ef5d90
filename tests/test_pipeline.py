"""Pipelines: wiring of stage outputs, skipping finished stages, --from and --only, bad pipeline files."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow

EVALS = ("eval-dsft", "eval-base", "eval-ddpo-only", "eval-dsft2", "eval-dpo")
FAST = ["sft.dataset.max_train_samples=320", "sft.dataset.test_split=null", "sft.stage.trainer.num_train_epochs=1",
        "aif.dataset.max_train_samples=24", "aif.stage.sampling.max_new_tokens=12",
        "dpo.dataset.max_test_samples=4", "dpo-base.dataset.max_test_samples=4"] + \
    [f"{e}.{k}" for e in EVALS for k in ("stage.mt_bench.max_questions=5", "stage.mt_bench.max_new_tokens=8",
                                         "stage.alpaca_eval.max_samples=6", "stage.alpaca_eval.sampling.max_new_tokens=8")]
TRAINED = ("sft", "aif", "dpo", "sft2", "dpo-base")


def _status(folder):
    return json.loads((folder / "run.json").read_text())


def test_pipeline_runs_wires_skips_and_restarts(tmp_path, cli):
    out = tmp_path / "zephyr"
    args = ["tiny/zephyr", f"pipeline.output_dir={out}", *FAST]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "| dSFT + dDPO |" in stdout and f"report: {out}/report/report.md" in stdout  # the table is printed
    for stage in TRAINED + EVALS:
        assert _status(out / stage)["status"] == "complete"
    # Wiring: AIF generated with the SFT output, DPO started from it and trained on the AIF pairs.
    aif_cfg = yaml.safe_load((out / "aif" / "config.yaml").read_text())
    assert aif_cfg["stage"]["generators"][0]["model"] == f"{out}/sft"
    pairs = json.loads((out / "aif" / "summary.json").read_text())["pairs"]["train_prefs"]
    dpo_prov = json.loads((out / "dpo" / "provenance.json").read_text())
    assert dpo_prov["reference_model"] == str((out / "sft").resolve())
    assert dpo_prov["data"]["train"]["rows"] == pairs
    # The controls: dSFT-2 continues the SFT model on the AIF chosen answers; dDPO without dSFT starts from the
    # untrained base model, which is then also its reference.
    sft2_cfg = yaml.safe_load((out / "sft2" / "config.yaml").read_text())
    assert sft2_cfg["model"]["name_or_path"] == f"{out}/sft" and sft2_cfg["dataset"]["train_split"] == "train_prefs"
    assert json.loads((out / "sft2" / "provenance.json").read_text())["data"]["train"]["rows"] == pairs
    base_prov = json.loads((out / "dpo-base" / "provenance.json").read_text())
    assert "tiny-mistral" in base_prov["reference_model"]
    # Every model was evaluated on the same held-out prompts; all but dSFT against dSFT's answers.
    scores = {e: json.loads((out / e / "scores.json").read_text()) for e in EVALS}
    assert [scores[e]["model_id"] for e in EVALS] == ["dSFT", "base (no training)", "dDPO without dSFT", "dSFT-2",
                                                      "dSFT + dDPO"]
    assert scores["eval-dpo"]["model"] == f"{out}/dpo" and scores["eval-base"]["model"] == "builtin://tiny-mistral"
    assert scores["eval-dsft"]["alpaca_eval"]["baseline"] == ["teacher"]
    assert all(scores[e]["alpaca_eval"]["baseline"] == ["dSFT"] for e in EVALS[1:])
    assert all(scores[e]["mt_bench"]["judged"] == 10 and scores[e]["mt_bench"]["failures"] == 0 for e in EVALS)
    # The report: Table 3 with every row, and the pipeline's claims checked.
    report = (out / "report" / "report.md").read_text()
    for e in EVALS:
        assert f"| {scores[e]['model_id']} | {scores[e]['mt_bench']['score']:.2f} |" in report
    assert "dSFT + dDPO > dSFT (MT-Bench-style grade (1-10)): **" in report and (out / "report" / "table3.png").is_file()
    assert (out / "pipeline.yaml").is_file()
    assert set(json.loads((out / "pipeline.json").read_text())["stages"]) == set(TRAINED + EVALS)

    stamps = {s: _status(out / s)["started"] for s in TRAINED + EVALS}
    code, _, err = cli(*args)  # everything finished: nothing runs again
    assert code == 0 and "sft finished already" in err and "eval-dpo finished already" in err
    assert {s: _status(out / s)["started"] for s in stamps} == stamps

    code, _, err = cli(*args, "--only", "dpo")
    assert code == 0
    assert _status(out / "dpo")["started"] != stamps["dpo"] and _status(out / "sft")["started"] == stamps["sft"]
    assert _status(out / "eval-dpo")["started"] == stamps["eval-dpo"]

    code, _, err = cli(*args, "--from", "eval-dsft2")
    assert code == 0
    assert _status(out / "eval-dsft2")["started"] != stamps["eval-dsft2"]
    assert _status(out / "eval-dpo")["started"] != stamps["eval-dpo"]
    assert _status(out / "eval-base")["started"] == stamps["eval-base"]

    # A finished stage whose config changed is not silently reused.
    code, _, err = cli(*[a.replace("max_train_samples=320", "max_train_samples=321") for a in args])
    assert code == 2 and "stage 'sft' finished with a different config" in err and "--from sft" in err


@pytest.mark.parametrize("text, problem", [
    ("pipeline:\n  stages: []\n  output_dir: x\n", "must be a non-empty list"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft}\n    - {name: a, recipe: tiny/dpo}\n",
     "two pipeline stages are named 'a'"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/nope}\n", "pipeline stage 'a': no recipe named"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft, overrides: {stage.trainer.lr: 1}}\n",
     "unknown key `stage.trainer.lr`"),
    ("pipeline:\n  outdir: x\n", "unknown key `pipeline.outdir`"),
])
def test_bad_pipelines(tmp_path, cli, text, problem):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, _, err = cli("validate", str(path))
    assert code == 2 and problem in err, err


def test_from_needs_a_pipeline_stage(cli, tmp_path):
    code, _, err = cli("tiny/zephyr", f"pipeline.output_dir={tmp_path}", "--from", "eval")
    assert code == 2 and "no stage of that name" in err
    code, _, err = cli("tiny/sft", "--only", "sft")
    assert code == 2 and "apply to pipeline recipes" in err


def test_stage_overrides_of_any_shape_reach_the_stage(tmp_path):
    """Lists of mappings, strings with spaces, quotes and brackets, numbers and nulls are written in Hydra's
    override grammar, so the stage receives them exactly as the pipeline file gives them."""
    from zephyr_recipes import pipeline

    generators = [{"name": "it's (teacher)", "type": "function", "function": "zephyr_recipes.embedded.tasks:teacher"},
                  {"name": "sft, hot", "type": "transformers", "model": "builtin://tiny-mistral",
                   "model_config": {"chat_template": "zephyr"}, "sampling": {"temperature": 1.0, "top_p": None}}]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "out"), "stages": [
        {"name": "aif", "recipe": "tiny/aif", "overrides": {"stage.generators": generators,
                                                            "recipe.description": "a [b] {c}, 'd'"}}]}}))
    spec, _, recipe_file = pipeline.load(str(path), [])
    (_, _, cfg), = pipeline.stage_configs(spec, recipe_file.parent)
    assert cfg["stage"]["generators"][0]["name"] == "it's (teacher)"
    assert cfg["stage"]["generators"][1]["sampling"] == {"temperature": 1.0, "top_p": None}
    assert cfg["recipe"]["description"] == "a [b] {c}, 'd'"


def test_a_report_that_cannot_be_made_does_not_fail_finished_stages(tmp_path, cli):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "out"), "stages": [
        {"name": "sft", "recipe": "tiny/sft", "overrides": {"dataset.max_train_samples": 32, "dataset.test_split": None,
                                                          "stage.trainer.num_train_epochs": 1}}],
        "report": {"claims": [{"run": "dSFT", "metric": "mt_bench", "above": 1}]}}}))
    code, _, err = cli(str(path))
    assert code == 0, err
    assert _status(tmp_path / "out" / "sft")["status"] == "complete"
    assert "no report:" in err and "holds no finished evaluation stage" in err
    assert not (tmp_path / "out" / "report").exists()
