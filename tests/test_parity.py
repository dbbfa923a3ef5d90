"""The token-parity check: each bad fixture is caught and named by its pair of places; good recipes pass.

A fixture is a real recipe composed with overrides, over a model folder made like a run folder (the embedded
tokenizer saved with the template it was trained with, its config and generation config), checked by
``runtime.parity`` exactly as ``validate`` checks it (tokenizers only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from zephyr_recipes import stages
from zephyr_recipes.core.catalog import list_recipes
from zephyr_recipes.model import modeling
from zephyr_recipes.model.chat_format import template_text
from zephyr_recipes.runtime import parity
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate

ZEPHYR = template_text("zephyr")
NO_GENERATION_PROMPT = ZEPHYR.replace("{%- if add_generation_prompt -%}\n{{ '<|assistant|>\\n' }}\n{%- endif -%}", "")
NO_EOS = ZEPHYR.replace("{{ message['content'] + eos_token }}{% endgeneration %}",
                        "{{ message['content'] }}{% endgeneration %}")
NO_SYSTEM = ZEPHYR.replace("{{ '<|system|>\\n' + message['content'] + eos_token + '\\n' }}", "")
BOS_FIRST = "{{ bos_token }}" + ZEPHYR
# the trained assistant turn puts a label between the header and the answer, which the generation prompt lacks
LABELLED_TURN = ZEPHYR.replace("{{ '<|assistant|>\\n' }}{% generation %}{{ message['content']",
                               "{{ '<|assistant|>\\n' }}{% generation %}{{ 'Answer: ' + message['content']")
# the generation prompt adds a label that the trained turn does not have
LABELLED_PROMPT = ZEPHYR.replace("{%- if add_generation_prompt -%}\n{{ '<|assistant|>\\n' }}",
                                 "{%- if add_generation_prompt -%}\n{{ '<|assistant|>\\nAnswer:' }}")

def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.jinja"
    path.write_text(text)
    return str(path)


def _folder(tmp_path: Path, template: str = ZEPHYR, name: str = "trained", eos_id: int | None = None,
            add_bos: bool = False) -> str:
    """A model folder as a training run leaves it: tokenizer with the template it trained with, config, generation
    config, and the run folder's config.yaml."""
    src = Path(modeling.resolve_source("builtin://tiny-mistral", "model"))
    out = tmp_path / name
    out.mkdir()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src))
    tok.chat_template = template
    if add_bos:
        tok.add_bos_token = True
    tok.save_pretrained(str(out))
    for f in ("config.json", "generation_config.json"):
        shutil.copy(src / f, out / f)
    if eos_id is not None:
        gen = json.loads((out / "generation_config.json").read_text())
        gen["eos_token_id"] = eos_id
        (out / "generation_config.json").write_text(json.dumps(gen))
    (out / "config.yaml").write_text("run: {}\n")
    return str(out)


def _check(recipe: str, *overrides: str, probes=None):
    cfg, name, _ = compose(recipe, list(overrides))
    cfg = validate(cfg, name)
    saved = parity.PROBES
    if probes is not None:
        parity.PROBES = probes
    try:
        report, _ = parity.check(cfg, stages.of(cfg))
    finally:
        parity.PROBES = saved
    return report


def _caught(report, pair: tuple[str, str]) -> parity.Mismatch:
    """The mismatch between the two places (each given by the start of its name), with its fix."""
    for m in report.mismatches:
        if m.places[0].startswith(pair[0]) and m.places[1].startswith(pair[1]):
            assert m.fix and "token" in m.problem or "stop" in m.problem or "BOS" in m.problem
            return m
    raise AssertionError(f"no mismatch between {pair}: {[m.text() for m in report.mismatches]}")


# ------------------------------------------------------------------------------------------- good recipes
def test_a_consistent_recipe_passes_and_says_what_it_compared(tmp_path):
    report = _check("tiny/sft")
    assert not report.mismatches
    assert any(c.startswith("chat prompts with exactly the tokens sft trained tokens") for c in report.compared)
    folder = _folder(tmp_path)
    report = _check("tiny/eval", f"model.name_or_path={folder}")
    assert not report.mismatches
    assert any(c.startswith("eval answers") for c in report.compared)
    assert any(c.startswith("chat prompts") for c in report.compared)
    report = _check("tiny/aif", *(f"stage.generators.{i}.model={folder}" for i in range(3)))
    assert not report.mismatches
    assert len({c for c in report.compared if "its answer tokens = what dDPO trains on" in c}) == 3


def test_the_pipeline_hands_each_stage_the_template_its_model_was_trained_with(cli):
    code, out, err = cli("validate", "tiny/zephyr")
    assert code == 0, err
    assert "dpo: token parity:" in out and "runs/tiny-zephyr/sft's own template" in out
    assert "eval-dpo: token parity:" in out and "MISMATCH" not in out


