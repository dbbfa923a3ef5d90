"""The typed stage section: a checked `stage` section read as instances of its schema."""

from __future__ import annotations

from dataclasses import asdict

from zephyr_recipes.data.binarize import BinarizeRule
from zephyr_recipes.feedback.specs import FunctionGenerator, OpenAIJudge, TransformersGenerator
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate
from zephyr_recipes.stages import aif


def test_the_aif_section_reads_typed_and_turns_back_into_the_checked_mapping():
    cfg = validate(*compose("tiny/aif", ["stage.self_agreement=0.25", "stage.binarize.rejected=lowest"])[:2])
    stage = cfg.stage
    # each generator is the variant its type picks, with that variant's own keys
    assert [type(g) for g in stage.generators] == [TransformersGenerator] * 3 + [FunctionGenerator]
    assert stage.generators[0].model == "./runs/tiny-sft" and stage.generators[3].function
    assert isinstance(stage.binarize, BinarizeRule) and stage.binarize.rejected == "lowest"
    assert stage.self_agreement == 0.25 and stage.test_fraction == cfg.config["stage"]["test_fraction"]
    # asdict gives back exactly what validate checked, which is what the feedback layer receives
    assert [asdict(g) for g in stage.generators] == cfg.config["stage"]["generators"]
    assert asdict(stage.binarize) == cfg.config["stage"]["binarize"]
    assert asdict(stage.judge) == cfg.config["stage"]["judge"]
    assert aif.section(cfg.config) == stage  # the checked mapping typed again: the same section


def test_a_judge_of_another_type_is_its_own_variant():
    overrides = ["~stage.judge.module", "stage.judge.type=openai", "+stage.judge.base_url=http://127.0.0.1:9/v1",
                 "+stage.judge.model=m"]
    cfg = validate(*compose("tiny/aif", overrides)[:2])
    judge = cfg.stage.judge
    assert isinstance(judge, OpenAIJudge) and judge.base_url == "http://127.0.0.1:9/v1" and judge.model == "m"


def test_a_recipe_reads_typed_and_its_sections_turn_back_into_the_checked_config():
    """Validation returns a typed Recipe; asdict of its sections is the mapping it checked (what config.yaml
    holds, recipe.config), and that mapping typed again is the same recipe."""
    from zephyr_recipes import stages
    from zephyr_recipes.core.schema import HardwareConfig, ModelConfig

    for name in ("tiny/sft", "tiny/dpo", "tiny/aif"):
        recipe = validate(*compose(name, [])[:2])
        stage = stages.get(recipe.stage.name)
        cfg = recipe.config
        assert isinstance(recipe.model, ModelConfig) and isinstance(recipe.hardware, HardwareConfig)
        assert isinstance(recipe.stage, stage.schema) and recipe.run.seed == cfg["run"]["seed"]
        assert recipe.as_dict() == {k: cfg[k] for k in recipe.as_dict()} and stage.recipe(cfg) == recipe
        assert recipe.run.output_dir == cfg["run"]["output_dir"] == f"runs/{recipe.run.name}"


def test_replaced_sets_a_section_in_the_typed_recipe_and_in_the_mapping_alike():
    """A sweep point's folder, a pipeline stage run again: the typed section and the mapping files are written from
    change together, and the recipe it was made from stays as it was."""
    import copy

    from zephyr_recipes import stages

    recipe = validate(*compose("tiny/sft", [])[:2])
    before = copy.deepcopy(recipe.config)
    moved = recipe.replaced("run", output_dir="runs/elsewhere", overwrite=True)
    assert moved.run.output_dir == moved.config["run"]["output_dir"] == "runs/elsewhere"
    assert moved.run.overwrite is True and moved.config["run"]["overwrite"] is True
    assert moved.config["model"] is recipe.config["model"] and moved.model is recipe.model  # the rest is shared
    assert recipe.config == before and recipe.run.output_dir == "runs/tiny-sft" and not recipe.run.overwrite
    assert stages.of(moved).recipe(moved.config) == moved  # the mapping typed again: the same recipe


def test_one_walk_finds_a_stage_section_s_specs_wherever_they_sit():
    """The generator and judge specs validate, the pre-flight and runcheck read: in the order the section holds
    them, named as an error names them; with the stage, without the settings the config does not use."""
    from zephyr_recipes import stages
    from zephyr_recipes.runtime import stagespecs

    aif_recipe = validate(*compose("tiny/aif", [])[:2], deep=False)
    assert [w for w, _ in stagespecs.specs(aif_recipe)] == [f"stage.generators[{i}]" for i in range(4)] + ["stage.judge"]
    local = stagespecs.with_model(aif_recipe, where="here")  # the three transformers generators, not the function
    assert [spec["model"] for _, spec in local] == ["./runs/tiny-sft"] * 3
    assert stagespecs.with_model(aif_recipe, where="served") == []
    own = "+stage.mt_bench.judge={type: function, module: zephyr_recipes.embedded.lexical_judge}"
    ev = validate(*compose("tiny/eval", ["stage.benchmarks=[mt_bench]", own])[:2], deep=False)
    assert [w for w, _ in stagespecs.specs(ev)] == ["stage.judge", "stage.mt_bench.judge"]
    assert [w for w, _ in stagespecs.specs(ev, stages.of(ev))] == ["stage.mt_bench.judge"]  # stage.judge unused
    assert "judge" in ev.config["stage"]  # left out of the walk only, never out of the config
