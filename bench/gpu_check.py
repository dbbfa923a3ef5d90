"""`make gpu-check`: the acceptance run for one CUDA GPU, at most about 8 minutes.

    python -m bench.gpu_check [--out gpu-check] [--budget-s 480]

Refuses with exit code 2 (and writes nothing) on a machine without a CUDA GPU. On one, it runs in order, each
check in its own try so one failure does not hide the others, and stops starting new checks when the budget
is spent:

1. attention: which kernel the runner picks (flash_attention_2 when flash-attn is installed, else sdpa);
2. SFT, bf16, of a ~1.1B-parameter Mistral with random weights (bench/gpu_sft.py's model), TRL's bfd packing:
   tokens/s and MFU against both the card's bf16 matmul rate measured first and its datasheet dense bf16
   peak. Attention FLOPs are counted on the packed documents' own lengths (sum of n^2 per document), not
   on the packed row's length;
3. a few DPO steps of that model through the runner (`zephyr-recipes run tiny/dpo ... hardware=1gpu`);
4. a few QLoRA SFT steps through the runner (hardware=qlora-24gb; needs bitsandbytes and peft);
5. batched AIF generation with transformers, and with vLLM when it is installed;

and, for 2-4, the peak GPU memory (torch.cuda.max_memory_reserved plus the CUDA context) against what
`zephyr-recipes plan` predicts for the same run. Results: <out>/results.json and <out>/results.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Dense bf16 tensor-core peaks (no sparsity) from NVIDIA's datasheets, TFLOP/s; matched on the device name.
# Every word of a key must appear in the name, first match wins ("NVIDIA H100 80GB HBM3" is the SXM card).
DATASHEET_BF16_TFLOPS = [("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4),
                         ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0),
                         ("A10", 125.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0)]
GB = 1e9


def datasheet_peak(name: str) -> float | None:
    words = set(name.lower().replace("-", " ").split())
    for key, tflops in DATASHEET_BF16_TFLOPS:
        if set(key.lower().split()) <= words:
            return tflops * 1e12
    return None


def attention_flops(cfg: dict, doc_lengths: list[int]) -> float:
    """Training FLOPs of attention's two matmuls (scores and weighted sum, forward + backward) for documents
    of these lengths, each attending over itself only (padding-free packing): 12 x layers x width x n^2."""
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    width = cfg["num_attention_heads"] * head_dim
    return 12.0 * cfg["num_hidden_layers"] * width * sum(n * n for n in doc_lengths)


def dense_flops_per_token(cfg: dict) -> float:
    """6 x (layer matmul parameters + LM head): the non-attention training FLOPs per token."""
    from bench.gpu_sft import param_count

    return 6.0 * (param_count(cfg)["layers"] + cfg["vocab_size"] * cfg["hidden_size"])


def refuse_without_gpu() -> int | None:
    import torch

    if not torch.cuda.is_available():
        print("make gpu-check needs a CUDA GPU and this machine has none; nothing was run or written.",
              file=sys.stderr)
        return 2
    return None


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _peak_gb() -> dict:
    import torch

    free, total = torch.cuda.mem_get_info()
    return {"max_allocated_gb": torch.cuda.max_memory_allocated() / GB,
            "max_reserved_gb": torch.cuda.max_memory_reserved() / GB, "device_total_gb": total / GB}


def _reset_peak() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _plan_gb(recipe: str, overrides: list[str]) -> dict:
    from zephyr_recipes import stages
    from zephyr_recipes.runtime import plan
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    raw, name, _ = compose(recipe, overrides)
    cfg = validate(raw, name)
    est, kind, sentence, source = plan.plan(cfg, stages.of(cfg))
    return {"plan_gb": est["total_gb"], "plan_parts_gb": est["parts"], "plan_verdict": sentence}


def _compare(measured: dict, planned: dict) -> dict:
    # The plan's total includes OVERHEAD_GB for the CUDA context, which torch's counters do not see.
    from zephyr_recipes.runtime.plan import OVERHEAD_GB

    seen = measured["max_reserved_gb"] + OVERHEAD_GB
    return {**measured, **planned, "measured_with_context_gb": seen, "plan_over_measured": planned["plan_gb"] / seen}


# ------------------------------------------------------------------------------------------------ checks
def check_attention() -> dict:
    from zephyr_recipes.model import modeling

    hw = {"name": "gpu-check", "device": "cuda", "precision": "auto", "attn_implementation": "auto",
          "gradient_checkpointing": False, "strategy": "none", "lora": None, "load_in_4bit": False}
    placement = modeling.resolve_placement(hw)
    return {"flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
            "picked": placement.attn_implementation, "precision": placement.precision}


def make_model_folder(folder: Path) -> Path:
    """The ~1.1B random-weight Mistral (bf16) with the embedded tokenizer and the Zephyr template, saved."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    from bench.gpu_sft import MODEL_1B
    from zephyr_recipes.embedded import builtin
    from zephyr_recipes.model import modeling

    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(builtin.resolve("builtin://tiny-mistral"))
    tok.chat_template = modeling.template_text("zephyr")
    torch.manual_seed(0)
    model = MistralForCausalLM._from_config(MistralConfig(**dict(MODEL_1B, vocab_size=max(32000, len(tok)))),
                                            dtype=torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def check_sft(model_dir: Path, steps: int, batch: int, seq: int, peak_measured: float) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bench.gpu_sft import _ckpt_key
    from bench.run import _StepClock, _word_pool, ultrachat_like_rows

    attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    _word_pool()
    rows = ultrachat_like_rows(4000, seed=11, median_words=400, sigma=0.9, max_words=3000)
    train = datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation=attn).cuda()
    cfg = model.config.to_dict()
    args = SFTConfig(output_dir=str(model_dir.parent / "sft-out"), bf16=True, packing=True, packing_strategy="bfd",
                     max_length=seq, per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4,
                     logging_steps=1, save_strategy="no", report_to="none", dataset_num_proc=8,
                     **{_ckpt_key(SFTConfig): True})
    clock = _StepClock.make()
    _reset_peak()
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=[clock])
    batches: list[list[int]] = []  # per collated batch: the packed documents' lengths
    collate = trainer.data_collator

    def recording(examples):
        batches.append([int(n) for ex in examples for n in (ex.get("seq_lengths") or [len(ex["input_ids"])])])
        return collate(examples)

    trainer.data_collator = recording
    trainer.train()
    memory = _peak_gb()
    warm = min(3, len(clock.times) - 2)
    timed = batches[warm + 1:len(clock.times)]
    seconds = clock.times[-1] - clock.times[warm]
    tokens = sum(sum(b) for b in timed)
    flops = tokens * dense_flops_per_token(cfg) + sum(attention_flops(cfg, b) for b in timed)
    # the same work counted the naive way: every token attends over the whole packed row
    naive = tokens * (dense_flops_per_token(cfg) + 12.0 * cfg["num_hidden_layers"] * cfg["hidden_size"] * seq)
    sheet = datasheet_peak(torch.cuda.get_device_name(0))
    result = {"attention": attn, "parameters": sum(p.numel() for p in model.parameters()), "steps": steps,
              "batch": batch, "max_length": seq, "tokens_per_s": tokens / seconds,
              "documents_per_row": sum(len(b) for b in timed) / max(1, len(timed) * batch),
              "model_tflops": flops / seconds / 1e12,
              "mfu_vs_measured_matmul": flops / seconds / peak_measured,
              "mfu_vs_datasheet": flops / seconds / sheet if sheet else None,
              "datasheet_bf16_tflops": sheet / 1e12 if sheet else None,
              "naive_row_length_tflops": naive / seconds / 1e12}
    planned = _plan_gb("tiny/sft", [f"model.name_or_path={model_dir}", "model.chat_template=null", "hardware=1gpu",
                                    f"hardware.per_device_batch_size={batch}", f"stage.trainer.max_length={seq}"])
    del trainer, model
    return {**result, "memory": _compare(memory, planned)}


