"""The dataset section's own checks, and the sources a (possibly mixed) dataset reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import ZephyrError, unknown_key
from ..core.recipe import section_of
from ..core.schema import DatasetConfig
from . import checks

if TYPE_CHECKING:
    from .kinds import RowKind

FORMATS = ("auto", "chat", "preference", "ultrafeedback")
SOURCE_KEYS = {
    "path": "hub id, local file or folder",
    "name": "hub configuration name",
    "revision": "hub revision",
    "split": "the split to train on (default: dataset.train_split)",
    "test_split": "a split of this source to evaluate on (default: none)",
    "weight": "1 keeps every row, 0.5 a seeded half, 2 every row twice",
    "columns": "column mapping for this source (default: dataset.columns)",
    "format": f"one of {', '.join(FORMATS)} (default: dataset.format)",
    "roles": "role renaming for this source (default: dataset.roles)",
}
INHERITED = ("path", "name", "revision", "columns", "format", "roles")
# source, correct_answers, incorrect_answers: the columns the UltraFeedback protocol's world knowledge is read from
COLUMN_KEYS = ("messages", "prompt", "completion", "chosen", "rejected", "label", "completions", "source",
               "correct_answers", "incorrect_answers")


def check_config(ds: DatasetConfig | dict, rows: RowKind | None) -> None:
    """Check the dataset section's data-layer keys; raise ZephyrError naming the problem and the fix."""
    ds = section_of(DatasetConfig, ds)
    if not ds.path and not ds.mixture:
        raise ZephyrError("`dataset.path` must be set",
                          "pick a dataset option (dataset=ultrachat_200k), set dataset.path=..., "
                          "or list sources under dataset.mixture")
    if ds.format not in FORMATS:
        raise ZephyrError(f"dataset.format={ds.format!r} is not a format", f"use one of {', '.join(FORMATS)}")
    # the mapping's keys: the shared ones, and any of the stage's row kind (a plugin's kind brings its own)
    keys = tuple(dict.fromkeys(COLUMN_KEYS + (rows.source_keys if rows is not None else ())))
    _check_columns("dataset.columns", ds.columns, keys)
    _check_roles("dataset.roles", ds.roles)
    for i, src in enumerate(ds.mixture or []):
        where = f"dataset.mixture[{i}]"
        if not isinstance(src, dict):
            raise ZephyrError(f"`{where}` must be a mapping such as {{path: ..., split: ..., weight: 0.5}}",
                              "write each mixture entry as `- path: ...` with indented keys")
        for key in src:
            if key not in SOURCE_KEYS:
                raise unknown_key(where, key, SOURCE_KEYS)
        if not src.get("path") and not ds.path:
            raise ZephyrError(f"`{where}` has no path and dataset.path is not set", f"add `path:` to {where}")
        weight = src.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ZephyrError(f"`{where}.weight` is {weight!r} but must be a number above 0",
                              "below 1 subsamples (0.5 = a seeded half), above 1 repeats (2 = every row twice)")
        for key in ("path", "name", "revision", "split", "test_split"):
            if src.get(key) is not None and not isinstance(src[key], str):
                raise ZephyrError(f"`{where}.{key}` must be a string", f"{key}: {SOURCE_KEYS[key]}")
        if src.get("format", "auto") not in FORMATS:
            raise ZephyrError(f"`{where}.format` is {src['format']!r}", f"use one of {', '.join(FORMATS)}")
        _check_columns(f"{where}.columns", src.get("columns", {}), keys)
        _check_roles(f"{where}.roles", src.get("roles", {}))
    tf = ds.test_fraction
    if tf is not None and (isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1):
        raise ZephyrError(f"dataset.test_fraction is {tf!r} but must be between 0 and 1",
                          "0.05 carves a seeded 5% of the training rows out as the evaluation set")
    for limit, value in (("max_prompt_tokens", ds.max_prompt_tokens), ("max_train_samples", ds.max_train_samples),
                         ("max_test_samples", ds.max_test_samples)):
        if value is not None and value < 1:
            raise ZephyrError(f"dataset.{limit} is {value} but must be at least 1", "set it to null for no limit")
    if ds.decontaminate_ngram < 3:
        raise ZephyrError(f"dataset.decontaminate_ngram is {ds.decontaminate_ngram}, too short to mean overlap",
                          "use 8 to 13 words (13 is the usual choice)")
    for f in ds.decontaminate:
        if not isinstance(f, str):
            raise ZephyrError("dataset.decontaminate must be a list of file paths",
                              "e.g. dataset.decontaminate=[data/mt_bench/question.jsonl]")


def _check_columns(where: str, columns, keys: tuple[str, ...]) -> None:
    if not isinstance(columns, dict):
        raise ZephyrError(f"`{where}` must be a mapping", "e.g. columns: {messages: conversations}")
    for key, value in columns.items():
        if key not in keys:
            raise unknown_key(where, key, keys)
        if not isinstance(value, str):
            raise ZephyrError(f"`{where}.{key}` must name a column of the dataset", f"e.g. {key}: {key}")


def _check_roles(where: str, roles) -> None:
    if not isinstance(roles, dict):
        raise ZephyrError(f"`{where}` must be a mapping", "e.g. roles: {human: user, gpt: assistant}")
    for key, value in roles.items():
        if value not in checks.ROLES:
            raise ZephyrError(f"`{where}.{key}` renames a role to {value!r}",
                              f"rename roles to one of {', '.join(checks.ROLES)}")


def sources_of(ds: DatasetConfig | dict) -> list[dict]:
    """The sources to mix: dataset.mixture entries completed from the top level, or the top level alone. A source
    is a plain mapping (a mixture entry's keys are free-form: those it leaves out come from the dataset section)."""
    ds = section_of(DatasetConfig, ds)
    if not ds.mixture:
        return [{"path": ds.path, "name": ds.name, "revision": ds.revision, "split": ds.train_split,
                 "test_split": ds.test_split, "weight": 1.0, "columns": ds.columns, "format": ds.format,
                 "roles": ds.roles, "where": "dataset"}]
    out = []
    for i, src in enumerate(ds.mixture):
        full = {k: src.get(k, getattr(ds, k)) for k in INHERITED}
        full.update(split=src.get("split", ds.train_split), test_split=src.get("test_split"),
                    weight=float(src.get("weight", 1.0)),
                    where=f"dataset.mixture[{i}]" if "columns" in src else "dataset")
        out.append(full)
    return out
