"""From a source's raw rows to the rows a stage trains on: format detection, UltraFeedback binarization, the
stage's columns, the row checks, weights and limits."""

from __future__ import annotations

from collections import Counter

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import DatasetConfig
from . import checks, kinds
from .binarize import binarize_dataset
from .kinds import RowKind


def _detect_format(src: dict, column_names: list[str]) -> str:
    if src["format"] != "auto":
        return src["format"]
    cols = src["columns"] or {}
    if cols.get("completions", "completions") in column_names and "chosen" not in column_names:
        return "ultrafeedback"
    return "auto"


def _binarized(raw, src: dict, ds: DatasetConfig, seed: int):
    cols = src["columns"] or {}
    rule = ds.binarize
    opts = {"rejected": rule.rejected, "score": rule.score, "ties": rule.ties}
    prompt_col, comp_col = cols.get("prompt", "instruction"), cols.get("completions", "completions")
    for col in (prompt_col, comp_col):
        if col not in raw.column_names:
            raise ZephyrError(f"dataset {src['path']} has no column {col!r} for binarization "
                              f"(it has: {', '.join(raw.column_names)})",
                              "map them with dataset.columns.prompt=<instruction column> and "
                              "dataset.columns.completions=<column>")
    bseed = rule.seed
    out, tally = binarize_dataset(raw, prompt_column=prompt_col, completions_column=comp_col,
                                  seed=seed if bseed is None else bseed, **opts)
    return out, tally


def checked(raw, src: dict, recipe: Recipe, tokenizer, role: str, kind: RowKind):
    """(checked dataset with _reason and _key, binarization tally or None) for a stage that reads rows of ``kind``.

    A source of another kind that the stage's kind converts from (pairs for unpaired rows) is checked as its own
    kind, then converted."""
    ds_cfg, seed = recipe.dataset, recipe.run.seed
    tally = None
    src = dict(src)
    if _detect_format(src, raw.column_names) == "ultrafeedback":
        raw, tally = _binarized(raw, src, ds_cfg, seed)
        src["columns"] = {}
    reads = kinds.source_kind(kind, src, raw.column_names)
    cols = reads.source_columns(src, raw.column_names)
    fn, options = reads.check(recipe, tokenizer)
    kwargs = {"cols": cols, "roles": src["roles"] or {}, **options}
    checked = raw.map(fn, fn_kwargs=kwargs, remove_columns=raw.column_names, features=reads.features(),
                      desc=f"checking {role} rows of {src['path']}")
    if reads is not kind:
        checked = kind.convert(checked, reads, seed)
    return checked, tally


def count_and_drop(checked, src: dict, split: str, strict: bool):
    reasons = Counter(checked["_reason"])
    bad = {r: n for r, n in reasons.items() if r}
    if bad and strict:
        index = next(i for i, r in enumerate(checked["_reason"]) if r)
        reason = checked[index]["_reason"]
        raise ZephyrError(f"row {index} of {src['path']} [{split}] {checks.EXPLAIN[reason]} ({reason})",
                          "fix the data, or set dataset.strict=false to drop bad rows and count them per reason")
    if bad:
        checked = checked.filter(lambda r: r == "", input_columns="_reason", desc="dropping bad rows")
    return checked, dict(sorted(bad.items()))


def weighted(ds, weight: float, seed: int):
    target = round(weight * len(ds))
    if weight == 1.0 or not len(ds):
        return ds
    import datasets

    whole, rest = divmod(target, len(ds))
    parts = [ds] * whole
    if rest:
        parts.append(ds.shuffle(seed=seed).select(range(rest)))
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def limit(ds, n, seed: int):
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))