def _run_recipe(recipe: str, overrides: list[str], out: Path) -> dict:
    from zephyr_recipes.commands.cli import main

    _reset_peak()
    started = time.perf_counter()
    code = main(["run", recipe, *overrides, f"+run.output_dir={out}", "run.overwrite=true"])
    if code != 0:
        raise RuntimeError(f"zephyr-recipes run {recipe} exited {code}")
    memory = _peak_gb()
    metrics = json.loads((out / "metrics.json").read_text())
    return {"seconds": time.perf_counter() - started, "first_loss": metrics.get("first_loss"),
            "last_loss": metrics.get("last_loss"), "memory": _compare(memory, _plan_gb(recipe, overrides))}


def check_dpo(model_dir: Path, work: Path) -> dict:
    overrides = [f"model.name_or_path={model_dir}", "model.chat_template=null",
                 "dataset.path=builtin://tiny-ultrafeedback", "hardware=1gpu", "hardware.per_device_batch_size=4",
                 "stage.global_batch_size=16", "+stage.trainer.max_steps=5", "stage.trainer.max_length=512"]
    return _run_recipe("tiny/dpo", overrides, work / "dpo")


def check_qlora(model_dir: Path, work: Path) -> dict:
    missing = [m for m in ("bitsandbytes", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"not installed: {', '.join(missing)} (pip install 'zephyr-recipes[qlora]')"}
    overrides = [f"model.name_or_path={model_dir}", "model.chat_template=null", "hardware=qlora-24gb",
                 "+stage.trainer.max_steps=5", "stage.trainer.max_length=1024"]
    return _run_recipe("tiny/sft", overrides, work / "qlora")


def check_generation(model_dir: Path, prompts: int = 256, new_tokens: int = 128) -> dict:
    import torch

    from zephyr_recipes.feedback.backends import TransformersBackend

    conversations = [[{"role": "user", "content": f"Write a short story about the number {i}."}]
                     for i in range(prompts)]
    out: dict = {}
    _reset_peak()
    backend = TransformersBackend(str(model_dir), hardware={"device": "cuda"}, batch_size=64)
    started = time.perf_counter()
    produced = sum(len(texts[0]) for _, texts in backend.generate(conversations, 1,
                                                                  {"max_new_tokens": new_tokens, "temperature": 1.0}))
    seconds = time.perf_counter() - started
    out["transformers"] = {"prompts": prompts, "max_new_tokens": new_tokens, "seconds": seconds,
                           "prompts_per_s": prompts / seconds, "characters": produced, **_peak_gb()}
    del backend
    torch.cuda.empty_cache()
    if importlib.util.find_spec("vllm") is None:
        out["vllm"] = {"skipped": "vllm is not installed"}
        return out
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), dtype="bfloat16", gpu_memory_utilization=0.5)
    started = time.perf_counter()
    results = llm.chat(conversations, SamplingParams(max_tokens=new_tokens, temperature=1.0))
    seconds = time.perf_counter() - started
    tokens = sum(len(r.outputs[0].token_ids) for r in results)
    out["vllm"] = {"prompts": prompts, "seconds": seconds, "prompts_per_s": prompts / seconds,
                   "tokens_per_s": tokens / seconds}
    return out


