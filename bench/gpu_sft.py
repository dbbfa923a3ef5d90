"""SFT throughput and model FLOPs utilisation (MFU) of a ~1B-parameter Mistral on one GPU.

    python bench/gpu_sft.py [--steps 30] [--batch 8] [--seq 2048] [--out bench-results/gpu_sft.json]

Random weights from a MistralConfig (nothing is downloaded), bf16, flash attention 2 when flash-attn is
installed else sdpa, TRL's bfd packing (padding-free), Liger kernels when liger-kernel is installed. The data
is UltraChat-shaped and long-tailed (bench.run.ultrachat_like_rows, scaled up), written to a local jsonl.

MFU = achieved model FLOPs per second / the card's bf16 matmul rate, which the script measures first with a big
torch.matmul (so the ratio is against what this card really does, not its datasheet). Model FLOPs per token
use the usual estimate for training: 6 x (non-embedding parameters + LM head) + 12 x layers x hidden x
sequence length for attention (forward + backward, no recomputation counted).

Refuses with exit code 2 on a machine without a CUDA GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

# About 1.1B parameters: TinyLlama's shape in Mistral's architecture (GQA 8:1, SwiGLU), 22 layers of width 2048.
MODEL_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)


def param_count(cfg: dict) -> dict:
    """Parameters of a MistralForCausalLM with this config, computed from the shapes."""
    h, i, n, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    head_dim = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q = h * cfg["num_attention_heads"] * head_dim
    kv = 2 * h * cfg["num_key_value_heads"] * head_dim
    o = cfg["num_attention_heads"] * head_dim * h
    mlp = 3 * h * i
    norms = 2 * h
    layer = q + kv + o + mlp + norms
    embed = v * h
    head = 0 if cfg.get("tie_word_embeddings") else v * h
    return {"layers": n * layer, "embedding": embed, "lm_head": head, "final_norm": h,
            "total": n * layer + embed + head + h}


def flops_per_token(cfg: dict, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters (layers + LM head) + 12 x layers x hidden x seq_len."""
    p = param_count(cfg)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    attn_width = cfg["num_attention_heads"] * head_dim
    lm_head = cfg["vocab_size"] * cfg["hidden_size"]  # used as a matmul whether or not tied
    return 6.0 * (p["layers"] + lm_head) + 12.0 * cfg["num_hidden_layers"] * attn_width * seq_len


def mfu(tokens_per_s: float, flops_token: float, peak_flops: float) -> float:
    return tokens_per_s * flops_token / peak_flops


def matmul_rate(n: int = 8192, iters: int = 20) -> float:
    """Measured bf16 matmul FLOP/s of the current GPU."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def _ckpt_key(cls) -> str:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def refuse_without_gpu() -> int | None:
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu_sft.py needs a CUDA GPU and this machine has none; nothing was run. "
              "Run `make bench` for the CPU figures.", file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu_sft.py", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the rate")
    p.add_argument("--batch", type=int, default=8, help="packed rows per step")
    p.add_argument("--seq", type=int, default=2048, help="max_length of a packed row")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--out", default="bench-results/gpu_sft.json")
    a = p.parse_args(argv)
    code = refuse_without_gpu()
    if code is not None:
        return code

    import datasets
    import torch
    import transformers
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM
    from trl import SFTConfig, SFTTrainer

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import _StepClock, _word_pool, ultrachat_like_rows
    from zephyr_recipes.embedded import builtin
    from zephyr_recipes.model import modeling

    peak = matmul_rate()
    gpu = torch.cuda.get_device_name(0)
    print(f"{gpu}: measured bf16 matmul {peak / 1e12:.1f} TFLOP/s", flush=True)
    attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    liger = importlib.util.find_spec("liger_kernel") is not None
    tok = AutoTokenizer.from_pretrained(builtin.resolve("builtin://tiny-mistral"))
    tok.chat_template = modeling.template_text("zephyr")
    tok.pad_token = tok.pad_token or tok.eos_token
    _word_pool()
    rows = ultrachat_like_rows(a.rows, seed=11, median_words=400, sigma=0.9, max_words=3000)
    train = datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    cfg = dict(MODEL_1B, vocab_size=max(MODEL_1B["vocab_size"], len(tok)))
    torch.manual_seed(0)
    model = MistralForCausalLM._from_config(MistralConfig(**cfg), attn_implementation=attn, dtype=torch.bfloat16)
    n_params = sum(x.numel() for x in model.parameters())
    args = SFTConfig(output_dir="/tmp/gpu_sft", bf16=True, packing=True, packing_strategy="bfd",
                     max_length=a.seq, per_device_train_batch_size=a.batch, max_steps=a.steps,
                     learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none",
                     use_liger_kernel=liger, dataset_num_proc=8,
                     **{_ckpt_key(SFTConfig): True})
    clock = _StepClock.make()
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=[clock])
    trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    w = min(a.warmup, len(clock.times) - 2)
    tps = (tokens[-1] - tokens[w]) / (clock.times[-1] - clock.times[w])
    # Gradient checkpointing recomputes the forward pass; MFU counts model FLOPs only (no recomputation).
    result = {"gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
              "attention": attn, "liger": liger, "parameters": n_params, "seq": a.seq, "batch": a.batch,
              "matmul_bf16_tflops": peak / 1e12, "tokens_per_s": tps,
              "model_tflops": tps * flops_per_token(cfg, a.seq) / 1e12,
              "mfu": mfu(tps, flops_per_token(cfg, a.seq), peak)}
    print(json.dumps(result, indent=2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
