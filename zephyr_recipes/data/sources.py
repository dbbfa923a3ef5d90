"""Where rows come from: the hub, local files (json, jsonl, parquet, csv), save_to_disk folders, builtin://.

Every loader is ``datasets``' own (``load_dataset`` with a hub id or a file builder, ``load_from_disk``);
this module only decides which one applies and turns their errors into ones a user can act on.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..core.catalog import producing_recipe
from ..core.errors import ZephyrError
from ..core.schema import DatasetConfig
from ..embedded import builtin

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def locate(path: str) -> tuple[str, str]:
    """(kind, location) where kind is file, disk, folder or hub."""
    if builtin.is_builtin(path):
        return "folder", builtin.resolve(path)
    p = Path(path).expanduser()
    if path.startswith(("./", "../", "/", "~")) or p.exists():
        if not p.exists():
            producer = producing_recipe(p)
            if producer:
                raise ZephyrError(f"dataset {path} does not exist: it is the run folder of {producer[0]}",
                                  f"run {producer[1]} first, or point dataset.path at another dataset")
            raise ZephyrError(f"dataset {path} does not exist",
                              "check dataset.path (relative paths start at the current directory)")
        if p.is_file():
            if p.suffix not in FILE_BUILDERS:
                raise ZephyrError(f"dataset file {path} has an unknown format",
                                  f"use one of {', '.join(FILE_BUILDERS)}, or a folder saved with save_to_disk")
            return "file", str(p.resolve())
        if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            return "disk", str(p.resolve())
        return "folder", str(p.resolve())
    return "hub", path


def check_split_exists(source: dict, split: str) -> None:
    """Refuse a split a local source does not have, even when nothing will read it (a test split while evaluation is
    off): a misspelt split is a mistake, not a choice. Hub datasets are checked when they load."""
    kind, where = locate(source["path"])
    if kind == "hub":
        return
    if kind == "file":
        names = [source.get("train_split", source.get("split"))]
    elif kind == "disk":
        import datasets

        loaded = datasets.load_from_disk(where)
        names = list(loaded) if isinstance(loaded, datasets.DatasetDict) else [source.get("train_split")]
    else:
        import datasets

        try:
            names = datasets.get_dataset_split_names(where, source.get("name"))
        except Exception:  # noqa: BLE001 - what the folder holds is for the loader to judge
            return
    if split not in names:
        try:  # an AI feedback run folder names its splits, empty ones included (few prompts: no test pairs)
            import json

            if split in json.loads((Path(where) / "summary.json").read_text()).get("pairs", {}):
                return
        except (OSError, ValueError, AttributeError):
            pass
        raise ZephyrError(f"dataset {source['path']} has no split {split!r} (its splits: {', '.join(map(str, names))})",
                          "name one of its splits, or set dataset.test_split=null")


def _blank(path: str) -> bool:
    """True for a file with no bytes, or only white space."""
    size = Path(path).stat().st_size
    if size > 1 << 16:
        return False
    with open(path, "rb") as fh:
        return not fh.read().strip()


def check_json_lines(path: str) -> None:
    """Raise a ZephyrError naming the file and line of the first line that is not a JSON object."""
    with open(path, encoding="utf-8") as fh:
        head = fh.read(1)
        fh.seek(0)
        if path.endswith(".json") and head == "[":
            try:
                json.load(fh)
            except json.JSONDecodeError as exc:
                raise ZephyrError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})",
                                  "fix that line of the file (a .json file holds one JSON array or one object "
                                  "per line)") from None
            return
        for _ in json_lines(fh, path):
            pass


def json_lines(lines, path, what: str = "a .jsonl file"):
    """Yield the JSON object on each non-empty line; a bad line is a ZephyrError naming file and line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ZephyrError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})",
                              f"fix or delete that line: {what} holds one JSON object per line") from None
        if not isinstance(value, dict):
            raise ZephyrError(f"{path}, line {number}: a JSON {type(value).__name__}, not an object",
                              f"each line of {what} must be one JSON object, {{\"key\": value, ...}}")
        yield value


def load_split(source: DatasetConfig | dict, split: str, *, single_file_split: str | None = None):
    """Load one split of a source with datasets' own loaders: the dataset section, or one source of its mixture
    ({path, name, revision, split, ...}, see :func:`~.config.sources_of`).

    A single local file holds one split; it is returned for ``single_file_split`` (the source's training
    split) and refused for any other.
    """
    import datasets

    if isinstance(source, DatasetConfig):
        source = dataclasses.asdict(source)
    if single_file_split is None:  # a whole dataset section ({path, train_split, ...}) as the source
        single_file_split = source.get("train_split", source.get("split"))
    path = source["path"]
    kind, where = locate(path)
    try:
        if kind == "file":
            if _blank(where):
                raise ZephyrError(f"dataset file {path} is empty",
                                  "point dataset.path at a file with rows (one JSON object per line for .jsonl)")
            if split != single_file_split:
                raise ZephyrError(f"dataset {path} is a single file, which holds one split only (asked for {split!r})",
                                  "set test_split=null and carve an evaluation set with dataset.test_fraction, "
                                  "or give a folder or hub dataset with named splits")
            if where.endswith((".json", ".jsonl")):
                check_json_lines(where)
            return datasets.load_dataset(FILE_BUILDERS[Path(where).suffix], data_files=where, split="train")
        if kind == "disk":
            loaded = datasets.load_from_disk(where)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ZephyrError(f"dataset {path} has no split {split!r}", f"its splits are: {', '.join(loaded)}")
                return loaded[split]
            if split != single_file_split:
                raise ZephyrError(f"dataset {path} was saved as a single split (asked for {split!r})",
                                  "set test_split=null and use dataset.test_fraction, or save a DatasetDict")
            return loaded
        return datasets.load_dataset(where if kind == "folder" else path, source.get("name"),
                                     revision=source.get("revision"), split=split)
    except ZephyrError:
        raise
    except ValueError as exc:
        text = str(exc)
        if "split" in text.lower():
            raise ZephyrError(f"dataset {path} has no split {split!r}: {text.splitlines()[0]}",
                              "set the train/test split to one of its splits") from None
        raise ZephyrError(f"cannot read dataset {path}: {text.splitlines()[0]}",
                          "check that the files are valid json/jsonl/parquet/csv") from None
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise ZephyrError(f"cannot load dataset {path}: {str(exc).splitlines()[0]}",
                          "check dataset.path; with HF_HUB_OFFLINE=1 only cached or local datasets load") from None
    except Exception as exc:  # datasets raises many types for malformed files (ArrowInvalid, DatasetGenerationError)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ZephyrError(f"cannot read dataset {path}: {type(exc).__name__}: {first}",
                          "check that the file is well-formed (one JSON object per line for .jsonl)") from None
