"""Append-only JSONL records, one per answer or rating, flushed to disk as each arrives.

A killed run loses at most the line being written (a torn last line is ignored on reading), and a restarted
run reads the keys already present and asks for nothing twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO


def answered(rec: dict, result, field: str) -> dict:
    """A generation result written into a store record: the first text under ``field``, or the error that stopped
    it (a failed request is recorded, and asked again by the next run)."""
    if isinstance(result, Exception):
        rec["error"] = str(result)[:500]
    else:
        rec[field] = result[0]
    return rec


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.torn = 0  # lines that are not a whole record (a kill mid-write); close() rewrites the file without them
        if self.path.exists():
            with self.path.open("rb") as fh:
                for line in fh:
                    record = _whole(line)
                    if record is None:
                        self.torn += line.strip() != b""
                        continue  # a line torn by a kill
                    self.records[record["key"]] = record
        self._fh: TextIO | None = None

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A torn last line from a killed run must not swallow the next record.
            needs_newline = self.path.exists() and self.path.stat().st_size > 0 and \
                not self.path.read_bytes().endswith(b"\n")
            self._fh = self.path.open("a")
            if needs_newline:
                self._fh.write("\n")
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.torn:
            self.compact()

    def compact(self) -> None:
        """Rewrite the file with its whole records only (in their order), atomically: a finished file holds no
        torn line."""
        lines = [line if line.endswith(b"\n") else line + b"\n"
                 for line in self.path.read_bytes().splitlines(keepends=True) if _whole(line) is not None]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(b"".join(lines))
        os.replace(tmp, self.path)
        self.torn = 0


def _whole(line: bytes) -> dict | None:
    """The record on one line, or None for a torn or foreign line (not UTF-8, not JSON, not a keyed object)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("key"), str) else None
