"""Prepared rows kept under ``$ZEPHYR_RECIPES_HOME/data/<key>``, keyed by everything that changes them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from ..core.recipe import Recipe
from ..embedded import builtin

CACHE_VERSION = 1


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_of(ds) -> str:
    """A hash of a dataset's content and of how it was made (datasets' own, through its public function)."""
    from datasets.fingerprint import generate_fingerprint

    return generate_fingerprint(ds)


def cache_key(recipe: Recipe, tokenizer, raw_fingerprints: list[str], kind) -> str:
    """Hash of everything that changes the prepared rows, the row kind (name and version) among them: rows
    cached for one kind are never read as another's, even under the same stage name."""
    from datasets.fingerprint import Hasher

    ds = dataclasses.asdict(recipe.dataset)  # the section as config.yaml holds it
    parts = {
        "version": CACHE_VERSION,
        "stage": recipe.stage.name,
        "rows": {"kind": kind.name, "version": kind.version},
        "seed": recipe.run.seed,
        "max_length": recipe.stage.trainer.get("max_length"),
        "dataset": {k: v for k, v in ds.items() if k != "cache"},
        "raw": raw_fingerprints,
        "tokenizer": Hasher.hash(tokenizer) if tokenizer is not None else None,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "decontaminate": [file_digest(f) for f in recipe.dataset.decontaminate],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cache_root() -> Path:
    return builtin.cache_home() / "data"


def load_cached(folder: Path):
    import datasets

    info = json.loads((folder / "info.json").read_text())
    train = datasets.load_from_disk(str(folder / "train"))
    eval_ds = datasets.load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    return train, eval_ds, info


def save(folder: Path, train, eval_ds, info: dict) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        train.save_to_disk(str(tmp / "train"))
        if eval_ds is not None:
            eval_ds.save_to_disk(str(tmp / "eval"))
        (tmp / "info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        try:
            tmp.rename(folder)
        except OSError:  # another process saved the same key first; theirs is identical
            if not (folder / "info.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
