"""Bad input gets a short error naming the problem and the fix, a non-zero exit, and loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zephyr_recipes.core.records import redact


def _fails(cli, *args, problem: str, fix: str):
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert problem in err, err
    assert "fix:" in err and fix in err, err
    return err


def test_malformed_yaml(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  - model: tiny\nstage:\n  trainer: {learning_rate: 1e-3\n")
    err = _fails(cli, "validate", str(bad), problem="is not valid YAML", fix="YAML syntax")
    assert "line" in err


@pytest.mark.parametrize("override, problem, fix", [
    ("stage.trainer.learning_rat=1e-3", "unknown key `stage.trainer.learning_rat`", "did you mean learning_rate"),
    ("stage.trainer.max_seq_length=512", "no longer exists", "stage.trainer.max_length"),
    ("stage.trainer.warmup_ratio=0.1", "no longer exists", "warmup_steps"),
    ("stage.trainer.evaluation_strategy=steps", "no longer exists", "stage.trainer.eval_strategy"),
    ("stage.trainer.overwrite_output_dir=true", "no longer exists", "run.overwrite=true"),
    ("stage.trainer.torch_dtype=bfloat16", "no longer exists", "model.dtype"),
    ("stage.trainer.learning_rate=fast", "`stage.trainer.learning_rate` is 'fast'", "float"),
    ("stage.trainer.output_dir=/tmp/x", "set by the runner", "run.output_dir"),
    ("stage.trainer.bf16=true", "set by the runner", "hardware.precision=bf16"),
    ("stage.trainer.lr_scheduler_type=wobbly", "refuses stage.trainer", "correct the value"),
    ("model.chat_templat=zephyr", "unknown key `model.chat_templat`", "did you mean chat_template"),
    ("hardware.precision=fp8", "`hardware.precision` is 'fp8'", "one of"),
    ("run.seed=abc", "`run.seed` is 'abc'", "int"),
    ("hardware=nope", "cannot compose the recipe", "hardware: "),
    ("hardware.attn_implementation=flash_attention_2", "flash_attention_2 needs a CUDA GPU", "attn_implementation=auto"),
    ("hardware.precision=fp16", "fp16 needs a CUDA GPU", "fp32"),
])
def test_bad_keys_values_and_options(cli, override, problem, fix):
    _fails(cli, "validate", "tiny/sft", override, problem=problem, fix=fix)


def test_removed_dpo_prompt_limit_names_the_data_filter(cli):
    _fails(cli, "validate", "tiny/dpo", "stage.trainer.max_prompt_length=512",
           problem="no longer exists", fix="dataset.max_prompt_tokens")


def test_unknown_recipe_and_top_level_key(cli):
    _fails(cli, "validate", "tiny/sftt", problem="no recipe named 'tiny/sftt'", fix="tiny/sft")
    _fails(cli, "validate", "tiny/sft", "+trainer.lr=1", problem="unknown top-level key `trainer`", fix="")


def test_secrets_are_refused_and_redacted(cli):
    _fails(cli, "validate", "tiny/sft", "stage.trainer.hub_token=hf_abcdefghijklmnopqrstuvwxyz",
           problem="set by the runner", fix="HF_TOKEN")
    _fails(cli, "validate", "tiny/sft", "+recipe.paper=hf_abcdefghijklmnopqrstuvwxyz012345",
           problem="holds a secret", fix="environment variable")
    assert "hf_abc" not in redact("run api_key=sk-1234567890abcdefghij token=hf_abcdefghijklmnopqrstuv")


def _no_folder_left(folder):
    assert not folder.exists(), f"{folder} was left behind: {list(folder.iterdir())}"


def test_missing_dataset_file_leaves_no_run_folder(cli, tmp_path):
    out = tmp_path / "run"
    _fails(cli, "tiny/sft", f"run.output_dir={out}", f"dataset.path={tmp_path}/missing.jsonl",
           "dataset.test_split=null", problem="does not exist", fix="dataset.path")
    _no_folder_left(out)


def test_dataset_without_the_needed_column(cli, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps({"conversation": [{"role": "user", "content": "hi"}]}) for _ in range(3)))
    out = tmp_path / "run"
    _fails(cli, "tiny/sft", f"run.output_dir={out}", f"dataset.path={data}", "dataset.test_split=null",
           problem="has no column 'messages' (it has: conversation)", fix="dataset.columns.messages=<column>")
    _no_folder_left(out)


def test_tokenizer_without_chat_template(cli, tmp_path):
    out = tmp_path / "run"
    _fails(cli, "tiny/sft", f"run.output_dir={out}", "model.chat_template=null",
           problem="has no chat template", fix="model.chat_template=zephyr")
    _no_folder_left(out)


def test_gpu_profile_on_a_cpu_machine_fails_before_loading_weights(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this check is about machines without a GPU")
    out = tmp_path / "run"
    _fails(cli, "tiny/sft", f"run.output_dir={out}", "hardware=1gpu",
           problem="and this machine has no CUDA GPU", fix="hardware=cpu")
    _no_folder_left(out)


def test_missing_model_folder_is_named(cli, tmp_path):
    out = tmp_path / "run"
    _fails(cli, "tiny/dpo", f"run.output_dir={out}", "model.name_or_path=./runs/never-trained",
           problem="model folder ./runs/never-trained does not exist", fix="model.name_or_path")
    _no_folder_left(out)


def test_the_real_command_exits_non_zero_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "zephyr_recipes", "validate", "tiny/sft",
                           "stage.trainer.max_seq_length=512"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: `stage.trainer.max_seq_length` no longer exists")
