"""The Open LLM Leaderboard (v1) tasks through lm-evaluation-harness (``pip install 'zephyr-recipes[eval]'``).

Each task is an lm_eval task name with its few-shot count; ``data_files`` points a task at local files of the
same schema (for offline use: a derived task YAML that includes lm_eval's own and reads ``json`` files), and
``yaml`` names a task YAML of your own. Results land in ``lm_eval/results.json`` of the run folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from ..core.errors import ZephyrError, unknown_key
from ..core.recipe import section_of
from ..core.schema import ModelConfig, option
from ..embedded import builtin
from ..model import modeling

log = logging.getLogger("zephyr_recipes")

# The leaderboard's headline metric and few-shot count per task.
LEADERBOARD = {"arc_challenge": ("acc_norm", 25), "hellaswag": ("acc_norm", 10), "mmlu": ("acc", 5),
               "truthfulqa_mc2": ("acc", 0)}
TASK_KEYS = {"name", "num_fewshot", "metric", "data_files", "yaml"}


@dataclass
class LmEvalConfig:
    """The lm_eval benchmark's section (``stage.lm_eval``)."""

    tasks: list = option([{"name": "arc_challenge", "num_fewshot": 25}, {"name": "hellaswag", "num_fewshot": 10},
                          {"name": "mmlu", "num_fewshot": 5}, {"name": "truthfulqa_mc2", "num_fewshot": 0}],
                         "Tasks as [{name, num_fewshot, metric?, data_files? | yaml?}] (the Open LLM Leaderboard v1's).")
    batch_size: Any = option("auto", "lm-evaluation-harness's batch size.")
    limit: Optional[int] = option(None, "Examples per task; null for all.")
    seed: int = option(1234, "lm-evaluation-harness's seed.")


def normalise_tasks(tasks: list) -> list[dict]:
    out = []
    for i, task in enumerate(tasks or []):
        if isinstance(task, str):
            task = {"name": task}
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise ZephyrError(f"stage.lm_eval.tasks[{i}] must be a task name or {{name: ..., num_fewshot: ...}}",
                              "for example {name: arc_challenge, num_fewshot: 25}")
        unknown = sorted(set(task) - TASK_KEYS)
        if unknown:
            raise unknown_key(f"stage.lm_eval.tasks[{i}]", unknown[0], sorted(TASK_KEYS))
        metric, shots = LEADERBOARD.get(task["name"], (None, 0))
        out.append({"num_fewshot": shots, "metric": metric, "data_files": None, "yaml": None, **task})
    return out


def _lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ZephyrError("the lm_eval benchmark needs lm-evaluation-harness, which is not installed",
                          "pip install 'zephyr-recipes[eval]' (or lm-eval>=0.4), or drop lm_eval from "
                          "stage.benchmarks") from None
    return lm_eval, TaskManager


def _builtin_yaml(name: str) -> Path | None:
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    for path in root.rglob(f"{name}.yaml"):
        try:
            text = path.read_text()
        except OSError:
            continue
        if f"task: {name}\n" in text:
            return path
    return None


def _local_task(task: dict, folder: Path) -> Path:
    """A task YAML that includes lm_eval's own and reads its splits from local JSON files."""
    source = _builtin_yaml(task["name"])
    if source is None:
        raise ZephyrError(f"lm_eval has no single task YAML for {task['name']!r} to point at local files",
                          "write a task YAML of your own (dataset_path: json) and give it as yaml: <path>")
    files = task["data_files"]
    if isinstance(files, str) and files.startswith("builtin://"):  # an embedded set in the task's schema
        root = Path(builtin.resolve(files))
        files = {"train": str(root / "train.jsonl"), "validation": str(root / "test.jsonl"),
                 "test": str(root / "test.jsonl")}
    if isinstance(files, str):
        files = {"train": files, "validation": files, "test": files}
    files = {k: str(Path(v).expanduser().resolve()) for k, v in files.items()}
    for split, path in files.items():
        if not Path(path).is_file():
            raise ZephyrError(f"lm_eval task {task['name']}: data file for {split} {path} does not exist",
                              "check stage.lm_eval.tasks[].data_files")
    spec = {"include": str(source), "task": task["name"], "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": files}}
    target = folder / f"{task['name']}.yaml"
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def headline(results: dict, task: dict) -> tuple[str | None, float | None]:
    got = results.get(task["name"], {})
    for metric in ([task["metric"]] if task["metric"] else []) + ["acc_norm", "acc", "exact_match", "mc2"]:
        for key in (f"{metric},none", metric):
            if isinstance(got.get(key), (int, float)):
                return metric, float(got[key])
    return None, None


def run(section: LmEvalConfig, model_cfg: ModelConfig | dict, placement, folder: Path) -> dict:
    """Run the tasks of ``section`` (the lm_eval benchmark's own section, typed) on the model of ``model_cfg`` (the
    model section)."""
    model = section_of(ModelConfig, model_cfg)
    lm_eval, TaskManager = _lm_eval()
    tasks = normalise_tasks(section.tasks)
    if not tasks:
        return {}
    task_dir = folder / "lm_eval" / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    include = {task_dir}
    for task in tasks:
        if task["yaml"]:
            path = Path(task["yaml"]).expanduser()
            if not path.is_file():
                raise ZephyrError(f"lm_eval task file {task['yaml']} does not exist", "check stage.lm_eval.tasks[].yaml")
            include.add(path.resolve().parent)
        elif task["data_files"]:
            _local_task(task, task_dir)
    # lm_eval's full task index takes half a minute to build: only read it when a task needs it.
    defaults = any(not t["yaml"] and not t["data_files"] for t in tasks)
    manager = TaskManager(include_path=[str(p) for p in sorted(include)], include_defaults=defaults)
    source = modeling.resolve_source(model.name_or_path, "model")
    args = {"pretrained": source, "dtype": {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[placement.weights],
            "trust_remote_code": model.trust_remote_code}
    if model.revision:
        args["revision"] = model.revision
    from lm_eval.api.registry import get_model

    lm = get_model("hf").create_from_arg_obj(args, {"batch_size": section.batch_size, "device": placement.device})
    results, raw = {}, {}
    for shots in sorted({t["num_fewshot"] for t in tasks}):
        group = [t for t in tasks if t["num_fewshot"] == shots]
        log.info("lm_eval: %s (%d-shot)", ", ".join(t["name"] for t in group), shots)
        out = lm_eval.simple_evaluate(model=lm, tasks=[t["name"] for t in group], num_fewshot=shots,
                                      limit=section.limit, task_manager=manager, log_samples=False,
                                      random_seed=section.seed, numpy_random_seed=section.seed,
                                      torch_random_seed=section.seed, fewshot_random_seed=section.seed)
        if out is None:
            continue
        raw[str(shots)] = {k: out.get(k) for k in ("results", "groups", "n-shot", "versions", "n-samples")}
        for t in group:
            metric, value = headline(out.get("results", {}), t)
            results[t["name"]] = {"metric": metric, "value": None if value is None else round(100 * value, 2),
                                  "num_fewshot": shots}
    (folder / "lm_eval" / "results.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return results
