"""Time and cost: tokens, FLOPs and GPU-hours of a recipe on its hardware profile, before the first GPU hour.

Training (per optimizer step and for the whole run), after PaLM's MFU accounting (Chowdhery et al. 2022,
appendix B): every trained token costs ``6 P + 12 L h s`` FLOPs (forward and backward through P parameters,
plus attention over a context of s tokens), every token a frozen copy reads (DPO's reference model) ``2 P + 4 L h
s``. Hours = FLOPs / (GPUs x peak bf16 FLOP/s x MFU).

- Tokens come from the data when it is on this machine, counted as TRL's trainer will count them in ``num_tokens``
  (:mod:`zephyr_recipes.data.tokencount`: the prepared rows tokenized as the trainer tokenizes them, truncation and
  packing included; a large dataset on a sample, extrapolated), else from the dataset's published row count (or
  ``dataset.max_train_samples``) and a typical row length (the table in data/sizes.py) or ``--tokens-per-row``;
  the plan prints where they came from. ``max_steps`` caps them.
- The peak is the GPU's dense bf16 tensor throughput from its vendor datasheet (``hardware.gpu``).
- The MFU is the stage's: a figure published for the same kind of run (each TrainerStage states it and why).

Generation (AI feedback, evaluation answers and local judges) is decode-bound: each decoding step reads the
weights once for the whole batch, so tokens/s ~= batch x (bandwidth x efficiency) / weight bytes. The efficiency
is stated (GENERATION_EFFICIENCY), not measured on a GPU here. API models are counted in requests and tokens;
their time and price are the provider's.

`make bench` calibrates the training formula on this machine's CPU (`python -m bench.timing`): predicted step
time against measured, for the tiny model and two larger shapes (README, "Time plan against measurements").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ZephyrError, did_you_mean
from ..core.recipe import Recipe
from ..core.schema import HardwareConfig
from ..data import load_for_stage, tokencount
from ..data.sizes import DATASETS, PROMPT_TOKENS
from ..data.tokencount import TokenCount
from ..model import hardware, modeling
from ..stages.training import without_unused_test_data

# Dense (no sparsity) bf16 tensor-core FLOP/s and memory bandwidth (bytes/s), from the vendors' datasheets.
GPUS: dict[str, tuple[float, float]] = {
    "h100-80gb": (989e12, 3.35e12),  # H100 SXM5
    "h200": (989e12, 4.8e12),  # H200 SXM
    "a100-80gb": (312e12, 2.039e12),  # A100 SXM4 80GB
    "a100-40gb": (312e12, 1.555e12),  # A100 SXM4 40GB
    "l40s": (362e12, 0.864e12),
    "l4": (121e12, 0.3e12),
    "rtx4090": (165e12, 1.008e12),
}
GENERATION_EFFICIENCY = 0.5  # share of the memory bandwidth a batched decode step reaches (an assumption)


def _tokens(n: float) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e9 else f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n / 1e3:,.1f}k"


@dataclass
class Work:
    """One stage's work in tokens and FLOPs, and where the figures came from."""

    stage: str
    flops: float = 0.0
    gpu_seconds: float | None = None  # on one GPU of the profile; None: no GPU named
    gpus: int = 1
    lines: list[str] = field(default_factory=list)
    api_requests: int = 0
    api_tokens: int = 0
    tokens: float | None = None  # trained tokens (all epochs); None: not known

    @property
    def gpu_hours(self) -> float | None:
        return None if self.gpu_seconds is None else self.gpu_seconds * self.gpus / 3600

    @property
    def wall_hours(self) -> float | None:
        return None if self.gpu_seconds is None else self.gpu_seconds / 3600


def gpu_of(hw: HardwareConfig, override: str | None = None) -> tuple[float, float] | None:
    name = override or hw.gpu
    if not name:
        return None
    if name not in GPUS:
        raise ZephyrError(f"hardware.gpu={name!r} is not a GPU the time plan knows",
                          did_you_mean(name, GPUS) or f"use one of: {', '.join(GPUS)}")
    return GPUS[name]


