"""Load a recipe's data and hand TRL exactly the rows and columns its trainer expects.

SFT gets ``messages`` (a list of {role, content}); DPO gets ``prompt`` / ``chosen`` / ``rejected`` in TRL's
conversational form with an explicit prompt. The steps, per source of the (possibly mixed) dataset:

1. load the split with ``datasets`` (hub id, local file, save_to_disk folder, builtin://);
2. binarize raw UltraFeedback rows (:mod:`zephyr_recipes.binarize`) when ``format: ultrafeedback``;
3. map the columns onto the stage's and check every row (:mod:`.checks`), counting bad rows per reason;
4. carve out an evaluation fraction, drop training rows whose prompt is in the evaluation data, and
   optionally those that overlap benchmark prompts (:mod:`.decontaminate`);
5. weight the source (below 1 subsamples, above 1 repeats, seeded) and mix the sources.

The result is saved under ``$ZEPHYR_RECIPES_HOME/data/<key>``, keyed by the raw data's fingerprints, the
options that change the result, the tokenizer and its chat template. A second run with the same key loads it
at once, and TRL's tokenization ``map`` calls then hit ``datasets``' fingerprint cache next to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from ..embedded import builtin
from ..errors import ZephyrError, unknown_key
from . import checks
from .sources import FILE_BUILDERS, load_split, locate  # noqa: F401 - re-exported

log = logging.getLogger("zephyr_recipes")

CACHE_VERSION = 1
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
COLUMN_KEYS = ("messages", "prompt", "completion", "chosen", "rejected", "completions")


# ------------------------------------------------------------------------------------------- config
def check_config(ds: dict, rows: str) -> None:
    """Check the dataset section's data-layer keys; raise ZephyrError naming the problem and the fix."""
    if not ds.get("path") and not ds.get("mixture"):
        raise ZephyrError("`dataset.path` must be set",
                          "pick a dataset option (dataset=ultrachat_200k), set dataset.path=..., "
                          "or list sources under dataset.mixture")
    if ds["format"] not in FORMATS:
        raise ZephyrError(f"dataset.format={ds['format']!r} is not a format", f"use one of {', '.join(FORMATS)}")
    _check_columns("dataset.columns", ds["columns"])
    _check_roles("dataset.roles", ds["roles"])
    for i, src in enumerate(ds["mixture"] or []):
        where = f"dataset.mixture[{i}]"
        if not isinstance(src, dict):
            raise ZephyrError(f"`{where}` must be a mapping such as {{path: ..., split: ..., weight: 0.5}}",
                              "write each mixture entry as `- path: ...` with indented keys")
        for key in src:
            if key not in SOURCE_KEYS:
                raise unknown_key(where, key, SOURCE_KEYS)
        if not src.get("path") and not ds.get("path"):
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
        _check_columns(f"{where}.columns", src.get("columns", {}))
        _check_roles(f"{where}.roles", src.get("roles", {}))
    tf = ds["test_fraction"]
    if tf is not None and (isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1):
        raise ZephyrError(f"dataset.test_fraction is {tf!r} but must be between 0 and 1",
                          "0.05 carves a seeded 5% of the training rows out as the evaluation set")
    for limit in ("max_prompt_tokens", "max_train_samples", "max_test_samples"):
        if ds[limit] is not None and ds[limit] < 1:
            raise ZephyrError(f"dataset.{limit} is {ds[limit]} but must be at least 1", f"set it to null for no limit")
    if ds["decontaminate_ngram"] < 3:
        raise ZephyrError(f"dataset.decontaminate_ngram is {ds['decontaminate_ngram']}, too short to mean overlap",
                          "use 8 to 13 words (13 is the usual choice)")
    for f in ds["decontaminate"]:
        if not isinstance(f, str):
            raise ZephyrError("dataset.decontaminate must be a list of file paths",
                              "e.g. dataset.decontaminate=[data/mt_bench/question.jsonl]")


def _check_columns(where: str, columns) -> None:
    if not isinstance(columns, dict):
        raise ZephyrError(f"`{where}` must be a mapping", "e.g. columns: {messages: conversations}")
    for key, value in columns.items():
        if key not in COLUMN_KEYS:
            raise unknown_key(where, key, COLUMN_KEYS)
        if not isinstance(value, str):
            raise ZephyrError(f"`{where}.{key}` must name a column of the dataset", f"e.g. {key}: {key}")


def _check_roles(where: str, roles) -> None:
    if not isinstance(roles, dict):
        raise ZephyrError(f"`{where}` must be a mapping", "e.g. roles: {human: user, gpt: assistant}")
    for key, value in roles.items():
        if value not in checks.ROLES:
            raise ZephyrError(f"`{where}.{key}` renames a role to {value!r}",
                              f"rename roles to one of {', '.join(checks.ROLES)}")