# ------------------------------------------------------------------------------------------- bad fixtures
def test_1_a_template_without_a_generation_prompt(tmp_path):
    report = _check("tiny/sft", f"model.chat_template={_write(tmp_path, 'nogen', NO_GENERATION_PROMPT)}")
    m = _caught(report, ("sft trained tokens", "chat"))
    assert "'<|assistant|>'" in m.problem or "<|" in m.problem
    _caught(report, ("sft trained tokens", "generation from the run folder"))


def test_2_a_double_bos_when_a_generator_encodes_with_special_tokens(tmp_path, monkeypatch):
    """The template writes the BOS; a generator that encodes the rendered prompt with special tokens (a drift of
    feedback.backends.ENCODE, which the check calls) adds a second one."""
    from zephyr_recipes.feedback import backends

    folder = _folder(tmp_path, BOS_FIRST, add_bos=True)
    assert not _check("tiny/sft", f"model.name_or_path={folder}", "model.chat_template=null").mismatches
    monkeypatch.setitem(backends.ENCODE, "add_special_tokens", True)
    report = _check("tiny/sft", f"model.name_or_path={folder}", "model.chat_template=null")
    m = _caught(report, ("generation from the run folder", "the tokenizer's BOS"))
    assert "two BOS" in m.problem and "add_special_tokens=False" in m.fix
    _caught(report, ("sft trained tokens", "generation from the run folder"))


def test_3_eos_stripped_from_the_training_targets(tmp_path):
    report = _check("tiny/sft", f"model.chat_template={_write(tmp_path, 'noeos', NO_EOS)}")
    m = _caught(report, ("sft trained tokens", "generation's stop tokens"))
    assert "does not learn to stop" in m.problem
    assert "stage.trainer.eos_token=" in m.fix


def test_3b_a_turn_end_that_is_not_the_eos_is_named_in_the_fix_and_the_fix_works(tmp_path):
    """A base model whose EOS is </s>, trained on ChatML (each turn closed by <|im_end|>, a special token of its
    tokenizer): the fix names the override with that token, quoted for Hydra and the shell, and it passes."""
    from transformers import AutoTokenizer

    folder = Path(_folder(tmp_path, template_text("chatml")))
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.save_pretrained(str(folder))
    model = (f"model.name_or_path={folder}", "model.chat_template=chatml")
    m = _caught(_check("tiny/sft", *model), ("sft trained tokens", "generation's stop tokens"))
    assert "\"stage.trainer.eos_token='<|im_end|>'\"" in m.fix
    followed = _check("tiny/sft", *model, "stage.trainer.eos_token='<|im_end|>'")
    assert not [x for x in followed.mismatches if x.places[1].startswith("generation's stop tokens")]


def test_4_a_system_prompt_dropped_by_the_evaluation_template(tmp_path):
    folder = _folder(tmp_path)
    report = _check("tiny/eval", f"model.name_or_path={folder}",
                    f"model.chat_template={_write(tmp_path, 'nosys', NO_SYSTEM)}")
    m = _caught(report, (f"{folder}'s training template", "eval answers"))
    assert m.probe == "the probe with a system prompt" and "system" in m.problem
    assert not any(x.probe == "the one-turn probe" for x in report.mismatches)  # the same without a system prompt


def test_5_a_different_template_at_evaluation(tmp_path):
    folder = _folder(tmp_path)
    report = _check("tiny/eval", f"model.name_or_path={folder}", "model.chat_template=chatml")
    m = _caught(report, (f"{folder}'s training template", "eval answers"))
    assert "token 0 differs" in m.problem


def test_6_special_tokens_skipped_when_on_policy_text_is_re_tokenized(tmp_path):
    """A generated answer that holds a special token: the backend decodes without it, and dDPO trains on fewer
    tokens than were generated; the difference is counted."""
    folder = _folder(tmp_path)
    probes = (("an answer with a special token", [{"role": "user", "content": "Say the unknown token."},
                                                  {"role": "assistant", "content": "Here: <unk> done."}]),)
    report = _check("tiny/aif", *(f"stage.generators.{i}.model={folder}" for i in range(3)), probes=probes)
    m = _caught(report, ("aif generator sft-greedy (transformers)", "dpo on its answers (on-policy round trip)"))
    assert "answer token positions differ" in m.problem and "'<unk>'" in m.problem
    assert not _check("tiny/aif", *(f"stage.generators.{i}.model={folder}" for i in range(3))).mismatches


def test_7_a_vllm_server_with_its_own_template(tmp_path):
    folder = _folder(tmp_path)
    chatml = str(Path(__file__).resolve().parents[1] / "zephyr_recipes" / "templates" / "chatml.jinja")
    report = _check("tiny/aif", "stage.generators.0.type=vllm", f"stage.generators.0.model={folder}",
                    f"+stage.generators.0.args=[--chat-template,{chatml}]",
                    *(f"stage.generators.{i}.model={folder}" for i in (1, 2)))
    m = _caught(report, (f"{folder}'s training template", "aif generator sft-greedy (vllm)"))
    assert "im_start" in m.problem or "token 0" in m.problem
    assert not any("sft-t0.7" in " ".join(x.places) for x in report.mismatches)


