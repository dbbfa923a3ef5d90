"""A recipe that compares greedy answers of vLLM and transformers is warned (validate, show, the AI-feedback card):
the two backends' greedy answers differ for the same model (docs/ai-feedback.md, "vLLM and transformers")."""

from __future__ import annotations

MIXED = ("stage.generators=[{name: local, type: transformers, model: ./runs/tiny-sft, sampling: {temperature: 0}}, "
         "{name: served, type: vllm, model: ./runs/tiny-sft}]")
SAMPLED = ("stage.generators=[{name: local, type: transformers, model: ./runs/tiny-sft, sampling: {temperature: 0.7}}, "
           "{name: served, type: vllm, model: ./runs/tiny-sft, sampling: {temperature: 1.0}}]")


def test_validate_and_show_warn_when_greedy_generators_answer_through_both_backends(cli):
    code, out, err = cli("validate", "tiny/aif", MIXED, "--no-preflight")
    assert code == 0, err
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "vLLM (served)" in warning[0] and "transformers (local (greedy))" in warning[0]
    assert "15 of 32 prompts" in warning[0]
    code, out, err = cli("show", "tiny/aif", MIXED)
    assert code == 0 and "# warning: generators answer through vLLM" in out


def test_no_warning_without_a_greedy_generator_or_without_both_backends(cli):
    for args in ([SAMPLED], []):  # both backends sampling; the shipped pool (transformers and a function)
        code, out, err = cli("validate", "tiny/aif", *args, "--no-preflight")
        assert code == 0, err
        assert "warning:" not in out


def test_a_vllm_served_openai_generator_counts_as_vllm():
    from zephyr_recipes.core import greedy

    assert greedy.backend({"type": "openai", "serve": "vllm serve org/model --port 8011"}) == "vllm"
    assert greedy.backend({"type": "openai", "base_url": "https://api.openai.com/v1"}) is None
    cfg = {"stage": {"name": "aif", "sampling": {"temperature": 0.0}, "generators": [
        {"name": "a", "type": "transformers"}, {"name": "b", "type": "openai", "serve": "vllm serve m"}]}}
    assert greedy.aif_warning(cfg)  # the stage's sampling makes both greedy


def test_a_pipeline_whose_evaluations_use_different_backends_is_warned():
    from zephyr_recipes.core import greedy

    def ev(vllm):
        return {"stage": {"name": "eval", "vllm": vllm}}

    stages = [{"name": "eval-a", "config": ev(None)}, {"name": "eval-b", "config": ev({"max_model_len": 512})}]
    said = greedy.warnings({"pipeline": {"stages": stages}})
    assert len(said) == 1 and "eval-a: transformers, eval-b: vLLM" in said[0]
    assert not greedy.warnings({"pipeline": {"stages": [stages[0], {**stages[0], "name": "eval-c"}]}})


def test_the_ai_feedback_card_carries_the_warning():
    from zephyr_recipes.core.recipe import recipe_of
    from zephyr_recipes.core.records import dataset_card
    from zephyr_recipes.stages.aif import AIFStageConfig

    cfg = {"run": {"name": "x", "output_dir": "runs/x"}, "dataset": {"path": "p", "train_split": "train"},
           "stage": {"name": "aif", "sampling": {}, "judge": {"type": "function", "module": "m"}, "generators": [
               {"name": "a", "type": "transformers", "model": "m", "sampling": {"temperature": 0}},
               {"name": "b", "type": "vllm", "model": "m"}]}}
    summary = {"prompts": 1, "completions": 2, "pairs": {"train_prefs": 1, "test_prefs": 0},
               "binarize": {"rejected": "random", "score": "mean"}, "mean_score_by_generator": {"a": 3.0, "b": 4.0},
               "judge_failures": 0, "generation_failures": 0, "self_agreement": None}
    card = dataset_card(recipe_of(cfg, AIFStageConfig), {"command": "zephyr-recipes tiny/aif"}, summary)
    assert "- Warning: generators answer through vLLM (b) and transformers (a (greedy))" in card
    cfg["stage"]["generators"][1]["type"] = "transformers"
    assert "Warning" not in dataset_card(recipe_of(cfg, AIFStageConfig), {"command": "zephyr-recipes tiny/aif"}, summary)


def test_chat_help_shows_every_options_default(cli, capsys):
    import pytest

    from zephyr_recipes.commands.cli import main

    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--max-new-tokens", "(default 256)"), ("--temperature", "(default 0.0: greedy)"),
                            ("--system", "(default: none)"), ("--chat-template", "default: the template saved"),
                            ("--device", "(default: the pipeline's choice)")):
        assert option in text and default in text, (option, text)
