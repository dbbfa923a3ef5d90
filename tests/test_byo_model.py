"""Bring your own model: a Llama-architecture chat model whose tokenizer carries a marker-less ChatML template,
trained end to end on assistant tokens only, and the runs that must not look finished when they trained nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.byo_helpers import build_chatml_llama, published, write_pref_jsonl, write_sft_jsonl

SFT_ARGS = ["dataset.test_split=null", "stage.trainer.max_steps=6", "stage.trainer.packing=false",
            "stage.trainer.logging_steps=1", "stage.trainer.save_steps=100", "stage.trainer.learning_rate=1e-3",
            "stage.trainer.assistant_only_loss=true", "model.chat_template=null"]


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    return {"model": build_chatml_llama(root / "chatml-llama"), "sft": write_sft_jsonl(root / "chat.jsonl"),
            "prefs": write_pref_jsonl(root / "prefs.jsonl"), "root": root}


def _sft(byo, out, *extra):
    return ["tiny/sft", f"run.output_dir={out}", f"model.name_or_path={byo['model']}",
            f"dataset.path={byo['sft']}", *SFT_ARGS, *extra]


def test_validate_shows_the_template_choice_and_a_marked_row(cli, byo):
    code, out, err = cli("validate", *_sft(byo, byo["root"] / "never"))
    assert code == 0, err
    assert "chat template: chatml (shipped-twin)" in out
    assert "pad token '<|im_end|>'" in out
    assert "every row has trained tokens" in out and "'<|im_start|>assistant\\n'" in out
    row = out.split("first row as the trainer sees it", 1)[1]
    first = json.loads(byo["sft"].read_text().splitlines()[0])["messages"]
    assert f"[[{first[1]['content']}<|im_end|>]]" in row  # the answer and its end token, and nothing else
    assert f"[[{first[0]['content']}" not in row
    assert not (byo["root"] / "never").exists()


@pytest.mark.slow
def test_sft_trains_exactly_the_assistant_tokens_of_a_marker_less_chatml_model(cli, byo, tmp_path):
    """The collated batch the trainer steps on holds labels on the answers and their <|im_end|> only."""
    from zephyr_recipes import data, stages
    from zephyr_recipes.model import modeling
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate
    from zephyr_recipes.stages.training import trainer_args

    cfg = validate(compose("tiny/sft", _sft(byo, tmp_path / "probe")[1:])[0], "tiny/sft")
    record: dict = {}
    tok = modeling.load_tokenizer(cfg.model, assistant_only=True, record=record)
    assert record["chat_template"]["source"] == "shipped-twin" and record["chat_template"]["name"] == "chatml"
    sft = stages.get("sft")
    train, _, _ = data.load_for_stage(cfg, tok, sft.rows)
    placement = modeling.resolve_placement(cfg.hardware)
    model = modeling.load_model(cfg.model.name_or_path, cfg.model, placement)
    (tmp_path / "probe").mkdir()
    args = trainer_args(sft, cfg, placement, tmp_path / "probe")
    trainer, _ = sft.build_trainer(cfg, model, tok, train, None, args, None)
    batch = next(iter(trainer.get_train_dataloader()))
    by_prompt = {json.loads(line)["prompt"]: json.loads(line)["messages"] for line in byo["sft"].read_text().splitlines()}
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        text = tok.decode([i for i in ids if i != tok.pad_token_id or True], skip_special_tokens=False)
        prompt = next(p for p in by_prompt if p in text)
        expected = "".join(m["content"] + "<|im_end|>" for m in by_prompt[prompt] if m["role"] == "assistant")
        assert tok.decode([i for i, lab in zip(ids, labels) if lab != -100]) == expected

    out = tmp_path / "sft"
    code, _, err = cli(*_sft(byo, out))
    assert code == 0, err
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete" and status["metrics"]["train_loss"] > 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["tokenizer"]["chat_template"] == {"source": "shipped-twin", "name": "chatml",
                                                 "note": prov["tokenizer"]["chat_template"]["note"]}
    assert prov["tokenizer"]["pad_token"]["pad_token"] == "<|im_end|>"
    card = (out / "README.md").read_text()
    assert "Chat template: `chatml`, the shipped twin" in card and "Pad token: `<|im_end|>`" in card
    # The saved tokenizer renders exactly the model's own format, so pipeline() prompts as in training.
    from transformers import AutoTokenizer, pipeline

    saved = AutoTokenizer.from_pretrained(out)
    msgs = [{"role": "user", "content": "Reverse the words: a b"}]
    assert saved.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        saved.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                  chat_template=published("chatml-hermes"))
    chat = pipeline("text-generation", model=str(out), device="cpu")
    reply = chat(msgs, max_new_tokens=4, do_sample=False)[0]["generated_text"]
    assert reply[-1]["role"] == "assistant"


@pytest.mark.slow
def test_dpo_of_a_marker_less_chatml_model_on_local_pairs(cli, byo, tmp_path):
    out = tmp_path / "dpo"
    code, _, err = cli("tiny/dpo", f"run.output_dir={out}", f"model.name_or_path={byo['model']}",
                       f"dataset.path={byo['prefs']}", "dataset.test_split=null", "stage.trainer.max_steps=3",
                       "stage.trainer.per_device_train_batch_size=4", "stage.trainer.logging_steps=1",
                       "model.chat_template=null")
    assert code == 0, err
    history = json.loads((out / "log_history.json").read_text())
    first = next(h for h in history if "rewards/chosen" in h)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)  # the reference is the starting model
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_template_with_no_markers_and_no_twin_is_refused_before_any_weights_load(cli, tmp_path):
    """The model folder holds no weights at all: only refusing before loading them lets this end cleanly."""
    folder = build_chatml_llama(tmp_path / "odd", template=(
        "{% for m in messages %}{{ '### ' + m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### assistant: ' }}{% endif %}"))
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    data = write_sft_jsonl(tmp_path / "chat.jsonl", n=8)
    out = tmp_path / "run"
    args = ["tiny/sft", f"run.output_dir={out}", f"model.name_or_path={folder}", f"dataset.path={data}",
            *SFT_ARGS]
    code, _, err = cli("validate", *args)
    assert code == 2 and "no {% generation %} markers" in err and "assistant_only_loss=false" in err
    code, _, err = cli(*args)
    assert code == 2 and "no {% generation %} markers" in err and "Traceback" not in err
    assert not out.exists()


def test_tokenizer_larger_than_the_embeddings_is_resized_and_said(cli, tmp_path):
    folder = build_chatml_llama(tmp_path / "grown", grow_vocab=5)
    data = write_sft_jsonl(tmp_path / "chat.jsonl", n=8)
    out = tmp_path / "run"
    code, _, err = cli("tiny/sft", f"run.output_dir={out}", f"model.name_or_path={folder}", f"dataset.path={data}",
                       *SFT_ARGS[:1], "stage.trainer.max_steps=2", "stage.trainer.packing=false",
                       "stage.trainer.assistant_only_loss=true", "model.chat_template=null")
    assert code == 0, err
    prov = json.loads((out / "provenance.json").read_text())
    rows = prov["tokenizer"]["resized_embeddings"]
    assert rows["to"] == rows["from"] + 5
    assert "resized from" in (out / "README.md").read_text()
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).vocab_size == rows["to"]


def test_a_base_model_without_a_template_is_refused_with_the_fix(cli, tmp_path):
    folder = build_chatml_llama(tmp_path / "base", template="")
    code, _, err = cli("validate", "tiny/sft", f"model.name_or_path={folder}", "model.chat_template=null")
    assert code == 2 and "has no chat template" in err and "model.chat_template" in err


# ------------------------------------------------------------------------------------ runs that trained nothing
@pytest.mark.parametrize("override,problem", [
    (["stage.trainer.num_train_epochs=-1"], "would make no optimizer step"),
    (["stage.trainer.num_train_epochs=0", "stage.trainer.max_steps=0"], "would make no optimizer step"),
    (["stage.trainer.learning_rate=-1e-4"], "learning_rate=-0.0001"),
])
def test_values_that_train_nothing_are_refused_at_validate(cli, override, problem):
    code, _, err = cli("validate", "tiny/sft", *override)
    assert code == 2 and problem in err


def test_dpo_beta_must_be_positive(cli):
    code, _, err = cli("validate", "tiny/dpo", "stage.trainer.beta=0")
    assert code == 2 and "beta must be positive" in err


@pytest.mark.slow
def test_a_diverged_run_ends_failed_never_complete(cli, byo, tmp_path):
    out = tmp_path / "nan"
    # A finite learning rate that blows the weights up (an infinite one is refused before the run starts).
    code, _, err = cli(*_sft(byo, out), "stage.trainer.learning_rate=1e30", "stage.trainer.max_steps=20",
                       "stage.trainer.warmup_steps=0")
    assert code == 2 and ("NaN or infinite" in err or "loss ended" in err), err
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "failed" and ("NaN" in status["error"] or "loss ended" in status["error"])
    assert not (out / "model.safetensors").exists()


def test_no_rows_left_after_filtering_fails_with_the_reason(cli, byo, tmp_path):
    out = tmp_path / "empty"
    code, _, err = cli("tiny/dpo", f"run.output_dir={out}", f"model.name_or_path={byo['model']}",
                       f"dataset.path={byo['prefs']}", "dataset.test_split=null", "dataset.max_prompt_tokens=1",
                       "model.chat_template=null")
    assert code == 2 and "has no usable rows" in err and "prompt_too_long" in err, err
    assert not (out / "run.json").exists() or json.loads((out / "run.json").read_text())["status"] != "complete"


def test_an_empty_jsonl_dataset_says_it_is_empty(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = cli("tiny/sft", f"dataset.path={empty}", "dataset.test_split=null",
                       f"run.output_dir={tmp_path / 'run'}")
    assert code == 2 and f"dataset file {empty} is empty" in err and "StopIteration" not in err


def test_a_recipe_that_is_a_yaml_list_is_told_to_be_a_mapping(cli, tmp_path):
    recipe = tmp_path / "listy.yaml"
    recipe.write_text("- model: tiny\n- stage: sft\n")
    code, _, err = cli("validate", str(recipe))
    assert code == 2 and "must be a mapping" in err and "defaults:" in err and "ListConfig" not in err


def test_a_missing_run_folder_names_the_target_that_makes_it(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("tiny/eval")
    assert code == 2 and "runs/tiny-dpo" in err and "make dpo" in err, err
    code, _, err = cli("tiny/dpo")
    assert code == 2 and "make" in err and ("make sft" in err or "make aif" in err), err


# ------------------------------------------------------------------------------------ one launch per run folder
def _holder(folder: Path, ready: Path) -> subprocess.Popen:
    code = ("import sys, time, pathlib\n"
            "from zephyr_recipes.core import runfolder\n"
            f"with runfolder.locked(pathlib.Path({str(folder)!r}), ['holder']):\n"
            f"    pathlib.Path({str(ready)!r}).write_text('x')\n"
            "    time.sleep(120)\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])


def test_a_second_launch_into_a_busy_run_folder_is_refused_and_a_killed_holder_leaves_no_lock(cli, tmp_path):
    out, ready = tmp_path / "run", tmp_path / "ready"
    holder = _holder(out, ready)
    try:
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.1)
        code, _, err = cli("tiny/sft", f"run.output_dir={out}", "stage.trainer.max_steps=1")
        assert code == 2 and f"is being written by process {holder.pid}" in err and "since" in err
        assert not out.exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    from zephyr_recipes.core import runfolder

    with runfolder.locked(out, ["again"]):  # the killed holder's lock went with it
        assert json.loads(runfolder.lock_path(out).read_text())["command"] == ["again"]


@pytest.mark.slow
def test_rerunning_a_finished_run_says_done_and_a_different_config_is_refused(cli, byo, tmp_path):
    out = tmp_path / "again"
    args = _sft(byo, out)
    assert cli(*args)[0] == 0
    finished = json.loads((out / "run.json").read_text())["finished"]
    code, out_text, err = cli(*args)
    assert code == 0 and "already holds a finished run of this config" in err
    assert json.loads((out / "run.json").read_text())["finished"] == finished
    code, _, err = cli(*args, "stage.trainer.learning_rate=5e-4")
    assert code == 2 and "holds a finished run" in err and "run.overwrite=true" in err
    assert yaml.safe_load((out / "config.yaml").read_text())["stage"]["trainer"]["learning_rate"] == 1e-3
