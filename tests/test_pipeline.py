"""Pipelines: wiring of stage outputs, skipping finished stages, --from and --only, bad pipeline files."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow

FAST = ["sft.dataset.max_train_samples=320", "sft.dataset.test_split=null", "sft.stage.trainer.num_train_epochs=1",
        "aif.dataset.max_train_samples=24", "aif.stage.sampling.max_new_tokens=12",
        "dpo.dataset.max_test_samples=4"]


def _status(folder):
    return json.loads((folder / "run.json").read_text())


def test_pipeline_runs_wires_skips_and_restarts(tmp_path, cli):
    out = tmp_path / "zephyr"
    args = ["tiny/zephyr", f"pipeline.output_dir={out}", *FAST]
    code, stdout, err = cli(*args)
    assert code == 0, err
    for stage in ("sft", "aif", "dpo"):
        assert _status(out / stage)["status"] == "complete"
    # Wiring: AIF generated with the SFT output, DPO started from it and trained on the AIF pairs.
    aif_cfg = yaml.safe_load((out / "aif" / "config.yaml").read_text())
    assert aif_cfg["stage"]["generators"][0]["model"] == f"{out}/sft"
    dpo_prov = json.loads((out / "dpo" / "provenance.json").read_text())
    assert dpo_prov["reference_model"] == str((out / "sft").resolve())
    assert dpo_prov["data"]["train"]["rows"] == json.loads((out / "aif" / "summary.json").read_text())["pairs"]["train_prefs"]
    assert (out / "pipeline.yaml").is_file() and set(json.loads((out / "pipeline.json").read_text())["stages"]) == {"sft", "aif", "dpo"}

    stamps = {s: _status(out / s)["started"] for s in ("sft", "aif", "dpo")}
    code, _, err = cli(*args)  # everything finished: nothing runs again
    assert code == 0 and "sft finished already" in err and "dpo finished already" in err
    assert {s: _status(out / s)["started"] for s in stamps} == stamps

    code, _, err = cli(*args, "--only", "dpo")
    assert code == 0
    assert _status(out / "dpo")["started"] != stamps["dpo"] and _status(out / "sft")["started"] == stamps["sft"]

    code, _, err = cli(*args, "--from", "aif")
    assert code == 0
    assert _status(out / "aif")["started"] != stamps["aif"] and _status(out / "sft")["started"] == stamps["sft"]

    # A finished stage whose config changed is not silently reused.
    code, _, err = cli(*[a.replace("max_train_samples=320", "max_train_samples=321") for a in args])
    assert code == 2 and "stage 'sft' finished with a different config" in err and "--from sft" in err


@pytest.mark.parametrize("text, problem", [
    ("pipeline:\n  stages: []\n  output_dir: x\n", "must be a non-empty list"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft}\n    - {name: a, recipe: tiny/dpo}\n",
     "two pipeline stages are named 'a'"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/nope}\n", "pipeline stage 'a': no recipe named"),
    ("pipeline:\n  output_dir: x\n  stages:\n    - {name: a, recipe: tiny/sft, overrides: {stage.trainer.lr: 1}}\n",
     "unknown key `stage.trainer.lr`"),
    ("pipeline:\n  outdir: x\n", "unknown key `pipeline.outdir`"),
])
def test_bad_pipelines(tmp_path, cli, text, problem):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, _, err = cli("validate", str(path))
    assert code == 2 and problem in err, err


def test_from_needs_a_pipeline_stage(cli, tmp_path):
    code, _, err = cli("tiny/zephyr", f"pipeline.output_dir={tmp_path}", "--from", "eval")
    assert code == 2 and "no stage of that name" in err
    code, _, err = cli("tiny/sft", "--only", "sft")
    assert code == 2 and "apply to pipeline recipes" in err
