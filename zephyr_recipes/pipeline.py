"""Pipelines: an ordered list of stage recipes whose outputs feed the next, run by one command.

A pipeline recipe has a single top-level key, ``pipeline``::

    pipeline:
      output_dir: runs/tiny-zephyr          # every stage's run folder sits under it, named after the stage
      seed: 42                              # run.seed of every stage
      stages:
        - {name: sft, recipe: tiny/sft}
        - name: dpo
          recipe: tiny/dpo
          overrides: {model.name_or_path: "${pipeline.output_dir}/sft"}

Finished stages are skipped on a re-run (after checking that their config has not changed); ``--from STAGE``
runs that stage and every later one again, ``--only STAGE`` runs just that one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import yaml

from . import runfolder
from .errors import ZephyrError

log = logging.getLogger("zephyr_recipes")
PIPELINE_KEYS = {"description", "output_dir", "seed", "stages", "report"}
STAGE_KEYS = {"name", "recipe", "overrides"}


def is_pipeline(raw: dict) -> bool:
    return isinstance(raw, dict) and "pipeline" in raw


def load(recipe: str, overrides: list[str]) -> tuple[dict, str, Path] | None:
    """Compose a pipeline recipe; None when the recipe is a single stage.

    ``STAGE.key=value`` overrides go to that stage (``sft.stage.trainer.learning_rate=1e-4``); the others
    (``pipeline.seed=3``) go to the pipeline file itself.
    """
    from .compose import compose, find_recipe

    try:
        raw = yaml.safe_load(find_recipe(recipe)[0].read_text())
    except yaml.YAMLError:
        return None  # not a pipeline we can read; composing it reports the YAML error
    if not is_pipeline(raw):
        return None
    names = {st.get("name") for st in (raw["pipeline"] or {}).get("stages") or [] if isinstance(st, dict)}
    own, per_stage = [], {}
    for o in overrides:
        head, _, rest = o.partition(".")
        if head in names and "=" in rest:
            key, _, value = rest.partition("=")
            per_stage.setdefault(head, {})[key] = _Verbatim(value)
        else:
            own.append(o)
    raw, name, path = compose(recipe, own)
    spec = check(raw)
    for st in spec["stages"]:
        st["overrides"] = {**(st.get("overrides") or {}), **per_stage.get(st["name"], {})}
    return spec, name, path


def check(raw: dict) -> dict:
    extra = set(raw) - {"pipeline"}
    if extra:
        raise ZephyrError(f"a pipeline recipe has only the `pipeline` key, this one also has `{sorted(extra)[0]}`",
                          "move stage settings into the stages' overrides")
    spec = raw["pipeline"]
    if not isinstance(spec, dict):
        raise ZephyrError("`pipeline` must be a mapping", "give it output_dir, seed and stages")
    unknown = set(spec) - PIPELINE_KEYS
    if unknown:
        raise ZephyrError(f"unknown key `pipeline.{sorted(unknown)[0]}`", f"known keys: {', '.join(sorted(PIPELINE_KEYS))}")
    if not spec.get("output_dir"):
        raise ZephyrError("`pipeline.output_dir` must be set", "for example pipeline.output_dir=runs/my-pipeline")
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ZephyrError("`pipeline.stages` must be a non-empty list", "list stages as {name, recipe, overrides}")
    names = []
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or not st.get("name") or not st.get("recipe"):
            raise ZephyrError(f"pipeline.stages[{i}] needs a name and a recipe", "write {name: sft, recipe: tiny/sft}")
        bad = set(st) - STAGE_KEYS
        if bad:
            raise ZephyrError(f"unknown key pipeline.stages[{i}].{sorted(bad)[0]}", "stages have name, recipe, overrides")
        if st["name"] in names:
            raise ZephyrError(f"two pipeline stages are named {st['name']!r}", "give every stage its own name")
        if not isinstance(st.get("overrides") or {}, dict):
            raise ZephyrError(f"pipeline.stages[{i}].overrides must be a mapping of key: value",
                              "write overrides as `key: value` lines")
        names.append(st["name"])
    report = spec.get("report")
    if report is not None:
        from .evaluation.ablation import check_claims

        if not isinstance(report, dict) or set(report) - {"claims"}:
            raise ZephyrError("`pipeline.report` takes one key, claims", "write report: {claims: [...]}, or drop it")
        check_claims(report.get("claims"))
    out = {"description": spec.get("description", ""), "output_dir": str(spec["output_dir"]),
           "seed": int(spec.get("seed", 42)), "stages": stages}
    if report is not None:
        out["report"] = report
    return out


class _Verbatim(str):
    """A value typed on the command line: Hydra's override syntax already, passed on as written."""


