"""Every shipped recipe and pipeline walked as far as a CPU takes it: show, validate, plan and run --dry-run, on its
own hardware profile and on the other profiles that fit its stage. None may end in a traceback; the GPU recipes
plan and dry-run cleanly, and a GPU recipe run here is refused with the GPU it needs. The rehearsals of the flagship
pipelines (real training, AI feedback and evaluation on stand-ins) are at the end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from zephyr_recipes import stages
from zephyr_recipes.core.catalog import list_recipes
from zephyr_recipes.runtime.compose import compose

RECIPES = list_recipes()
PIPELINES = [r for r in RECIPES if "pipeline" in (yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "recipes" / f"{r}.yaml").read_text()) or {})]
SINGLE = [r for r in RECIPES if r not in PIPELINES]
GPU = [r for r in RECIPES if not r.startswith("tiny/")]
# Profiles a training stage may take besides its own (the one-process stages take only one-process profiles).
TRAINING_PROFILES = ["1gpu", "8gpu-fsdp2", "2x8gpu-zero3", "qlora-24gb"]
ONE_PROCESS_PROFILES = ["1gpu"]


def _stage_of(recipe: str) -> str:
    raw, _, _ = compose(recipe, [])
    return raw["stage"]["name"]


def _walk_cases():
    """Every single-stage recipe on its own profile, then on each other profile it may take: make test takes one of
    those others per recipe, in turn, so that every profile is walked; make test-slow takes the rest."""
    for i, recipe in enumerate(SINGLE):
        yield pytest.param(recipe, None, id=f"{recipe}@own")
        one = stages.get(_stage_of(recipe)).one_process
        others = ONE_PROCESS_PROFILES if one else TRAINING_PROFILES
        for j, profile in enumerate(others):
            marks = () if j == i % len(others) else pytest.mark.slow
            yield pytest.param(recipe, profile, id=f"{recipe}@{profile}", marks=marks)
    for recipe in PIPELINES:  # each walks every stage: seconds each, in make test-slow
        yield pytest.param(recipe, None, id=f"{recipe}@own", marks=pytest.mark.slow)


def _without_logging_noise(text: str) -> str:
    """In process, a library's log handler set up under an earlier test's (closed) capture reports its own
    '--- Logging error ---' with a traceback; that is the test harness, not the command."""
    parts = text.split("--- Logging error ---")
    return parts[0] + "".join(p.split("\nArguments:", 1)[-1] for p in parts[1:])


def _clean(code: int, out: str, err: str) -> None:
    assert "Traceback" not in _without_logging_noise(out + err), out + err
    assert code in (0, 1, 2), (code, out, err)
    if code == 2:
        assert err.startswith("error: ") and "\n  fix: " in err, err  # a problem and its fix, nothing else


@pytest.mark.parametrize("recipe,profile", list(_walk_cases()))
def test_every_recipe_walks_without_a_traceback(recipe, profile, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = [f"hardware={profile}"] if profile else []
    # On another profile the dry run alone: it composes, validates and plans as the other commands do.
    for command in ([["run", "--dry-run"]] if profile else [["show"], ["validate"], ["plan"], ["run", "--dry-run"]]):
        code, out, err = cli(*command, recipe, *extra)
        _clean(code, out, err)
        if command == ["run", "--dry-run"] and code == 0:
            assert "nothing was started" in out
            assert not any(p.is_dir() and (p / "run.json").exists() for p in (tmp_path / "runs").rglob("*")), \
                "a dry run made a run folder"


@pytest.mark.parametrize("recipe", [r for r in GPU])
def test_gpu_recipes_plan_and_dry_run_cleanly(recipe, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("plan", recipe)
    assert code == 0, out + err
    assert "not planned" not in out
    code, out, err = cli("run", recipe, "--dry-run")
    assert code == 0, out + err
    files = sorted(p.name for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert "dry-run.json" in files and "config.yaml" in files
    summary = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("dry-run.json")]
    multi = [s for s in summary if s["launcher"] == "accelerate"]
    for s in multi:  # every multi-process stage wrote accelerate's file, and accelerate's own loader took it
        assert any(c.startswith("accelerate.yaml: accepted") for c in s["checked"]), s
        assert s["command"].startswith("accelerate launch --config_file")


def test_plan_of_the_flagship_pipeline_gives_hours_and_cost_per_stage_and_in_total(cli):
    code, out, err = cli("plan", "zephyr-7b-beta/zephyr", "hardware=8gpu-zero3", "--price", "2.5")
    assert code == 0, out + err
    stages_seen = re.findall(r"^== stage (\S+)", out, re.M)
    assert stages_seen == ["sft", "aif", "dpo", "eval-dsft", "eval-dpo"]
    sft, dpo = out.split("== stage sft")[1].split("== stage aif")[0], out.split("== stage dpo")[1].split("== stage eval")[0]
    assert "8 x h100-80gb at 33% MFU" in sft and "8 x h100-80gb at 20% MFU" in dpo
    assert "trained into runs/zephyr-7b-beta/sft by an earlier stage" in dpo  # the hand-off is sized
    hours = [float(h) for h in re.findall(r"= ([\d.,]+) GPU-hours", out)]
    total = re.search(r"== total\n\s+([\d.,]+) h of wall-clock, ([\d.,]+) GPU-hours, ([\d.,]+) at 2.5", out)
    assert total, out
    gpu_hours, cost = float(total.group(2)), float(total.group(3).replace(",", ""))
    assert gpu_hours >= sum(hours) - 0.2  # the total holds the training stages and the generation
    assert cost == pytest.approx(gpu_hours * 2.5, rel=0.01)
    assert "API:" in out  # the GPT-4 judge's requests are counted, not priced


def test_training_hours_follow_the_flop_count():
    """6 P T (+ attention) FLOPs at the stated MFU on the profile's GPUs: halving the GPUs doubles the hours."""
    from zephyr_recipes.runtime import stageplan
    from zephyr_recipes.runtime.compose import compose as comp
    from zephyr_recipes.runtime.validate import validate

    def hours(*overrides):
        raw, name, _ = comp("zephyr-7b-beta/sft", list(overrides))
        return stageplan.stage_plan(validate(raw, name), stages.get("sft"), count_data=False).work

    eight, one = hours("hardware=8gpu-zero3"), hours("hardware=1gpu")
    assert eight.flops == pytest.approx(one.flops)
    assert one.wall_hours == pytest.approx(8 * eight.wall_hours, rel=1e-6)
    tokens = 207865 * 1400
    assert tokens * 6 * 7.24e9 < eight.flops < 1.1 * tokens * 6 * 7.24e9  # 6PT plus the attention term


