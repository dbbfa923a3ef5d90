"""The plan of any stage and of a whole pipeline: a training stage's memory (:mod:`.plan`), the models a stage
that trains nothing loads one at a time, and each stage's tokens, FLOPs, hours and cost (:mod:`.timeplan`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .. import stages
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import HardwareConfig
from ..data.sizes import PROMPT_TOKENS
from ..stages.base import Stage, TaskStage, TrainerStage
from . import timeplan
from .plan import GB, OVERHEAD_GB, TIGHT, Shape, _count, config_of, estimate, model_config, render, verdict
from .timeplan import Work


def advice(hw: HardwareConfig) -> str:
    if hw.strategy in ("none", "ddp") and not hw.lora:
        return ("shard the model: hardware=8gpu-zero3 (or 8gpu-fsdp2, 8gpu-zero3-offload), or train adapters: "
                "hardware=qlora-24gb; or lower hardware.per_device_batch_size / turn on hardware.gradient_checkpointing")
    return ("lower hardware.per_device_batch_size (the global batch is kept through accumulation), turn on "
            "hardware.gradient_checkpointing, or use hardware.offload=true")


def inference_gb(shape: Shape, batch: int, tokens: int, hw: HardwareConfig) -> float:
    """Per-device memory of a model that generates: 16-bit weights (fp32 on the CPU), the KV cache of a batch,
    the last position's logits in fp32, and the CUDA context."""
    width = 4 if hw.device == "cpu" or hw.precision == "fp32" else 2
    head = shape.hidden // shape.heads
    kv = 2 * shape.layers * shape.kv_heads * head * tokens * batch * width
    logits = batch * shape.vocab * 4
    overhead = OVERHEAD_GB * GB if hw.device != "cpu" else 0.0
    return (shape.params * width + kv + logits + overhead) / GB



@dataclass
class StagePlan:
    """One stage's plan: its text, the memory verdict ('fits' | 'tight' | 'no' | 'unknown') and its work."""

    text: str
    kind: str
    work: Work | None = None
    trained: tuple | None = None  # (config, source) of the model the stage writes, for later stages
    writes: tuple | None = None  # (rows, tokens per row) of the data the stage writes, for later stages
    memory: dict | None = None  # the training memory estimate (per-device GB by part), for dry-run.json



def _task_plan(recipe: Recipe, stage: TaskStage, folders: dict | None, gpu: str | None) -> StagePlan:
    hw = recipe.hardware
    loads = stage.loads(recipe)
    lines = [f"plan: {stage.name} on hardware {hw.name} ({hw.device}, one process; models load one at a time)"]
    shapes: dict = {}
    sizes: dict = {}
    kind = "unknown"
    for load in loads:
        if load["how"] not in ("local", "served"):
            continue
        try:
            config, source = config_of(load["model"], load["spec"].get("model_config") or {}, folders)
            shape = Shape.from_config(config)
        except ZephyrError as exc:
            lines.append(f"  {load['role']}: {load['model']}: not checked here ({exc.problem})")
            continue
        shapes[load["model"]] = shape
        if load["how"] == "served":
            continue
        gb = inference_gb(shape, int(load["batch"]), PROMPT_TOKENS + load["new_tokens"], hw)
        if gb > sizes.get(load["model"], (0,))[0]:
            sizes[load["model"]] = (gb, f"  {load['model']} ({_count(shape.params)} parameters, {source}): about "
                                        f"{gb:.1f} GB at batch {load['batch']} x "
                                        f"{PROMPT_TOKENS + load['new_tokens']} tokens ({load['role']})")
    lines += [line for _, line in sizes.values()]
    peak = max([gb for gb, _ in sizes.values()], default=0.0)
    if any(load["how"] == "served" for load in loads):
        lines.append("  served models (`serve:`) run in their own process: their memory is the server's (vLLM takes "
                     "90% of a GPU by default)")
    mem = hw.gpu_memory_gb
    if peak and mem:
        kind = "no" if peak > mem else "tight" if peak > TIGHT * mem else "fits"
        word = {"no": "does NOT fit", "tight": "fits tightly", "fits": "fits"}[kind]
        lines.append(f"  {word}: the largest local model needs about {peak:.1f} GB of {mem:g} GB")
        if kind == "no":
            lines.append("  fix: lower that model's batch_size, serve it with vLLM (serve: ...) on a larger GPU, or "
                         "use a profile with more memory")
    elif peak:
        lines.append(f"  the largest local model needs about {peak:.1f} GB; the profile names no device memory")
    work = timeplan.generation_work(hw, stage, loads, shapes, gpu)
    lines += [f"  {line}" for line in work.lines]
    return StagePlan("\n".join(lines), kind, work, writes=stage.writes_rows(recipe, loads))



