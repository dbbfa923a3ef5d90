"""A folder marked complete is checked when it is read: every record it holds must be whole.

``run.json`` says ``complete`` only after everything was written, but a file can be damaged afterwards (a copy cut
short, a full disk on the machine it was copied to, a hand edit). Before a finished run is reused, chatted with,
reported on or read by a later stage, :func:`check` reads each record file's structure (cheaply: headers and
footers, not the weights) and names the first damaged one with the fix, instead of a traceback deep in a loader.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import runfolder, yamlsafe
from ..core.errors import ZephyrError
from ..model.modeling import check_weight_files

JSON_RECORDS = ("metrics.json", "provenance.json", "summary.json", "scores.json", "log_history.json", "run.json")
JSONL_RECORDS = ("completions.jsonl", "ratings.jsonl")


def _damaged(path: Path, what: str) -> ZephyrError:
    return ZephyrError(f"{path} is damaged ({what}), although its run folder {path.parent} is marked complete",
                       f"run the command that made it again with run.overwrite=true (or restore {path.name} from "
                       "where it was copied from)")


def _parquet(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 12:
        return f"{size} bytes, too short for a parquet file"
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(-4, 2)
        tail = fh.read(4)
    if head != b"PAR1" or tail != b"PAR1":
        return "not a whole parquet file: its start or end marker is missing (cut short?)"
    return None


def check(folder: Path) -> None:
    """Refuse a complete run folder with a damaged record file (nothing for an unfinished or foreign folder)."""
    folder = Path(folder)
    if not runfolder.is_complete(folder):
        return
    config = folder / runfolder.CONFIG
    if config.exists():
        try:
            frozen = yamlsafe.read(config, "run folder config")
        except ZephyrError as exc:
            raise _damaged(config, exc.problem) from None
        if not isinstance(frozen, dict):
            raise _damaged(config, "not a mapping of sections")
    for name in JSON_RECORDS:
        path = folder / name
        if path.exists():
            try:
                json.loads(path.read_bytes().decode("utf-8"))
            except (ValueError, OSError) as exc:
                raise _damaged(path, f"not whole JSON: {type(exc).__name__}") from None
    for name in JSONL_RECORDS:
        path = folder / name
        if path.exists():
            with open(path, "rb") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        json.loads(line.decode("utf-8"))
                    except ValueError:
                        raise _damaged(path, f"line {number} is not a whole record") from None
    for path in sorted(folder.rglob("*.parquet")):
        problem = _parquet(path)
        if problem:
            raise _damaged(path, problem)
    try:
        check_weight_files(str(folder), str(folder))
    except ZephyrError as exc:
        raise ZephyrError(f"{exc.problem}, although its run folder {folder} is marked complete",
                          "run the command that made it again with run.overwrite=true (or copy the folder again)") \
            from None
