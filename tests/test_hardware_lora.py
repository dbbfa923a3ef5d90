"""LoRA through peft on the CPU (the QLoRA profile's adapter path without the 4-bit base, which needs a GPU),
and the DPO reference model as TRL expects it: none with LoRA, precomputed log-probabilities as an option."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ZEPHYR_RECIPES_HOME", str(Path(tempfile.gettempdir()) / "zephyr-recipes-tests"))

from zephyr_recipes.commands.cli import main  # noqa: E402

LORA = "hardware.lora={r:4,lora_alpha:8,target_modules:[q_proj,v_proj]}"
FAST = ["+stage.trainer.max_steps=2", "+dataset.max_train_samples=32"]
BASE_DPO = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr",
            "dataset.path=builtin://tiny-ultrafeedback"]


def test_lora_sft_saves_adapters(tmp_path):
    out = tmp_path / "sft"
    assert main(["run", "tiny/sft", "hardware=cpu", LORA, *FAST, f"+run.output_dir={out}"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_lora_dpo_has_no_reference_copy(tmp_path):
    out = tmp_path / "dpo"
    assert main(["run", "tiny/dpo", "hardware=cpu", LORA, *BASE_DPO, *FAST, f"+run.output_dir={out}"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["reference_mode"] == "the policy with LoRA adapters disabled (no copy)"
    assert (out / "adapter_config.json").is_file()


def test_dpo_with_precomputed_reference_log_probs(tmp_path):
    out = tmp_path / "dpo-pre"
    assert main(["run", "tiny/dpo", "hardware=cpu", *BASE_DPO, "+stage.trainer.precompute_ref_log_probs=true",
                 *FAST, f"+run.output_dir={out}"]) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["reference_mode"] == "precomputed log-probabilities"
    history = json.loads((out / "log_history.json").read_text())
    assert any("rewards/margins" in h for h in history)
