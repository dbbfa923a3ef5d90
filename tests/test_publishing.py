"""A recipe file may not publish by itself: uploads to the hub, curves sent to a hub Space or a cloud tracker are
honoured only when the user's own command line sets them (docs/security.md)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ZEPHYR_RECIPES_HOME", str(Path(tempfile.gettempdir()) / "zephyr-recipes-tests"))

from zephyr_recipes.commands.cli import main  # noqa: E402

CASES = [
    ("push_to_hub", "true", "uploads the model"),
    ("hub_model_id", "someone/model", "hub repository"),
    ("trackio_space_id", "someone/space", "hub Space"),
    ("report_to", "wandb", "logs to wandb"),
    ("report_to", "[trackio,mlflow]", "logs to mlflow"),
]


def recipe(folder: Path, key: str, value: str) -> Path:
    path = folder / "shared.yaml"
    path.write_text("defaults:\n  - /model: tiny\n  - /dataset: tiny-ultrachat\n  - /stage: sft\n"
                    "  - /hardware: cpu\n  - _self_\n"
                    f"stage:\n  trainer:\n    max_steps: 1\n    {key}: {value}\n")
    return path


@pytest.mark.parametrize("key,value,says", CASES)
def test_a_recipe_that_publishes_is_refused_and_names_the_command_line_fix(tmp_path, monkeypatch, capsys, key,
                                                                           value, says):
    monkeypatch.chdir(tmp_path)
    path = recipe(tmp_path, key, value)
    for command in ("validate", "show", "run"):
        assert main([command, str(path)]) == 2, command
        err = capsys.readouterr().err
        assert f"stage.trainer.{key}={value}" in err and says in err and "your own command line" in err, err
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize("key,value,says", CASES)
def test_the_same_setting_from_the_command_line_is_honoured(tmp_path, monkeypatch, capsys, key, value, says):
    monkeypatch.chdir(tmp_path)
    path = recipe(tmp_path, key, value)
    assert main(["show", str(path), f"stage.trainer.{key}={value}"]) == 0
    out = capsys.readouterr().out
    assert f"{key}:" in out


def test_local_trackers_need_no_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for value in ("none", "trackio", "tensorboard", "[trackio,tensorboard]"):
        assert main(["show", str(recipe(tmp_path, "report_to", value))]) == 0, capsys.readouterr().err
