"""Pre-flight: everything a run needs from outside its own process, checked before any model loads or any answer
is generated (by `validate`, `run --dry-run`, and again when a run starts).

- every API key a generator or judge names (``api_key_env``) is set;
- every endpoint it names answers ``GET <base_url>/models`` within a few seconds, and accepts the key;
- every local model and data path exists (paths an earlier stage of the same pipeline writes are skipped);
- the free disk under the run folder holds the weights the run will save and its checkpoints.

Keys are read from the environment and sent only to the endpoint that names them; neither is printed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TypeGuard

from ..core.catalog import producing_recipe
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import TrainerStageConfig
from ..model.modeling import is_local_path as local
from ..stages.base import Stage, TrainerStage
from . import plan, stagespecs

TIMEOUT_S = 5.0


def endpoints(recipe: Recipe, stage: Stage | None = None) -> list[tuple[str, dict]]:
    """(where, spec) of every OpenAI-compatible generator or judge in the recipe's stage section that is not started
    by the run itself (``serve:``); with ``stage``, of the settings the config uses."""
    found = [(where, spec) for where, spec in stagespecs.specs(recipe, stage) if spec.get("base_url")]
    if not found:
        return []
    from ..feedback.specs import calls_endpoint  # lazy: start-up (only a generator or judge with an address)

    return [(where, spec) for where, spec in found if calls_endpoint(spec)]


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def check_keys(recipe: Recipe, stage: Stage | None = None) -> list[str]:
    lines, missing = [], []
    for where, spec in endpoints(recipe, stage):
        env = spec.get("api_key_env")
        if env and not os.environ.get(env):
            missing.append((where, env, spec["base_url"]))
        elif env:
            lines.append(f"{where}: key {env} is set, sent only to {_host(spec['base_url'])}")
    if missing:
        where, env, url = missing[0]
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ZephyrError(f"{where} reads its API key from {env}: {env} is not set{others}; nothing was generated",
                          f"export {env}=... (it is read at call time and sent only to {_host(url)}; never written "
                          "to a file)")
    return lines


def check_endpoints(recipe: Recipe, timeout: float = TIMEOUT_S, stage: Stage | None = None) -> list[str]:
    lines, seen = [], set()
    for where, spec in endpoints(recipe, stage):
        key = (spec["base_url"].rstrip("/"), spec.get("api_key_env"))
        if key in seen:
            continue
        seen.add(key)
        url = spec["base_url"].rstrip("/") + "/models"
        request = urllib.request.Request(url)
        if spec.get("api_key_env") and os.environ.get(spec["api_key_env"]):
            request.add_header("Authorization", f"Bearer {os.environ[spec['api_key_env']]}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise ZephyrError(f"{where}: {_host(url)} refused the key in {spec.get('api_key_env')} "
                                  f"(HTTP {exc.code})", "check the key and that it is for this endpoint") from None
            raise ZephyrError(f"{where}: {url} answered HTTP {exc.code}",
                              "check base_url (it ends in /v1 for OpenAI-compatible servers)") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: not UTF-8 or not JSON
            reason = getattr(exc, "reason", exc)
            raise ZephyrError(f"{where}: {url} does not answer ({reason}; waited up to {timeout:g} s); nothing was "
                              "generated",
                              "start the server or check base_url; `validate --no-preflight` skips the checks "
                              "of what lies outside this process") from None
        served = [m.get("id") for m in (body.get("data") if isinstance(body, dict) else None) or []
                  if isinstance(m, dict)]
        model = spec.get("model")
        if served and model and model not in served and len(served) < 50:
            raise ZephyrError(f"{where}: {_host(url)} does not serve model {model!r} (it serves: "
                              f"{', '.join(map(str, served[:8]))})", f"set {where}.model to one of them")
        lines.append(f"{where}: {_host(url)} answers /models")
    return lines


def local_paths(recipe: Recipe, stage: Stage) -> list[tuple[str, str]]:
    """(where, path) of the local model and data paths a recipe of ``stage`` reads."""
    def is_local_path(value) -> TypeGuard[str]:
        return isinstance(value, str) and bool(value) and local(value)

    found = []
    reads = stage.reads_model(recipe)
    for key, value in (("name_or_path", recipe.model.name_or_path),
                       ("tokenizer_name_or_path", recipe.model.tokenizer_name_or_path)):
        if reads and is_local_path(value):
            found.append((f"model.{key}", value))
    ds = recipe.dataset
    for i, path in enumerate([ds.path, *(entry.get("path") for entry in ds.mixture or [])]):
        if isinstance(path, str) and path.startswith(("./", "../", "/", "~")):
            found.append(("dataset.path" if i == 0 else f"dataset.mixture[{i - 1}].path", path))
    found += [(f"{where}.model", spec["model"]) for where, spec in stagespecs.with_model(recipe, stage)
              if is_local_path(spec["model"])]
    ref = getattr(recipe.stage, "ref_model", None)  # the DPO stages' reference model
    if is_local_path(ref):
        found.append(("stage.ref_model", ref))
    return found


def check_paths(recipe: Recipe, stage: Stage, produced: set[str] | None = None, strict: bool = True) -> list[str]:
    """Missing local paths are refused (``strict``) or listed; paths under ``produced`` (folders an earlier
    pipeline stage writes) are skipped."""
    lines = []
    for where, path in local_paths(recipe, stage):
        p = Path(path).expanduser()
        if p.exists() or any(p.resolve() == Path(q).resolve() or Path(q).resolve() in p.resolve().parents
                             for q in produced or ()):
            continue
        producer = producing_recipe(p)
        if producer and not strict:
            lines.append(f"{where}: {path} does not exist yet: it is the run folder of {producer[0]}")
            continue
        kind = "dataset" if where.startswith("dataset") else "model folder"
        raise ZephyrError(f"{where}: {kind} {path} does not exist",
                          f"run {producer[1]} first" if producer else f"check {where} (relative paths start at the "
                          "current directory)")
    return lines


def saved_bytes(recipe: Recipe[TrainerStageConfig], params: int) -> int:
    """Bytes the run of a training stage's ``recipe`` writes: the final weights, and the checkpoints it keeps
    (weights + AdamW + gradients' states)."""
    trainer = recipe.stage.trainer or {}
    width = 2 if recipe.hardware.precision in ("bf16", "fp16") or recipe.model.dtype in ("bfloat16", "float16") else 4
    final = params * width
    if str(trainer.get("save_strategy", "steps")) == "no":
        return final
    kept = trainer.get("save_total_limit") or 2
    return final + int(kept) * params * (width + 8)


def check_disk(recipe: Recipe[TrainerStageConfig], params: int | None) -> list[str]:
    """The free disk under the run folder against :func:`saved_bytes`."""
    if not params:
        return []
    folder = Path(str(recipe.run.output_dir)).expanduser().resolve()
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
    need = saved_bytes(recipe, params)
    free = shutil.disk_usage(existing).free
    if need > free:
        raise ZephyrError(f"the run will write about {need / 1e9:.1f} GB (weights and checkpoints) under {existing}, "
                          f"which has {free / 1e9:.1f} GB free",
                          "free some space, point run.output_dir at a larger disk, or keep fewer checkpoints "
                          "(stage.trainer.save_total_limit=1 or save_strategy=no)")
    return [f"disk: about {need / 1e9:.2f} GB to write, {free / 1e9:.0f} GB free under {existing}"]


def run(recipe: Recipe, stage: Stage, network: bool = True, produced: set[str] | None = None,
        strict: bool = True) -> list[str]:
    """Every pre-flight check of one recipe of ``stage``; raises ZephyrError on the first that fails.
    ``network=False`` (validate --no-preflight) leaves out what lies outside this machine's run: keys, endpoints and
    local paths."""
    lines = []
    if network:
        lines += (check_keys(recipe, stage) + check_endpoints(recipe, stage=stage)
                  + check_paths(recipe, stage, produced, strict))
    if isinstance(stage, TrainerStage):
        try:
            config, _ = plan.model_config(recipe)
            params = plan.Shape.from_config(config).params
        except ZephyrError:
            params = None
        lines += check_disk(recipe, params)
    return lines