def sources_of(ds: dict) -> list[dict]:
    """The sources to mix: dataset.mixture entries completed from the top level, or the top level alone."""
    if not ds.get("mixture"):
        return [{"path": ds["path"], "name": ds["name"], "revision": ds["revision"], "split": ds["train_split"],
                 "test_split": ds["test_split"], "weight": 1.0, "columns": ds["columns"], "format": ds["format"],
                 "roles": ds["roles"], "where": "dataset"}]
    out = []
    for i, src in enumerate(ds["mixture"]):
        full = {k: src.get(k, ds.get(k)) for k in INHERITED}
        full.update(split=src.get("split", ds["train_split"]), test_split=src.get("test_split"),
                    weight=float(src.get("weight", 1.0)),
                    where=f"dataset.mixture[{i}]" if "columns" in src else "dataset")
        out.append(full)
    return out


# ------------------------------------------------------------------------------------------- rows
def rows_of(cfg: dict) -> str:
    """What the recipe's stage trains on: "chat" (messages) or "pairs" (prompt / chosen / rejected)."""
    from ..stages import get

    return get(cfg["stage"]["name"]).rows


def _stage_columns(src: dict, rows: str, column_names: list[str]) -> dict:
    cols = dict(src["columns"] or {})
    path = src["path"]

    def need(wanted: str, *fallbacks: str) -> str:
        col = cols.get(wanted)
        if col is None:
            col = next((c for c in (wanted, *fallbacks) if c in column_names), wanted)
        if col not in column_names:
            raise ZephyrError(f"dataset {path} has no column {col!r} (it has: {', '.join(column_names)})",
                              f"map the stage's `{wanted}` onto one of its columns: "
                              f"{src.get('where', 'dataset')}.columns.{wanted}=<column>")
        return col

    if rows == "chat":
        if "completion" in cols:
            return {"prompt": need("prompt"), "completion": need("completion")}
        return {"messages": need("messages", "conversations")}
    out = {"chosen": need("chosen"), "rejected": need("rejected")}
    if "prompt" in cols or "prompt" in column_names:
        # ultrafeedback_binarized's text `prompt` sits next to whole chosen/rejected conversations; there the
        # conversations are the truth and the row check splits the prompt off them.
        out["prompt"] = need("prompt")
    return out


def _detect_format(src: dict, column_names: list[str]) -> str:
    if src["format"] != "auto":
        return src["format"]
    cols = src["columns"] or {}
    if cols.get("completions", "completions") in column_names and "chosen" not in column_names:
        return "ultrafeedback"
    return "auto"


def _binarized(raw, src: dict, ds: dict, seed: int):
    from ..binarize import binarize_dataset

    cols = src["columns"] or {}
    opts = {k: v for k, v in (ds["binarize"] or {}).items() if k != "seed"}
    prompt_col, comp_col = cols.get("prompt", "instruction"), cols.get("completions", "completions")
    for col in (prompt_col, comp_col):
        if col not in raw.column_names:
            raise ZephyrError(f"dataset {src['path']} has no column {col!r} for binarization "
                              f"(it has: {', '.join(raw.column_names)})",
                              "map them with dataset.columns.prompt=<instruction column> and "
                              "dataset.columns.completions=<column>")
    bseed = (ds["binarize"] or {}).get("seed")
    out, tally = binarize_dataset(raw, prompt_column=prompt_col, completions_column=comp_col,
                                  seed=seed if bseed is None else bseed, **opts)
    return out, tally


def _checked(raw, src: dict, cfg: dict, tokenizer, role: str):
    """(checked dataset with _reason and _key, binarization tally or None)."""
    ds_cfg, rows, seed = cfg["dataset"], rows_of(cfg), cfg["run"]["seed"]
    tally = None
    src = dict(src)
    if _detect_format(src, raw.column_names) == "ultrafeedback":
        raw, tally = _binarized(raw, src, ds_cfg, seed)
        src["columns"] = {}
    cols = _stage_columns(src, rows, raw.column_names)
    roles = src["roles"] or {}
    if rows == "chat":
        fn, kwargs = checks.sft_row, {"cols": cols, "roles": roles}
    else:
        trainer = cfg["stage"]["trainer"]
        limit, max_length = ds_cfg["max_prompt_tokens"], trainer.get("max_length")
        if trainer.get("truncation_mode", "keep_start") == "keep_end":
            max_length = None  # TRL keeps the answer's end then, so a long prompt still trains
        kwargs = {"cols": cols, "roles": roles, "max_prompt_tokens": limit, "max_length": max_length,
                  "tokenizer": tokenizer if (limit or max_length) else None}
        fn = checks.dpo_row
    checked = raw.map(fn, fn_kwargs=kwargs, remove_columns=raw.column_names, features=checks.features(rows),
                      desc=f"checking {role} rows of {src['path']}")
    return checked, tally


