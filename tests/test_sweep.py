"""Sweeps (-m): one normal run per point, a failed point among finished ones, pipelines sharing stages."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow

QUICK_SFT = ["dataset.max_train_samples=16", "dataset.test_split=null", "stage.trainer.max_steps=2",
             "stage.trainer.save_steps=100"]


def _status(folder):
    return json.loads((folder / "run.json").read_text())


def test_sweep_points_run_a_failed_point_is_listed_and_the_others_finish(tmp_path, cli):
    base = tmp_path / "sft"
    args = ["-m", "tiny/sft", f"run.output_dir={base}", *QUICK_SFT, "dataset.train_split=train_sft,test_sft,nope"]
    code, out, err = cli(*args)
    sweep = tmp_path / "sft-sweep"
    assert code == 1 and "1 point(s) failed: train_split=nope" in err, err
    good = [sweep / "train_split=train_sft", sweep / "train_split=test_sft"]
    for folder in good:  # each point is a normal, finished run folder with its own config
        assert _status(folder)["status"] == "complete"
        assert yaml.safe_load((folder / "config.yaml").read_text())["run"]["output_dir"] == str(folder)
    assert yaml.safe_load((good[1] / "config.yaml").read_text())["dataset"]["train_split"] == "test_sft"
    nope = sweep / "train_split=nope"  # refused before its folder was made, or left marked failed
    assert not (nope / "run.json").exists() or _status(nope)["status"] == "failed"
    summary = json.loads((sweep / "sweep.json").read_text())
    assert [p["status"] for p in summary["points"]] == ["complete", "complete", "failed"]
    md = (sweep / "sweep.md").read_text()
    loss = _status(good[0])["metrics"]["last_loss"]
    assert f"| train_sft | complete | {loss:.4g} |" in md and "| nope | failed |" in md
    assert "Failed points:" in md and "has no split 'nope'" in md and (sweep / "sweep.png").is_file()
    assert "| train_sft | complete |" in out  # the table is printed too

    # Re-running resumes: finished points are not trained again, the failed one is tried again.
    started = _status(good[0])["started"]
    code, _, err = cli(*args)
    assert code == 1 and "train_split=train_sft finished already" in err
    assert _status(good[0])["started"] == started

    # A sweep that would overwrite finished points of another config refuses before running anything.
    code, _, err = cli(*[a.replace("max_train_samples=16", "max_train_samples=17") for a in args])
    assert code == 2 and "the sweep would overwrite" in err and "train_split=train_sft" in err
    assert _status(good[0])["started"] == started


def test_sweep_over_an_unknown_key_fails_once_before_anything_runs(tmp_path, cli):
    code, _, err = cli("-m", "tiny/sft", f"run.output_dir={tmp_path / 'x'}", "stage.trainer.learning_rat=1e-4,3e-4")
    assert code == 2 and err.count("unknown key `stage.trainer.learning_rat`") == 1, err
    assert "learning_rate" in err  # the usual did-you-mean
    assert not any(tmp_path.iterdir())
    code, _, err = cli("-m", "tiny/sft", f"run.output_dir={tmp_path / 'x'}", "run.seed=1")
    assert code == 2 and "no override sweeps anything" in err
    code, _, err = cli("validate", "tiny/sft", "stage.trainer.learning_rate=1e-4,3e-4")  # a sweep without -m
    assert code == 2 and "a comma list is a sweep: run it with -m" in err


def test_sweep_names_points_from_hydra_grammar():
    from zephyr_recipes.runtime import sweep

    fixed, swept = sweep.parse(["run.seed=3", "stage.trainer.beta=0.01,0.1", "stage.trainer.learning_rate=range(1,3)",
                                "+stage.trainer.max_steps=choice(5,7)"])
    assert fixed == ["run.seed=3"]
    grid = sweep.points(swept)
    assert len(grid) == 8 and grid[0]["name"] == "beta=0.01,learning_rate=1,max_steps=5"
    assert grid[0]["overrides"] == ["stage.trainer.beta=0.01", "stage.trainer.learning_rate=1",
                                    "+stage.trainer.max_steps=5"]
    _, swept = sweep.parse(["sft.stage.trainer.learning_rate=1,2", "dpo.stage.trainer.learning_rate=3,4"])
    assert sweep.points(swept)[0]["name"] == "sft.stage.trainer.learning_rate=1,dpo.stage.trainer.learning_rate=3"


def _pipeline(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pipeline": {"output_dir": str(tmp_path / "pipe"), "seed": 7, "stages": [
        {"name": "sft", "recipe": "tiny/sft",
         "overrides": {"dataset.max_train_samples": 16, "dataset.test_split": None, "stage.trainer.max_steps": 2}},
        {"name": "dpo", "recipe": "tiny/dpo",
         "overrides": {"model.name_or_path": "${pipeline.output_dir}/sft", "dataset.path": "builtin://tiny-ultrafeedback",
                       "dataset.max_train_samples": 16, "dataset.max_test_samples": 4, "stage.trainer.max_steps": 2}},
    ]}}))
    return path


def test_pipeline_sweep_runs_the_shared_stages_once_and_branches_the_rest(tmp_path, cli):
    path = _pipeline(tmp_path)
    code, out, err = cli("-m", str(path), "dpo.stage.trainer.beta=0.05,0.5")
    sweep = tmp_path / "pipe-sweep"
    assert code == 0, err
    assert "shared by all (run once under" in err and "sft; per point: dpo" in err
    shared_sft = sweep / "shared" / "sft"
    assert _status(shared_sft)["status"] == "complete"
    assert err.count("pipeline: running sft") == 1 and "sft finished already" in err
    for beta in ("0.05", "0.5"):
        point = sweep / f"beta={beta}"
        assert not (point / "sft").exists()
        cfg = yaml.safe_load((point / "dpo" / "config.yaml").read_text())
        assert cfg["stage"]["trainer"]["beta"] == float(beta) and cfg["model"]["name_or_path"] == str(shared_sft)
        prov = json.loads((point / "dpo" / "provenance.json").read_text())
        assert prov["reference_model"] == str(shared_sft.resolve())
        stages = yaml.safe_load((point / "pipeline.yaml").read_text())["pipeline"]["stages"]
        assert stages[0]["folder"] == str(shared_sft)
    md = (sweep / "sweep.md").read_text()
    assert "Stages shared by every point (run once): sft" in md and "dpo train loss (last 10%)" in md
    assert "Headline figure:" in md  # which loss the sweep compares, and why not the last logged one
    assert (sweep / "sweep.png").is_file()

    # A second run finds everything finished: nothing trains again.
    stamps = {f: _status(f)["started"] for f in (shared_sft, sweep / "beta=0.05" / "dpo")}
    code, _, err = cli("-m", str(path), "dpo.stage.trainer.beta=0.05,0.5")
    assert code == 0 and "pipeline: running" not in err
    assert {f: _status(f)["started"] for f in stamps} == stamps


def test_pipeline_sweep_explains_from_after_the_branch(tmp_path, cli):
    path = _pipeline(tmp_path)
    code, _, err = cli("-m", str(path), "sft.stage.trainer.learning_rate=1e-3,2e-3", "--from", "dpo")
    assert code == 2 and "--from dpo comes after 'sft', where the sweep's points start to differ" in err, err
    assert "use --from sft" in err and not (tmp_path / "pipe-sweep").exists()
    code, _, err = cli("-m", str(path), "dpo.stage.trainer.bta=0.1,0.2")
    assert code == 2 and err.count("unknown key `stage.trainer.bta`") == 1, err


def test_sweep_on_slurm_submits_one_job_per_point(tmp_path, cli):
    """On a Slurm profile every point gets its own launch.sbatch in its own folder (here, without sbatch on the
    machine, written and left for the user to submit); a re-run does not submit them again."""
    args = ["-m", "tiny/sft", "hardware=cpu-2proc", "hardware.launcher=slurm", f"run.output_dir={tmp_path / 's'}",
            *QUICK_SFT, "stage.trainer.learning_rate=1e-3,2e-3"]
    code, out, err = cli(*args)
    assert code == 0, err
    sweep = tmp_path / "s-sweep"
    for lr in ("0.001", "0.002"):
        folder = sweep / f"learning_rate={lr}"
        assert (folder / "launch.sbatch").is_file() and _status(folder)["status"] in ("prepared", "queued")
        assert f"learning_rate: {lr}" in (folder / "config.yaml").read_text()
    assert [p["status"] for p in json.loads((sweep / "sweep.json").read_text())["points"]] == ["submitted"] * 2
    code, _, err = cli(*args)
    assert code == 0 and err.count("not submitted again") == 2


def test_sweep_on_slurm_is_one_job_array_with_a_gathering_job(tmp_path, cli, monkeypatch):
    """With sbatch on the machine (a fake one here, recording its calls) a sweep on a Slurm profile is one job
    array (hardware.slurm.array_limit tasks at once) over the points' prepared folders, and a job that depends on
    the array re-runs the sweep command when it ends, which gathers sweep.md from the finished points."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    for tool, reply in (("sbatch", "4242"), ("srun", ""), ("scontrol", "node1")):
        (bin_dir / tool).write_text(f"#!/bin/bash\necho \"{tool} $*\" >> {calls}\necho {reply}\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    args = ["-m", "tiny/sft", "hardware=cpu-2proc", "hardware.launcher=slurm", "+hardware.slurm.array_limit=2",
            "+hardware.slurm.time=01:00:00", f"run.output_dir={tmp_path / 's'}", *QUICK_SFT,
            "stage.trainer.learning_rate=1e-3,2e-3,3e-3"]
    code, out, err = cli(*args)
    assert code == 0, err
    sweep = tmp_path / "s-sweep"
    script = (sweep / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-2%2" in script and "#SBATCH --time=01:00:00" in script
    assert "array_limit" not in script and "#SBATCH --nodes=1" in script
    for lr in ("0.001", "0.002", "0.003"):
        folder = sweep / f"learning_rate={lr}"
        assert str(folder.resolve()) in script and (folder / "launch.sbatch").is_file()
        assert "array_limit" not in (folder / "launch.sbatch").read_text()
    jobs = sorted(_status(sweep / f"learning_rate={lr}")["slurm_job"] for lr in ("0.001", "0.002", "0.003"))
    assert jobs == ["4242_0", "4242_1", "4242_2"]
    lines = calls.read_text().splitlines()
    assert len([c for c in lines if c.startswith("sbatch")]) == 2  # the array, then the gathering job
    assert "--dependency=afterany:4242" in lines[1] and "-m tiny/sft" in lines[1]
    assert "submitted Slurm job array 4242 (3 tasks, 2 at once)" in out
    assert subprocess.run(["bash", "-n", str(sweep / "sweep.sbatch")]).returncode == 0
    # Array task 1 runs point 2's own job script inside its allocation: srun starts that point's node script.
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "4243", "SLURM_JOB_NODELIST": "node1"}
    proc = subprocess.run(["bash", str(sweep / "sweep.sbatch")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{(sweep / 'learning_rate=0.002').resolve()}/launch_node.sh" in calls.read_text().splitlines()[-1]
    # The gathering job's command: every point queued, nothing submitted again, sweep.md written.
    code, _, err = cli(*args)
    assert code == 0 and err.count("not submitted again") == 3 and (sweep / "sweep.md").is_file()


def test_a_dry_run_of_a_sweep_is_refused_before_any_point_runs(tmp_path, monkeypatch, capsys):
    from zephyr_recipes.commands.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["-m", "tiny/sft", "stage.trainer.learning_rate=1e-3,2e-3", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--dry-run of a sweep" in err and "without -m" in err
    assert not any(tmp_path.rglob("*"))  # no sweep folder, no run folder