# ------------------------------------------------------------------------------------------------ report
def render(results: dict) -> str:
    lines = [f"# gpu-check: {results.get('gpu', '?')}", "",
             f"torch {results.get('torch')}, transformers {results.get('transformers')}, "
             f"{results.get('seconds', 0):.0f} s in all.", ""]
    for name, value in results["checks"].items():
        lines.append(f"## {name}")
        if isinstance(value, dict) and "error" in value:
            lines.append(f"FAILED: {value['error']}")
        else:
            lines += ["```", json.dumps(value, indent=2, default=str), "```"]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu-check")
    ap.add_argument("--budget-s", type=float, default=480.0, help="no new check starts after this many seconds")
    ap.add_argument("--steps", type=int, default=20, help="SFT steps (3 of them warm-up)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    a = ap.parse_args(argv)
    code = refuse_without_gpu()
    if code is not None:
        return code

    import torch
    import transformers

    sys.path.insert(0, str(ROOT))
    from bench.gpu_sft import matmul_rate

    started = time.perf_counter()
    budget = Budget(a.budget_s)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    results: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                     "transformers": transformers.__version__, "checks": {}}

    def record(name: str, fn, *args):
        if budget.left() <= 0:
            results["checks"][name] = {"skipped": "time budget spent"}
            return None
        t0 = time.perf_counter()
        try:
            value = fn(*args)
        except Exception as exc:  # one failing check is recorded; the others still run
            value = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        if isinstance(value, dict):
            value.setdefault("check_seconds", round(time.perf_counter() - t0, 1))
        results["checks"][name] = value
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"gpu-check {name}: {'FAILED' if isinstance(value, dict) and 'error' in value else 'done'}",
              file=sys.stderr, flush=True)
        return value

    peak = matmul_rate()
    results["matmul_bf16_tflops_measured"] = peak / 1e12
    record("attention", check_attention)
    model_dir = record("model", lambda: {"folder": str(make_model_folder(work / "model-1b"))})
    folder = Path(model_dir["folder"]) if model_dir and "folder" in model_dir else None
    if folder is not None:
        record("sft_bf16_packed", check_sft, folder, a.steps, a.batch, a.seq, peak)
        record("dpo", check_dpo, folder, work)
        record("qlora_sft", check_qlora, folder, work)
        record("aif_generation", check_generation, folder)
    results["seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(render(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    failed = [k for k, v in results["checks"].items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