def _data_on_machine(recipe: Recipe, stage, tokens_per_row: float | None = None) -> tuple[int, TokenCount | None] | None:
    """(training rows, their tokens as the trainer counts them) from the data and tokenizer on this machine, or None
    when either is not here. With ``tokens_per_row`` given only the rows are counted."""

    try:
        # A plan (and a dry run, which plans) runs no code of the model's: a tokenizer that needs it is not counted.
        model = dataclasses.replace(recipe.model, trust_remote_code=False)
        tokenizer = modeling.load_tokenizer(model, bool(recipe.stage.trainer.get("assistant_only_loss")))
        train, _, _ = load_for_stage(without_unused_test_data(recipe), tokenizer, stage.rows)
    except ZephyrError:
        return None
    if not len(train):
        return None
    if tokens_per_row:
        return len(train), None
    return len(train), tokencount.count(train, tokenizer, stage.rows, recipe.stage.trainer, recipe.run.seed,
                                    stage.overlong)


def training_work(recipe: Recipe, stage, shape, tokens_per_row: float | None = None, mfu: float | None = None,
                  gpu: str | None = None, count_data: bool = True, data: dict | None = None) -> Work:
    """Tokens, FLOPs and hours of a training stage as ``recipe`` runs it; see the module docstring
    for the model."""
    hw, trainer = recipe.hardware, recipe.stage.trainer
    work = Work(stage=stage.name, gpus=hardware.world_size(hw))
    ds = recipe.dataset
    split = ds.train_split or "train"
    here = _data_on_machine(recipe, stage, tokens_per_row) if count_data else None
    seq = int(trainer.get("max_length") or 1024)
    limit = int(ds.max_train_samples) if ds.max_train_samples else None
    rows: float | None
    per_row: float | None
    source: str | None
    batch_row: float | None = None  # tokens of one row of a batch (a packed row when packing)
    if here and here[1] is not None:  # counted as the trainer tokenizes (truncation and packing included)
        counted = here[1]
        rows, per_row, batch_row = counted.kept_rows, counted.tokens_per_row, counted.tokens_per_batch_row
        source = f"{counted.describe()}, from the data on this machine"
    else:
        known = None
        if here:  # the data is here, its tokens per row given
            rows, where = here[0], f"{here[0]:,} rows on this machine"
        else:
            known = DATASETS.get(ds.path or "")
            written = (data or {}).get(str(Path(ds.path or "-").resolve()))
            if written:  # data an earlier stage of the pipeline writes
                known = ({split: written[0]}, written[1] / stage.sequences_per_row)
            rows = known[0].get(split) if known else None
            origin = "as an earlier stage writes it (estimated)" if written else "from the dataset card of"
            if rows and limit:
                rows = min(rows, limit)
            where = f"{rows:,} rows {origin} {ds.path}[{split}]" if rows else ""
            if not rows and limit:  # not here and not in the table: the row count the recipe caps it at
                rows, where = limit, f"{limit:,} rows (dataset.max_train_samples)"
        per_row = tokens_per_row or (known[1] * stage.sequences_per_row if known else None)
        if not rows or not per_row:
            missing = ([] if rows else ["the row count through dataset.max_train_samples"]) + \
                ([] if per_row else ["--tokens-per-row"])
            work.lines.append(f"tokens: unknown ({ds.path} is not on this machine and not in the table); "
                              f"give {' and '.join(missing)}")
            return work
        source = f"{where}, {'given' if tokens_per_row else 'typical (estimated)'} {per_row:,.0f} tokens per row"
        if per_row > seq * stage.sequences_per_row:  # truncation, as far as a typical length tells
            per_row = seq * stage.sequences_per_row
            source += (f" (cut to {per_row:,}: max_length {seq:,} per sequence)" if stage.sequences_per_row > 1
                       else f" (cut to {per_row:,} by max_length)")
    assert rows is not None and per_row is not None  # counted, or known from the table (else returned above)
    epochs = float(trainer.get("num_train_epochs", 3.0) or 0)
    tokens = rows * per_row * epochs
    steps = trainer.get("max_steps")
    if isinstance(steps, int) and steps > 0:
        batch = (hardware.per_device_batch(recipe, stage) * hardware.world_size(hw)
                 * hardware.gradient_accumulation(recipe, stage))
        per_step = batch * (batch_row or per_row)
        tokens = min(tokens, steps * per_step) if tokens else steps * per_step
    P, L, h = shape.params, shape.layers, shape.hidden
    ctx = min(seq, max(per_row / stage.sequences_per_row, 1))
    trained = 6 * P + 12 * L * h * ctx
    frozen, _ = stage.frozen_copies(recipe)
    work.flops = tokens * (trained + frozen * (2 * P + 4 * L * h * ctx))
    rate = mfu if mfu is not None else stage.mfu
    work.tokens = tokens
    work.lines.append(f"tokens: {_tokens(tokens)} ({source}; {epochs:g} epoch(s))")
    per_token = "6P + 12Lhs" + (", plus 2P + 4Lhs for the frozen reference" if frozen else "")
    work.lines.append(f"compute: {work.flops:.3g} FLOPs ({per_token} per token)")
    peak = gpu_of(hw, gpu)
    if peak is None:
        work.lines.append("time: hardware.gpu is not set (the profile names no GPU model): no hours")
        return work
    work.gpu_seconds = work.flops / (work.gpus * peak[0] * rate)
    work.lines.append(f"time: {work.wall_hours:,.2f} h on {work.gpus} x {gpu or hw.gpu} at {rate:.0%} MFU "
                      f"({stage.mfu_source if mfu is None else 'given with --mfu'}) = {work.gpu_hours:,.1f} GPU-hours")
    return work