def test_8_dpo_in_another_format_than_its_sft_model(tmp_path):
    folder = _folder(tmp_path)
    report = _check("tiny/dpo", f"model.name_or_path={folder}", "model.chat_template=chatml")
    _caught(report, (f"{folder}'s own template (what it was trained with)", "dpo trained tokens"))
    assert not _check("tiny/dpo", f"model.name_or_path={folder}", "model.chat_template=null").mismatches


def test_9_a_trained_turn_that_puts_text_between_the_generation_prompt_and_the_answer(tmp_path):
    """The generation prompt is a prefix of the trained text, so the model is prompted with text it saw; but
    training continues with a label before the answer, which generation would have to write itself."""
    template = _write(tmp_path, "label", LABELLED_TURN)
    cfg, name, _ = compose("tiny/sft", [f"model.chat_template={template}"])
    tok = modeling.prepare_tokenizer(modeling.open_tokenizer(cfg["model"]), cfg["model"], True)
    probe = parity.PROBES[1][1]
    assert tok.apply_chat_template(probe, tokenize=False).startswith(
        tok.apply_chat_template(probe[:-1], add_generation_prompt=True, tokenize=False))
    m = _caught(_check("tiny/sft", f"model.chat_template={template}"), ("sft trained tokens", "chat"))
    assert "Answer:'" in m.problem and "before the answer" in m.problem


def test_10_a_generator_prompting_with_another_template_than_its_model_trained_with(tmp_path):
    folder = _folder(tmp_path)
    report = _check("tiny/aif", *(f"stage.generators.{i}.model={folder}" for i in range(3)),
                    "+stage.generators.1.model_config.chat_template=chatml")
    _caught(report, (f"{folder}'s training template", "aif generator sft-t0.7 (transformers)"))
    assert [m.places[1] for m in report.mismatches] == ["aif generator sft-t0.7 (transformers)"] * 2


def test_11_a_generation_config_that_stops_on_another_token(tmp_path):
    folder = _folder(tmp_path, eos_id=0)
    report = _check("tiny/eval", f"model.name_or_path={folder}")
    m = _caught(report, (f"{folder}'s training template", "generation's stop tokens"))
    assert "'<unk>' (id 0)" in m.problem


def test_12_dpo_masking_less_than_the_generation_prompt(tmp_path):
    report = _check("tiny/dpo", "model.name_or_path=builtin://tiny-mistral",
                    f"model.chat_template={_write(tmp_path, 'label', LABELLED_PROMPT)}")
    m = _caught(report, ("dpo prompt", "its generation prompt"))
    assert "left out of training" in m.problem


def test_validate_refuses_a_mismatch_naming_both_places_and_the_fix(cli, tmp_path):
    folder = _folder(tmp_path)
    code, _, err = cli("validate", "tiny/eval", f"model.name_or_path={folder}", "model.chat_template=chatml",
                       "--no-preflight")
    assert code == 2
    assert f"token parity: {folder}'s training template <> eval answers" in err and "fix:" in err


@pytest.mark.slow
def test_rehearse_checks_the_real_templates_on_stand_ins(cli, tmp_path, monkeypatch):
    """zephyr-7b-beta/sft rehearsed: the stand-in of Mistral-7B trained with the recipe's Zephyr template passes the
    check, recorded in rehearsal.json, before the stage trains."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rehearse", "zephyr-7b-beta/sft", "--out", "reh", "stage.trainer.max_steps=1")
    assert code == 0, out + err[-2000:]
    record = json.loads((tmp_path / "reh" / "rehearsal.json").read_text())
    lines = record["token_parity"]["run"]
    assert any("comparison(s) agree" in line and "sft trained tokens" in line for line in lines), lines
    assert not any("MISMATCH" in line for line in lines)
    assert "run: token parity:" in err


RECIPES = list_recipes()


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_shipped_recipe_passes_the_check(recipe, tmp_path, monkeypatch):
    """As tests/test_walk.py walks them: each stage of a pipeline with the tokenizers its earlier stages save; what
    cannot be opened here (a hub model offline, a run folder not made) is listed as not checked, never a mismatch."""
    monkeypatch.chdir(tmp_path)
    from zephyr_recipes.runtime import pipeline, pipespec

    loaded = pipespec.load(recipe, [])
    if loaded:
        configs = [cfg for _, _, cfg in pipeline.stage_configs(loaded[0], loaded[2].parent)]
    else:
        raw, name, _ = compose(recipe, [])
        configs = [validate(raw, name)]
    produced: dict = {}
    for cfg in configs:
        lines = parity.run_check(cfg, stages.of(cfg), produced)
        assert not any("MISMATCH" in line for line in lines), lines
