"""The hardware-profile seam: a profile of one's own is one YAML file in a `hardware/` folder beside the recipe, with
keys from HardwareConfig; compose, validate, plan and the launcher files take it like a shipped one, and a wrong key
in it is refused by name."""

from pathlib import Path

import yaml

PROFILE = """\
# My lab's box: two 48 GB cards, ZeRO-2.
defaults:
  - _base
  - _self_

name: lab-2x48
device: cuda
launcher: accelerate
num_processes: 2
strategy: zero2
gradient_checkpointing: true
gpu_memory_gb: 48
gpu: l40s
"""

RECIPE = """\
defaults:
  - /model: tiny
  - /dataset: tiny-ultrachat
  - /stage: sft
  - hardware: lab-2x48
  - _self_

recipe:
  description: tiny SFT on a profile of the lab's own
"""


def _recipe_folder(tmp_path: Path, profile: str = PROFILE) -> Path:
    folder = tmp_path / "lab"
    (folder / "hardware").mkdir(parents=True)
    (folder / "hardware" / "lab-2x48.yaml").write_text(profile)
    (folder / "sft.yaml").write_text(RECIPE)
    return folder / "sft.yaml"


def test_a_profile_beside_the_recipe_is_composed_validated_planned_and_launched_like_a_shipped_one(tmp_path, cli):
    recipe = _recipe_folder(tmp_path)
    code, out, err = cli("show", str(recipe))
    assert code == 0, err
    hw = yaml.safe_load(out)["hardware"]
    assert hw["name"] == "lab-2x48" and hw["strategy"] == "zero2" and hw["num_processes"] == 2
    assert hw["main_process_port"] == 29500  # the rest from _base, as a shipped profile
    code, out, err = cli("plan", str(recipe))
    assert code == 0, err
    assert "lab-2x48" in out and "48" in out
    out_dir = tmp_path / "run"
    code, out, err = cli("run", str(recipe), f"run.output_dir={out_dir}", "--dry-run")
    assert code == 0, out + err
    launched = out_dir.with_name("run.dry-run")
    assert (launched / "accelerate.yaml").is_file() and (launched / "deepspeed.json").is_file()
    assert not out_dir.exists()
    # an override on the command line reaches the own profile as it reaches a shipped one
    code, out, err = cli("show", str(recipe), "hardware.gpu_memory_gb=24")
    assert code == 0 and yaml.safe_load(out)["hardware"]["gpu_memory_gb"] == 24


def test_a_wrong_key_in_ones_own_profile_is_refused_by_name(tmp_path, cli):
    recipe = _recipe_folder(tmp_path, PROFILE.replace("strategy: zero2", "strategy: zero2\nnum_gpus: 2"))
    code, out, err = cli("validate", str(recipe), "--no-preflight")
    assert code == 2
    assert "num_gpus" in err and "hardware" in err
    recipe = _recipe_folder(tmp_path / "b", PROFILE.replace("strategy: zero2", "strategy: zero5"))
    code, out, err = cli("validate", str(recipe), "--no-preflight")
    assert code == 2 and "zero5" in err and "zero2" in err  # the value, and what it may be
