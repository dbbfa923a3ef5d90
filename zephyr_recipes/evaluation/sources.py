"""Evaluation sets and judge prompts from wherever they live: a local file, a URL, a file in a hub repository
(``hf://datasets/owner/name/file.json``) or a hub dataset id. Malformed files are reported by file and line."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path

from ..core.errors import ZephyrError
from ..data.sources import json_lines
from ..embedded import builtin
from ..embedded.builtin import cache_home


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _download(url: str, what: str) -> Path:
    target = cache_home() / "downloads" / f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{url.rsplit('/', 1)[-1]}"
    if target.is_file():
        return target
    if _offline():
        raise ZephyrError(f"{what} {url} is not cached and HF_HUB_OFFLINE is set",
                          "download it once with the network available, or point the config at a local copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        raise ZephyrError(f"cannot download {what} {url}: {exc}", "check the URL and the network, "
                          "or point the config at a local copy") from None
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _hub_file(spec: str, what: str) -> Path:
    # hf://datasets/owner/name/path/in/repo
    parts = spec[len("hf://"):].split("/")
    if len(parts) < 4 or parts[0] not in ("datasets", "models"):
        raise ZephyrError(f"{what} {spec!r} is not a hub file address", "write hf://datasets/<owner>/<name>/<file>")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download("/".join(parts[1:3]), "/".join(parts[3:]), repo_type=parts[0][:-1]))
    except Exception as exc:  # offline, missing, gated: the hub's own message says which
        raise ZephyrError(f"cannot fetch {what} {spec}: {str(exc).strip().splitlines()[0]}",
                          "download it once with the network available (HF_HUB_OFFLINE=0), "
                          "or point the config at a local copy") from None


def is_file_spec(spec: str) -> bool:
    return spec.startswith(("http://", "https://", "hf://", "builtin://", "./", "../", "/", "~")) or \
        spec.endswith((".json", ".jsonl", ".txt")) or Path(spec).expanduser().exists()


def local_file(spec: str, what: str) -> Path:
    """The local file behind a path, URL or hf:// address (fetched once into the cache)."""
    if spec.startswith(("http://", "https://")):
        return _download(spec, what)
    if spec.startswith("hf://"):
        return _hub_file(spec, what)
    if spec.startswith("builtin://"):
        return Path(builtin.resolve(spec))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ZephyrError(f"{what} file {spec} does not exist", "check the path (or give a hub id or URL)")
    return path


def read_text(spec: str, what: str) -> str:
    """A prompt: the text itself when it has a {slot} or a newline, else a file, URL or hf:// address."""
    if "\n" in spec or "{" in spec:
        return spec
    return local_file(spec, what).read_text()


def parse_records(path: Path, what: str) -> list[dict]:
    text = path.read_text()
    if path.suffix == ".jsonl" or (path.suffix != ".json" and not text.lstrip().startswith("[")):
        return list(json_lines(text.splitlines(), path, f"the {what} file"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZephyrError(f"{path}:{exc.lineno}: {what} file is not valid JSON ({exc.msg})",
                          "fix the JSON (a list of objects)") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ZephyrError(f"{path}: {what} file must hold a JSON list of objects", "write [{...}, {...}]")
    return data


def load_records(spec: str | None, what: str, split: str = "train") -> list[dict]:
    """Rows from a JSON/JSONL file, URL, hf:// file or hub dataset id (``owner/name`` or ``owner/name:split``)."""
    if not spec:
        raise ZephyrError(f"no {what} configured", f"set the {what} path or hub id in the stage config")
    if is_file_spec(spec):
        return parse_records(local_file(spec, what), what)
    name, _, wanted = spec.partition(":")
    import datasets

    try:
        ds = datasets.load_dataset(name, split=wanted or split)
    except Exception as exc:
        raise ZephyrError(f"cannot load {what} {spec!r}: {str(exc).strip().splitlines()[0]}",
                          "give a local .json/.jsonl path, a URL, hf://datasets/<owner>/<name>/<file>, or a hub "
                          "dataset id (with HF_HUB_OFFLINE=1 it must be in the cache)") from None
    return [dict(r) for r in ds]
