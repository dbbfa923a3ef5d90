"""Load a recipe's data and hand TRL exactly the rows and columns its trainer expects.

SFT gets ``messages`` (a list of {role, content}); DPO gets ``prompt`` / ``chosen`` / ``rejected`` in TRL's
conversational form with an explicit prompt; KTO gets ``prompt`` / ``completion`` / ``label``. What a stage gets is
its row kind's (:mod:`.kinds`). The steps, per source of the (possibly mixed) dataset:

1. load the split with ``datasets`` (hub id, local file, save_to_disk folder, builtin://);
2. binarize raw UltraFeedback rows (:mod:`zephyr_recipes.data.binarize`) when ``format: ultrafeedback``;
3. map the columns onto the stage's and check every row (:mod:`.checks`), counting bad rows per reason; a source
   of a kind the stage's kind converts from (pairs, for unpaired rows) is checked as such, then converted;
4. carve out an evaluation fraction, drop training rows whose prompt is in the evaluation data, and
   optionally those that overlap benchmark prompts (:mod:`.decontaminate`);
5. weight the source (below 1 subsamples, above 1 repeats, seeded) and mix the sources.

The result is saved under ``$ZEPHYR_RECIPES_HOME/data/<key>``, keyed by the raw data's fingerprints, the
options that change the result, the row kind and its version, the tokenizer and its chat template. A second run
with the same key loads it at once, and TRL's tokenization ``map`` calls then hit ``datasets``' fingerprint cache
next to it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ..core.errors import ZephyrError
from ..core.recipe import Recipe, as_recipe
from . import decontaminate, rows
from .cache import cache_key, cache_root, fingerprint_of, load_cached, save
from .config import check_config, sources_of
from .decontaminate import Index
from .kinds import RowKind
from .sources import FILE_BUILDERS, load_split, locate

__all__ = ["FILE_BUILDERS", "cache_root", "check_config", "load_for_stage", "load_split", "locate", "sources_of"]

log = logging.getLogger("zephyr_recipes")


def load_for_stage(recipe: Recipe | dict, tokenizer, kind: RowKind) -> tuple[Any, Any, dict]:
    """(train, eval or None, provenance) for a stage that reads rows of ``kind`` (its ``Stage.rows``).

    ``recipe``: the run's typed recipe (a checked mapping is read as one)."""
    recipe = as_recipe(recipe)
    ds_cfg = recipe.dataset
    check_config(ds_cfg, kind)
    sources = sources_of(ds_cfg)
    raws = []
    for src in sources:
        train_raw = load_split(src, src["split"], single_file_split=src["split"])
        test_raw = load_split(src, src["test_split"], single_file_split=src["split"]) \
            if src["test_split"] and not ds_cfg.test_fraction else None
        raws.append((train_raw, test_raw))
    fingerprints = [fingerprint_of(r) for pair in raws for r in pair if r is not None]
    key = cache_key(recipe, tokenizer, fingerprints, kind)
    folder = cache_root() / key
    if ds_cfg.cache and (folder / "info.json").exists():
        train, eval_ds, info = load_cached(folder)
        info["cache"] = {"key": key, "hit": True, "folder": str(folder), "rows": kind.name}
        log.info("data: cache hit %s (%d train rows%s)", folder, len(train),
                 f", {len(eval_ds)} eval rows" if eval_ds is not None else "")
        return train, eval_ds, info
    train, eval_ds, info = _prepare(recipe, tokenizer, sources, raws, kind)
    if ds_cfg.cache:
        save(folder, train, eval_ds, info)
        train, eval_ds, _ = load_cached(folder)  # file-backed, so TRL's map calls cache next to it
        info["train"]["fingerprint"] = fingerprint_of(train)
    info["cache"] = {"key": key, "hit": False, "folder": str(folder) if ds_cfg.cache else None, "rows": kind.name}
    return train, eval_ds, info


def _prepare(recipe: Recipe, tokenizer, sources: list[dict], raws: list, kind: RowKind):
    import datasets

    ds_cfg, seed = recipe.dataset, recipe.run.seed
    reports, evals = _checked_sources(recipe, tokenizer, sources, raws, kind)
    eval_ds = datasets.concatenate_datasets(evals) if evals else None
    if eval_ds is not None and len(evals) > 1:
        eval_ds = eval_ds.shuffle(seed=seed)
    eval_ds = rows.limit(eval_ds, ds_cfg.max_test_samples, seed) if eval_ds is not None else None
    train, decon = _train_rows(recipe, sources, reports, eval_ds)
    if eval_ds is not None:
        eval_ds = eval_ds.remove_columns(["_reason", "_key"]).flatten_indices()
        if len(eval_ds) == 0:
            raise ZephyrError(f"the eval data of {ds_cfg.path or 'the mixture'} has no usable rows",
                              "check the test split and its column mapping, or set dataset.test_split=null")
    if len(train) == 0:
        raise ZephyrError(f"the train data of {ds_cfg.path or 'the mixture'} has no usable rows"
                          f" (dropped: {[r['dropped'] for r in reports]})",
                          "check the dataset and its column mapping (dataset.columns, dataset.format)")
    info = _provenance(recipe, sources, reports, train, eval_ds)
    if decon is not None:
        info["decontamination"] = decon
        log.info("data: decontamination dropped %d training rows overlapping %d evaluation prompts (%d-grams)",
                 decon["dropped"], decon["eval_prompts"], decon["ngram"])
    log.info("data: %d train rows%s", len(train), f", {len(eval_ds)} eval rows" if eval_ds is not None else "")
    return train, eval_ds, info


