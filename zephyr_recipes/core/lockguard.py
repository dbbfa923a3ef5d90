"""Is a run folder's lock really held by the launch that started this process?

A launch holds ``flock`` on the folder's lock file and tells the processes it starts so in an environment variable
(``ZEPHYR_RECIPES_LOCKED``). A variable can be exported by anyone, so it is only believed when the lock file is
locked right now and the pid written in it is this process or one of its ancestors. Otherwise the process takes
(or is refused) the lock like any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def ancestors() -> list[int]:
    """This process and its ancestors, nearest first (Linux /proc; elsewhere this process and its parent)."""
    out = [os.getpid()]
    pid = os.getppid()
    for _ in range(64):
        if pid <= 0 or pid in out:
            break
        out.append(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
    return out


def holder(lock: Path) -> int | None:
    """The pid written in a lock file that some process holds now, or None (no file, or nobody holds it)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = json.loads(os.pread(fd, 65536, 0).decode() or "{}").get("pid")
            except (ValueError, UnicodeDecodeError, AttributeError):
                return -1  # held, by someone who wrote no pid
            return pid if isinstance(pid, int) else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def held_by_ancestor(lock: Path) -> bool:
    pid = holder(lock)
    return pid is not None and pid in ancestors()
