"""Pipelines run: every stage composed and checked before the first runs, then each in order, a finished one skipped.

The pipeline recipe itself (its keys, rounds, per-stage overrides) is read by :mod:`.pipespec`. Finished stages
are skipped on a re-run when their config and the code they run by reference are the same and no stage they read
ran again (:mod:`.reuse` says how); ``--from STAGE`` runs that stage and every later one again, ``--only STAGE``
runs just that one. ``pipeline.reuse`` names other pipeline folders whose finished stages of the same config (up to
the pipeline folder's path) are copied instead of run again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import cast

import yaml

from .. import stages
from ..core import runfolder, trust
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from . import launch, preflight, reuse, runcheck
from .compose import compose
from .pipespec import Verbatim, dump, override
from .validate import validate

log = logging.getLogger("zephyr_recipes")


def relocate(value, output_dir: str, folders: dict):
    """Point references to ``<output_dir>/<stage>`` at the stage's actual folder where ``folders`` moves it."""
    if isinstance(value, str):
        text = value
        for name, folder in folders.items():
            here = str(Path(output_dir) / name)
            moved = str(folder)
            text = re.sub(re.escape(here) + r"(?=/|$)", lambda _m: moved, text)  # noqa: B023 - used at once
        return Verbatim(text) if isinstance(value, Verbatim) else text
    if isinstance(value, list):
        return [relocate(v, output_dir, folders) for v in value]
    if isinstance(value, dict):
        return {k: relocate(v, output_dir, folders) for k, v in value.items()}
    return value


def stage_folder(spec: dict, name: str, folders: dict | None = None) -> Path:
    return Path((folders or {}).get(name) or Path(spec["output_dir"]) / name)


def stage_config(spec: dict, st: dict, base: Path, folders: dict | None = None,
                 deep: bool = True) -> tuple[str, Recipe]:
    """(recipe name, validated recipe) of one pipeline stage (``deep``: see :func:`validate.validate`)."""

    folders = folders or {}
    recipe = st["recipe"]
    local = (base / recipe)
    if recipe.endswith((".yaml", ".yml")) and local.is_file():
        recipe = str(local)
    given = relocate(st.get("overrides") or {}, spec["output_dir"], folders)
    # Replacing finished runs is the command line's to ask (STAGE.run.overwrite=true there, or --from), never the
    # pipeline file's.
    given = {k: v for k, v in given.items() if k != "run.overwrite" or isinstance(v, Verbatim)}
    # The pipeline's seed, unless the stage pins its own (run.seed in its overrides).
    overrides = [f"run.seed={spec['seed']}"] + [override(k, v) for k, v in given.items()]
    folder = stage_folder(spec, st["name"], folders)
    # A stage moved out of the pipeline folder (a sweep's shared stage) is named after where it went.
    run_name = f"{folder.parent.parent.name}-{folder.name}" if st["name"] in folders else \
        f"{Path(spec['output_dir']).name}-{st['name']}"
    overrides += [override("run.output_dir", str(folder)), override("run.name", run_name)]
    try:
        if st.get("every"):  # hardware for every stage: those that run in one process keep their own profile
            raw, _, _ = compose(recipe, overrides)
            if not stages.get((raw.get("stage") or {}).get("name", "sft")).one_process:
                overrides = [override(k, v) for k, v in st["every"].items()] + overrides
        raw, name, _ = compose(recipe, overrides)
        recipe = validate(raw, name, deep=deep)
    except ZephyrError as exc:
        raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
    return name, recipe


def stage_configs(spec: dict, base: Path, folders: dict | None = None,
                  deep: bool = True) -> list[tuple[dict, str, Recipe]]:
    """(stage entry, recipe name, validated recipe) for every stage, composed before anything runs.

    ``folders`` moves stages out of the pipeline folder (a sweep's shared stages); references to them follow.
    """
    return [(st, *stage_config(spec, st, base, folders, deep)) for st in spec["stages"]]


