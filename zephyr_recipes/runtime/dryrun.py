"""``run --dry-run``: everything a run does before loading weights (trust, the plan, the devices, the run folder,
the launcher files written and parsed by their own tools), with nothing started and the run folder untouched."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import cast

import yaml

from .. import stages
from ..core import runfolder, trust
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..model import hardware
from ..model.modeling import resolve_placement
from . import preflight, stageplan
from .launch import NODE_SCRIPT, SBATCH, accelerate_command, sbatch_script, show, write_configs

DRY_RUN_SUFFIX = ".dry-run"



LAUNCHER_FILES = (hardware.ACCELERATE_CONFIG, hardware.DEEPSPEED_CONFIG, SBATCH, NODE_SCRIPT)



def dry_run_folder(recipe: Recipe) -> Path:
    """Where a dry run writes what the run would: beside the run folder, never inside it."""
    folder = Path(cast(str, recipe.run.output_dir)).expanduser()  # validation sets every run's folder
    return folder.with_name(folder.name + DRY_RUN_SUFFIX)



def check_launcher_files(folder: Path) -> list[str]:
    """Parse the launcher files in ``folder`` with their own tools (accelerate's loader, DeepSpeed's JSON, bash -n
    for the scripts); returns one line per file checked."""
    done = []
    acc = folder / hardware.ACCELERATE_CONFIG
    if acc.is_file():
        from accelerate.commands.config.config_args import load_config_from_file

        try:
            load_config_from_file(str(acc))  # accelerate's own loader: refuses unknown keys
        except Exception as exc:  # noqa: BLE001 - its message names the key
            raise ZephyrError(f"accelerate refuses the generated {acc}: {exc}",
                              "report it: the profile generates a config accelerate does not accept") from None
        done.append(f"{acc.name}: accepted by accelerate's config loader")
    ds = folder / hardware.DEEPSPEED_CONFIG
    if ds.is_file():
        body = json.loads(ds.read_text())
        if "zero_optimization" not in body:
            raise ZephyrError(f"{ds} has no zero_optimization section", "report it: the profile's ZeRO file is wrong")
        done.append(f"{ds.name}: ZeRO stage {body['zero_optimization']['stage']}"
                    f"{', offload' if 'offload_param' in body['zero_optimization'] else ''} (\"auto\" values are "
                    "filled from the trainer's arguments at launch)")
    for script in (SBATCH, NODE_SCRIPT):
        path = folder / script
        if path.is_file():
            out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            if out.returncode:
                raise ZephyrError(f"the generated {path} is not valid bash: {out.stderr.strip()}",
                                  "check hardware.slurm (its setup lines are copied into the script)")
            done.append(f"{script}: bash -n ok")
    return done



def dry_run(recipe: Recipe, name: str, argv: list[str], out: Path | None = None, known: dict | None = None) -> dict:
    """Everything `run` does before loading weights, with nothing started and the run folder untouched.

    Checks trust (reported, not refused: nothing runs), the plan, this machine's devices, the run folder (its lock,
    whether it holds a finished run of this config or something else), then writes the resolved config and the
    launcher files into ``out`` (default: beside the run folder, ``<run folder>.dry-run``), parses them with their
    own tools and returns what the run would launch. ``known`` carries what earlier pipeline stages will write
    (models and data) from stage to stage, for the plan.
    """
    stage = stages.of(recipe)
    hw = recipe.hardware
    output_dir = cast(str, recipe.run.output_dir)  # validation sets every run's folder
    folder = Path(output_dir).expanduser().resolve()
    out = Path(out or dry_run_folder(recipe)).resolve()
    notes: list[str] = []
    needs = trust.foreign(recipe.config)
    if needs and not trust.trusted():
        notes.append("the run needs --trust-recipe-code for: " + "; ".join(f"{w} = {n}" for w, n in needs))

    try:
        checked_outside = preflight.run(recipe, stage, network=True, produced=(known or {}).get("produced", set()),
                                        strict=False)
    except ZephyrError as exc:
        checked_outside = []
        notes.append(f"pre-flight: the run would refuse: {exc.problem} (fix: {exc.fix})")
    known = {} if known is None else known
    known.setdefault("produced", set()).add(str(folder))
    known.setdefault("folders", {})
    known.setdefault("data", {})
    try:
        sp = stageplan.stage_plan(recipe, stage, folders=known["folders"], data=known["data"])
    except ZephyrError as exc:
        sp = stageplan.StagePlan(f"plan: not made here ({exc.problem})", "unknown")
    if sp.trained:
        known["folders"][output_dir] = sp.trained
    if sp.writes:
        known["data"][str(folder)] = sp.writes
    if sp.kind == "no" and not hw.ignore_memory_plan:
        notes.append("the run would refuse: the memory plan says it does not fit (see the plan)")
    if hw.launcher != "slurm":
        try:
            resolve_placement(hw)
        except ZephyrError as exc:
            notes.append(f"not on this machine: {exc.problem}")
    state = _folder_state(recipe, folder, argv, notes)
    out.mkdir(parents=True, exist_ok=True)
    for stale in LAUNCHER_FILES:  # an earlier dry run's files for another profile must not be checked as this one's
        (out / stale).unlink(missing_ok=True)
    runfolder.write_atomic(out / runfolder.CONFIG, yaml.safe_dump(recipe.config, sort_keys=False))
    runfolder.write_atomic(out / "plan.txt", sp.text + "\n")
    if hw.launcher == "inprocess":
        command = " ".join(shlex.quote(a) for a in argv) + f"  (in this process: worker on {folder})"
    else:
        acc = write_configs(recipe, out)
        if hw.launcher == "accelerate":
            command = show(accelerate_command(folder, folder / hardware.ACCELERATE_CONFIG))
        else:
            script, node = sbatch_script(recipe, folder)
            runfolder.write_atomic(out / SBATCH, script)
            runfolder.write_atomic(out / NODE_SCRIPT, node)
            command = f"sbatch {shlex.quote(str(folder / SBATCH))}"
        del acc
    checked = check_launcher_files(out) + [f"pre-flight: {line}" for line in checked_outside]
    summary = {"recipe": name, "run_folder": str(folder), "run_folder_state": state, "launcher": hw.launcher,
               "command": command, "checked": checked, "notes": notes, "files": str(out), "plan": sp.text,
               "memory": dry_run_memory(sp), "tokens": sp.work.tokens if sp.work is not None else None}
    runfolder.write_atomic(out / "dry-run.json", json.dumps(summary, indent=2) + "\n")
    return summary



def _folder_state(recipe: Recipe, folder: Path, argv: list[str], notes: list[str]) -> str:
    """What the run would find in its folder (under the folder's lock, as the run takes it); a refusal goes to
    ``notes``."""
    with runfolder.locked(folder, argv):
        if runfolder.finished_alike(recipe) is not None:
            return "finished already (the run would do nothing)"
        if not (folder.exists() and any(folder.iterdir())):
            return "new"
        status = runfolder.read_status(folder)
        if status is None:
            notes.append(f"the run would refuse: {folder} exists and is not a run folder")
            return "not a run folder"
        return f"holds a run ({status.get('status')}); " + (
            "run.overwrite=true: the run would replace it" if recipe.run.overwrite
            else "the run would resume it if its config matches")


def dry_run_memory(sp: stageplan.StagePlan) -> dict:
    """The memory plan a dry run prints, as data: its verdict and, for a training stage, GB per device by part."""
    out: dict = {"verdict": sp.kind}
    if sp.memory is not None:
        out.update(per_device_gb=round(sp.memory["total_gb"], 3),
                   parts={k: round(v, 3) for k, v in sp.memory["parts"].items()},
                   per_device_batch=sp.memory["per_device_batch"], sequence_length=sp.memory["sequence_length"])
    return out



def render_dry_run(result: dict) -> str:
    lines = [result["plan"], f"dry run of {result['recipe']}: nothing was started and {result['run_folder']} was not "
             "touched", f"  run folder: {result['run_folder_state']}",
             f"  would launch: {result['command']}"]
    lines += [f"  checked {c}" for c in result["checked"]]
    lines += [f"  note: {n}" for n in result["notes"]]
    lines.append(f"  files the run would use: {result['files']}")
    return "\n".join(lines)
