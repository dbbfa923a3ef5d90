"""Whether a run folder already holds the run a config asks for: the same config and the same code.

A stage's identity is its resolved config and the fingerprints of the code it runs by reference
(``Stage.code_refs``, core/fingerprint.py); ``run.json`` records the fingerprints (``code``). Under the folder's
lock, before the folder is prepared:

- the same config and code, finished: nothing to do, the folder is the result;
- a stage that redoes only what changed (``Stage.revisable``: AI feedback): a changed config or code is recorded in
  ``revisions.jsonl`` (the old config and code kept there), and the stage runs again, reusing what still matches;
- another stage, finished with the same config but other code: refused, naming the code that changed (a pipeline
  runs it again itself, replacing it: see runtime/pipeline.py).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import yaml

from ..core import fingerprint, revisions, runfolder
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..stages.base import Stage

log = logging.getLogger("zephyr_recipes")


def code_of(recipe: Recipe, stage: Stage) -> dict:
    """{label: fingerprint} of the code the run of ``recipe`` runs by reference (after the trust gate: finding a
    module imports its parent packages)."""
    return fingerprint.of_refs(stage.code_refs(recipe))


def _frozen(folder: Path) -> dict:
    try:
        frozen = yaml.safe_load((folder / runfolder.CONFIG).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return frozen if isinstance(frozen, dict) else {}


def before_prepare(recipe: Recipe, stage: Stage, code: dict, again: bool = False, ready=None) -> Path | None:
    """The folder when it holds this run finished (nothing to do; ``again``: run a revisable stage all the same),
    else None after refusing a finished run whose code changed, calling ``ready()`` (the pre-flight of what the run
    runs) and recording a revision: a run refused by its pre-flight leaves no revision behind."""
    folder = Path(str(recipe.run.output_dir)).expanduser()
    done = runfolder.finished_alike(recipe, code)
    if done is not None and not (again and stage.revisable):
        recorded = (runfolder.read_status(done) or {}).get("code")
        if recorded is None:  # finished before fingerprints were recorded: taken as made by this code
            runfolder.set_status(done, "complete", code=code)
        log.info("%s already holds a finished run of this config and code (completed %s): nothing to do "
                 "(run.overwrite=true runs it again)", done, (runfolder.read_status(done) or {}).get("finished", "?"))
        return done
    if recipe.run.overwrite or not runfolder.is_run_folder(folder):
        if ready is not None:
            ready()
        return None
    status = runfolder.read_status(folder) or {}
    frozen = _frozen(folder)
    changed = runfolder.config_diff(frozen, recipe.config) if frozen else []
    code_changed = fingerprint.changed(status.get("code"), code)
    if status.get("status") == "complete" and code_changed and not changed and not stage.revisable:
        raise ZephyrError(f"{folder} holds a finished run of this config made with other code: "
                          f"{fingerprint.describe(code_changed, status.get('code'), code)}",
                          "pass run.overwrite=true to run it again with the code as it is now (the finished run is "
                          "replaced), or run.name=<new name> to keep both")
    if ready is not None:
        ready()
    if stage.revisable:
        if changed or code_changed:
            revisions.record(folder, frozen, status.get("code"), changed, code_changed)
            log.info("%s: %s%s%s; only what they change is redone, the rest reused (previous config kept in %s)",
                     folder, f"config changed ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''})"
                     if changed else "", "; " if changed and code_changed else "",
                     f"code changed: {fingerprint.describe(code_changed, status.get('code'), code)}"
                     if code_changed else "", revisions.FILE)
    return None


def reads_folder(cfg: dict, folder: Path) -> bool:
    """Whether a config names ``folder`` (or a path inside it) anywhere: the stage reads what that one wrote."""
    text = json.dumps({k: v for k, v in cfg.items() if k != "run"}, default=str)
    names = {str(folder), str(Path(folder).expanduser().resolve())}
    return any(re.search(re.escape(n) + r"(?=/|\"|$)", text) for n in names)


def why_again(recipe: Recipe, stage: Stage, ran: list[Path], others: tuple[Path, ...] | list[Path] = ()) -> str | None:
    """Why a finished pipeline stage must run again (None: skip it): a stage it reads ran again (in this invocation,
    ``ran``, or since it started: one of ``others`` finished after it), its code changed, or (a revisable stage)
    its config changed. A changed config of another stage is refused, as before fingerprints: the pipeline says to
    re-run it with --from."""
    folder = Path(str(recipe.run.output_dir))
    status = runfolder.read_status(folder) or {}
    frozen = _frozen(folder)
    changed = runfolder.config_diff(frozen, recipe.config)
    code = code_of(recipe, stage)
    code_changed = fingerprint.changed(status.get("code"), code)
    upstream = [f for f in ran if reads_folder(recipe.config, f)]
    started = str(status.get("started") or "")
    upstream += [f for f in others if f not in upstream and f != folder and reads_folder(recipe.config, f)
                 and str((runfolder.read_status(f) or {}).get("finished") or "") > started]
    if upstream:
        return f"it reads {', '.join(map(str, upstream))}, which ran again"
    if code_changed:
        return f"its code changed: {fingerprint.describe(code_changed, status.get('code'), code)}"
    if changed and stage.revisable:
        return f"its config changed ({', '.join(changed[:6])}); what still matches is reused"
    if changed:
        raise ZephyrError(f"stage {folder.name!r} finished with a different config (changed: {', '.join(changed[:4])})",
                          f"re-run it and what follows with --from {folder.name}")
    if status.get("code") is None:  # finished before fingerprints were recorded: taken as made by this code
        runfolder.set_status(folder, "complete", code=code)
    return None
