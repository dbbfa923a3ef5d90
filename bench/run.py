"""`make bench`: the runner's speed, measured against plain TRL on the same machine in the same session.

    python -m bench.run [--reps 3] [--only overhead,tracking,sft,loss,dpo,aif,vllm,data] [--out bench-results] [--smoke]

One function per figure; each returns a dict with its raw samples, medians and spreads, and the ratio against
its baseline. ``main`` prints the machine, runs them, and writes ``bench-results/bench.json`` and
``bench-results/bench.md``. ``--smoke`` runs every figure once on tiny sizes (for the test suite); its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


# ------------------------------------------------------------------------------------------- helpers
def summary(samples: list[float]) -> dict:
    """Median with min-max spread (and IQR from 4 samples on)."""
    s = sorted(samples)
    out = {"median": statistics.median(s), "min": s[0], "max": s[-1], "n": len(s), "samples": s}
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        out["iqr"] = [q[0], q[2]]
    return out


def fmt(stat: dict, digits: int = 2) -> str:
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def machine() -> dict:
    import torch
    import transformers
    import trl

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": load, "date": dt.datetime.now().isoformat(timespec="seconds")}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["TQDM_DISABLE"] = "1"
    return env


def _compose(recipe: str, overrides: list[str]):
    from zephyr_recipes.runtime.compose import compose
    from zephyr_recipes.runtime.validate import validate

    raw, name, _ = compose(recipe, overrides)
    return validate(raw, name)


def _quiet():
    import logging

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("zephyr_recipes").setLevel(logging.WARNING)


class _StepClock:
    """A TrainerCallback factory: wall time at the end of every optimizer step."""

    @staticmethod
    def make():
        import transformers

        class Clock(transformers.TrainerCallback):
            def __init__(self):
                self.times: list[float] = []

            def on_step_end(self, args, state, control, **kwargs):
                self.times.append(time.perf_counter())

        return Clock()


# ------------------------------------------------------------------------------- 1. runner overhead
def _trainer_kwargs(cfg) -> dict:
    """The keyword arguments the worker passes to SFTConfig (besides output_dir), from a validated recipe."""
    from zephyr_recipes import stages
    from zephyr_recipes.model import trainer_fields

    fields = trainer_fields.fields(stages.of(cfg))
    ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {"bf16": False, "fp16": False, ckpt: cfg.hardware.gradient_checkpointing, **cfg.stage.trainer}


def bench_overhead(reps: int = 3, max_steps: int = 5, warmup: bool = True, work: Path | None = None) -> dict:
    """Tiny SFT recipe through the runner vs the same arguments in a plain TRL script, alternated."""
    from zephyr_recipes.embedded import builtin
    from zephyr_recipes.model.modeling import TEMPLATES

    work = Path(work or tempfile.mkdtemp(prefix="bench-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    overrides = [f"+stage.trainer.max_steps={max_steps}", "run.overwrite=true", "run.resume=false"]
    cfg = _compose("tiny/sft", overrides)
    args_file = work / "trainer_args.json"
    args_file.write_text(json.dumps(_trainer_kwargs(cfg)))
    model_dir, data_dir = builtin.resolve(cfg.model.name_or_path), builtin.resolve(cfg.dataset.path)
    commands = {
        "runner": lambda out: ["-m", "zephyr_recipes", "run", "tiny/sft", *overrides, f"run.output_dir={out}"],
        "plain_trl": lambda out: [str(ROOT / "bench" / "plain_trl_sft.py"), "--model", model_dir, "--data", data_dir,
                                  "--split", cfg.dataset.train_split, "--template",
                                  str(TEMPLATES / f"{cfg.model.chat_template}.jinja"),
                                  "--args", str(args_file), "--seed", str(cfg.run.seed), "--out", out],
    }

    def once(kind: str, i: int) -> dict:
        out, times = work / f"{kind}-{i}", work / f"{kind}-{i}.times.json"
        shutil.rmtree(out, ignore_errors=True)
        times.unlink(missing_ok=True)
        t0 = time.time()
        proc = subprocess.run([PY, "-m", "bench.timed", str(times), *commands[kind](str(out))], cwd=work,
                              env=_env(), capture_output=True, text=True)
        total = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
        steps = json.loads(times.read_text())["step_end"]
        return {"first_step": steps[0] - t0, "total": total, "steps": len(steps)}

    if warmup:  # untimed: builds the caches both use (embedded model and data, datasets' map cache)
        once("runner", -1), once("plain_trl", -1)
    runs = {"runner": [], "plain_trl": []}
    for i in range(reps):
        for kind in (("runner", "plain_trl") if i % 2 == 0 else ("plain_trl", "runner")):
            runs[kind].append(once(kind, i))
    res = {"max_steps": max_steps, "order": "alternated, one untimed warm-up each"}
    for kind, rs in runs.items():
        res[kind] = {"first_step_s": summary([r["first_step"] for r in rs]), "total_s": summary([r["total"] for r in rs])}
    for key in ("first_step_s", "total_s"):
        res[f"overhead_{key[:-2]}"] = res["runner"][key]["median"] / res["plain_trl"][key]["median"] - 1
    return res


# -------------------------------------------------------------------------- 1b. tracking overhead
def bench_tracking(reps: int = 3, max_steps: int | None = None, work: Path | None = None) -> dict:
    """tiny/sft through the runner with its default tracker (trackio, local) against report_to=none, alternated,
    each in a fresh process: the share of a tiny run's wall time that tracking adds (the recipe's whole run, or
    ``max_steps`` steps logging every step)."""
    work = Path(work or tempfile.mkdtemp(prefix="bench-tracking-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**_env(), "TRACKIO_DIR": str(work / "trackio")}
    base = ["-m", "zephyr_recipes", "run", "tiny/sft", "run.overwrite=true"]
    if max_steps:
        base += [f"+stage.trainer.max_steps={max_steps}", "stage.trainer.logging_steps=1"]
    extra = {"trackio": [], "none": ["stage.trainer.report_to=none"]}

    def once(kind: str, i: int) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of one run in a fresh process."""
        out = work / f"{kind}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        proc = subprocess.run([PY, *base, *extra[kind], f"run.output_dir={out}"], cwd=work, env=env,
                              capture_output=True, text=True)
        wall = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    once("trackio", -1), once("none", -1)  # untimed warm-up of the caches both use
    runs = {"trackio": [], "none": []}
    load = [os.getloadavg()[0]]
    for i in range(reps):
        for kind in (("trackio", "none") if i % 2 == 0 else ("none", "trackio")):
            runs[kind].append(once(kind, i))
        load.append(os.getloadavg()[0])
    # Paired: each trackio run against the report_to=none run beside it, so a machine whose speed drifts (other work
    # on a shared machine) moves both sides of a ratio alike; the median ratio is the figure.
    wall = [t[0] / n[0] for t, n in zip(runs["trackio"], runs["none"])]
    cpu = [t[1] / n[1] for t, n in zip(runs["trackio"], runs["none"])]
    res = {"max_steps": max_steps, "trackio_s": summary([r[0] for r in runs["trackio"]]),
           "none_s": summary([r[0] for r in runs["none"]]),
           "trackio_cpu_s": summary([r[1] for r in runs["trackio"]]), "none_cpu_s": summary([r[1] for r in runs["none"]]),
           "wall_ratio": summary(wall), "cpu_ratio": summary(cpu), "load": summary(load)}
    res["overhead"] = res["wall_ratio"]["median"] - 1
    res["cpu_overhead"] = res["cpu_ratio"]["median"] - 1
    return res


