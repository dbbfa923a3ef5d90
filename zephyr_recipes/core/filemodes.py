"""File modes of what a run saves: the usual ones (0644 under the common umask 022), never 0600.

safetensors writes its files with mode 0600, whatever the umask (it opens the file private, as a temporary file
would be), so saved weights would be readable by their owner only while every other file of the run folder is
readable by the group and others; a folder built under ``tempfile.mkdtemp`` (the embedded models) is 0700 the same
way. After a save the runner gives what it wrote the mode ``open()`` or ``mkdir()`` would have: 0666 (0777) less
the umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def open_to_umask(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Give every file under ``folder`` matching ``pattern`` (and, with the default pattern, ``folder`` and every
    folder in it) that is more private than the umask allows the mode ``open()`` or ``mkdir()`` would have given it:
    0666 (folders 0777) less the umask, keeping any bit it has; returns what was changed."""
    mask = umask()
    root = Path(folder)
    paths = [root, *root.rglob(pattern)] if pattern == "*" else list(root.rglob(pattern))
    changed = []
    for path in paths:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        target = mode | ((0o777 if path.is_dir() else 0o666) & ~mask)
        if target != mode:
            os.chmod(path, target)
            changed.append(path)
    return changed
