"""The history of a run folder whose stage takes a changed config (AI feedback): ``revisions.jsonl``.

Each time such a folder is run with a config or code other than the one it holds, one line is appended before
its ``config.yaml`` is replaced: when, the config keys and the code that changed, and the config and code
fingerprints it held until then. Nothing else of the folder is removed; the stage reuses what still matches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from .runfolder import now

FILE = "revisions.jsonl"


def record(folder: Path, previous: dict, previous_code: Optional[dict], changed: list[str],
           code_changed: list[str]) -> None:
    line = {"time": now(), "changed": changed, "code_changed": code_changed, "previous_config": previous,
            "previous_code": previous_code}
    with (Path(folder) / FILE).open("a") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def history(folder: Path) -> list[dict]:
    path = Path(folder) / FILE
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def original_config(folder: Path) -> Optional[dict]:
    """The config the folder held before its first revision (what made its oldest records), or None."""
    first = next(iter(history(folder)), None)
    return first.get("previous_config") if first else None
