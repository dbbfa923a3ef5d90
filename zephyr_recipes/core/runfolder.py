"""The run folder: created by the front end, filled by the worker, marked finished only at the very end.

``run.json`` carries the status. It says ``complete`` only after the weights, tokenizer, metrics, curves and
model card are all written; a run that died says ``running`` or ``failed`` and is resumed, never mistaken
for a finished one. A finished run is only replaced when the user asks (``run.overwrite=true``); asked again
with the same config it is reported done. One launch at a time writes a run folder: :func:`locked` holds an
OS lock beside it (``.NAME.lock``) that dies with its process, so a run killed with ``kill -9`` leaves no
lock behind that could block the re-run that resumes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import cast

import yaml

from . import lockguard, yamlsafe
from .errors import ZephyrError
from .fingerprint import changed as code_changed
from .recipe import Recipe
from .records import redact

STATUS = "run.json"
CONFIG = "config.yaml"
# Keys that may differ between the frozen config and a re-run without making it a different run.
VOLATILE = {"run.overwrite", "run.resume", "hardware.ignore_memory_plan",
            # the AI-feedback audit's bars: a stage a bar ended resumes with another bar, asking its judge nothing again
            *(f"stage.audit.{bar}" for bar in ("min_agreement", "min_kappa", "min_retest", "min_order_consistency",
                                               "max_longer_chosen"))}
# Set for the processes a launch starts, which write the folder under their parent's lock.
LOCK_ENV = "ZEPHYR_RECIPES_LOCKED"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_status(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / STATUS).read_text())
    except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8, or folder is a file
        return None
    return data if isinstance(data, dict) else None


def set_status(folder: Path, status: str, **extra) -> None:
    data = read_status(folder) or {}
    data.update(status=status, updated=now(), **extra)
    write_atomic(folder / STATUS, json.dumps(data, indent=2) + "\n")


def is_complete(folder: Path) -> bool:
    return (read_status(Path(folder)) or {}).get("status") == "complete"


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if k not in VOLATILE and a.get(k) != b.get(k))


CHECKPOINT_DONE = ".zephyr-checkpoint-complete"  # written into a checkpoint folder after the trainer saved it all


def last_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that was written completely (its marker is written last); a torn one (a full disk, a
    kill during the save) is passed over for the one before it."""
    import logging

    found = sorted(((int(m.group(1)), p) for p in folder.glob("checkpoint-*")
                    if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()), reverse=True)
    for _step, path in found:
        missing = [n for n in (CHECKPOINT_DONE, "trainer_state.json") if not (path / n).is_file()]
        if not missing:
            return path
        logging.getLogger("zephyr_recipes").warning("%s was not completely written (no %s): not resumed from",
                                                    path, " and no ".join(missing))
    return None


def checkpoint_marker():
    """A TrainerCallback that marks each checkpoint complete once the trainer has written all of it."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    write_atomic(path / CHECKPOINT_DONE, now() + "\n")

    return MarkComplete()


def is_run_folder(folder: Path) -> bool:
    """A folder this runner made: its run.json says a status and its config.yaml is beside it."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and isinstance((read_status(folder) or {}).get("status"), str) \
        and (folder / CONFIG).is_file()


def remove_run_folder(folder: Path) -> None:
    """Delete one of the runner's own run folders; anything else (the working directory or a folder above it, a
    folder that is not a run folder) is refused, never deleted."""
    folder = Path(folder).expanduser()
    here = Path.cwd().resolve()
    target = folder.resolve()
    if target == here or target in here.parents or target == Path(target.anchor) or target == Path.home():
        raise ZephyrError(f"{folder} is the working directory, a folder above it or your home folder, and the "
                          "runner never deletes those", "give the run its own folder: run.output_dir=runs/<name>")
    if not is_run_folder(folder):
        raise ZephyrError(f"{folder} is not a run folder (no readable run.json and config.yaml), so it is not "
                          "replaced", "choose another run.name or run.output_dir")
    shutil.rmtree(folder)


def _frozen_config(folder: Path) -> dict:
    """The config.yaml frozen in an unfinished run folder, or an error naming what is wrong with it."""
    path = folder / CONFIG
    if not path.exists():
        return {}
    try:
        frozen = yamlsafe.load(path.read_text(), path)
    except (yaml.YAMLError, UnicodeDecodeError, OSError, ZephyrError) as exc:
        why = exc.problem if isinstance(exc, ZephyrError) else type(exc).__name__
        raise ZephyrError(f"{path} cannot be read ({why}), so this unfinished run cannot be resumed "
                          "or compared with the new config",
                          "start it over with run.overwrite=true on your command line, or use run.name=<new name>") \
            from None
    return frozen if isinstance(frozen, dict) else {}


