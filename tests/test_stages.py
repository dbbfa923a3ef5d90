"""The stage registry and the schemas: what a stage declares, what `show` prints, what validation reads."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zephyr_recipes import stages
from zephyr_recipes.core.errors import ZephyrError
from zephyr_recipes.data import kinds
from zephyr_recipes.model import trainer_fields
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_stage_declares_itself():
    assert {"sft", "aif", "dpo", "eval", "reward"} <= set(stages.names())
    for name in stages.names():
        stage = stages.get(name)
        assert stage.name == name and dataclasses.is_dataclass(stage.schema) and stage.summary
        assert "name" in {f.name for f in dataclasses.fields(stage.schema)}
        assert (ROOT / "conf" / "stage" / f"{name}.yaml").is_file()
        if isinstance(stage, stages.TrainerStage):
            assert stage.rows in kinds.KINDS.values() and stage.rows is not kinds.PROMPTS
            assert stage.config_class().__name__ == stage.trl_config
        else:
            assert stage.one_process


def test_an_unknown_stage_gets_a_suggestion():
    with pytest.raises(ZephyrError) as exc:
        validate(compose("tiny/sft", ["stage.name=rewad"])[0], "x")
    assert "stage.name='rewad' is not a stage" in str(exc.value) and "did you mean reward" in exc.value.fix


def test_a_key_of_one_stage_is_unknown_to_another():
    with pytest.raises(ZephyrError) as exc:  # ref_model is the DPO stage's
        validate(compose("tiny/sft", ["stage.ref_model=x"])[0], "x")
    assert "unknown key `stage.ref_model`" in str(exc.value)


@pytest.mark.parametrize("recipe", ["tiny/aif", "tiny/eval", "tiny/dpo"])
def test_show_explain_is_the_same_config_with_every_key_s_help(recipe, cli):
    code, plain, _ = cli("show", recipe)
    assert code == 0
    code, explained, _ = cli("show", recipe, "--explain")
    assert code == 0 and yaml.safe_load(explained) == yaml.safe_load(plain)
    assert "# Where to train: cuda, cpu, or auto" in explained  # hardware.device's help
    if recipe == "tiny/aif":
        assert "    # random: one of the lower-rated completions" in explained  # stage.binarize.rejected
        assert "      # Hub id, local folder or run folder of the model." in explained  # a generator's model


def test_defaults_are_stated_once_and_interpolations_still_reach_them():
    # conf/stage/aif.yaml names the stage only; the schema's default reaches the resolved config
    assert yaml.safe_load((ROOT / "conf" / "stage" / "aif.yaml").read_text()) == {"name": "aif"}
    aif = validate(*compose("tiny/aif")[:2])
    assert aif.config["stage"]["binarize"] == {"rejected": "random", "score": "mean", "ties": "drop"}
    # tiny/eval points AlpacaEval 2.0's instructions at ${stage.alpaca_eval.instructions}, a schema default
    ev = validate(*compose("tiny/eval")[:2])
    assert ev.config["stage"]["alpaca_eval_2"]["instructions"] == ev.config["stage"]["alpaca_eval"]["instructions"]
    # the AlpacaEval 1 leaderboard's baseline: output_1 of its annotations
    assert ev.stage.alpaca_eval.instructions.endswith("alpaca_eval_gpt4/annotations.json")


def test_trl_fields_are_described_once_per_version_and_a_broken_description_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEPHYR_RECIPES_HOME", str(tmp_path))
    trainer_fields.describe.cache_clear()
    try:
        sft = stages.get("sft")
        fields = trainer_fields.fields(sft)
        assert fields["learning_rate"]["kinds"] == ["float"] and fields["packing"]["default"] is False
        stored = next(tmp_path.glob("trainer-fields/trl-*/SFTConfig.json"))
        assert json.loads(stored.read_text())["fields"] == fields
        stored.write_text("{ torn")  # a half-written file from a killed process
        trainer_fields.describe.cache_clear()
        assert trainer_fields.fields(sft) == fields and json.loads(stored.read_text())["fields"] == fields
    finally:
        trainer_fields.describe.cache_clear()


@pytest.mark.slow  # fresh interpreters; make test's budget on a slower 2-core machine (make test-slow)
def test_show_imports_no_torch_and_trl_still_judges_trainer_values_in_validate(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ZEPHYR_RECIPES_HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    probe = ("import sys; from zephyr_recipes.commands.cli import main; rc = main(['show', 'tiny/sft']); "
             "print('torch' in sys.modules, file=sys.stderr); raise SystemExit(rc)")
    runs = [subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    # the first run describes TRL's fields for this version (importing TRL and torch); the next reads that
    assert runs[0].returncode == 0 and runs[0].stderr.strip().endswith("True"), runs[0].stderr[-2000:]
    assert runs[1].returncode == 0 and runs[1].stderr.strip().endswith("False"), runs[1].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout
    with pytest.raises(ZephyrError) as exc:  # a value TRL's own __post_init__ refuses
        validate(compose("tiny/sft", ["stage.trainer.lr_scheduler_type=cosine_with_typo"])[0], "x")
    assert "refuses stage.trainer" in str(exc.value) or "lr_scheduler_type" in str(exc.value)


def test_an_lm_eval_task_file_that_names_python_is_code_the_user_must_trust(tmp_path, cli):
    from zephyr_recipes.core import trust

    task = tmp_path / "my_task.yaml"
    task.write_text("task: my_task\ndataset_path: json\nprocess_docs: !function utils.process_docs\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("task: plain\ndataset_path: json\n")
    cfg = {"stage": {"lm_eval": {"tasks": [{"name": "my_task", "yaml": str(task)},
                                           {"name": "plain", "yaml": str(plain)}, {"name": "arc_challenge"}]}}}
    # every task file of one's own is code (its folder is read whole; YAML and Jinja reach Python), not only !function
    assert [w for w, _ in trust.foreign(cfg)] == ["stage.lm_eval.tasks[0].yaml", "stage.lm_eval.tasks[1].yaml"]
    assert str(tmp_path) in trust.foreign(cfg)[0][1]
    trust.allow(False)
    with pytest.raises(ZephyrError) as exc:
        trust.check(cfg)
    assert "--trust-recipe-code" in exc.value.fix
    trust.allow(True)
    try:
        trust.check(cfg)
    finally:
        trust.allow(False)