# ------------------------------------------------------------------------------ 2. SFT throughput
WORDS = None


def _word_pool() -> list[str]:
    global WORDS
    if WORDS is None:
        import datasets

        from zephyr_recipes.embedded import builtin

        ds = datasets.load_dataset(builtin.resolve("builtin://tiny-ultrachat"), split="train_sft")
        words = {w for conv in ds["messages"][:500] for m in conv for w in m["content"].split()}
        WORDS = sorted(words)
    return WORDS


def ultrachat_like_rows(n: int, seed: int = 0, median_words: float = 40.0, sigma: float = 0.9,
                        max_words: int = 180) -> list[dict]:
    """Rows in HuggingFaceH4/ultrachat_200k's schema (prompt, prompt_id, messages) with lognormal lengths.

    UltraChat's conversation lengths are long-tailed (most are a few hundred tokens, some several thousand);
    here a conversation's total word count is lognormal (median ``median_words``, shape ``sigma``) capped at
    ``max_words``, split over 1-3 turns with answers about three times longer than questions.
    """
    import hashlib

    rng, pool = random.Random(seed), _word_pool()
    rows = []
    for _ in range(n):
        total = min(max_words, max(6, int(rng.lognormvariate(math.log(median_words), sigma))))
        turns = rng.choices((1, 2, 3), weights=(0.55, 0.3, 0.15))[0]
        per_turn = max(4, total // turns)
        messages = []
        for _t in range(turns):
            q = max(2, per_turn // 4)
            messages.append({"role": "user", "content": " ".join(rng.choices(pool, k=q))})
            messages.append({"role": "assistant", "content": " ".join(rng.choices(pool, k=max(2, per_turn - q)))})
        prompt = messages[0]["content"]
        rows.append({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(), "messages": messages})
    return rows


def write_rows(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


SFT_METHODS = {
    "trl_default": {"packing": False, "padding_free": False},
    "packing_bfd": {"packing": True, "packing_strategy": "bfd"},
    "padding_free": {"packing": False, "padding_free": True, "max_length": None},
}


def _ids(tok, messages) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _tiny(cfg_model: dict | None = None):
    from zephyr_recipes.model import modeling

    model_cfg = {"name_or_path": "builtin://tiny-mistral", "tokenizer_name_or_path": None, "revision": None,
                 "chat_template": "zephyr", "trust_remote_code": False, "dtype": "auto", **(cfg_model or {})}
    placement = modeling.Placement(device="cpu", attn_implementation="sdpa", precision="fp32")
    return model_cfg, placement, modeling.load_tokenizer(model_cfg)


def _sft_run(train, method: str, steps: int, recipe_trainer: dict, work: Path) -> dict:
    from trl import SFTConfig, SFTTrainer

    from zephyr_recipes.model import modeling

    model_cfg, placement, tok = _tiny()
    model = modeling.load_model(model_cfg["name_or_path"], model_cfg, placement)
    kw = {k: v for k, v in recipe_trainer.items() if k not in ("packing", "padding_free", "packing_strategy")}
    kw.update(SFT_METHODS[method])
    kw.update(max_steps=steps, logging_steps=1, logging_first_step=True, save_strategy="no", report_to="none",
              disable_tqdm=True, num_train_epochs=1)
    args = SFTConfig(output_dir=str(work / method), use_cpu=True, seed=42, **kw)
    clock = _StepClock.make()
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=[clock])
    trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    # Tokens and time from the end of step 1 to the end of the last step (step 1 is warm-up).
    return {"tokens": tokens[-1] - tokens[0], "seconds": clock.times[-1] - clock.times[0],
            "tokens_per_step": (tokens[-1] - tokens[0]) / max(1, len(clock.times) - 1)}


def bench_sft_throughput(reps: int = 3, rows: int = 2000, steps: int = 8, batch: int | None = None,
                         work: Path | None = None) -> dict:
    """Non-padding tokens per second: TRL's default (padded batches) vs bfd packing vs padding-free.

    The tiny SFT recipe's trainer arguments, with ``batch`` (default: the recipe's) rows or packed rows per step.
    """
    import datasets
    import transformers

    _quiet()
    work = Path(work or tempfile.mkdtemp(prefix="bench-sft-"))
    recipe = _compose("tiny/sft", [])
    trainer_cfg = dict(recipe.stage.trainer)
    if batch:
        trainer_cfg["per_device_train_batch_size"] = batch
    max_length = trainer_cfg["max_length"]
    _, _, tok = _tiny()
    data = [r for r in ultrachat_like_rows(int(rows * 1.2), seed=1)
            if len(_ids(tok, r["messages"])) <= max_length][:rows]
    # Padding-free without packing does not truncate (TRL refuses max_length there), so every row fits max_length:
    # all three methods see exactly the same tokens.
    lengths = sorted(len(_ids(tok, r["messages"])) for r in data)
    train = datasets.Dataset.from_list([{"messages": r["messages"]} for r in data])
    samples = {m: [] for m in SFT_METHODS}
    per_step = {m: [] for m in SFT_METHODS}
    notes = {}
    for i in range(reps):
        order = list(SFT_METHODS) if i % 2 == 0 else list(reversed(SFT_METHODS))
        for m in order:
            r = _sft_run(train, m, steps, trainer_cfg, work)
            samples[m].append(r["tokens"] / r["seconds"])
            per_step[m].append(r["tokens_per_step"])
    if transformers.__version__:
        notes["padding_free"] = ("TRL documents padding-free for flash attention only; on the CPU (sdpa) it "
                                 "runs without refusing, and transformers turns the position_ids resets into a "
                                 "block-diagonal mask (see the packed-loss check)")
    res = {"rows": len(data), "steps": steps, "batch": trainer_cfg["per_device_train_batch_size"],
           "max_length": max_length, "assistant_only_loss": trainer_cfg.get("assistant_only_loss"),
           "lengths": {"median": statistics.median(lengths), "p90": lengths[int(0.9 * len(lengths)) - 1],
                       "max": lengths[-1], "mean": statistics.fmean(lengths)},
           "tokens_per_s": {m: summary(v) for m, v in samples.items()},
           "tokens_per_step": {m: statistics.median(v) for m, v in per_step.items()}, "notes": notes}
    base = res["tokens_per_s"]["trl_default"]["median"]
    res["ratio_vs_trl_default"] = {m: s["median"] / base for m, s in res["tokens_per_s"].items()}
    res["best"] = max(res["ratio_vs_trl_default"], key=res["ratio_vs_trl_default"].get)
    shipped = "packing_bfd" if trainer_cfg.get("packing") else \
        "padding_free" if trainer_cfg.get("padding_free") else "trl_default"
    res["recipe_default"] = shipped
    res["recipe_default_ratio"] = res["ratio_vs_trl_default"][shipped]
    return res


# --------------------------------------------------------------------- 2b. packed loss = unpacked loss
def bench_packed_loss(n_examples: int = 6) -> dict:
    """Per-example losses of one padding-free (packed) row vs each example alone and vs a padded batch.

    Uses TRL's own collator. A deliberately leaky variant (same packed row, positions not reset, plain causal
    mask) shows what cross-example attention would look like, so a zero difference means something.
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from zephyr_recipes.model import modeling

    model_cfg, placement, tok = _tiny()
    torch.manual_seed(0)
    model = modeling.load_model(model_cfg["name_or_path"], model_cfg, placement).eval()
    rows = ultrachat_like_rows(n_examples, seed=7, median_words=30, max_words=60)
    examples = [{"input_ids": _ids(tok, r["messages"])} for r in rows]
    pad = tok.pad_token_id

    def per_example(logits, labels, seg):
        lp = torch.nn.functional.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=-100,
                                               reduction="none")
        lab, s = labels[0, 1:], seg[0, 1:]
        return [lp[(s == k) & (lab != -100)].mean().item() for k in range(len(examples))]

    with torch.no_grad():
        alone = []
        for e in examples:
            ids = torch.tensor([e["input_ids"]])
            logits = model(input_ids=ids).logits
            alone.append(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item())
        padded = DataCollatorForLanguageModeling(pad_token_id=pad)(examples)
        logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        padded_losses = []
        for k in range(len(examples)):
            lab = padded["labels"][k, 1:]
            lp = torch.nn.functional.cross_entropy(logits[k, :-1], lab, ignore_index=-100, reduction="none")
            padded_losses.append(lp[lab != -100].mean().item())
        packed = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(examples)
        seg = (packed["position_ids"] == 0).cumsum(-1) - 1
        # use_cache=False as SFTTrainer.compute_loss sets it: transformers builds the block-diagonal mask from the
        # position_ids resets only when there is no attention mask and no KV cache.
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        packed_losses = per_example(logits, packed["labels"], seg)
        # Control 1: the packed row with a plain causal mask (positions not reset): attention crosses examples.
        leaky_pos = torch.arange(packed["input_ids"].shape[1]).unsqueeze(0)
        logits = model(input_ids=packed["input_ids"], position_ids=leaky_pos,
                       attention_mask=torch.ones_like(packed["input_ids"]), use_cache=False).logits
        leaky_losses = per_example(logits, packed["labels"], seg)
        # Control 2: the same packed row with the model's default use_cache=True (a KV cache is created), as a
        # hand-written loop outside TRL would call it: the packed-sequence detection is skipped.
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits
        cache_losses = per_example(logits, packed["labels"], seg)
    diff = lambda a, b: max(abs(x - y) for x, y in zip(a, b))  # noqa: E731
    return {"examples": len(examples), "attention": "sdpa", "tokens": int(packed["input_ids"].shape[1]),
            "loss_alone": alone, "loss_padded_batch": padded_losses, "loss_packed": packed_losses,
            "loss_packed_leaky": leaky_losses, "loss_packed_use_cache": cache_losses,
            "max_abs_diff_packed_use_cache_vs_alone": diff(cache_losses, alone),
            "max_abs_diff_packed_vs_alone": diff(packed_losses, alone),
            "max_abs_diff_padded_vs_alone": diff(padded_losses, alone),
            "max_abs_diff_leaky_vs_alone": diff(leaky_losses, alone)}


# ------------------------------------------------------------------------------------------ 3. DPO
def bench_dpo(reps: int = 3, rows: int = 256, work: Path | None = None) -> dict:
    """The tiny DPO recipe's whole run (its epochs, on the embedded preference set) with and without precomputed
    reference log-probabilities: trainer construction (which is where TRL precomputes) + training. The
    precomputation is one pass whatever the epochs, so the recipe's own length is what decides."""
    import glob

    _quiet()
    from zephyr_recipes import data, stages
    from zephyr_recipes.model import modeling
    from zephyr_recipes.stages.training import trainer_args

    dpo = stages.get("dpo")

    work = Path(work or tempfile.mkdtemp(prefix="bench-dpo-"))
    base = ["model.name_or_path=builtin://tiny-mistral", "model.chat_template=zephyr",
            "dataset.path=builtin://tiny-ultrafeedback", f"dataset.max_train_samples={rows}",
            "dataset.test_split=null", "stage.trainer.save_strategy=no", "+stage.trainer.disable_tqdm=true"]
    samples = {pre: {"step": [], "setup": [], "total": [], "steps": 0} for pre in (False, True)}
    shipped = _compose("tiny/dpo", []).stage.trainer.get("precompute_ref_log_probs", False)
    for i in range(reps):
        for pre in ((False, True) if i % 2 == 0 else (True, False)):
            cfg = _compose("tiny/dpo", base + [f"+stage.trainer.precompute_ref_log_probs={str(pre).lower()}"])
            placement = modeling.resolve_placement(cfg.hardware)
            tok = modeling.load_tokenizer(cfg.model)
            train, _, info = data.load_for_stage(cfg, tok, dpo.rows)
            folder = info["cache"]["folder"]
            for f in glob.glob(os.path.join(folder, "train", "cache-*.arrow")):  # no cached tokenization/precompute
                os.unlink(f)
            train, _, info = data.load_for_stage(cfg, tok, dpo.rows)
            out = work / f"dpo-{pre}-{i}"
            t0 = time.perf_counter()
            args = trainer_args(dpo, cfg, placement, out)
            model = modeling.load_model(cfg.model.name_or_path, cfg.model, placement)
            clock = _StepClock.make()
            trainer, _ = dpo.build_trainer(cfg, model, tok, train, None, args,
                                           lambda n, spec=cfg.model, where=placement:
                                           modeling.load_model(n, spec, where))
            trainer.add_callback(clock)
            t1 = time.perf_counter()
            trainer.train()
            t2 = time.perf_counter()
            steps = [b - a for a, b in zip(clock.times, clock.times[1:])]
            s = samples[pre]
            s["step"].append(statistics.median(steps))
            s["setup"].append(t1 - t0)
            s["total"].append(t2 - t0)
            s["steps"] = len(clock.times)
            shutil.rmtree(out, ignore_errors=True)
    epochs = _compose("tiny/dpo", []).stage.trainer["num_train_epochs"]
    res = {"rows": rows, "steps": samples[False]["steps"], "epochs": epochs, "shipped_precompute": shipped}
    for pre, name in ((False, "reference_model"), (True, "precomputed")):
        res[name] = {k: summary(samples[pre][k]) for k in ("step", "setup", "total")}
    res["step_ratio"] = res["reference_model"]["step"]["median"] / res["precomputed"]["step"]["median"]
    res["epoch_ratio"] = res["reference_model"]["total"]["median"] / res["precomputed"]["total"]["median"]
    res["faster"] = "precomputed" if res["epoch_ratio"] > 1 else "reference_model"
    return res


# ----------------------------------------------------------------------------------------- 4. AIF
def bench_aif(reps: int = 3, prompts: int = 64, max_new_tokens: int = 32) -> dict:
    """Completions per second: TransformersBackend's batches vs one prompt at a time, greedy, same prompts."""
    _quiet()
    from zephyr_recipes.feedback.backends import TransformersBackend
    from zephyr_recipes.stages.aif import load_prompts

    cfg = _compose("tiny/aif", [])
    texts = load_prompts(cfg)[:prompts]
    convs = [[{"role": "user", "content": p}] for p in texts]
    sampling = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
    hw = {"device": "cpu", "precision": "fp32", "attn_implementation": "sdpa"}
    batched = TransformersBackend("builtin://tiny-mistral", {"chat_template": "zephyr"}, hw)
    single = TransformersBackend("builtin://tiny-mistral", {"chat_template": "zephyr"}, hw, batch_size=1)
    rates = {"batched": [], "one_at_a_time": []}
    outputs = {}
    for i in range(reps):
        for name in (("batched", "one_at_a_time") if i % 2 == 0 else ("one_at_a_time", "batched")):
            backend = batched if name == "batched" else single
            t0 = time.perf_counter()
            got = dict(backend.generate(convs, 1, dict(sampling)))
            rates[name].append(len(convs) / (time.perf_counter() - t0))
            outputs[name] = [got[j][0] for j in range(len(convs))]
    same = sum(a == b for a, b in zip(outputs["batched"], outputs["one_at_a_time"])) / len(convs)
    res = {"prompts": len(convs), "max_new_tokens": max_new_tokens, "batch_size": batched._batch_size(),
           "completions_per_s": {k: summary(v) for k, v in rates.items()}, "identical_outputs": same}
    res["ratio"] = res["completions_per_s"]["batched"]["median"] / res["completions_per_s"]["one_at_a_time"]["median"]
    return res


def vllm_test_model(folder: Path) -> Path:
    """A small Llama-architecture model with the embedded tokenizer that vLLM's CPU kernels accept (head size 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from zephyr_recipes.embedded import builtin
    from zephyr_recipes.model import chat_format

    tok = PreTrainedTokenizerFast.from_pretrained(builtin.resolve("builtin://tiny-mistral"))
    tok.chat_template = chat_format.template_text("zephyr")
    tok.save_pretrained(str(folder))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def bench_vllm(reps: int = 3, prompts: int = 64, max_new_tokens: int = 64, work: Path | None = None) -> dict:
    """AI-feedback generation, tokens/s: a model served by vLLM (type: vllm, the environment `make vllm` builds)
    against the same model through TransformersBackend's batches, same prompts, same sampling. The server's start-up
    is reported, not counted."""
    _quiet()
    from zephyr_recipes.core.errors import ZephyrError
    from zephyr_recipes.feedback import vllm
    from zephyr_recipes.feedback.backends import TransformersBackend, make_backend
    from zephyr_recipes.feedback.serve import serving
    from zephyr_recipes.stages.aif import load_prompts

    try:
        vllm.python()
    except ZephyrError as exc:
        return {"skipped": exc.problem}
    work = Path(work or tempfile.mkdtemp(prefix="bench-vllm-"))
    work.mkdir(parents=True, exist_ok=True)
    model = vllm_test_model(work / "model")
    convs = [[{"role": "user", "content": p}] for p in load_prompts(_compose("tiny/aif", []))[:prompts]]
    sampling = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
    hw = {"device": "cpu", "precision": "fp32", "attn_implementation": "sdpa"}
    local = TransformersBackend(str(model), {"chat_template": None}, hw)
    rates = {"transformers": [], "vllm": []}
    t0 = time.perf_counter()
    with serving({"type": "vllm", "model": str(model), "max_model_len": 512, "concurrency": prompts}, work,
                 "bench") as served:
        startup = time.perf_counter() - t0
        remote = make_backend(served)
        for i in range(reps):
            for name in (("vllm", "transformers") if i % 2 == 0 else ("transformers", "vllm")):
                backend = remote if name == "vllm" else local
                t = time.perf_counter()
                got = dict(backend.generate(convs, 1, dict(sampling)))
                tokens = sum(len(local.tokenizer(got[j][0])["input_ids"]) if not isinstance(got[j], Exception)
                             else 0 for j in range(len(convs)))
                rates[name].append(tokens / (time.perf_counter() - t))
    res = {"prompts": len(convs), "max_new_tokens": max_new_tokens, "server_start_s": round(startup, 1),
           "tokens_per_s": {k: summary(v) for k, v in rates.items()}}
    res["ratio"] = res["tokens_per_s"]["vllm"]["median"] / res["tokens_per_s"]["transformers"]["median"]
    return res


# ----------------------------------------------------------------------------------------- 5. data
def _data_child(path: str, home: str) -> None:
    """Runs in a fresh process: time data.load_for_stage for a local jsonl (tokenizer loaded beforehand)."""
    _quiet()
    from zephyr_recipes import data, stages
    from zephyr_recipes.model import modeling

    cfg = _compose("tiny/sft", [f"dataset.path={path}", "dataset.test_split=null"])
    tok = modeling.load_tokenizer(cfg.model)
    os.environ["ZEPHYR_RECIPES_HOME"] = home  # the data cache goes here; the tokenizer came from the usual home
    t0 = time.perf_counter()
    train, _, info = data.load_for_stage(cfg, tok, stages.get("sft").rows)
    print(json.dumps({"seconds": time.perf_counter() - t0, "rows": len(train), "hit": info["cache"]["hit"]}))


def bench_data(reps: int = 3, rows: int = 50_000, work: Path | None = None) -> dict:
    """Cold (empty caches) vs cached data preparation of ``rows`` UltraChat-shaped rows, each in a fresh process."""
    work = Path(work or tempfile.mkdtemp(prefix="bench-data-"))
    path = write_rows(ultrachat_like_rows(rows, seed=3), work / "ultrachat_like.jsonl")
    cold, cached, counts = [], [], []
    for i in range(reps):
        home, hf = work / f"home-{i}", work / f"hf-{i}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(hf, ignore_errors=True)
        env = {**_env(), "HF_DATASETS_CACHE": str(hf)}
        for bucket in (cold, cached):
            child = f"from bench.run import _data_child; _data_child({str(path)!r}, {str(home)!r})"
            proc = subprocess.run([PY, "-c", child], env=env, capture_output=True, text=True, cwd=work)
            if proc.returncode != 0:
                raise RuntimeError(f"data step failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            bucket.append(r["seconds"])
            counts.append((r["rows"], r["hit"]))
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(hf, ignore_errors=True)
    res = {"rows": rows, "train_rows": counts[0][0], "cold_s": summary(cold), "cached_s": summary(cached),
           "cache_hits": [hit for _, hit in counts[1::2]]}
    res["ratio"] = res["cold_s"]["median"] / res["cached_s"]["median"]
    return res

AUDIT_RECIPE = """defaults:
  - model: tiny
  - dataset: tiny-ultrachat
  - stage: aif
  - hardware: cpu
  - _self_
dataset: {{train_split: train_gen, test_split: null, max_train_samples: {prompts}, columns: {{prompt: prompt}}}}
stage:
  sampling: {{max_new_tokens: 32}}
  generators:
    - {{name: tiny-t0.7, type: transformers, model: "builtin://tiny-mistral", model_config: {{chat_template: zephyr}},
       sampling: {{temperature: 0.7}}}}
    - {{name: teacher, type: function, function: "zephyr_recipes.embedded.tasks:teacher"}}
    - {{name: chatty, type: function, function: "zephyr_recipes.embedded.tasks:chatty_teacher"}}
    - {{name: sloppy, type: function, function: "zephyr_recipes.embedded.noisy_judge:sloppy"}}
  judge: {{type: function, module: {judge}}}
  self_agreement: 0.0
  test_fraction: 0.1
  audit: {{enabled: {audit}, action: drop, judges: [{{type: function, module: {second}}}]}}
"""
NOISE_LEVELS = {"flip 0.2": ("zephyr_recipes.embedded.noisy.flip20", "zephyr_recipes.embedded.noisy.second"),
                "flip 0.35, position bias 0.3, length bias 0.2 (listwise)":
                    ("zephyr_recipes.embedded.noisy.flip35_position", "zephyr_recipes.embedded.noisy.second_b")}


def _aif_run(work: Path, name: str, prompts: int, judge: str, second: str, audit: bool) -> tuple[float, dict]:
    """One AI-feedback run through the command line in a fresh process: (stage seconds, summary.json)."""
    recipe = work / f"{name}.yaml"
    recipe.write_text(AUDIT_RECIPE.format(prompts=prompts, judge=judge, second=second, audit=str(audit).lower()))
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run([PY, "-m", "zephyr_recipes", "run", str(recipe), f"run.output_dir={out}"], env=_env(),
                          capture_output=True, text=True, cwd=work)
    if proc.returncode != 0:
        raise RuntimeError(f"AI feedback failed:\n{proc.stderr[-3000:]}")
    summary_ = json.loads((out / "summary.json").read_text())
    return float(summary_["wall_seconds"]), summary_


def bench_audit(reps: int = 3, prompts: int = 300, work: Path | None = None) -> dict:
    """The judge audit's cost and worth on the embedded task. Cost: the AI-feedback stage (one sampled tiny model and
    three programs answer, a noisy stand-in judge rates) with stage.audit off and on (a retest of every answer and a
    second noisy judge; flagged pairs dropped), alternated, each in a fresh process. Worth: the audit's flags against
    the pairs truly the wrong way round (audit.json's embedded_truth), at two noise levels."""
    work = Path(work or tempfile.mkdtemp(prefix="bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    off, on = [], []
    judge, second = NOISE_LEVELS["flip 0.2"]
    for i in range(reps):
        for bucket, audit in ((off, False), (on, True)):
            bucket.append(_aif_run(work, f"{'on' if audit else 'off'}-{i}", prompts, judge, second, audit)[0])
    levels = {}
    for level, (judge, second) in NOISE_LEVELS.items():
        _, got = _aif_run(work, "level", prompts, judge, second, True)
        truth = json.loads((work / "level" / "audit.json").read_text())["measures"].get("embedded_truth") or {}
        levels[level] = {k: truth.get(k) for k in ("mislabelled", "mislabelled_unflagged", "flag_precision",
                                                   "flag_recall")}
        levels[level]["pairs"] = got["pairs"]
    res = {"prompts": prompts, "audit_off_s": summary(off), "audit_on_s": summary(on), "levels": levels}
    res["ratio"] = res["audit_on_s"]["median"] / res["audit_off_s"]["median"]
    return res


# ------------------------------------------------------------------------------------------ report
def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, transformers "
             f"{m['transformers']}, TRL {m['trl']}{', GPU ' + m['cuda'] if m['cuda'] else ''}); "
             f"load average at start {m['load_average_at_start']}. "
             f"Median of {results['reps']} runs (min-max). {results.get('note', '')}".rstrip(), "",
             "| figure | baseline | zephyr-recipes | ratio | target |", "|---|---|---|---|---|"]
    if "overhead" in results:
        o = results["overhead"]
        for key, label in (("first_step_s", "time to first optimizer step, tiny/sft"),
                           ("total_s", f"total wall time, tiny/sft {o['max_steps']} steps")):
            lines.append(f"| {label} | plain TRL {fmt(o['plain_trl'][key])} s | {fmt(o['runner'][key])} s | "
                         f"{o['runner'][key]['median'] / o['plain_trl'][key]['median']:.3f}x "
                         f"({o['overhead_' + key[:-2]] * 100:+.1f}%) | overhead <= 5% |")
    if "tracking" in results:
        t = results["tracking"]
        run = f"{t['max_steps']} steps, logging every step" if t["max_steps"] else "the recipe's whole run"
        lines.append(f"| total wall time, tiny/sft, {run} | report_to=none "
                     f"{fmt(t['none_s'])} s | trackio (default) {fmt(t['trackio_s'])} s | "
                     f"paired {fmt(t['wall_ratio'], 3)}x ({t['overhead'] * 100:+.1f}%), load "
                     f"{fmt(t['load'], 1)} | overhead < 2% |")
        if "cpu_ratio" in t:
            lines.append(f"| CPU seconds, tiny/sft, {run} | report_to=none {fmt(t['none_cpu_s'])} s | trackio "
                         f"(default) {fmt(t['trackio_cpu_s'])} s | paired {fmt(t['cpu_ratio'], 3)}x "
                         f"({t['cpu_overhead'] * 100:+.1f}%) | overhead < 2% |")
    if "sft" in results:
        s = results["sft"]
        base = s["tokens_per_s"]["trl_default"]
        for name, label in (("packing_bfd", "bfd packing"), ("padding_free", "padding-free")):
            mark = " (recipe default)" if s["recipe_default"] == name else ""
            lines.append(f"| SFT tokens/s, {label}{mark} | TRL default {fmt(base, 0)} | "
                         f"{fmt(s['tokens_per_s'][name], 0)} | {s['ratio_vs_trl_default'][name]:.2f}x | "
                         f"recipe default >= 1.5x |")
    if "loss" in results:
        p = results["loss"]
        lines.append(f"| per-example loss, packed vs alone ({p['examples']} examples, sdpa) | padded batch: "
                     f"max diff {p['max_abs_diff_padded_vs_alone']:.1e} | packed: max diff "
                     f"{p['max_abs_diff_packed_vs_alone']:.1e} | leaky controls: no position reset "
                     f"{p['max_abs_diff_leaky_vs_alone']:.1e}, "
                     f"use_cache=True {p['max_abs_diff_packed_use_cache_vs_alone']:.1e} | "
                     f"identical (no leak) |")
    if "dpo" in results:
        d = results["dpo"]
        lines.append(f"| DPO s/step, tiny/dpo | reference model {fmt(d['reference_model']['step'], 3)} | precomputed "
                     f"{fmt(d['precomputed']['step'], 3)} | {d['step_ratio']:.2f}x | faster where correct |")
        lines.append(f"| DPO, the recipe's run ({d['epochs']} epochs, {d['steps']} steps) incl. set-up, s | reference model "
                     f"{fmt(d['reference_model']['total'])} | precomputed {fmt(d['precomputed']['total'])} | "
                     f"{d['epoch_ratio']:.2f}x | |")
    if "aif" in results:
        a = results["aif"]
        lines.append(f"| AIF completions/s ({a['prompts']} prompts, {a['max_new_tokens']} new tokens, greedy) | one "
                     f"at a time {fmt(a['completions_per_s']['one_at_a_time'])} | batched ({a['batch_size']}) "
                     f"{fmt(a['completions_per_s']['batched'])} | {a['ratio']:.1f}x | >= 4x |")
    if "vllm" in results:
        v = results["vllm"]
        if "skipped" in v:
            lines.append(f"| AI-feedback generation through vLLM | not measured: {v['skipped']} | | | |")
        else:
            lines.append(f"| AI-feedback generation, tokens/s ({v['prompts']} prompts, {v['max_new_tokens']} new tokens, "
                         f"greedy; server start {v['server_start_s']} s not counted) | transformers batches "
                         f"{fmt(v['tokens_per_s']['transformers'], 0)} | vLLM {fmt(v['tokens_per_s']['vllm'], 0)} | "
                         f"{v['ratio']:.2f}x | |")
    if "data" in results:
        d = results["data"]
        lines.append(f"| data preparation, {d['rows']:,} rows, s | cold {fmt(d['cold_s'])} | cached "
                     f"{fmt(d['cached_s'])} | {d['ratio']:.0f}x | cached < 1 s |")
    if "audit" in results:
        a = results["audit"]
        lines.append(f"| AI-feedback stage, {a['prompts']} prompts x 4 answers, s | audit off {fmt(a['audit_off_s'])} | "
                     f"audit on (retest + a second judge) {fmt(a['audit_on_s'])} | {a['ratio']:.2f}x | <= 1.30x |")
        lines += ["", "| judge noise | wrong pairs | wrong pairs left unflagged | flag precision | flag recall |",
                  "|---|---|---|---|---|"]

        def pct(got: dict | None) -> str:
            if not got or got.get("value") is None:
                return "not measured"
            low, high = got["interval"]
            return f"{got['value']:.1%} [{low:.1%}, {high:.1%}] (n={got['n']})"

        for level, got in a["levels"].items():
            lines.append(f"| {level} | {pct(got['mislabelled'])} | {pct(got['mislabelled_unflagged'])} | "
                         f"{pct(got['flag_precision'])} | {pct(got['flag_recall'])} |")
    return "\n".join(lines) + "\n"


FIGURES = ("overhead", "tracking", "sft", "loss", "dpo", "aif", "vllm", "data", "audit")
FULL = {"overhead": {"max_steps": 5}, "tracking": {"max_steps": None}, "sft": {"rows": 2000, "steps": 6},
        "loss": {"n_examples": 6},
        "dpo": {"rows": 256}, "aif": {"prompts": 64, "max_new_tokens": 32}, "vllm": {"prompts": 64},
        "data": {"rows": 50_000}, "audit": {"prompts": 300}}
SMOKE = {"overhead": {"max_steps": 1, "warmup": False}, "tracking": {"max_steps": 2},
         "sft": {"rows": 24, "steps": 2, "batch": 4},
         "loss": {"n_examples": 3},
         "dpo": {"rows": 32}, "aif": {"prompts": 4, "max_new_tokens": 4}, "vllm": {"prompts": 4, "max_new_tokens": 4},
         "data": {"rows": 200}, "audit": {"prompts": 12}}


def run_all(out: Path, reps: int = 3, only=FIGURES, smoke: bool = False, note: str = "") -> dict:
    sizes = SMOKE if smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="zephyr-bench-"))
    results = {"machine": machine(), "reps": reps, "smoke": smoke, "note": note}
    print("machine:", json.dumps(results["machine"]), flush=True)
    fns = {"overhead": bench_overhead, "tracking": bench_tracking,
           "sft": bench_sft_throughput, "loss": bench_packed_loss, "dpo": bench_dpo,
           "aif": bench_aif, "vllm": bench_vllm, "data": bench_data, "audit": bench_audit}
    try:
        for name in only:
            t0 = time.perf_counter()
            kwargs = dict(sizes[name])
            if name != "loss":
                kwargs["reps"] = reps
            if name in ("overhead", "tracking", "sft", "dpo", "vllm", "data", "audit"):
                kwargs["work"] = work / name
            results[name] = fns[name](**kwargs)
            results[name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: done in {results[name]['bench_seconds']} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(results))
    print(markdown(results))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    p.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--out", default="bench-results", help="folder for bench.json and bench.md")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check that everything runs")
    p.add_argument("--note", default="", help="a sentence printed under the table's header")
    a = p.parse_args(argv)
    only = [x for x in a.only.split(",") if x]
    bad = [x for x in only if x not in FIGURES]
    if bad:
        p.error(f"unknown figure {bad[0]!r}; choose from {', '.join(FIGURES)}")
    run_all(Path(a.out), reps=a.reps, only=only, smoke=a.smoke, note=a.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