def check_references(spec: dict, planned: list) -> None:
    """Every value pointing into the pipeline folder names a stage that runs before the one reading it, checked
    before the first stage runs (a typo would otherwise be found only after the stages before it trained)."""
    out = os.path.normpath(str(spec["output_dir"]))
    names = [st["name"] for st, _, _ in planned]

    def strings(value, where):
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for k, v in value.items():
                if where != "" or k != "run":  # a stage's own folder and name
                    yield from strings(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from strings(v, f"{where}[{i}]")

    for i, (st, _, recipe) in enumerate(planned):
        for where, text in strings(recipe.config, ""):
            norm = os.path.normpath(text) if "/" in text else ""
            if not norm.startswith(out + os.sep):
                continue
            ref = norm[len(out) + 1:].split(os.sep)[0]
            if ref in names[:i]:
                continue
            later = ref in names
            raise ZephyrError(
                f"pipeline stage {st['name']!r}: {where}={text} reads stage {ref!r}, "
                + ("which runs after it" if later else "which the pipeline does not have"),
                (f"move {ref} before {st['name']}" if later else
                 f"name one of the stages before it: {', '.join(names[:i]) or '(none)'}") + "; nothing was run")


def _strip_place(cfg: dict, output_dir: str, folders: dict | None = None) -> dict:
    """cfg with its own folder and name removed and the pipeline folder's path replaced by a marker."""
    moved = {str(Path(f)): f"<pipeline>/{name}" for name, f in (folders or {}).items()}

    def walk(v):
        if isinstance(v, str):
            for here, marker in moved.items():
                v = re.sub(re.escape(here) + r"(?=/|$)", marker, v)
            return re.sub(re.escape(str(Path(output_dir))) + r"(?=/|$)", "<pipeline>", v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v
    out = walk(cfg)
    out["run"] = {k: v for k, v in out["run"].items() if k not in ("output_dir", "name")}
    return out


def _reuse(spec: dict, stage: str, cfg: dict, folder: Path, folders: dict | None = None) -> Path | None:
    """Copy a finished stage of the same config (up to the pipeline folder's path) from a pipeline.reuse folder."""
    import shutil

    mine = _strip_place(cfg, spec["output_dir"], folders)
    names = {st["name"] for st in spec["stages"]}
    uses = sorted({m for m in re.findall(r"<pipeline>/([^/'\"\s,\]}]+)", json.dumps(mine, default=str)) if m in names})
    for other in spec.get("reuse") or []:
        src = Path(other) / stage
        if not runfolder.is_complete(src) or Path(other).resolve() == Path(spec["output_dir"]).resolve():
            continue
        frozen = yaml.safe_load((src / runfolder.CONFIG).read_text())
        if runfolder.config_diff(_strip_place(frozen, other), mine):
            continue
        # The same config reading other stages' folders is the same run only if those stages are the other
        # pipeline's own, copied from it: a dpo of another beta makes its evaluation another run.
        if any((runfolder.read_status(stage_folder(spec, n, folders)) or {}).get("reused_from") != str(Path(other) / n)
               for n in uses):
            continue
        if folder.exists() and any(folder.iterdir()):
            runfolder.remove_run_folder(folder)  # refuses anything but a run folder
        elif folder.exists():
            folder.rmdir()
        tmp = folder.with_name(f".{folder.name}.copy")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoint-*"), symlinks=True)
        runfolder.write_atomic(tmp / runfolder.CONFIG, yaml.safe_dump(cfg, sort_keys=False))
        runfolder.set_status(tmp, "complete", reused_from=str(src))
        tmp.rename(folder)  # run.json says complete only once everything is in place
        return src
    return None


def _folder(recipe: Recipe) -> Path:
    return Path(cast(str, recipe.run.output_dir))  # validation sets every run's folder


def _will_skip(stage: stages.Stage, recipe: Recipe, folders: list[Path]) -> bool:
    """Whether a stage is finished with this config and code, so that the pipeline skips it unless a stage it reads
    runs again (its pre-flight of modules, tokenizers and judges then waits until it has to run)."""
    if not runfolder.is_complete(_folder(recipe)):
        return False
    try:
        return reuse.why_again(recipe, stage, [], folders) is None
    except ZephyrError:
        return False


def _preflight(planned: list, forced: bool) -> tuple[set[str], set[str]]:
    """Keys, endpoints, paths and disk of every stage, before the first runs; the modules, tokenizers and judges of
    those that will run (``forced``: --from or --only, every stage). Returns (the folders the stages produce, the
    stages whose modules, tokenizers and judges were checked here)."""
    produced: set[str] = set()
    checked: set[str] = set()
    folders_all = [_folder(recipe) for _, _, recipe in planned]
    for st, _, recipe in planned:
        stage = stages.of(recipe)
        try:
            preflight.run(recipe, stage, network=True, produced=produced)
            if not forced and _will_skip(stage, recipe, folders_all):
                pass  # finished with this config and code: checked again only if it has to run after all
            else:
                runcheck.run(recipe, stage, produced)  # modules, tokenizers, judges
                checked.add(st["name"])
        except ZephyrError as exc:
            raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
        produced.add(str(_folder(recipe)))
    return produced, checked


def run(spec: dict, recipe_file: Path, from_stage: str | None = None, only: str | None = None,
        argv: list[str] | None = None, folders: dict | None = None, transform=None) -> Path:
    """Run the stages in order (``transform(stage entry, recipe name, validated recipe) -> config``, when given,
    replaces each stage's config before anything runs, validated again: a rehearsal's stand-ins)."""
    names = [st["name"] for st in spec["stages"]]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            hint = ""
            if spec.get("rounds") and value in spec["rounds"]["stages"]:
                hint = f"; a round's stages are named {value}-r1 ... {value}-r{spec['rounds']['count']}"
            raise ZephyrError(f"{flag} {value}: the pipeline has no stage of that name{hint}",
                              f"its stages: {', '.join(names)}")
    planned = stage_configs(spec, recipe_file.parent, folders)
    check_references(spec, planned)
    if transform is not None:
        planned = [(st, name, validate(transform(st, name, recipe), name)) for st, name, recipe in planned]
    trust.check({st["name"]: recipe.config for st, _, recipe in planned})  # before any stage runs (mappings)
    produced, checked = _preflight(planned, bool(from_stage or only))
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    folders_all = [_folder(recipe) for _, _, recipe in planned]
    written = {**spec, "stages": [{**st, "folder": str(f)} for (st, _, _), f in zip(planned, folders_all)]}
    runfolder.write_atomic(out / "pipeline.yaml", dump({"pipeline": written}))
    status_path = out / "pipeline.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {"stages": {}}
    status["seed"] = spec["seed"]
    forced = set(names[names.index(from_stage):]) if from_stage else ({only} if only else set())
    ran: list[Path] = []  # folders of the stages that ran in this invocation: a stage reading one runs again
    for (st, name, recipe), folder in zip(planned, folders_all):
        stage = st["name"]
        if only and stage != only:
            continue
        runs = stages.of(recipe)
        again = stage in forced
        if stage not in forced and runfolder.is_complete(folder):
            why = reuse.why_again(recipe, runs, ran, folders_all)
            if why is None:
                log.info("pipeline: %s finished already (%s), skipped", stage, folder)
                continue
            log.info("pipeline: %s runs again: %s", stage, why)
            again = True
        if stage not in forced and spec.get("reuse"):
            src = _reuse(spec, stage, recipe.config, folder, folders)
            if src is not None:
                log.info("pipeline: %s is the finished %s (same config), copied", stage, src)
                status["stages"][stage] = {"folder": str(folder), "reused_from": str(src), "finished": runfolder.now()}
                runfolder.write_atomic(status_path, json.dumps(status, indent=2) + "\n")
                continue
        if from_stage and stage not in forced and not runfolder.is_complete(folder):
            raise ZephyrError(f"stage {stage!r} comes before --from {from_stage} and has not finished",
                              "run the whole pipeline (without --from) first")
        if again and not runs.revisable:
            recipe = recipe.replaced("run", overwrite=True)  # a revisable stage (AI feedback) keeps its folder
        log.info("pipeline: running %s (%s) -> %s", stage, name, folder)
        started = time.time()
        if recipe.hardware.launcher == "slurm":
            raise ZephyrError(f"pipeline stage {stage!r} uses a Slurm profile; a pipeline waits for each stage",
                              "run the pipeline itself inside a Slurm allocation with an accelerate profile, "
                              "or launch the stage recipes one by one")
        launch.execute(recipe, name, argv or [], produced, again=again, code_checked=stage in checked)
        ran.append(folder)
        status["stages"][stage] = {"folder": str(folder), "seconds": round(time.time() - started, 2),
                                   "finished": runfolder.now()}
        runfolder.write_atomic(status_path, json.dumps(status, indent=2) + "\n")
    if "report" in spec and not only:
        from ..reports import ablation  # lazy: start-up (numpy and every benchmark, for pipelines with a report)

        try:
            ablation.report([out], out / "report")
            log.info("pipeline: report written to %s", out / "report" / "report.md")
        except ZephyrError as exc:  # the stages finished; a report that cannot be made does not undo them
            log.warning("pipeline: no report: %s (%s)", exc.problem, exc.fix)
    return out
