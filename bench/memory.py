"""Calibrate the memory plan against measured peaks of real training on the CPU.

    python -m bench.memory                 all shapes, with and without gradient checkpointing (~5 min)
    python -m bench.memory --shapes 20M    one shape

Each measurement runs in a fresh process: the tiny/sft recipe's data, batch and length (2 packed rows of 256
tokens), fp32, AdamW, the real TRL SFT trainer through the stage module, on a random-weight Mistral-shaped
model of the given size (32k vocabulary, as the plan's well-known models). The process's idle baseline is its
resident memory once everything but the model is in place (imports, tokenizer, tokenized data, trainer
arguments); the peak is the kernel's resident high-water mark (VmHWM, reset to the baseline through
/proc/self/clear_refs) over two optimizer steps, which allocate the gradients and AdamW's states. Measured =
peak - baseline, compared with `zephyr-recipes plan`'s estimate for the same settings (hardware=cpu).

Writes bench-results/memory.json and bench-results/memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Mistral-style decoder shapes between ~20M and ~130M parameters (32k vocabulary, untied embeddings).
SHAPES = {
    "20M": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4},
    "60M": {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8, "num_attention_heads": 8,
            "num_key_value_heads": 8},
    "130M": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
             "num_key_value_heads": 4},
}
VOCAB = 32000
MB = 1e6


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def model_config(shape: str) -> dict:
    return {"model_type": "mistral", "vocab_size": VOCAB, "tie_word_embeddings": False,
            "max_position_embeddings": 4096, **SHAPES[shape]}


def recipe_overrides(ckpt: bool, steps: int) -> list[str]:
    return ["hardware=cpu", f"hardware.gradient_checkpointing={str(ckpt).lower()}",
            f"+stage.trainer.max_steps={steps}", "stage.trainer.save_strategy=no", "stage.trainer.logging_steps=1"]


def measure_here(shape: str, ckpt: bool, steps: int = 2) -> dict:
    """One measurement in this process (call in a fresh one: the high-water mark covers the whole process)."""
    import gc
    import logging

    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    from zephyr_recipes import data, stages
    from zephyr_recipes.model import modeling
    from zephyr_recipes.runtime import plan
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate
    from zephyr_recipes.stages.training import trainer_args, without_unused_test_data

    logging.getLogger("zephyr_recipes").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    out = Path(tempfile.mkdtemp(prefix="zr-memory-"))
    raw, name, _ = compose("tiny/sft", recipe_overrides(ckpt, steps) + [f"+run.output_dir={out}"])
    cfg = validate(raw, name)
    placement = modeling.resolve_placement(cfg.hardware)
    tokenizer = modeling.load_tokenizer(cfg.model)
    sft = stages.get("sft")
    train, _, _ = data.load_for_stage(without_unused_test_data(cfg), tokenizer, sft.rows)
    args = trainer_args(sft, cfg, placement, out)
    config = MistralConfig(**{k: v for k, v in model_config(shape).items() if k != "model_type"})
    gc.collect()
    baseline_kb = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the current RSS
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=placement.attn_implementation)
    params = sum(p.numel() for p in model.parameters())
    trainer, _ = sft.build_trainer(cfg, model, tokenizer, train, None, args, None)
    trainer.train()
    peak_kb = _status_kb("VmHWM")
    est = plan.estimate(cfg, sft, plan.Shape.from_config(model_config(shape)))
    return {"shape": shape, "gradient_checkpointing": ckpt, "params": params, "plan_params": est["params"],
            "per_device_batch": est["per_device_batch"], "sequence_length": est["sequence_length"],
            "baseline_mb": baseline_kb * 1024 / MB, "peak_mb": peak_kb * 1024 / MB,
            "measured_mb": (peak_kb - baseline_kb) * 1024 / MB, "plan_mb": est["total_gb"] * 1e9 / MB,
            "plan_parts_mb": {k: v * 1e9 / MB for k, v in est["parts"].items()}, "steps": steps}


def measure(shape: str, ckpt: bool) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "--one", shape, "--ckpt", str(int(ckpt))],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {shape} ckpt={ckpt} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | gradient checkpointing | measured peak - idle (MB) | plan (MB) | plan / measured |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['params'] / 1e6:.1f}M | {'on' if r['gradient_checkpointing'] else 'off'} "
                     f"| {r['measured_mb']:.0f} | {r['plan_mb']:.0f} | {r['plan_mb'] / r['measured_mb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--one", choices=list(SHAPES), help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(measure_here(a.one, bool(a.ckpt))))
        return 0
    rows = []
    for shape in a.shapes:
        for ckpt in (False, True):
            r = measure(shape, ckpt)
            rows.append(r)
            print(f"{shape} ckpt={'on' if ckpt else 'off'}: measured {r['measured_mb']:.0f} MB, "
                  f"plan {r['plan_mb']:.0f} MB ({r['plan_mb'] / r['measured_mb']:.2f}x)", file=sys.stderr, flush=True)
    save(Path(a.out), "memory", rows, table(rows))
    return 0


def save(out: Path, stem: str, rows: list[dict], text: str) -> None:
    """<stem>.json (every measurement) and <stem>.md (the table) in ``out``, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