def test_a_gpu_recipe_run_on_the_cpu_is_refused_with_the_gpu_it_needs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "zephyr-7b-beta/aif")
    assert code == 2 and "Traceback" not in err
    assert "needs 1 x h100-80gb (80 GB each)" in err and "no CUDA GPU" in err
    assert not (tmp_path / "runs" / "zephyr-7b-aif").exists()


def test_rehearsal_of_a_stage_trains_on_stand_ins_and_records_them(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rehearse", "zephyr-7b-beta/sft", "--out", "reh")
    assert code == 0, out + err
    record = json.loads((tmp_path / "reh" / "rehearsal.json").read_text())
    assert record["outcome"] == "complete"
    swaps = "\n".join(record["swapped"]["run"])
    assert "model mistralai/Mistral-7B-v0.1 ->" in swaps and "tiny random mistral" in swaps
    assert "dataset HuggingFaceH4/ultrachat_200k ->" in swaps and "train_sft, test_sft" in swaps
    assert "hardware 8gpu-zero3 -> cpu" in swaps
    run = tmp_path / "reh" / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    frozen = yaml.safe_load((run / "config.yaml").read_text())
    assert frozen["stage"]["global_batch_size"] == 128 and frozen["stage"]["trainer"]["packing"] is True  # the recipe's
    assert frozen["dataset"]["train_split"] == "train_sft" and frozen["model"]["chat_template"] == "zephyr"
    assert (tmp_path / "reh" / "launchers" / "run" / "deepspeed.json").is_file()  # the real profile's files
    assert "What was swapped" in (tmp_path / "reh" / "REHEARSAL.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["zephyr-7b-beta/zephyr", "smollm2-360m/zephyr"])
def test_flagship_pipelines_rehearse_end_to_end(recipe, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rehearse", recipe, "--out", "reh")
    assert code == 0, out + err
    record = json.loads((tmp_path / "reh" / "rehearsal.json").read_text())
    assert record["outcome"] == "complete"
    status = json.loads((tmp_path / "reh" / "pipeline" / "pipeline.json").read_text())
    assert list(status["stages"]) == ["sft", "aif", "dpo", "eval-dsft", "eval-dpo"]
    for name in status["stages"]:
        assert json.loads((tmp_path / "reh" / "pipeline" / name / "run.json").read_text())["status"] == "complete"
    pairs = tmp_path / "reh" / "pipeline" / "aif" / "data"
    assert {p.name.split("-")[0] for p in pairs.glob("*.parquet")} == {"train_prefs", "test_prefs"}
    assert (tmp_path / "reh" / "pipeline" / "report" / "report.md").is_file()
    assert set(record["swapped"]) == set(status["stages"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", SINGLE)
def test_every_shipped_stage_recipe_rehearses(recipe, cli, tmp_path, monkeypatch):
    """Hub models and data, API judges and the run folders of other recipes (not made here) all get stand-ins."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("rehearse", recipe, "--out", "reh")
    assert code == 0, out + err[-3000:]
    assert json.loads((tmp_path / "reh" / "rehearsal.json").read_text())["outcome"] == "complete"
    assert json.loads((tmp_path / "reh" / "run" / "run.json").read_text())["status"] == "complete"
