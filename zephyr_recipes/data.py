"""Load a recipe's dataset and hand TRL exactly the columns its trainer expects.

SFT gets ``messages`` (a list of {role, content}); DPO gets ``prompt`` / ``chosen`` / ``rejected`` in TRL's
conversational form with an explicit prompt. Everything else the real datasets carry (ultrachat's string
``prompt`` and ``prompt_id``, ultrafeedback's ``messages`` and scores) is mapped away.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .embedded import builtin
from .errors import ZephyrError

log = logging.getLogger("zephyr_recipes")

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
ROLES = {"system", "user", "assistant"}


def _source(ds_cfg: dict) -> tuple[str, str]:
    """(kind, location) where kind is file, disk, folder or hub."""
    path = ds_cfg["path"]
    if builtin.is_builtin(path):
        return "folder", builtin.resolve(path)
    p = Path(path).expanduser()
    if path.startswith(("./", "../", "/", "~")) or p.exists():
        if not p.exists():
            raise ZephyrError(f"dataset file {path} does not exist", "check dataset.path (relative paths start at the current directory)")
        if p.is_file():
            if p.suffix not in FILE_BUILDERS:
                raise ZephyrError(f"dataset file {path} has an unknown format",
                                  f"use one of {', '.join(FILE_BUILDERS)}, or a folder saved with save_to_disk")
            return "file", str(p.resolve())
        if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            return "disk", str(p.resolve())
        return "folder", str(p.resolve())
    return "hub", path


def load_split(ds_cfg: dict, split: str):
    import datasets

    kind, where = _source(ds_cfg)
    try:
        if kind == "file":
            if split != ds_cfg["train_split"]:
                raise ZephyrError(f"dataset.path is a single file ({where}), which holds one split only",
                                  "set dataset.test_split=null, or give a folder or hub dataset with named splits")
            return datasets.load_dataset(FILE_BUILDERS[Path(where).suffix], data_files=where, split="train")
        if kind == "disk":
            loaded = datasets.load_from_disk(where)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ZephyrError(f"dataset {ds_cfg['path']} has no split {split!r}",
                                      f"its splits are: {', '.join(loaded)}")
                return loaded[split]
            return loaded
        return datasets.load_dataset(where if kind == "folder" else ds_cfg["path"], ds_cfg["name"],
                                     revision=ds_cfg["revision"], split=split)
    except ZephyrError:
        raise
    except ValueError as exc:
        text = str(exc)
        if "split" in text.lower():
            raise ZephyrError(f"dataset {ds_cfg['path']} has no split {split!r}: {text.splitlines()[0]}",
                              "set dataset.train_split / dataset.test_split to one of its splits") from None
        raise ZephyrError(f"cannot read dataset {ds_cfg['path']}: {text.splitlines()[0]}",
                          "check that the files are valid json/jsonl/parquet/csv") from None
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise ZephyrError(f"cannot load dataset {ds_cfg['path']}: {str(exc).splitlines()[0]}",
                          "check dataset.path; with HF_HUB_OFFLINE=1 only cached or local datasets load") from None
    except Exception as exc:  # datasets raises many types for malformed files (ArrowInvalid, DatasetGenerationError)
        raise ZephyrError(f"cannot read dataset {ds_cfg['path']}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          "check that the file is well-formed (one JSON object per line for .jsonl)") from None


def _column(ds, ds_cfg: dict, wanted: str) -> str:
    col = ds_cfg["columns"].get(wanted, wanted)
    if col not in ds.column_names:
        raise ZephyrError(f"dataset {ds_cfg['path']} has no column {col!r} (it has: {', '.join(ds.column_names)})",
                          f"map the stage's `{wanted}` onto one of its columns: dataset.columns.{wanted}=<column>")
    return col


def _check_conversation(value, where: str) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
        raise ZephyrError(f"{where} must be a list of {{role, content}} messages, got {type(value).__name__}",
                          "map a conversation column onto it with dataset.columns")
    bad = [m.get("role") for m in value if m.get("role") not in ROLES]
    if bad:
        raise ZephyrError(f"{where} has a message with role {bad[0]!r}",
                          f"roles must be one of {', '.join(sorted(ROLES))}")


def _limit(ds, n: int | None, seed: int):
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def prepare_sft(ds, ds_cfg: dict):
    col = _column(ds, ds_cfg, "messages")
    if len(ds):
        _check_conversation(ds[0][col], f"column {col!r} of {ds_cfg['path']}")
    ds = ds.select_columns([col])
    if col != "messages":
        ds = ds.rename_column(col, "messages")
    return ds


def _split_prompt(row: dict) -> dict:
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt:
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    # ultrafeedback_binarized: chosen and rejected are whole conversations sharing every turn but the last.
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def prepare_dpo(ds, ds_cfg: dict, tokenizer):
    chosen, rejected = _column(ds, ds_cfg, "chosen"), _column(ds, ds_cfg, "rejected")
    prompt = ds_cfg["columns"].get("prompt")
    cols = [chosen, rejected] + ([prompt] if prompt else [])
    if prompt:
        _column(ds, ds_cfg, "prompt")
    ds = ds.select_columns(cols)
    ds = ds.rename_columns({c: n for c, n in zip(cols, ["chosen", "rejected", "prompt"]) if c != n})
    if len(ds) == 0:
        return ds
    sample = ds[0]
    if isinstance(sample["chosen"], str):
        if "prompt" not in ds.column_names:
            raise ZephyrError(f"{ds_cfg['path']} has plain-text chosen/rejected but no prompt column",
                              "map one with dataset.columns.prompt=<column>")
        return ds
    _check_conversation(sample["chosen"], f"column {chosen!r} of {ds_cfg['path']}")
    ds = ds.map(_split_prompt, desc="splitting prompts from answers")
    before = len(ds)
    ds = ds.filter(lambda r: bool(r["prompt"]) and r["chosen"] != r["rejected"]
                   and r["chosen"][-1]["role"] == "assistant" and r["rejected"][-1]["role"] == "assistant",
                   desc="dropping malformed pairs")
    if len(ds) < before:
        log.warning("dropped %d of %d preference pairs: empty prompt, identical answers, or no assistant answer",
                    before - len(ds), before)
    if ds_cfg["max_prompt_tokens"]:
        limit = ds_cfg["max_prompt_tokens"]
        before = len(ds)
        ds = ds.filter(lambda r: len(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True,
                                                                   tokenize=True, return_dict=False)) <= limit,
                       desc=f"dropping prompts over {limit} tokens")
        log.info("max_prompt_tokens=%d kept %d of %d pairs", limit, len(ds), before)
    return ds


def load_for_stage(cfg: dict, tokenizer) -> tuple[object, object | None, dict]:
    """(train, eval or None, provenance) for the stage of cfg."""
    ds_cfg, stage, seed = cfg["dataset"], cfg["stage"]["name"], cfg["run"]["seed"]
    splits = {"train": (ds_cfg["train_split"], ds_cfg["max_train_samples"])}
    if ds_cfg["test_split"]:
        splits["eval"] = (ds_cfg["test_split"], ds_cfg["max_test_samples"])
    out, info = {}, {"path": ds_cfg["path"], "name": ds_cfg["name"], "revision": ds_cfg["revision"]}
    for role, (split, limit) in splits.items():
        raw = load_split(ds_cfg, split)
        ds = _limit(raw, limit, seed)
        ds = prepare_sft(ds, ds_cfg) if stage == "sft" else prepare_dpo(ds, ds_cfg, tokenizer)
        if len(ds) == 0:
            raise ZephyrError(f"the {role} data ({ds_cfg['path']}, split {split}) has no usable rows",
                              "check the dataset and its column mapping")
        out[role] = ds
        info[role] = {"split": split, "rows": len(ds), "source_rows": len(raw),
                      "source_fingerprint": raw._fingerprint, "fingerprint": ds._fingerprint}
        log.info("%s data: %s[%s] -> %d rows", role, ds_cfg["path"], split, len(ds))
    return out["train"], out.get("eval"), info
