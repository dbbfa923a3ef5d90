"""Calibrate the time plan against measured step times of real training on the CPU.

    python -m bench.timing                  the tiny model and two larger shapes (~3 min on 2 cores)
    python -m bench.timing --shapes 60M     one shape

Each measurement runs in a fresh process: the tiny/sft recipe (2 packed rows of up to 256 tokens per step, fp32,
AdamW, the real TRL SFT trainer through the stage module) on the embedded tiny model or a random-weight
Mistral-shaped model of the given size. The step time is the median wall time of optimizer steps 3 to 8 (the
first two warm up). The same process times a dense fp32 matmul (1024 x 1024, the same threads) to give this
CPU's achievable FLOP/s: the "peak" the plan's formula divides by.

The plan's model is `zephyr_recipes.runtime.timeplan`: (6P + 12Lhs) FLOPs per trained token, hours = FLOPs / (peak x
MFU). The MFU is fitted on the largest shape (from the tokens its steps really trained) and every shape is
predicted with it from the plan's own token count of the run (what `zephyr-recipes plan` prints): predicted /
measured says how far the plan's tokens and FLOP count carry from one shape to another.

Writes bench-results/timing.json and bench-results/timing.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.memory import SHAPES, model_config, recipe_overrides, save

SHAPE_NAMES = ["tiny", *SHAPES]
STEPS = 8


def _matmul_flops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, start = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return n * 2 * 1024 ** 3 / (time.perf_counter() - start)


def measure_here(shape: str) -> dict:
    import logging

    import torch
    from transformers import AutoModelForCausalLM, MistralConfig, TrainerCallback

    from zephyr_recipes import data, stages
    from zephyr_recipes.embedded import builtin
    from zephyr_recipes.model import modeling
    from zephyr_recipes.runtime import plan, timeplan
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate
    from zephyr_recipes.stages.training import trainer_args, without_unused_test_data

    logging.getLogger("zephyr_recipes").setLevel(logging.WARNING)
    threads = max(1, min(4, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    out = Path(tempfile.mkdtemp(prefix="zr-timing-"))
    raw, name, _ = compose("tiny/sft", recipe_overrides(False, STEPS) + [f"+run.output_dir={out}"])
    cfg = validate(raw, name)
    placement = modeling.resolve_placement(cfg.hardware)
    tokenizer = modeling.load_tokenizer(cfg.model)
    sft = stages.get("sft")
    train, _, _ = data.load_for_stage(without_unused_test_data(cfg), tokenizer, sft.rows)
    args = trainer_args(sft, cfg, placement, out)
    torch.manual_seed(0)
    if shape == "tiny":
        config_dict = json.loads((Path(builtin.resolve("builtin://tiny-mistral")) / "config.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(builtin.resolve("builtin://tiny-mistral"),
                                                     attn_implementation=placement.attn_implementation)
    else:
        config_dict = model_config(shape)
        config = MistralConfig(**{k: v for k, v in config_dict.items() if k != "model_type"})
        model = AutoModelForCausalLM.from_config(config, attn_implementation=placement.attn_implementation)
    trainer, _ = sft.build_trainer(cfg, model, tokenizer, train, None, args, None)
    stamps: list[float] = []
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    original = trainer.training_step

    def counting_step(model, inputs, *a, **k):  # the tokens each step really trains (padding-free packing)
        ids = inputs.get("input_ids")
        tokens.append(int(ids.numel()) if ids is not None else 0)
        return original(model, inputs, *a, **k)

    trainer.training_step = counting_step
    trainer.add_callback(Clock())
    start = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([start] + stamps, stamps)][2:]
    shape_ = plan.Shape.from_config(config_dict)
    per_step = statistics.median(tokens[2:]) if len(tokens) > 2 else statistics.median(tokens)
    ctx = cfg.stage.trainer["max_length"]
    per_token = 6 * shape_.params + 12 * shape_.layers * shape_.hidden * ctx
    # The plan's own token count of this run (max_steps steps), as `zephyr-recipes plan` prints it.
    planned = timeplan.training_work(cfg, sft, shape_).tokens or 0.0
    return {"shape": shape, "params": shape_.params, "tokens_per_step": per_step, "flops_per_step": per_step * per_token,
            "plan_tokens_per_step": planned / STEPS, "plan_flops_per_step": planned / STEPS * per_token,
            "step_seconds": statistics.median(steps), "matmul_flops": _matmul_flops(threads), "threads": threads}


def measure(shape: str) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "bench.timing", "--one", shape], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {shape} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def calibrate(rows: list[dict]) -> list[dict]:
    """Fit the MFU on the largest shape (from the tokens its steps really trained); predict every shape's step time
    with it from the plan's own token count, as `plan` does."""
    ref = max(rows, key=lambda r: r["params"])
    mfu = ref["flops_per_step"] / (ref["step_seconds"] * ref["matmul_flops"])
    for r in rows:
        r["mfu_fitted"] = mfu
        r["mfu_measured"] = r["flops_per_step"] / (r["step_seconds"] * r["matmul_flops"])
        r["predicted_seconds"] = r["plan_flops_per_step"] / (r["matmul_flops"] * mfu)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | tokens / step (trained) | tokens / step (plan) | GFLOPs / step | measured s / step | "
             "predicted s / step | predicted / measured | MFU (vs matmul) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['params'] / 1e6:.2f}M | {r['tokens_per_step']:.0f} | "
                     f"{r['plan_tokens_per_step']:.0f} | {r['flops_per_step'] / 1e9:.1f} | {r['step_seconds']:.3f} | "
                     f"{r['predicted_seconds']:.3f} | {r['predicted_seconds'] / r['step_seconds']:.2f} | "
                     f"{r['mfu_measured']:.0%} |")
    ref = rows[0]
    lines.append(f"\nMFU fitted on the largest shape: {ref['mfu_fitted']:.0%} of a dense fp32 matmul "
                 f"({ref['matmul_flops'] / 1e9:.0f} GFLOP/s on {ref['threads']} thread(s)).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="*", default=["tiny", "20M", "60M"], choices=SHAPE_NAMES)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--one", choices=SHAPE_NAMES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(measure_here(a.one)))
        return 0
    rows = []
    for shape in a.shapes:
        r = measure(shape)
        rows.append(r)
        print(f"{shape}: {r['step_seconds']:.3f} s/step, {r['flops_per_step'] / 1e9:.1f} GFLOPs/step",
              file=sys.stderr, flush=True)
    rows = calibrate(rows)
    save(Path(a.out), "timing", rows, table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
