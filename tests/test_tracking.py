"""Training curves are tracked by default, locally and offline (trackio), without an account or the network."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

QUICK = ["dataset.max_train_samples=32", "dataset.test_split=null", "stage.trainer.max_steps=4",
         "stage.trainer.logging_steps=1"]


def test_a_tiny_run_is_tracked_locally_by_default(cli, tmp_path, monkeypatch):
    store = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    out = tmp_path / "run"
    code, _, err = cli("tiny/sft", *QUICK, f"run.output_dir={out}", "run.name=tracked-sft")
    assert code == 0, err
    db = store / "zephyr-recipes.db"
    assert db.is_file()
    rows = sqlite3.connect(db).execute("select run_name, step, metrics from metrics").fetchall()
    mine = [json.loads(m) for run, _, m in rows if run == "tracked-sft"]
    assert len([m for m in mine if "train/loss" in m]) == 4  # every logged step's loss
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["tracking"]["store"] == str(store) and prov["tracking"]["run"] == "tracked-sft"
    card = (out / "README.md").read_text()
    assert f"TRACKIO_DIR={store} trackio show --project zephyr-recipes" in card
    assert "trackio show" in err  # the log says how to open the dashboard


def test_report_to_none_turns_tracking_off(cli, tmp_path, monkeypatch):
    store = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    out = tmp_path / "run"
    code, _, err = cli("tiny/sft", *QUICK, "stage.trainer.report_to=none", f"run.output_dir={out}")
    assert code == 0, err
    assert not store.exists() and "tracking" not in json.loads((out / "provenance.json").read_text())


@pytest.mark.slow
def test_the_tracking_overhead_figure_runs(tmp_path):
    from bench import run as bench

    res = bench.bench_tracking(reps=1, max_steps=2, work=tmp_path)
    assert res["trackio_s"]["median"] > 0 and res["none_s"]["median"] > 0 and "overhead" in res
    assert Path(tmp_path / "trackio" / "zephyr-recipes.db").is_file()
