"""The worker: runs one stage from a frozen, resolved config file. It never composes with Hydra.

    python -m zephyr_recipes.runtime.worker runs/tiny-sft

The front end (``zephyr-recipes``) writes ``<run folder>/config.yaml`` and calls :func:`run` in process; for
several processes it runs this same module under ``accelerate launch`` (see :mod:`zephyr_recipes.runtime.launch`).
Every rank trains; only rank 0 writes run-folder files (train.log, provenance, metrics, card, run.json).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

from .. import stages
from ..core import preempt, records, runfolder, trust, yamlsafe
from ..core.errors import ZephyrError
from ..core.logs import rank, setup_logging
from ..core.recipe import is_config
from ..stages.base import RunContext, Stage
from ..stages.training import TrainingFailed

log = logging.getLogger("zephyr_recipes")


def run(folder: Path | str, resume_from: Path | None = None, argv: list[str] | None = None,
        recipe: str = "?", stage: Stage | None = None) -> Path:
    """Run the stage described by ``folder/config.yaml`` and finish the run folder (every rank calls this).

    ``stage``: the stage the front end already holds when it runs the worker in its own process; a launched
    worker process looks the config's stage up itself."""
    folder = Path(folder)
    cfg = yamlsafe.read(folder / runfolder.CONFIG, "run folder config")
    if not is_config(cfg):
        raise ZephyrError(f"{folder / runfolder.CONFIG} is not a run's config (no stage section)",
                          "re-run the command that made the folder with run.overwrite=true")
    setup_logging(folder)
    stage = stage or stages.of(cfg)
    typed = stage.recipe(cfg)
    try:
        return stage.run(typed, folder, RunContext(argv or sys.argv, recipe, resume_from))
    except BaseException as exc:
        if rank() == 0 and not isinstance(exc, preempt.Preempted):
            # A launched run keeps its folder (launch files, scheduler log); an in-process one that wrote
            # nothing yet leaves none.
            _mark_failed(folder, exc, keep=typed.hardware.launcher != "inprocess"
                         or isinstance(exc, TrainingFailed))
        raise


def _mark_failed(folder: Path, exc: BaseException, keep: bool = False) -> None:
    """A run that stopped before it produced anything leaves no folder; one with work in it stays resumable.

    A launched run keeps its folder regardless (launch files, the scheduler's log)."""
    bookkeeping = {runfolder.CONFIG, runfolder.STATUS, "train.log", "provenance.json"}
    try:
        produced = [p for p in folder.iterdir() if p.name not in bookkeeping and not p.name.startswith(".")]
        if not keep and not produced and not (runfolder.read_status(folder) or {}).get("resumed_from") \
                and runfolder.is_run_folder(folder):
            for h in list(log.handlers):
                if isinstance(h, logging.FileHandler):
                    log.removeHandler(h)
                    h.close()
            shutil.rmtree(folder, ignore_errors=True)
        else:
            reason = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"{type(exc).__name__}: {exc}"
            runfolder.set_status(folder, "failed", error=records.redact(str(reason))[:2000])
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m zephyr_recipes.runtime.worker RUN_FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not (folder / runfolder.CONFIG).is_file():
        print(f"error: {folder} holds no {runfolder.CONFIG}\n  fix: give a run folder prepared by `zephyr-recipes`",
              file=sys.stderr)
        return 2
    _die_with_launcher()
    # A launched worker runs a frozen folder, prepared by a front end that checked the recipe's code against the
    # user's --trust-recipe-code (or started by the user's own hand): the code it names is imported as the run needs.
    trust.allow(True)
    launched = (runfolder.read_status(folder) or {}).get("launch") or {}
    try:
        # Started by hand or by a scheduler (no front end holds the folder): rank 0 takes the lock itself.
        lock = runfolder.locked(folder, launched.get("command")) if rank() == 0 else contextlib.nullcontext()
        with lock:
            run(folder, runfolder.last_checkpoint(folder), argv=launched.get("command"),
                recipe=launched.get("recipe", "?"))
    except ZephyrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
        _leave_process_group(together=False)
        return _exit(code)
    except BaseException:
        _leave_process_group(together=False)
        raise
    _leave_process_group(together=True)
    return _exit(0)


def _die_with_launcher() -> None:
    """A worker under torchrun (accelerate launch) dies with its launcher.

    torchrun starts workers in a session of their own, so `kill -9` of the launch's process group does not reach
    them: they would go on training and writing checkpoints into a run folder whose lock died with the launch,
    beside the re-run that resumes it. On Linux the kernel kills them when their parent goes (PR_SET_PDEATHSIG).
    """
    if not sys.platform.startswith("linux") or "LOCAL_RANK" not in os.environ:
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the launcher went before the request took effect
        os._exit(1)


def _leave_process_group(together: bool) -> None:
    """Tear the process group down before the interpreter exits: left to interpreter shutdown, the gloo backend's
    threads can abort a rank that finished cleanly ("terminate called without an active exception").

    ``together``: after a run that finished on every rank, the ranks first wait for each other (rank 0 writes the
    card and the metrics after the others are done), so that no rank tears its connections down while a peer still
    uses the group. After a failure there is no waiting: the peer may be gone.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    if together and dist.get_world_size() > 1:
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer that failed after training; its own error says why
            pass
    dist.destroy_process_group()


def _exit(code: int) -> int:
    """A rank other than 0 of a launched run leaves without the interpreter's teardown.

    Its work is on disk (checkpoint shards are written synchronously; rank 0 writes the model, the card and the
    status), and the C++ teardown of torch.distributed's threads at interpreter exit is where a finished rank was seen
    to abort now and then (SIGABRT, "terminate called without an active exception"), which fails the whole launch.
    Rank 0 exits normally: its trackers flush at exit.
    """
    if "LOCAL_RANK" in os.environ and rank() != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
