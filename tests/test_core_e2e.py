"""End to end: really train the embedded tiny model through SFT and then DPO, and check what came out.

The finished SFT, AIF and DPO runs are the session's shared ones (tests/conftest.py)."""

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


def _history(folder: Path) -> list[dict]:
    return json.loads((folder / "log_history.json").read_text())


def test_sft_run_folder_holds_everything(tiny_sft_run):
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "config.yaml",
                 "provenance.json", "metrics.json", "log_history.json", "training_curves.png", "README.md"):
        assert (tiny_sft_run / name).is_file(), name
    assert json.loads((tiny_sft_run / "run.json").read_text())["status"] == "complete"
    assert not list(tiny_sft_run.glob("checkpoint-*"))
    assert (tiny_sft_run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    prov = json.loads((tiny_sft_run / "provenance.json").read_text())
    assert prov["versions"]["trl"] and prov["versions"]["transformers"] and prov["versions"]["torch"]
    assert {k: prov["placement"][k] for k in ("device", "attn_implementation", "precision")} == {
        "device": "cpu", "attn_implementation": "sdpa", "precision": "fp32"}
    assert prov["data"]["train"]["rows"] == 1280 and prov["data"]["train"]["fingerprint"]
    assert "tiny/sft" in prov["command"]
    card = (tiny_sft_run / "README.md").read_text()
    assert "pipeline(" in card and "builtin://tiny-ultrachat" in card


def test_sft_loss_goes_down(tiny_sft_run):
    losses = [h["loss"] for h in _history(tiny_sft_run) if "loss" in h]
    assert len(losses) >= 3
    assert losses[-1] < 0.8 * losses[0], losses


def test_sft_output_chats_through_pipeline(tiny_sft_run):
    from transformers import pipeline

    chat = pipeline("text-generation", model=str(tiny_sft_run))
    assert "<|assistant|>" in chat.tokenizer.chat_template
    reply = chat([{"role": "user", "content": "Sort the numbers: 5 3 9"}], max_new_tokens=12, do_sample=False)
    turns = reply[0]["generated_text"]
    assert turns[-1]["role"] == "assistant" and isinstance(turns[-1]["content"], str)


def test_frozen_config_reruns_as_a_recipe(tiny_sft_run, cli):
    code, out, _ = cli("show", str(tiny_sft_run / "config.yaml"))
    assert code == 0
    assert yaml.safe_load(out) == yaml.safe_load((tiny_sft_run / "config.yaml").read_text())


def test_dpo_trains_against_the_sft_output(tiny_dpo_run, tiny_sft_run):
    prov = json.loads((tiny_dpo_run / "provenance.json").read_text())
    assert prov["reference_model"] == str(tiny_sft_run.resolve())
    history = _history(tiny_dpo_run)
    logged = [h for h in history if "rewards/margins" in h and "loss" in h]
    # The first batch is scored before any update: policy and reference are the same SFT weights.
    assert logged[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert logged[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert logged[-1]["rewards/margins"] > 0.05
    assert logged[-1]["loss"] < logged[0]["loss"]
    assert json.loads((tiny_dpo_run / "run.json").read_text())["status"] == "complete"
    assert "Reference model" in (tiny_dpo_run / "README.md").read_text()


def test_dpo_weights_moved_away_from_the_reference(tiny_dpo_run, tiny_sft_run):
    from safetensors.torch import load_file

    before, after = load_file(tiny_sft_run / "model.safetensors"), load_file(tiny_dpo_run / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before)


@pytest.mark.slow  # trains twice (make test-slow)
def test_finished_run_is_not_overwritten_unless_asked(tmp_path, cli):
    # A run of its own (the shared one stays untouched whatever happens here); a frozen config names its folder.
    folder = tmp_path / "finished"
    args = ["tiny/sft", f"run.output_dir={folder}", "dataset.max_train_samples=64", "dataset.test_split=null"]
    assert cli(*args)[0] == 0
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    code, _, err = cli(*args)  # the same config: done already
    assert code == 0 and "already holds a finished run of this config" in err
    code, _, err = cli(*args, "stage.trainer.learning_rate=1e-3")
    assert code == 2 and "holds a finished run" in err and "run.overwrite=true" in err
    assert weights.stat().st_mtime_ns == stamp


@pytest.mark.slow  # trains twice (make test-slow)
def test_overwrite_replaces_a_finished_run(tmp_path, cli):
    folder = tmp_path / "replace"
    args = ["tiny/sft", f"run.output_dir={folder}", "dataset.max_train_samples=64", "dataset.test_split=null"]
    assert cli(*args)[0] == 0
    first = json.loads((folder / "run.json").read_text())["started"]
    time.sleep(1.1)
    assert cli(*args, "run.overwrite=true")[0] == 0
    assert json.loads((folder / "run.json").read_text())["started"] != first


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    folder = tmp_path / "resume"
    cmd = [sys.executable, "-m", "zephyr_recipes", "tiny/sft", f"run.output_dir={folder}",
           "dataset.max_train_samples=2000", "dataset.test_split=null", "stage.trainer.max_steps=150",
           "stage.trainer.save_steps=10", "stage.trainer.per_device_train_batch_size=8"]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 180
        while not list(folder.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    status = json.loads((folder / "run.json").read_text())
    assert status["status"] == "running"  # killed hard: not finished, and it does not look finished
    assert not (folder / "model.safetensors").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads((folder / "run.json").read_text())
    assert status["status"] == "complete" and "checkpoint-" in status["resumed_from"]
    resumed_at = int(status["resumed_from"].rsplit("-", 1)[1])
    steps = [h["step"] for h in _history(folder) if "loss" in h]
    assert resumed_at >= 10 and steps[-1] == 150
    assert "resuming from" in (folder / "train.log").read_text()


def test_unfinished_run_with_a_different_config_is_refused(tmp_path, cli):
    folder = tmp_path / "changed"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"status": "running"}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"stage": {"trainer": {"learning_rate": 1.0}}}))
    code, _, err = cli("tiny/sft", f"run.output_dir={folder}")
    assert code == 2 and "unfinished run of a different config" in err
    assert json.loads((folder / "run.json").read_text()) == {"status": "running"}


def test_sft_then_aif_then_dpo_on_its_pairs(tmp_path, tiny_sft_run, tiny_aif_run, cli):
    aif = tiny_aif_run
    assert yaml.safe_load((aif / "config.yaml").read_text())["stage"]["generators"][0]["model"] == str(tiny_sft_run)
    summary = json.loads((aif / "summary.json").read_text())
    # a seeded sample of 40 rows of train_gen; a prompt that appears twice in it is answered once
    assert 35 <= summary["prompts"] <= 40 and summary["completions"] == 4 * summary["prompts"]
    assert summary["mean_score_by_generator"]["teacher"] == 5.0
    assert summary["mean_score_by_generator"]["teacher"] > summary["mean_score_by_generator"]["sft-t1.0"]
    assert sum(summary["pairs"].values()) > 20
    dpo = tmp_path / "dpo-aif"
    code, _, err = cli("tiny/dpo", f"run.output_dir={dpo}", f"model.name_or_path={tiny_sft_run}",
                       f"dataset.path={aif}")
    assert code == 0, err
    prov = json.loads((dpo / "provenance.json").read_text())
    assert prov["data"]["train"]["rows"] == summary["pairs"]["train_prefs"]
    assert json.loads((dpo / "run.json").read_text())["status"] == "complete"
