"""validate's memory: the slow checks of a recipe (its chat template on real rows, the token parity) are not run
again while nothing they read has changed.

Those checks load a tokenizer and the recipe's data, which means importing transformers and datasets (about a
second before any work). Their answer depends only on:

- the resolved config (every key, so any override is a new check);
- this package's code and templates, and the versions of the libraries that do the work;
- the files they read: the model's and tokenizer's folders, a chat template file, the dataset files.

When all of those are local (a folder, a file, or ``builtin://``) and a check of the same ones passed before,
``validate`` prints what that check printed and says so. A hub id anywhere among the inputs turns the memory off
for that recipe: the hub can change behind a name, and this cannot tell without asking it. The pre-flight (keys,
endpoints, disk) is never remembered; it runs every time. ``validate --recheck`` checks everything again.

Memories are JSON files under ``$ZEPHYR_RECIPES_HOME/validated/``, the newest few hundred kept.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import time
from contextlib import contextmanager, redirect_stdout
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

from ..core.recipe import Recipe
from ..embedded import builtin

PACKAGE = Path(__file__).resolve().parent.parent
log = logging.getLogger("zephyr_recipes")
LIBRARIES = ("transformers", "tokenizers", "datasets", "trl", "jinja2", "pyarrow")
KEEP = 300  # memories kept, newest first


def home() -> Path:
    return builtin.cache_home() / "validated"


def _is_local(value: str) -> bool:
    return builtin.is_builtin(value) or value.startswith(("./", "../", "/", "~")) or Path(value).expanduser().exists()


def _files(value: str) -> Optional[list]:
    """(path, size, mtime) of every file an input names; None for a hub id (not remembered)."""
    if not _is_local(value):
        return None
    root = Path(builtin.resolve(value) if builtin.is_builtin(value) else value).expanduser()
    if not root.exists():
        return [[str(root), "missing"]]
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for p in paths:
        st = p.stat()
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _inputs(recipe: Recipe) -> Optional[dict]:
    """Every file the slow checks read, by the config key that names it; None when one of them is on the hub."""
    model, data = recipe.model, recipe.dataset
    named: dict[str, Any] = {
        "model.name_or_path": model.name_or_path,
        "model.tokenizer_name_or_path": model.tokenizer_name_or_path,
        "dataset.path": data.path,
    }
    template = model.chat_template
    if template and (template.endswith(".jinja") or "/" in template):
        named["model.chat_template"] = template
    for i, source in enumerate(data.mixture):
        if isinstance(source, dict):  # a mixture's sources are free-form mappings
            named[f"dataset.mixture[{i}].path"] = source.get("path")
    for i, path in enumerate(data.decontaminate):
        named[f"dataset.decontaminate[{i}]"] = path
    out = {}
    for key, value in named.items():
        if not value:
            continue
        files = _files(str(value))
        if files is None:
            return None
        out[key] = files
    return out


def _code() -> str:
    """The package's own files (code, templates, package data) and the versions of the libraries that do the work."""
    digest = hashlib.sha256()
    for p in sorted(PACKAGE.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            digest.update(str(p.relative_to(PACKAGE)).encode() + b"\0" + p.read_bytes() + b"\0")
    for name in LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}=={version}\0".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def key(recipe: Recipe, *extra: Any) -> Optional[str]:
    """The memory's name for these checks of ``recipe`` (``extra``: what else changes their output), or None when
    the checks read something on the hub."""
    inputs = _inputs(recipe)
    if inputs is None:
        return None
    blob = json.dumps({"config": recipe.config, "inputs": inputs, "code": _code(), "extra": list(extra)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def recall(name: Optional[str]) -> Optional[dict]:
    """The memory ``name`` ({"output", "log", "at"}), or None (none, or unreadable: the checks run again)."""
    if name is None:
        return None
    try:
        memo = json.loads((home() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return memo if isinstance(memo, dict) and isinstance(memo.get("output"), str) else None


def remember(name: Optional[str], output: str, logged: list[str]) -> None:
    """Keep what a passed check printed and logged; a home that cannot be written only means the next check runs
    again."""
    if name is None:
        return
    folder = home()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"output": output, "log": logged, "at": time.strftime("%Y-%m-%d %H:%M:%S")}))
        os.replace(tmp, folder / f"{name}.json")
        memos = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in memos[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy; says it is a terminal when the real one is (coloured rows)."""

    def __init__(self, real) -> None:
        self.real, self.copy = real, io.StringIO()
        self.logged: list[str] = []  # the runner's log lines (stderr) of the same checks: rows dropped, templates

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()


class _Kept(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def recording() -> Iterator[_Tee]:
    """Everything printed inside, printed as usual and kept (``.copy.getvalue()``), and the runner's log lines
    (``.logged``), for :func:`remember`."""
    tee = _Tee(sys.stdout)
    kept = _Kept(tee.logged)
    log.addHandler(kept)
    try:
        with redirect_stdout(tee):  # type: ignore[type-var]  # a text stream, as print needs
            yield tee
    finally:
        log.removeHandler(kept)


def replay(memo: dict) -> None:
    """Print what the remembered check printed, and log again what it logged."""
    for line in memo.get("log") or []:
        log.info("%s", line)
    sys.stdout.write(memo["output"])
