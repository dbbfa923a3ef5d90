"""Sweeps: ``zephyr-recipes -m RECIPE key=a,b other=range(1,4)`` runs one normal run per point of the grid.

Hydra's own override parser reads the grammar (comma lists, ``range()``, ``choice()``); every combination of the
swept values is a point. A point is an ordinary run (or pipeline) with plain overrides, so it resumes, skips when
finished with the same config and refuses to clobber a finished run of another config, like any run.

Layout: ``<run.output_dir>-sweep/`` holds one folder per point, named from the swept values
(``beta=0.1,learning_rate=0.0001``), and ``sweep.md``, ``sweep.png`` and ``sweep.json``. For a pipeline, the stages
whose config is the same in every point (compared with the point's folder taken out) run once under ``shared/``,
and only the stages that differ run per point.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path
from typing import cast

from ..core import preempt, runfolder, trust, yamlsafe
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import RunConfig
from . import launch, pipeline, pipespec
from .compose import compose, parse_sweep
from .sweepsummary import summarize
from .validate import validate

log = logging.getLogger("zephyr_recipes")
SHARED = "shared"


# ----------------------------------------------------------------------------------------------- grammar
def parse(overrides: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(plain overrides, [(key, values)] of the swept ones), read by Hydra's override parser
    (:func:`.compose.parse_sweep`)."""
    return parse_sweep(overrides)


