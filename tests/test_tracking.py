"""Training curves are tracked by default, locally and offline (trackio), without an account or the network."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

QUICK = ["dataset.max_train_samples=32", "dataset.test_split=null", "stage.trainer.max_steps=4",
         "stage.trainer.logging_steps=1"]


def _rows(store: Path, run: str) -> list[dict]:
    db = store / "zephyr-recipes.db"
    if not db.is_file():
        return []
    rows = sqlite3.connect(db).execute("select run_name, step, metrics from metrics").fetchall()
    return [json.loads(m) for name, _, m in rows if name == run]


def test_a_tiny_run_is_tracked_locally_by_default(cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("tiny/sft", *QUICK, f"run.output_dir={out}", "run.name=tracked-sft")
    assert code == 0, err
    prov = json.loads((out / "provenance.json").read_text())
    store = Path(prov["tracking"]["store"])
    assert prov["tracking"]["run"] == "tracked-sft"
    assert store.is_relative_to(os.environ["ZEPHYR_RECIPES_HOME"]) or "TRACKIO_DIR" in os.environ  # local
    mine = _rows(store, "tracked-sft")
    assert len([m for m in mine if "train/loss" in m]) >= 4  # every logged step's loss
    card = (out / "README.md").read_text()
    assert f"TRACKIO_DIR={store} trackio show --project zephyr-recipes" in card
    assert "trackio show" in err  # the log says how to open the dashboard


def test_report_to_none_turns_tracking_off(cli, tmp_path):
    from zephyr_recipes.stages.training import tracking_store

    out = tmp_path / "run"
    code, _, err = cli("tiny/sft", *QUICK, "stage.trainer.report_to=none", f"run.output_dir={out}",
                       "run.name=untracked-sft")
    assert code == 0, err
    assert "tracking" not in json.loads((out / "provenance.json").read_text())
    assert _rows(tracking_store(), "untracked-sft") == []


@pytest.mark.slow
def test_the_tracking_overhead_figure_runs(tmp_path):
    from bench import run as bench

    res = bench.bench_tracking(reps=1, max_steps=2, work=tmp_path)
    assert res["trackio_s"]["median"] > 0 and res["none_s"]["median"] > 0 and "overhead" in res
    assert Path(tmp_path / "trackio" / "zephyr-recipes.db").is_file()