def stage_plan(recipe: Recipe, stage: Stage, model_config_path: str | None = None, folders: dict | None = None,
               gpu: str | None = None, mfu: float | None = None, tokens_per_row: float | None = None,
               count_data: bool = True, data: dict | None = None) -> StagePlan:
    """Memory, tokens, FLOPs and hours of one stage's recipe (any stage)."""
    if not isinstance(stage, TrainerStage):
        return _task_plan(recipe, cast(TaskStage, stage), folders, gpu)  # every other stage is a task stage
    config, source = model_config(recipe, model_config_path, folders)
    shape = Shape.from_config(config)
    est = estimate(recipe, stage, shape)
    kind, sentence = verdict(recipe.hardware, est)
    work = timeplan.training_work(recipe, stage, shape, tokens_per_row, mfu, gpu, count_data, data)
    text = render(recipe, est, sentence, source) + "".join(f"\n  {line}" for line in work.lines)
    if kind == "no":
        text += f"\n  fix: {advice(recipe.hardware)}"
    return StagePlan(text, kind, work, trained=(config, source), memory=est)



def pipeline_plan(planned: list, price: float | None = None, **options) -> tuple[str, bool]:
    """The plan of every stage of a pipeline ((stage entry, recipe, config) triples) and the total; (text, any
    stage that does not fit)."""

    folders: dict = {}
    data: dict = {}
    parts, works, refused = [], [], False
    for st, name, recipe in planned:
        try:
            stage = stages.of(recipe)
            sp = stage_plan(recipe, stage, folders=folders, data=data, **options)
        except ZephyrError as exc:
            parts.append(f"== stage {st['name']} ({name}): not planned: {exc.problem}")
            continue
        output_dir = cast(str, recipe.run.output_dir)  # validation sets every run's folder
        if sp.trained:
            folders[output_dir] = sp.trained
        if sp.writes:
            data[str(Path(output_dir).resolve())] = sp.writes
        refused |= sp.kind == "no"
        if sp.work is not None:
            works.append(sp.work)
        cost = ""
        if price is not None and sp.work is not None and sp.work.gpu_hours is not None:
            cost = f"\n  cost: {sp.work.gpu_hours * price:,.2f} ({sp.work.gpu_hours:,.1f} GPU-hours at {price:g})"
        parts.append(f"== stage {st['name']} ({name})\n{sp.text}{cost}")
    total = timeplan.render_cost(works, price)
    if total:
        parts.append("== total\n" + "\n".join(f"  {line}" for line in total))
    return "\n".join(parts), refused


def check_before_launch(recipe: Recipe, stage: Stage) -> None:
    """Run by `zephyr-recipes run` on GPU profiles: refuse a run the plan says will not fit (``cfg``: a checked
    config)."""
    hw = recipe.hardware
    if hw.device == "cpu" or not hw.gpu_memory_gb:
        return
    try:
        sp = stage_plan(recipe, stage, count_data=False)
    except ZephyrError as exc:
        import logging

        logging.getLogger("zephyr_recipes").warning("memory plan skipped: %s", exc.problem)
        return
    import sys

    print(sp.text, file=sys.stderr)
    if sp.kind == "no" and not hw.ignore_memory_plan:
        fix = advice(hw) if isinstance(stage, TrainerStage) else \
            "lower the generators' or judge's batch_size, or serve the model (serve: ...) on a larger GPU"
        raise ZephyrError("the memory plan says this run will not fit (above)",
                          fix + "; or hardware.ignore_memory_plan=true to launch anyway")
