"""Run under torchrun with DS_ACCELERATOR=cpu: a few ZeRO-3 steps of a small Mistral on CPU processes (gloo),
with the DeepSpeed file the 8gpu-zero3 profile generates, its "auto" values filled for this run.
Prints one JSON line per rank: world size, loss per step, local and total parameter counts."""

from __future__ import annotations

import json
import os
import sys

import deepspeed
import torch
from transformers import MistralConfig, MistralForCausalLM

from zephyr_recipes.model import hardware
from zephyr_recipes.runtime.compose import compose
from zephyr_recipes.runtime.validate import validate


def main() -> None:
    cfg = validate(*compose("zephyr-7b-beta/sft", ["hardware=8gpu-zero3"])[:2])
    ds = hardware.deepspeed_config(cfg.hardware)
    hidden = 64
    ds.update(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=1, train_batch_size=4,
              gradient_clipping=1.0, bf16={"enabled": False}, fp16={"enabled": False})
    ds["zero_optimization"].update(reduce_bucket_size=hidden * hidden,
                                   stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
                                   stage3_param_persistence_threshold=10 * hidden)
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(hidden_size=hidden, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=256))
    total = sum(p.numel() for p in model.parameters())
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3),
                                           config=ds)
    g = torch.Generator().manual_seed(engine.global_rank)
    ids = torch.randint(0, 256, (2, 32), generator=g)
    losses = []
    for _ in range(5):
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    local = sum(p.ds_tensor.numel() for p in engine.module.parameters())
    # One file per rank in the working folder: two ranks printing to one pipe can interleave their lines.
    with open(f"rank{engine.global_rank}.json", "w") as fh:
        json.dump({"rank": engine.global_rank, "world": engine.world_size, "stage": engine.zero_optimization_stage(),
                   "losses": losses, "local_params": local, "total_params": total}, fh)


if __name__ == "__main__":
    main()
    # As the runner's workers do (zephyr_recipes/runtime/worker.py): leave the gloo group together, then skip the
    # interpreter's C++ teardown, where a finished rank was seen to abort now and then (SIGABRT).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