yaml.SafeDumper.add_representer(_Verbatim, lambda dumper, value: dumper.represent_str(str(value)))


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"  # Hydra's quoted string


def _hydra(value, nested: bool = False) -> str:
    """A YAML value written in Hydra's override grammar (lists as [a, b], mappings as {key: value})."""
    if isinstance(value, _Verbatim):
        return str(value)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_hydra(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_hydra(v, True)}" for k, v in value.items()) + "}"
    text = str(value)
    if nested or re.search(r"[\s()\[\]{},'\"\\]", text):
        return _quote(text)
    return text


def _override(key: str, value) -> str:
    return f"{key}={_hydra(value)}"


def stage_configs(spec: dict, base: Path) -> list[tuple[dict, str, dict]]:
    """(stage entry, recipe name, validated config) for every stage, composed before anything runs."""
    from .compose import compose
    from .validate import validate

    out = []
    for st in spec["stages"]:
        recipe = st["recipe"]
        local = (base / recipe)
        if recipe.endswith((".yaml", ".yml")) and local.is_file():
            recipe = str(local)
        overrides = [_override(k, v) for k, v in (st.get("overrides") or {}).items()]
        overrides += [f"run.output_dir={Path(spec['output_dir']) / st['name']}", f"run.seed={spec['seed']}",
                      f"run.name={Path(spec['output_dir']).name}-{st['name']}"]
        try:
            raw, name, _ = compose(recipe, overrides)
            cfg = validate(raw, name)
        except ZephyrError as exc:
            raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
        out.append((st, name, cfg))
    return out


def run(spec: dict, recipe_file: Path, from_stage: str | None = None, only: str | None = None,
        argv: list[str] | None = None) -> Path:
    from . import launch

    names = [st["name"] for st in spec["stages"]]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise ZephyrError(f"{flag} {value}: the pipeline has no stage of that name", f"its stages: {', '.join(names)}")
    planned = stage_configs(spec, recipe_file.parent)
    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    runfolder.write_atomic(out / "pipeline.yaml", yaml.safe_dump({"pipeline": spec}, sort_keys=False))
    status_path = out / "pipeline.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {"stages": {}}
    status["seed"] = spec["seed"]
    forced = set(names[names.index(from_stage):]) if from_stage else ({only} if only else set())
    for st, name, cfg in planned:
        stage, folder = st["name"], Path(cfg["run"]["output_dir"])
        if only and stage != only:
            continue
        if stage not in forced and runfolder.is_complete(folder):
            frozen = yaml.safe_load((folder / runfolder.CONFIG).read_text())
            changed = runfolder.config_diff(frozen, cfg)
            if changed:
                raise ZephyrError(f"stage {stage!r} finished with a different config (changed: {', '.join(changed[:4])})",
                                  f"re-run it and what follows with --from {stage}")
            log.info("pipeline: %s finished already (%s), skipped", stage, folder)
            continue
        if from_stage and stage not in forced and not runfolder.is_complete(folder):
            raise ZephyrError(f"stage {stage!r} comes before --from {from_stage} and has not finished",
                              "run the whole pipeline (without --from) first")
        if stage in forced:
            cfg["run"]["overwrite"] = True
        log.info("pipeline: running %s (%s) -> %s", stage, name, folder)
        started = time.time()
        if cfg["hardware"].get("launcher") == "slurm":
            raise ZephyrError(f"pipeline stage {stage!r} uses a Slurm profile; a pipeline waits for each stage",
                              "run the pipeline itself inside a Slurm allocation with an accelerate profile, "
                              "or launch the stage recipes one by one")
        launch.execute(cfg, name, argv or [])
        status["stages"][stage] = {"folder": str(folder), "seconds": round(time.time() - started, 2),
                                   "finished": runfolder.now()}
        runfolder.write_atomic(status_path, json.dumps(status, indent=2) + "\n")
    if "report" in spec and not only:
        from .evaluation import ablation

        try:
            ablation.report([out], out / "report")
            log.info("pipeline: report written to %s", out / "report" / "report.md")
        except ZephyrError as exc:  # the stages finished; a report that cannot be made does not undo them
            log.warning("pipeline: no report: %s (%s)", exc.problem, exc.fix)
    return out