def _labels(keys: list[str]) -> list[str]:
    """Short, distinct names for the swept keys: the last part of the key, longer where two would clash."""
    parts = [k.lstrip("+").split(".") for k in keys]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = [".".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [k.lstrip("+") for k in keys]


def points(swept: list[tuple[str, list[str]]]) -> list[dict]:
    """Every combination: {"name": folder name, "values": {label: value}, "overrides": [key=value ...]}."""
    keys = [k for k, _ in swept]
    labels = _labels(keys)
    out, seen = [], set()
    for combo in itertools.product(*[values for _, values in swept]):
        name = ",".join(f"{lab}={_safe(v)}" for lab, v in zip(labels, combo))
        if name in seen:
            raise ZephyrError(f"two points of the sweep would share the folder {name!r}",
                              "give each swept key distinct values")
        seen.add(name)
        out.append({"name": name, "values": dict(zip(labels, combo)),
                    "overrides": [f"{k}={v}" for k, v in zip(keys, combo)]})
    return out


def _safe(value: str) -> str:
    text = re.sub(r"[/\\\s]+", "_", str(value)).strip("._") or "_"
    return text[:60]


# ------------------------------------------------------------------------------------------------- run
def run(recipe: str, overrides: list[str], from_stage: str | None = None, only: str | None = None,
        argv: list[str] | None = None) -> Path:
    fixed, swept = parse(overrides)
    grid = points(swept)
    first = pipespec.load(recipe, fixed + grid[0]["overrides"])
    if first is not None:
        return _run_pipeline(recipe, fixed, swept, grid, from_stage, only, argv)
    if from_stage or only:
        raise ZephyrError("--from and --only apply to pipeline recipes", f"{recipe} is a single stage; drop the flag")
    return _run_stages(recipe, fixed, swept, grid, argv)


def _validate(recipe: str, overrides: list[str]) -> tuple[Recipe, str]:
    raw, name, _ = compose(recipe, overrides)
    return validate(raw, name), name


def _folder(run: RunConfig) -> Path:
    return Path(cast(str, run.output_dir))  # validation sets every run's folder


def _settled(i: int, n: int, point: dict, recipe: Recipe, results: dict) -> tuple[dict, Path, bool]:
    """(the point's entry, its folder, whether it needs nothing now): a finished point is skipped and a point its
    scheduler holds is not submitted again (both recorded in ``results``), unless run.overwrite."""
    run_cfg = recipe.run
    folder = _folder(run_cfg)
    entry = {"values": point["values"], "folder": str(folder), "overrides": point["overrides"]}
    state = (runfolder.read_status(folder) or {}).get("status")
    if state == "complete" and not run_cfg.overwrite:
        log.info("sweep: point %d/%d %s finished already, skipped", i, n, point["name"])
        results[point["name"]] = {**entry, "status": "complete", "skipped": True}
        return entry, folder, True
    if state in ("queued", "prepared") and not run_cfg.overwrite:  # a scheduler job, not resubmitted
        log.info("sweep: point %d/%d %s is %s on the scheduler, not submitted again", i, n, point["name"], state)
        results[point["name"]] = {**entry, "status": "submitted",
                                  "job": (runfolder.read_status(folder) or {}).get("slurm_job")}
        return entry, folder, True
    return entry, folder, False


def _all_or_some(grid: list[dict], errors: dict) -> None:
    """A problem every point shares (an unknown key, a bad value of a key not swept) is reported once."""
    if errors and len(errors) == len(grid):
        problems = {(e.problem, e.fix) for e in errors.values()}
        if len(problems) == 1:
            raise next(iter(errors.values()))
        first = grid[0]["name"]
        raise ZephyrError(f"no point of the sweep is valid; {first}: {errors[first].problem}", errors[first].fix)


def _refuse_clobber(planned: list[tuple[dict, Recipe]]) -> None:
    """Refuse before anything runs when a point's folder holds another config's run, or not a run at all."""
    bad = []
    for _point, recipe in planned:
        run_cfg = recipe.run
        folder = _folder(run_cfg)
        if not folder.exists() or not any(folder.iterdir()) or run_cfg.overwrite:
            continue
        status = runfolder.read_status(folder)
        if status is None:
            bad.append(f"{folder} is not a run folder")
            continue
        frozen = yamlsafe.read(folder / runfolder.CONFIG, "run folder config") \
            if (folder / runfolder.CONFIG).exists() else {}
        changed = runfolder.config_diff(frozen, recipe.config)
        if changed:
            state = "a finished" if status.get("status") == "complete" else "an unfinished"
            bad.append(f"{folder} holds {state} run of a different config (changed: {', '.join(changed[:3])})")
    if bad:
        raise ZephyrError(f"the sweep would overwrite: {'; '.join(bad)}",
                          "pass run.overwrite=true to replace them, or run.output_dir=<another place> to keep both; "
                          "nothing was run")


def _run_stages(recipe, fixed, swept, grid, argv) -> Path:
    errors, planned = {}, []
    base = None
    for point in grid:
        try:
            checked, name = _validate(recipe, fixed + point["overrides"])
        except ZephyrError as exc:
            errors[point["name"]] = exc
            continue
        base = base or checked.run.output_dir
        point["recipe"] = name
        planned.append((point, checked))
    _all_or_some(grid, errors)
    if errors:  # every point is checked before the first trains: a bad value is refused, not found hours in
        bad = next(iter(errors))
        raise ZephyrError(f"sweep point {bad}: {errors[bad].problem}",
                          f"{errors[bad].fix or 'fix that value'}; nothing was run (every point is checked first)")

    trust.check({p["name"]: checked.config for p, checked in planned})  # code of any point, before the first runs
    sweep_dir = Path(str(base).rstrip("/") + "-sweep")
    results = {p["name"]: {"values": p["values"], "status": "failed", "error": f"{errors[p['name']]}"}
               for p in grid if p["name"] in errors}
    # Every point in its own folder under the sweep folder.
    planned = [(point, checked.replaced("run", output_dir=str(sweep_dir / point["name"]),
                                        name=f"{checked.run.name}-{point['name']}")) for point, checked in planned]
    _refuse_clobber(planned)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    header = {"recipe": recipe, "overrides": fixed, "swept": [{"key": k, "values": v} for k, v in swept],
              "kind": "stage"}
    log.info("sweep: %d points of %s in %s", len(grid), recipe, sweep_dir)
    if planned and all(checked.hardware.launcher == "slurm" for _, checked in planned):
        _submit_array(recipe, fixed, swept, planned, sweep_dir, header, grid, results, argv)
        return sweep_dir
    for i, (point, checked) in enumerate(planned, 1):
        entry, folder, settled = _settled(i, len(planned), point, checked, results)
        if settled:
            continue
        log.info("sweep: point %d/%d %s", i, len(planned), point["name"])
        try:
            done = launch.execute(checked, point["recipe"], [*(argv or []), *point["overrides"]])
            results[point["name"]] = {**entry, "status": "complete" if done else "submitted"}
            if not done:
                results[point["name"]]["job"] = (runfolder.read_status(folder) or {}).get("slurm_job")
        except (KeyboardInterrupt, SystemExit, preempt.Preempted) as exc:  # a signal stops the sweep at this point
            results[point["name"]] = {**entry, "status": _stopped(exc)}
            summarize(sweep_dir, header, grid, results)
            raise
        except Exception as exc:  # one point failing does not stop the others
            log.error("sweep: point %s failed: %s", point["name"], exc)
            results[point["name"]] = {**entry, "status": "failed", "error": _one_line(exc)}
        summarize(sweep_dir, header, grid, results)
    summarize(sweep_dir, header, grid, results)
    return sweep_dir


ARRAY = "sweep.sbatch"


def _job_options(script: str) -> list[str]:
    """A point's #SBATCH lines that size its job (nodes, GPUs, time, partition ...): the array's, shared by all."""
    return [line for line in script.splitlines() if line.startswith("#SBATCH ")
            and not line.startswith(("#SBATCH --job-name=", "#SBATCH --output="))]


def _submit_array(recipe, fixed, swept, planned, sweep_dir: Path, header, grid, results, argv) -> None:
    """A sweep on a Slurm profile: every point's folder and scripts prepared here, then one job array runs them
    (``hardware.slurm.array_limit`` at once), and a job that depends on the array gathers sweep.md when it ends."""
    import shlex
    import shutil
    import subprocess
    import sys

    todo = []
    for i, (point, checked) in enumerate(planned, 1):
        entry, folder, settled = _settled(i, len(planned), point, checked, results)
        if settled:
            continue
        launch.execute(checked, point["recipe"], [*(argv or []), *point["overrides"]], submit=False)
        todo.append((point, checked, entry, folder.resolve()))
    if not todo:
        summarize(sweep_dir, header, grid, results)
        return
    options = {tuple(_job_options((f / launch.SBATCH).read_text())) for _, _, _, f in todo}
    if len(options) > 1:
        raise ZephyrError("the swept points need different Slurm allocations (the sweep changes a hardware key), "
                          "and one job array has one allocation per task",
                          "sweep hardware keys in separate sweeps, or keep the profile fixed")
    first = todo[0][1]
    limit = (first.hardware.slurm or {}).get(launch.ARRAY_LIMIT)
    name = f"{cast(str, first.run.name).rsplit('-', 1)[0]}-sweep"
    folders = " ".join(shlex.quote(str(f)) for _, _, _, f in todo)
    script = ["#!/bin/bash", f"# Generated by zephyr-recipes: {len(todo)} points of the sweep in {sweep_dir.resolve()}, "
              "one array task each.", f"#SBATCH --job-name={name}",
              f"#SBATCH --array=0-{len(todo) - 1}{f'%{int(limit)}' if limit else ''}",
              f"#SBATCH --output={sweep_dir.resolve()}/slurm-%A_%a.out", *sorted(next(iter(options))), "",
              "set -euo pipefail", f"FOLDERS=({folders})",
              'FOLDER="${FOLDERS[$SLURM_ARRAY_TASK_ID]}"',
              "# The point's own job script, inside this task's allocation (its #SBATCH lines are the array's).",
              'exec bash "$FOLDER/launch.sbatch"', ""]
    runfolder.write_atomic(sweep_dir / ARRAY, "\n".join(script))
    cmd = [sys.executable, "-m", "zephyr_recipes", "-m", recipe, *fixed,
           *(f"{k}={','.join(v)}" for k, v in swept)]
    root = launch._source_root()
    gather = (f"cd {shlex.quote(str(Path.cwd()))} && " + (f"PYTHONPATH={shlex.quote(root)} " if root else "")
              + " ".join(shlex.quote(c) for c in cmd))
    submit = ["sbatch", "--parsable", str(sweep_dir / ARRAY)]
    if shutil.which("sbatch") is None:
        for point, _, entry, _f in todo:
            results[point["name"]] = {**entry, "status": "submitted", "job": None}
        print(f"wrote {sweep_dir / ARRAY} ({len(todo)} array tasks); sbatch is not available on this machine.\n"
              f"submit from a Slurm login node with:\n  {' '.join(map(shlex.quote, submit))}\n"
              f"then gather sweep.md when it ends with:\n  {gather}")
        summarize(sweep_dir, header, grid, results)
        return
    out = subprocess.run(submit, capture_output=True, text=True)
    if out.returncode != 0:
        raise ZephyrError(f"sbatch refused the job array: {(out.stderr or out.stdout).strip().splitlines()[-1:]}",
                          f"adjust hardware.slurm or edit {sweep_dir / ARRAY} and submit it")
    job = out.stdout.strip().split(";")[0] or "?"
    for i, (point, _, entry, folder) in enumerate(todo):
        runfolder.set_status(folder, "queued", slurm_job=f"{job}_{i}")
        results[point["name"]] = {**entry, "status": "submitted", "job": f"{job}_{i}"}
    after = subprocess.run(["sbatch", "--parsable", f"--dependency=afterany:{job}", f"--job-name={name}-report",
                            f"--output={sweep_dir.resolve()}/slurm-report-%j.out", f"--wrap={gather}"],
                           capture_output=True, text=True)
    report_job = after.stdout.strip().split(";")[0] if after.returncode == 0 else None
    header["slurm"] = {"array_job": job, "tasks": len(todo), "array_limit": limit, "report_job": report_job}
    print(f"submitted Slurm job array {job} ({len(todo)} tasks{f', {limit} at once' if limit else ''}): "
          f"{sweep_dir / ARRAY}" + (f"; sweep.md is gathered by job {report_job} when it ends" if report_job else
                                   f"; gather sweep.md when it ends with: {gather}"))
    summarize(sweep_dir, header, grid, results)


def _stopped(exc: BaseException) -> str:
    """The status of the point a signal stopped: re-running the sweep resumes it there."""
    if isinstance(exc, preempt.Preempted):
        log.warning("sweep: stopped at this point (preempted); re-run the same command to resume it, later points "
                    "have not started")
        return "preempted"
    return "interrupted"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}" if not isinstance(exc, ZephyrError) else str(exc)


