"""Logging of the front end and the workers: stderr for every process, the run folder's train.log from rank 0."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("zephyr_recipes")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so redirection after set-up is honoured."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def rank() -> int:
    """This process's global rank; 0 when not launched by torchrun/accelerate (and on the front end)."""
    return int(os.environ.get("RANK", "0"))


def launched_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup_logging(folder: Path | None = None) -> None:
    """stderr for every process (ranks above 0 say which they are); the run folder's train.log from rank 0 only."""
    if not any(getattr(h, "_zephyr", False) for h in log.handlers):
        handler = _StderrHandler()
        prefix = f"[zephyr rank {rank()}]" if rank() else "[zephyr]"
        handler.setFormatter(logging.Formatter(prefix + " %(message)s"))
        handler._zephyr = True  # type: ignore[attr-defined]  # marks the handler this module added
        log.addHandler(handler)
        log.setLevel(logging.INFO if rank() == 0 else logging.WARNING)
        log.propagate = False
    if folder is not None and rank() == 0:
        for h in list(log.handlers):
            if isinstance(h, logging.FileHandler):
                log.removeHandler(h)
                h.close()
        fh = logging.FileHandler(folder / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