def _checked_sources(recipe: Recipe, tokenizer, sources: list[dict], raws: list, kind: RowKind):
    """Per source: a report with its checked training rows (under ``_good``), and the evaluation rows of each."""
    seed, strict, fraction = recipe.run.seed, recipe.dataset.strict, recipe.dataset.test_fraction
    reports, evals = [], []
    for src, (train_raw, test_raw) in zip(sources, raws):
        rep = {"path": src["path"], "name": src["name"], "split": src["split"], "weight": src["weight"],
               "source_rows": len(train_raw), "source_fingerprint": fingerprint_of(train_raw)}
        checked, tally = rows.checked(train_raw, src, recipe, tokenizer, "train", kind)
        if tally is not None:
            rep["binarization"] = {"kept": len(checked), **tally}
        good, rep["dropped"] = rows.count_and_drop(checked, src, src["split"], strict)
        if fraction:
            parts = good.train_test_split(test_size=fraction, seed=seed, shuffle=True)
            good, carved = parts["train"], parts["test"]
            evals.append(carved)
            rep["test"] = {"carved_fraction": fraction, "rows": len(carved)}
        elif test_raw is not None:
            checked_test, _ = rows.checked(test_raw, src, recipe, tokenizer, "eval", kind)
            test, dropped = rows.count_and_drop(checked_test, src, src["test_split"], strict)
            evals.append(test)
            rep["test"] = {"split": src["test_split"], "source_rows": len(test_raw), "rows": len(test),
                           "dropped": dropped}
        rep["_good"] = good
        reports.append(rep)
    return reports, evals


def _train_rows(recipe: Recipe, sources: list[dict], reports: list[dict], eval_ds):
    """The mixed training rows: each source's without the evaluation set's prompts and (optionally) benchmark
    overlaps, weighted; and the decontamination report (None when off)."""
    import datasets

    ds_cfg, seed = recipe.dataset, recipe.run.seed
    trains = []
    test_keys = set(eval_ds["_key"]) - {""} if eval_ds is not None else set()
    index = None
    if ds_cfg.decontaminate:
        index = Index(ds_cfg.decontaminate, ds_cfg.decontaminate_ngram)
    decon = {"files": ds_cfg.decontaminate, "ngram": ds_cfg.decontaminate_ngram,
             "eval_prompts": index.prompts if index else 0, "dropped": 0, "examples": []} if index else None
    for rep, src in zip(reports, sources):
        good = rep.pop("_good")
        if test_keys:
            before = len(good)
            good = good.filter(lambda k: k not in test_keys, input_columns="_key", desc="dropping rows of the eval set")
            if len(good) < before:
                rep["dropped"]["overlaps_test"] = before - len(good)
        if index is not None:
            good = decontaminate.apply(good, index, rep, decon or {})
        rep["rows"] = len(good)
        good = rows.weighted(good, src["weight"], seed)
        rep["train_rows"] = len(good)
        trains.append(good)
        dropped = ", ".join(f"{r} {n}" for r, n in rep["dropped"].items()) or "none"
        log.info("data: %s[%s] weight %g: %d rows -> %d train rows (dropped: %s)%s", src["path"], src["split"],
                 src["weight"], rep["source_rows"], rep["train_rows"], dropped,
                 f"; {rep['test']['rows']} eval rows" if "test" in rep else "")
        if "binarization" in rep:
            log.info("data: binarized %s: %s", src["path"], rep["binarization"])
    train = datasets.concatenate_datasets(trains) if len(trains) > 1 else trains[0]
    if len(trains) > 1:
        train = train.shuffle(seed=seed)
    train = rows.limit(train, ds_cfg.max_train_samples, seed)
    return train.remove_columns(["_reason", "_key"]).flatten_indices(), decon


def _provenance(recipe: Recipe, sources: list[dict], reports: list[dict], train, eval_ds) -> dict:
    """What the prepared data is, for provenance: its sources, splits, row counts, fingerprints and drops."""
    ds_cfg, fraction = recipe.dataset, recipe.dataset.test_fraction
    first = sources[0]
    info = {"path": ds_cfg.path or first["path"], "name": ds_cfg.name, "revision": ds_cfg.revision,
            "sources": reports,
            "train": {"split": "+".join(s["split"] for s in sources), "rows": len(train),
                      "source_rows": sum(r["source_rows"] for r in reports), "fingerprint": fingerprint_of(train),
                      "dropped": dict(sum((Counter(r["dropped"]) for r in reports), Counter()))}}
    if eval_ds is not None:
        info["eval"] = {"split": f"{fraction:g} of train" if fraction else
                        "+".join(s["test_split"] for s in sources if s["test_split"]), "rows": len(eval_ds),
                        "fingerprint": fingerprint_of(eval_ds)}
    return info