# -------------------------------------------------------------------------------------------- pipelines
def _marker(value, prefix: str):
    if isinstance(value, str):
        return re.sub(re.escape(prefix) + r"(?=/|$)", "<point>", value)
    if isinstance(value, list):
        return [_marker(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: _marker(v, prefix) for k, v in value.items()}
    return value


def plan_pipeline(specs: list[tuple[dict, Path]], shared_dir: Path) -> tuple[dict, list[str]]:
    """Decide, stage by stage, which stages every point shares: ({stage: shared folder}, branched stage names).

    A stage is shared when its validated config, with the point's folder taken out, is the same in every point
    and refers to no stage that branches.
    """
    shared: dict[str, Path] = {}
    branched: list[str] = []
    names = [st["name"] for st in specs[0][0]["stages"]]
    for i, name in enumerate(names):
        moved = {**shared, name: shared_dir / name}
        seen = []
        for spec, path in specs:
            _, checked = pipeline.stage_config(spec, spec["stages"][i], path.parent, moved)
            # Compared with its own folder and name taken out (None in every point).
            unplaced = checked.replaced("run", output_dir=None, name=None).config
            seen.append(_marker(unplaced, str(Path(spec["output_dir"]))))
        same = all(runfolder.config_diff(seen[0], s) == [] for s in seen[1:])
        if same and "<point>" not in json.dumps(seen[0], default=str):
            shared[name] = shared_dir / name
        else:
            branched.append(name)
    return shared, branched


def _check_flags(names: list[str], shared: dict, first_branch: str, from_stage: str | None,
                 only: str | None) -> str:
    """--from and --only name stages of the pipeline, and --from none after the first that branches (returned)."""
    for flag, stage in (("--from", from_stage), ("--only", only)):
        if stage is not None and stage not in names:
            raise ZephyrError(f"{flag} {stage}: the pipeline has no stage of that name", f"its stages: {', '.join(names)}")
    if from_stage and names.index(from_stage) > names.index(first_branch):
        raise ZephyrError(
            f"--from {from_stage} comes after {first_branch!r}, where the sweep's points start to differ: with --from "
            f"the points' {first_branch} would not run again, so the swept values would not take effect",
            f"use --from {first_branch} (or an earlier stage), or drop --from: finished points are skipped anyway")
    if from_stage:
        again = [n for n in names[names.index(from_stage):] if n in shared]
        log.info("sweep: --from %s: %s; every point's %s and later stages run again, finished or not", from_stage,
                 f"the shared {', '.join(again)} run again once" if again else "no shared stage runs again",
                 first_branch)
    return first_branch


def _refuse_pipeline_clobber(specs: list, names: list[str], shared: dict, from_stage: str | None,
                             only: str | None) -> None:
    """Refuse before anything runs, like a single run: a point's stage folder holding another config's finished run."""
    for _point, spec, _ in specs:
        for st in spec["stages"]:
            if st["name"] in shared or (only and st["name"] != only):
                continue
            if from_stage and names.index(st["name"]) >= names.index(from_stage):
                continue  # --from runs these again on purpose
            folder = pipeline.stage_folder(spec, st["name"])
            if runfolder.is_complete(folder):
                _, checked = pipeline.stage_config(spec, st, Path(specs[0][2]).parent, shared)
                changed = runfolder.config_diff(yamlsafe.read(folder / runfolder.CONFIG, "run folder config"),
                                                checked.config)
                if changed:
                    raise ZephyrError(f"the sweep would overwrite {folder}, a finished run of a different config "
                                      f"(changed: {', '.join(changed[:3])})",
                                      f"re-run from that stage with --from {st['name']}, or sweep into another "
                                      "pipeline.output_dir; nothing was run")


def _run_pipeline(recipe, fixed, swept, grid, from_stage, only, argv) -> Path:
    first = pipespec.load(recipe, fixed + grid[0]["overrides"])
    assert first is not None  # run() found a pipeline
    base = first[0]["output_dir"]
    sweep_dir = Path(str(base).rstrip("/") + "-sweep")
    errors, specs, everything = {}, [], {}
    for point in grid:
        try:
            loaded = pipespec.load(recipe, fixed + point["overrides"] +
                                   [pipespec.override("pipeline.output_dir", str(sweep_dir / point["name"]))])
            assert loaded is not None  # every point is the same pipeline recipe
            spec, _, path = loaded
            configs = pipeline.stage_configs(spec, path.parent)  # every stage validates before anything runs
            pipeline.check_references(spec, configs)
        except ZephyrError as exc:
            errors[point["name"]] = exc
            continue
        specs.append((point, spec, path))
        everything[point["name"]] = {st["name"]: checked.config for st, _, checked in configs}
    _all_or_some(grid, errors)
    if errors:  # a pipeline point that does not compose is a mistake in the sweep, not a result
        bad = next(iter(errors))
        raise ZephyrError(f"sweep point {bad}: {errors[bad].problem}", errors[bad].fix)

    trust.check(everything)  # code of any point, before the first stage runs
    names = [st["name"] for st in specs[0][1]["stages"]]
    if any([st["name"] for st in spec["stages"]] != names for _, spec, _ in specs):
        raise ZephyrError("the points of the sweep have different stages", "sweep stage settings, not the stage list")
    shared, branched = plan_pipeline([(spec, path) for _, spec, path in specs], sweep_dir / SHARED)
    log.info("sweep: %d points; shared by all (run once under %s): %s; per point: %s", len(grid),
             sweep_dir / SHARED, ", ".join(shared) or "none", ", ".join(branched) or "none")
    if not branched:
        raise ZephyrError("the swept values change no stage of the pipeline",
                          "sweep a stage's key (dpo.stage.trainer.beta=...) or pipeline.seed")
    first_branch = _check_flags(names, shared, branched[0], from_stage, only)
    _refuse_pipeline_clobber(specs, names, shared, from_stage, only)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    header = {"recipe": recipe, "overrides": fixed, "swept": [{"key": k, "values": v} for k, v in swept],
              "kind": "pipeline", "shared": {k: str(v) for k, v in shared.items()}, "branched": branched}
    results = {}
    for i, (point, spec, path) in enumerate(specs):
        entry = {"values": point["values"], "folder": spec["output_dir"], "overrides": point["overrides"]}
        # Shared stages run (or restart with --from / --only) in the first point only; the others find them done.
        p_from = from_stage if i == 0 or not from_stage or from_stage not in shared else first_branch
        p_only = only
        if only and only in shared and i > 0:
            results[point["name"]] = {**entry, "status": "complete", "note": f"--only {only}: shared, run once"}
            continue
        log.info("sweep: point %d/%d %s", i + 1, len(specs), point["name"])
        try:
            pipeline.run(spec, path, p_from, p_only, [*(argv or []), *point["overrides"]], folders=shared)
            results[point["name"]] = {**entry, "status": "complete"}
        except (KeyboardInterrupt, SystemExit, preempt.Preempted) as exc:
            results[point["name"]] = {**entry, "status": _stopped(exc)}
            summarize(sweep_dir, header, grid, results)
            raise
        except Exception as exc:
            log.error("sweep: point %s failed: %s", point["name"], exc)
            results[point["name"]] = {**entry, "status": "failed", "error": _one_line(exc)}
            broken = [s for s, f in shared.items() if not runfolder.is_complete(f)
                      and (not only or s == only) and names.index(s) < names.index(first_branch)]
            if broken:  # every later point needs the shared stage that just failed
                for later, _, _ in specs[i + 1:]:
                    results[later["name"]] = {"values": later["values"], "status": "failed",
                                              "error": f"shared stage {broken[0]!r} failed in point {point['name']}"}
                break
        summarize(sweep_dir, header, grid, results)
    summarize(sweep_dir, header, grid, results)
    return sweep_dir


