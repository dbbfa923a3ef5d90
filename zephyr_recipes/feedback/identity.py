"""What makes an answer, a rating and a pair the same as one already made, so AI feedback redoes only what changed.

- An **answer** is identified by its prompt, its completion index and its **generator identity**: the generator's
  type and what it answers with (model and model options, endpoint and served command, or function), its sampling
  settings (the stage's defaults merged with its own), the run's seed, the fingerprint of a function generator's
  module (core/fingerprint.py) and a stamp of a local model's weight files (so a retrained model answers anew).
  Its name is not part of it: renaming a generator keeps its answers.
- A **rating** is identified by the answer, the round (a second rating for self-agreement) and the **judge
  identity**: the judge's type and settings (model, prompt text, aspects, scale, sampling ...), a function judge's
  module fingerprint and a local model's stamp. A judge that rates the answers of a prompt together (a listwise
  judge) also names the **group**: the answers rated side by side, so adding a generator re-rates that prompt.
- **Pairs** are made from the ratings by the binarize settings each run; they cost seconds and are not stored
  apart.

Operational settings that do not change what comes back (batch size, concurrency, timeouts, retries, back-off)
are left out of the identities, so changing them redoes nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

# Keys of a generator or judge spec that change how a request is made, not what comes back.
OPERATIONAL = frozenset({"name", "num_completions", "batch_size", "concurrency", "timeout", "max_retries", "backoff",
                         "serve_timeout", "api_key_env", "max_num_seqs", "gpu_memory_utilization", "port"})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def model_stamp(model) -> Optional[str]:
    """A stamp of a local model folder's weight files (names, sizes, modification times): a model trained again in
    the same folder is another model. None for a hub id or anything that is not a local folder."""
    if not isinstance(model, str) or not model:
        return None
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                   if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    return digest(files) if files else None


def _prompt_text(prompt) -> Optional[str]:
    """A judge prompt given as a file counts by its text, not its path."""
    if isinstance(prompt, str) and prompt.endswith((".txt", ".jinja", ".md")):
        path = Path(prompt).expanduser()
        if path.is_file():
            return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return prompt


def settings(spec: dict) -> dict:
    """The spec's keys that change what comes back."""
    out = {k: v for k, v in spec.items() if k not in OPERATIONAL}
    if "prompt" in out:
        out["prompt"] = _prompt_text(out["prompt"])
    return out


def judge_settings(spec: dict, code: Optional[str]) -> dict:
    """Everything that makes a judge's ratings what they are: its settings, its module's code, its weights."""
    out = settings(spec)
    if code:
        out["code"] = code
    stamp = model_stamp(spec.get("model"))
    if stamp:
        out["weights"] = stamp
    return out


def generator_settings(spec: dict, sampling: dict, seed: int, code: Optional[str]) -> dict:
    """Everything that makes the generator's answers what they are (shown in the run's log of changes): as a
    judge's, with the sampling settings and the seed."""
    return {**judge_settings(spec, code), "sampling": dict(sorted(sampling.items())), "seed": seed}


def answer_key(pid: str, generator: str, index: int) -> str:
    return f"{pid}:{generator}:{index}"


def rating_key(answer: str, judge: str, round_: int, group: Optional[list[str]] = None) -> str:
    """The key of one rating; a judge that rates a group of answers together names the group too."""
    tail = f":g{digest(sorted(group))}" if group else ""
    return f"{answer}:{judge}{tail}:r{round_}"
