"""Composition: shipped recipes, recipe files from elsewhere, Hydra overrides, show and list."""

from __future__ import annotations

import pytest
import yaml

from zephyr_recipes import stages
from zephyr_recipes.core.catalog import RECIPES_DIR, list_options, list_recipes
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_shipped_recipe_composes_and_validates(recipe, cli):
    from zephyr_recipes.commands.recipe import compose_any, is_pipeline

    cfg, _ = compose_any(recipe, [])
    configs = [st["config"] for st in cfg["pipeline"]["stages"]] if is_pipeline(cfg) else [cfg]
    for c in configs:
        assert c.stage.name in stages.names()
        assert c.run.output_dir
        assert c.model.name_or_path
    code, out, err = cli("validate", recipe, "--no-preflight")  # no API keys or runs on this machine
    assert code == 0 and out.splitlines()[-1].startswith("ok: "), err


def test_zephyr_7b_beta_hyperparameters_match_the_paper():
    sft = validate(*compose("zephyr-7b-beta/sft")[:2])
    t = sft.stage.trainer
    assert sft.model.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert (sft.dataset.path, sft.dataset.train_split) == ("HuggingFaceH4/ultrachat_200k", "train_sft")
    assert (t["learning_rate"], t["lr_scheduler_type"], t["warmup_steps"], t["num_train_epochs"]) == (2e-5, "cosine", 0.1, 1)
    assert t["max_length"] == 2048 and t["packing"] is True and sft.hardware.precision == "bf16"
    assert sft.model.chat_template == "zephyr"
    dpo = validate(*compose("zephyr-7b-beta/dpo")[:2])
    t = dpo.stage.trainer
    assert dpo.model.name_or_path == "alignment-handbook/zephyr-7b-sft-full"
    assert (dpo.dataset.path, dpo.dataset.train_split) == (
        "HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    assert (t["beta"], t["learning_rate"], t["lr_scheduler_type"], t["warmup_steps"]) == (0.01, 5e-7, "cosine", 0.1)
    assert t["max_length"] == 1024 and dpo.dataset.max_prompt_tokens == 512


def test_overrides_change_keys_groups_and_add_keys():
    raw, name, _ = compose("zephyr-7b-beta/sft", ["stage.trainer.learning_rate=1e-5", "hardware=cpu",
                                                  "+stage.trainer.max_steps=7", "~stage.trainer.packing",
                                                  "stage.trainer.save_total_limit=3"])
    cfg = validate(raw, name)
    assert cfg.stage.trainer["learning_rate"] == 1e-5
    assert cfg.stage.trainer["max_steps"] == 7
    assert cfg.stage.trainer["save_total_limit"] == 3
    assert "packing" not in cfg.stage.trainer
    assert cfg.hardware.name == "cpu" and cfg.hardware.device == "cpu"
    assert cfg.model.name_or_path == "mistralai/Mistral-7B-v0.1"  # the rest of the recipe stays


def test_recipe_from_any_path(tmp_path):
    mine = tmp_path / "their_recipe.yaml"
    text = (RECIPES_DIR / "tiny" / "sft.yaml").read_text().replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-4")
    mine.write_text(text)
    raw, name, path = compose(str(mine), ["run.name=theirs"])
    cfg = validate(raw, name)
    assert path == mine.resolve()
    assert cfg.stage.trainer["learning_rate"] == 1e-4
    assert cfg.run.name == "theirs" and cfg.run.output_dir == "runs/theirs"
    # The mapping config.yaml is written from holds the run's name and folder too.
    assert (cfg.config["run"]["name"], cfg.config["run"]["output_dir"]) == ("theirs", "runs/theirs")


def test_show_prints_the_resolved_config(cli):
    code, out, _ = cli("show", "zephyr-7b-beta/dpo", "stage.trainer.beta=0.05")
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["stage"]["trainer"]["beta"] == 0.05
    assert cfg["run"]["output_dir"] == "runs/zephyr-7b-dpo-full"
    assert set(cfg) == {"recipe", "run", "model", "dataset", "stage", "hardware"}


def test_list_names_recipes_and_every_group_option(cli):
    code, out, _ = cli("list")
    assert code == 0
    for recipe in list_recipes():
        assert recipe in out
    for group, options in list_options().items():
        assert group in out
        for option in options:
            assert option in out


def test_cp_copies_a_recipe_and_refuses_to_overwrite(cli, tmp_path):
    dest = tmp_path / "mine.yaml"
    assert cli("cp", "tiny/sft", str(dest))[0] == 0
    assert dest.read_text() == (RECIPES_DIR / "tiny" / "sft.yaml").read_text()
    dest.write_text("# edited\n")
    code, _, err = cli("cp", "tiny/sft", str(dest))
    assert code == 2 and "already exists" in err
    assert dest.read_text() == "# edited\n"


def test_validate_command(cli):
    code, out, _ = cli("validate", "tiny/dpo")
    assert code == 0 and out.splitlines()[-1].startswith("ok: tiny/dpo")


def test_help_explains_overrides(cli, capsys):
    from zephyr_recipes.commands.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "group=option" in out and "zephyr-recipes list" in out


@pytest.mark.parametrize("args, says", [
    (["tiny/eval-heldout"], "eval of ./runs/tiny-dpo on mt_bench, alpaca_eval, hardware cpu"),
    (["tiny/sft", "dataset=ultrachat-ultrafeedback-mix"],
     "on a mixture of HuggingFaceH4/ultrachat_200k[train_sft] x1.0 + HuggingFaceH4/ultrafeedback_binarized[train_sft] x0.5"),
    (["tiny/dpo"], "on ./runs/tiny-aif[train_prefs]"),
])
def test_validate_says_what_the_stage_reads(cli, args, says):
    code, out, err = cli("validate", *args)
    assert code == 0 and says in out, out + err


@pytest.mark.parametrize("args, says", [
    (["validate", "tiny/sft", "--rows", "-3"], "argument --rows: -3 is below 1"),
    (["validate", "tiny/sft", "--rows", "0"], "argument --rows: 0 is below 1"),
    (["preview", "tiny/sft", "--sample", "0"], "argument --sample: 0 is below 1"),
    (["preview", "tiny/sft", "-n", "-1"], "argument -n/--examples: -1 is below 0"),
    (["rehearse", "tiny/sft", "--steps", "two"], "argument --steps: 'two' is not a whole number"),
])
def test_a_count_below_its_least_is_a_usage_error(args, says, capsys):
    """A check of no rows ("rendered 0 rows ... all render") or a rehearsal of no steps would pass having done
    nothing: counts are refused where they are parsed."""
    from zephyr_recipes.commands.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and says in capsys.readouterr().err