def generation_work(hw: HardwareConfig, stage, loads: list[dict], shapes: dict, gpu: str | None = None) -> Work:
    """Local generation (decode-bound) and API requests of a task stage (AI feedback, evaluation) on profile ``hw``."""
    work = Work(stage=stage.name, gpus=1)
    peak = gpu_of(hw, gpu)
    seconds = 0.0
    for load in loads:
        out_tokens = load["requests"] * load["new_tokens"]
        if load["how"] == "api":
            work.api_requests += load["requests"]
            work.api_tokens += load["requests"] * (PROMPT_TOKENS + load["new_tokens"])
            work.lines.append(f"{load['role']}: {load['requests']:,} API requests to {load['model']} "
                              f"(up to {out_tokens / 1e6:,.2f}M tokens out); time and price are the provider's")
            continue
        if load["how"] == "function":
            work.lines.append(f"{load['role']}: {load['requests']:,} calls of {load['model']} (in process)")
            continue
        shape = shapes.get(load["model"])
        if shape is None:
            work.lines.append(f"{load['role']}: {load['requests']:,} requests to {load['model']}: its shape is not "
                              "known here, time not estimated")
            continue
        work.flops += 2 * shape.params * load["requests"] * (PROMPT_TOKENS + load["new_tokens"])
        if peak is None:
            work.lines.append(f"{load['role']}: {out_tokens / 1e6:,.2f}M tokens at most; no GPU named, no hours")
            continue
        batch = max(int(load["batch"]), 1)
        per_step = 2 * shape.params / (peak[1] * GENERATION_EFFICIENCY)  # one decode step reads the 16-bit weights
        tokens_per_s = batch / per_step
        t = out_tokens / tokens_per_s
        seconds += t
        served = " (served by its own process)" if load["how"] == "served" else ""
        work.lines.append(f"{load['role']}: {out_tokens / 1e6:,.2f}M tokens at most, ~{tokens_per_s:,.0f} tokens/s at "
                          f"batch {batch}{served} = {t / 3600:,.2f} h")
    if peak is not None:
        work.gpu_seconds = seconds
        work.lines.append(f"time: {seconds / 3600:,.2f} h of generation on one {gpu or hw.gpu} (decode-bound: "
                          f"{GENERATION_EFFICIENCY:.0%} of its memory bandwidth, prompts of ~{PROMPT_TOKENS} tokens)")
    return work


def render_cost(works: list[Work], price: float | None) -> list[str]:
    """The total of several stages' work, and the cost at `price` per GPU-hour."""
    hours = [w.gpu_hours for w in works if w.gpu_hours is not None]
    wall = [w.wall_hours for w in works if w.wall_hours is not None]
    lines = []
    if hours:
        total = sum(hours)
        text = f"{sum(wall):,.2f} h of wall-clock, {total:,.1f} GPU-hours"
        if price is not None:
            text += f", {total * price:,.2f} at {price:g} per GPU-hour"
        lines.append(text)
    missing = [w.stage for w in works if w.gpu_hours is None and w.flops]
    if missing:
        lines.append(f"not in the hours: {', '.join(missing)} (no GPU model named)")
    requests = sum(w.api_requests for w in works)
    if requests:
        lines.append(f"API: {requests:,} requests, ~{sum(w.api_tokens for w in works) / 1e6:,.1f}M tokens "
                     "(billed by the provider)")
    return lines
