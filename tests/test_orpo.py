"""ORPO: a stage on a trainer TRL keeps in trl.experimental, added as one module and one registry line. Its config
class is found through Stage.config_class() alone (validation, the plan, training), and list, show, validate, plan
and pipelines pick the stage up."""

from __future__ import annotations

import json

import pytest

from zephyr_recipes import stages
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.data import kinds
from zephyr_recipes.model import trainer_fields
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate


def test_orpos_config_class_is_trls_experimental_one_and_its_fields_are_described_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEPHYR_RECIPES_HOME", str(tmp_path))
    orpo = stages.get("orpo")
    cls = orpo.config_class()
    assert cls.__module__.startswith("trl.experimental.orpo") and cls.__name__ == orpo.trl_config
    assert orpo.rows is kinds.PAIRS and orpo.frozen_copies(orpo.recipe({"hardware": {"lora": None}, "stage": {}}))[0] == 0
    trainer_fields.describe.cache_clear()
    try:
        fields = trainer_fields.fields(orpo)
        assert fields["beta"]["default"] == 0.1 and "max_completion_length" in fields
        assert "precompute_ref_log_probs" not in fields  # ORPO's own fields, not DPO's
        # described apart from any other ORPOConfig (trl.experimental has a KTOConfig beside trl's own, too)
        assert next(tmp_path.glob("trainer-fields/trl-*/trl.experimental.orpo.ORPOConfig.json")).is_file()
    finally:
        trainer_fields.describe.cache_clear()


def test_list_show_validate_and_plan_pick_orpo_up(cli):
    code, out, err = cli("list")
    assert code == 0 and "tiny/orpo" in out and "orpo " in out.split("\nstages")[1], err
    code, out, err = cli("show", "tiny/orpo")
    assert code == 0 and "name: orpo" in out and "beta: 0.1" in out, err
    cfg = validate(*compose("tiny/orpo")[:2])
    assert cfg.stage.name == "orpo" and cfg.stage.trainer["max_length"] == 256
    with pytest.raises(ZephyrError, match="ORPOConfig") as err_info:  # keys are checked against ORPO's class
        validate(*compose("tiny/orpo", ["stage.trainer.precompute_ref_log_probs=true"])[:2])
    assert "precompute_ref_log_probs" in str(err_info.value)
    with pytest.raises(ZephyrError, match="beta"):
        validate(*compose("tiny/orpo", ["stage.trainer.beta=-1"])[:2])
    code, out, err = cli("plan", "tiny/orpo")
    assert code == 0 and "memory plan: orpo" in out and "chosen + rejected" in out, err


def test_a_pipeline_takes_an_orpo_stage(tmp_path, cli):
    recipe = tmp_path / "orpo-pipeline.yaml"
    recipe.write_text(f"""\
pipeline:
  description: ORPO, then its evaluation
  output_dir: {tmp_path / 'runs'}
  stages:
    - name: orpo
      recipe: tiny/orpo
    - name: eval
      recipe: tiny/eval
      overrides:
        model.name_or_path: ${{pipeline.output_dir}}/orpo
""")
    code, out, err = cli("validate", str(recipe))
    assert code == 0, err
    code, out, err = cli("plan", str(recipe))
    assert code == 0 and "orpo" in out, err


@pytest.mark.slow
def test_tiny_orpo_trains_end_to_end(tmp_path, cli):
    out = tmp_path / "orpo"
    code, _, err = cli("tiny/orpo", f"run.output_dir={out}", "stage.trainer.report_to=none")
    assert code == 0, err
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["last_loss"] < metrics["first_loss"]  # it learned something
    assert "nll_loss" in metrics and "log_odds_ratio" in metrics  # ORPO's own terms were logged
    assert (out / "model.safetensors").is_file() and (out / "training_curves.png").is_file()
    assert "ORPOConfig" in (out / "README.md").read_text()