def prepare(recipe: Recipe, revise: bool = False) -> tuple[Path, Path | None]:
    """Create or reopen the run folder of a recipe; returns (folder, checkpoint to resume from or None).

    Refuses, touching nothing, when the folder holds a finished run (unless run.overwrite), a run of a
    different config, or something that is not a run folder. ``revise`` (a stage that redoes only what changed):
    a finished or unfinished run of another config is kept and its config replaced (the caller recorded it).
    The folder's config.yaml is the checked mapping, ``recipe.config``, and it is what a re-run is compared with.
    """
    run, cfg = recipe.run, recipe.config
    folder = Path(cast(str, run.output_dir)).expanduser()  # validation sets every run's folder
    resume_from = None
    if folder.exists() and not folder.is_dir():
        raise ZephyrError(f"run.output_dir {folder} is a file, not a folder",
                          "choose another run.name or run.output_dir (the file is left as it is)")
    if folder.exists() and any(folder.iterdir()):
        status = read_status(folder)
        if status is None:
            raise ZephyrError(f"{folder} exists and is not a run folder", "choose another run.name or run.output_dir")
        if status.get("status") == "complete" and revise and not run.overwrite:
            pass  # kept: the stage reuses what still matches
        elif status.get("status") == "complete":
            if not run.overwrite:
                raise ZephyrError(f"{folder} holds a finished run (completed {status.get('finished', '?')})",
                                  "pass run.overwrite=true to replace it, or run.name=<new name> to keep both")
            remove_run_folder(folder)
        else:
            frozen = {} if run.overwrite else _frozen_config(folder)
            changed = config_diff(frozen, cfg)
            if changed and not run.overwrite and not revise:
                raise ZephyrError(
                    f"{folder} holds an unfinished run of a different config (changed: {', '.join(changed[:5])})",
                    "re-run with the same settings to resume it, run.overwrite=true to start over, "
                    "or run.name=<new name>")
            if run.overwrite or not run.resume:
                remove_run_folder(folder)
            else:
                resume_from = last_checkpoint(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / CONFIG, yaml.safe_dump(cfg, sort_keys=False))
        set_status(folder, "running", started=now(), resumed_from=str(resume_from) if resume_from else None)
    except OSError as exc:
        raise unwritable(folder, exc) from None
    return folder, resume_from


def unwritable(folder: Path, exc: OSError) -> ZephyrError:
    """The error for a run folder that cannot be written (read-only, full disk, a file in the way)."""
    import errno

    where = exc.filename or folder
    home = os.environ.get("ZEPHYR_RECIPES_HOME")
    if home and exc.errno not in (errno.ENOSPC, errno.EDQUOT) and \
            (Path(where).resolve() == Path(home).resolve() or Path(home).resolve() in Path(where).resolve().parents):
        return ZephyrError(f"cannot write {where}, inside ZEPHYR_RECIPES_HOME={home} (the cache of built-in models "
                           f"and prepared data): {exc.strerror}",
                           "point ZEPHYR_RECIPES_HOME at a folder you can write (export ZEPHYR_RECIPES_HOME=<path>), "
                           "or fix its permissions")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ZephyrError(f"the disk holding {where} is full (or over quota)",
                           "free space there or give another run.output_dir; re-running the same command resumes")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ZephyrError(f"cannot write {where}: {exc.strerror}",
                           "give a folder you can write: run.output_dir=<path>, or fix the permissions")
    return ZephyrError(f"cannot write {where}: {exc.strerror or exc}", "give another run.output_dir")


def finished_alike(recipe: Recipe, code: dict | None = None) -> Path | None:
    """The run folder of a recipe when it holds a finished run of the same config (``recipe.config``, so there is
    nothing to do), and of the same code: ``code`` ({label: fingerprint}, core/fingerprint.py) equal to what the
    folder recorded (a folder finished before fingerprints were recorded counts as the same)."""
    folder = Path(cast(str, recipe.run.output_dir)).expanduser()  # validation sets every run's folder
    if recipe.run.overwrite or not is_complete(folder) or not (folder / CONFIG).is_file():
        return None
    if code is not None and code_changed((read_status(folder) or {}).get("code"), code):
        return None
    try:
        frozen = yamlsafe.load((folder / CONFIG).read_text(), folder / CONFIG)
    except (yaml.YAMLError, UnicodeDecodeError, OSError, ZephyrError):
        return None  # prepare says what is wrong with it
    return None if config_diff(frozen if isinstance(frozen, dict) else {}, recipe.config) else folder


def lock_path(folder: Path) -> Path:
    folder = Path(folder).expanduser().resolve()
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def locked(folder: Path, command: list[str] | None = None):
    """Hold the run folder's lock for the block, or refuse naming who holds it.

    The lock is ``flock`` on a file beside the folder (it survives ``run.overwrite`` removing the folder). The OS
    drops it when the holding process ends however it ends, so a stale lock file is simply taken over.
    """
    import errno
    import fcntl

    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():  # before any lock file is made beside it
        raise ZephyrError(f"run.output_dir {folder} is a file, not a folder",
                          "choose another run.name or run.output_dir (the file is left as it is)")
    if os.environ.get(LOCK_ENV) == str(folder) and lockguard.held_by_ancestor(lock_path(folder)):
        yield  # started by the launch that holds it (the lock is checked, the variable alone is not trusted)
        return
    path = lock_path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise unwritable(folder.parent, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                holder = {}
            who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
                   if holder else "another process")
            raise ZephyrError(f"{folder} is being written by {who}"
                              + (f" ({' '.join(holder['command'])})" if holder.get("command") else ""),
                              "wait for that run to finish or stop it (a stopped run's lock is released by the OS, "
                              "and the same command then resumes it), or use run.name=<another name>") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                                  "command": [redact(str(c)) for c in (command or sys.argv)]}).encode(), 0)
        previous = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = str(folder)
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not exc.filename:
                raise unwritable(folder, exc) from None  # name the run folder, not the working directory
            raise
        finally:
            if previous is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = previous
    finally:
        os.close(fd)  # closing the descriptor releases the lock
