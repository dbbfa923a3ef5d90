"""The KTO stage end to end: tiny/kto trains the tiny SFT run on the AIF run's preference pairs, read as unpaired
rows, with TRL's KTOTrainer (a real run on the CPU)."""

from __future__ import annotations

import json
import math

import pytest


@pytest.mark.slow
def test_kto_trains_the_sft_run_on_the_aif_pairs_as_unpaired_rows(tmp_path, tiny_sft_run, tiny_aif_run, cli):
    from safetensors.torch import load_file

    folder = tmp_path / "kto"
    code, out, err = cli("run", "tiny/kto", f"run.output_dir={folder}", f"model.name_or_path={tiny_sft_run}",
                         f"dataset.path={tiny_aif_run}", "stage.trainer.num_train_epochs=1",
                         "stage.trainer.report_to=none")
    assert code == 0, out + err
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"
    for name in ("model.safetensors", "config.yaml", "provenance.json", "metrics.json", "log_history.json",
                 "README.md", "training_curves.png", "tokenizer.json", "chat_template.jinja"):
        assert (folder / name).is_file(), name

    prov = json.loads((folder / "provenance.json").read_text())
    source = prov["data"]["sources"][0]
    pairs = json.loads((tiny_aif_run / "summary.json").read_text())["pairs"]["train_prefs"]
    assert source["source_rows"] == pairs
    kept = pairs - sum(source["dropped"].values())
    assert prov["data"]["train"]["rows"] == 2 * kept  # each pair a desirable and an undesirable row
    assert prov["desirable_rows"] == prov["undesirable_rows"] == kept
    assert prov["data"]["cache"]["rows"] == "unpaired"
    assert prov["reference_mode"] == "a frozen copy"

    history = json.loads((folder / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    assert any("kl" in h for h in history) and any("rewards/margins" in h for h in history)

    card = (folder / "README.md").read_text()
    assert "KTO" in card and "trl.KTOConfig" in card and f"Reference model: `{tiny_sft_run}`" in card
    before, after = load_file(tiny_sft_run / "model.safetensors"), load_file(folder / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before)  # it trained