def _count_and_drop(checked, src: dict, split: str, strict: bool):
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


def _weighted(ds, weight: float, seed: int):
    target = round(weight * len(ds))
    if weight == 1.0 or not len(ds):
        return ds
    import datasets

    whole, rest = divmod(target, len(ds))
    parts = [ds] * whole
    if rest:
        parts.append(ds.shuffle(seed=seed).select(range(rest)))
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _limit(ds, n, seed: int):
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


# ------------------------------------------------------------------------------------------- cache
def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint_of(ds) -> str:
    """A hash of a dataset's content and of how it was made (datasets' own, through its public function)."""
    from datasets.fingerprint import generate_fingerprint

    return generate_fingerprint(ds)


def cache_key(cfg: dict, tokenizer, raw_fingerprints: list[str]) -> str:
    """Hash of everything that changes the prepared rows."""
    from datasets.fingerprint import Hasher

    ds = dict(cfg["dataset"])
    parts = {
        "version": CACHE_VERSION,
        "stage": cfg["stage"]["name"],
        "seed": cfg["run"]["seed"],
        "max_length": cfg["stage"]["trainer"].get("max_length"),
        "dataset": {k: v for k, v in ds.items() if k != "cache"},
        "raw": raw_fingerprints,
        "tokenizer": Hasher.hash(tokenizer) if tokenizer is not None else None,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "decontaminate": [_file_digest(f) for f in ds["decontaminate"]],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cache_root() -> Path:
    return builtin.cache_home() / "data"


def _load_cached(folder: Path):
    import datasets

    info = json.loads((folder / "info.json").read_text())
    train = datasets.load_from_disk(str(folder / "train"))
    eval_ds = datasets.load_from_disk(str(folder / "eval")) if (folder / "eval").exists() else None
    return train, eval_ds, info


def _save(folder: Path, train, eval_ds, info: dict) -> None:
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


# ------------------------------------------------------------------------------------------- pipeline
def load_for_stage(cfg: dict, tokenizer) -> tuple[object, object | None, dict]:
    """(train, eval or None, provenance) for the stage of cfg."""
    ds_cfg, seed = cfg["dataset"], cfg["run"]["seed"]
    check_config(ds_cfg, rows_of(cfg))
    sources = sources_of(ds_cfg)
    raws = []
    for src in sources:
        train_raw = load_split(src, src["split"], single_file_split=src["split"])
        test_raw = load_split(src, src["test_split"], single_file_split=src["split"]) \
            if src["test_split"] and not ds_cfg["test_fraction"] else None
        raws.append((train_raw, test_raw))
    fingerprints = [fingerprint_of(r) for pair in raws for r in pair if r is not None]
    key = cache_key(cfg, tokenizer, fingerprints)
    folder = cache_root() / key
    if ds_cfg["cache"] and (folder / "info.json").exists():
        train, eval_ds, info = _load_cached(folder)
        info["cache"] = {"key": key, "hit": True, "folder": str(folder)}
        log.info("data: cache hit %s (%d train rows%s)", folder, len(train),
                 f", {len(eval_ds)} eval rows" if eval_ds is not None else "")
        return train, eval_ds, info
    train, eval_ds, info = _prepare(cfg, tokenizer, sources, raws)
    if ds_cfg["cache"]:
        _save(folder, train, eval_ds, info)
        train, eval_ds, _ = _load_cached(folder)  # file-backed, so TRL's map calls cache next to it
        info["train"]["fingerprint"] = fingerprint_of(train)
    info["cache"] = {"key": key, "hit": False, "folder": str(folder) if ds_cfg["cache"] else None}
    return train, eval_ds, info


def _prepare(cfg: dict, tokenizer, sources: list[dict], raws: list):
    import datasets

    ds_cfg, seed, stage = cfg["dataset"], cfg["run"]["seed"], cfg["stage"]["name"]
    strict, fraction = ds_cfg["strict"], ds_cfg["test_fraction"]
    reports, trains, evals = [], [], []
    for src, (train_raw, test_raw) in zip(sources, raws):
        rep = {"path": src["path"], "name": src["name"], "split": src["split"], "weight": src["weight"],
               "source_rows": len(train_raw), "source_fingerprint": fingerprint_of(train_raw)}
        checked, tally = _checked(train_raw, src, cfg, tokenizer, "train")
        if tally is not None:
            rep["binarization"] = {"kept": len(checked), **tally}
        good, rep["dropped"] = _count_and_drop(checked, src, src["split"], strict)
        if fraction:
            parts = good.train_test_split(test_size=fraction, seed=seed, shuffle=True)
            good, carved = parts["train"], parts["test"]
            evals.append(carved)
            rep["test"] = {"carved_fraction": fraction, "rows": len(carved)}
        elif test_raw is not None:
            checked_test, _ = _checked(test_raw, src, cfg, tokenizer, "eval")
            test, dropped = _count_and_drop(checked_test, src, src["test_split"], strict)
            evals.append(test)
            rep["test"] = {"split": src["test_split"], "source_rows": len(test_raw), "rows": len(test),
                           "dropped": dropped}
        rep["_good"] = good
        reports.append(rep)
    eval_ds = datasets.concatenate_datasets(evals) if evals else None
    if eval_ds is not None and len(evals) > 1:
        eval_ds = eval_ds.shuffle(seed=seed)
    eval_ds = _limit(eval_ds, ds_cfg["max_test_samples"], seed) if eval_ds is not None else None
    test_keys = set(eval_ds["_key"]) - {""} if eval_ds is not None else set()
    index = None
    if ds_cfg["decontaminate"]:
        from .decontaminate import Index

        index = Index(ds_cfg["decontaminate"], ds_cfg["decontaminate_ngram"])
    decon = {"files": ds_cfg["decontaminate"], "ngram": ds_cfg["decontaminate_ngram"],
             "eval_prompts": index.prompts if index else 0, "dropped": 0, "examples": []} if index else None
    for rep, src in zip(reports, sources):
        good = rep.pop("_good")
        if test_keys:
            before = len(good)
            good = good.filter(lambda k: k not in test_keys, input_columns="_key", desc="dropping rows of the eval set")
            if len(good) < before:
                rep["dropped"]["overlaps_test"] = before - len(good)
        if index is not None:
            good = _decontaminated(good, index, rep, decon)
        rep["rows"] = len(good)
        good = _weighted(good, src["weight"], seed)
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
    train = _limit(train, ds_cfg["max_train_samples"], seed)
    train = train.remove_columns(["_reason", "_key"]).flatten_indices()
    if eval_ds is not None:
        eval_ds = eval_ds.remove_columns(["_reason", "_key"]).flatten_indices()
        if len(eval_ds) == 0:
            raise ZephyrError(f"the eval data of {ds_cfg['path'] or 'the mixture'} has no usable rows",
                              "check the test split and its column mapping, or set dataset.test_split=null")
    if len(train) == 0:
        raise ZephyrError(f"the train data of {ds_cfg['path'] or 'the mixture'} has no usable rows"
                          f" (dropped: {[r['dropped'] for r in reports]})",
                          "check the dataset and its column mapping (dataset.columns, dataset.format)")
    first = sources[0]
    info = {"path": ds_cfg["path"] or first["path"], "name": ds_cfg["name"], "revision": ds_cfg["revision"],
            "sources": reports,
            "train": {"split": "+".join(s["split"] for s in sources), "rows": len(train),
                      "source_rows": sum(r["source_rows"] for r in reports), "fingerprint": fingerprint_of(train),
                      "dropped": dict(sum((Counter(r["dropped"]) for r in reports), Counter()))}}
    if eval_ds is not None:
        info["eval"] = {"split": f"{fraction:g} of train" if fraction else
                        "+".join(s["test_split"] for s in sources if s["test_split"]), "rows": len(eval_ds),
                        "fingerprint": fingerprint_of(eval_ds)}
    if decon is not None:
        info["decontamination"] = decon
        log.info("data: decontamination dropped %d training rows overlapping %d evaluation prompts (%d-grams)",
                 decon["dropped"], decon["eval_prompts"], decon["ngram"])
    log.info("data: %d train rows%s", len(train), f", {len(eval_ds)} eval rows" if eval_ds is not None else "")
    return train, eval_ds, info


def _decontaminated(ds, index, rep: dict, decon: dict):
    from datasets.fingerprint import Hasher

    from .decontaminate import row_text

    def hit(row):
        for text in row_text(row):
            found = index.match(text)
            if found:
                return {"_hit": found}
        return {"_hit": ""}

    fp = Hasher.hash([fingerprint_of(ds), index.n, decon["files"], [_file_digest(f) for f in decon["files"]]])
    marked = ds.map(hit, new_fingerprint=fp, desc="decontaminating")
    hits = [i for i, h in enumerate(marked["_hit"]) if h]
    if hits:
        for i in hits[:5]:
            row = marked[i]
            decon["examples"].append({"file": row["_hit"], "text": row_text(row)[0][:200]})
        marked = marked.filter(lambda h: not h, input_columns="_hit", desc="dropping contaminated rows")
        rep["dropped"]["contaminated"] = len(hits)
        decon["dropped"] += len(hits)
    return marked.remove_columns("_hit")
