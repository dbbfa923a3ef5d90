"""A memory plan: per-device memory of a recipe on its hardware profile, from the model config alone.

No weights are loaded and no GPU is needed. The model's shape comes from a config.json (a local model folder,
a run folder, a path given with --model-config), from a small table of well-known architectures for hub ids,
or from transformers' AutoConfig when the hub (or its cache) is reachable.

The estimate, per device, in bytes (P = parameters, N = processes that shard, s = sequence length,
b = per-device batch, h = hidden size, L = layers, V = vocabulary):

- model states, full fine-tuning:
    one process or DDP: fp32 weights + fp32 gradients + AdamW (2 x fp32) = 16 P (the trainer autocasts)
    ZeRO-2: 2 P (bf16 weights) + 14 P / N (gradients, fp32 master weights and AdamW sharded)
    ZeRO-3 / FSDP2: 16 P / N, plus the gathered weights of the layers in flight
    offload: optimizer states and weights live in CPU RAM (16 P per node / nodes), the GPU keeps the working set
- LoRA: frozen base 2 P (bf16) or about 0.56 P (4-bit NF4 with double quantization), adapters 16 bytes each
- DPO reference model: a frozen 16-bit copy (sharded under ZeRO-3 / FSDP); none with LoRA (adapters off)
  or with precompute_ref_log_probs
- activations (16-bit, flash/sdpa attention, after Korthikanti et al. 2022): 34 s b h per layer kept for the
  backward pass; with gradient checkpointing only each layer's input (2 s b h) plus one layer being
  recomputed; DPO runs chosen and rejected together (2 b)
- logits, the loss and TRL's per-token metrics: LOGIT_BYTES x s b V. In fp32 36 bytes per logit, measured:
  the loss, its gradient and TRL's entropy and token-accuracy metrics keep about nine logit-sized fp32
  tensors at the peak. 16-bit: 10 (the 16-bit logits and their fp32 copies), not yet measured on a GPU
  (`make gpu-check` compares)
- 2 GB for the CUDA context, kernels' workspace and allocator slack

Calibration (README, "Memory plan against measurements"; `python -m bench.memory`): fp32 full fine-tuning
with AdamW of Mistral-shaped models of 18M, 58M and 125M parameters on the CPU, with and without gradient
checkpointing: the plan is within 5% of the measured peak (resident memory above the idle process). It
is meant to refuse the hopeless before the GPU hour starts and to compare profiles, not to replace a
measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.catalog import producing_recipe
from ..core.errors import ZephyrError
from ..core.recipe import Recipe, section_of
from ..core.schema import HardwareConfig, ModelConfig
from ..embedded import builtin
from ..model import hardware
from ..model.modeling import is_local_path
from ..model.trainer_fields import default
from ..stages.base import Stage, TrainerStage
from .compose import compose

GB = 1e9
OVERHEAD_GB = 2.0
LOGIT_BYTES = {"fp32": 36, "16-bit": 10}  # bytes per element of the s x b x V logits at the peak (see above)
TIGHT = 0.9  # above this share of device memory the plan warns

# Shapes of well-known architectures (from their config.json), so `plan` works offline for hub ids. One row per
# architecture: model_type, hidden, intermediate, layers, attention heads, key/value heads, vocabulary, tied
# embeddings; then the hub ids that have it.
_SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "tie_word_embeddings")
_SHAPES = (
    (("mistral", 4096, 14336, 32, 32, 8, 32000, False),
     ("mistralai/Mistral-7B-v0.1", "alignment-handbook/zephyr-7b-sft-full", "HuggingFaceH4/zephyr-7b-beta",
      "HuggingFaceH4/mistral-7b-sft-beta", "mistralai/Mistral-7B-Instruct-v0.2")),
    (("llama", 4096, 11008, 32, 32, 32, 32000, False), ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf")),
    (("llama", 4096, 14336, 32, 32, 8, 128256, False), ("meta-llama/Meta-Llama-3-8B",)),
    (("llama", 2048, 8192, 16, 32, 8, 128256, True), ("meta-llama/Llama-3.2-1B-Instruct",)),
    (("qwen2", 896, 4864, 24, 14, 2, 151936, True), ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B-Instruct")),
    (("qwen2", 1536, 8960, 28, 12, 2, 151936, True), ("Qwen/Qwen2.5-1.5B-Instruct",)),
    (("llama", 576, 1536, 30, 9, 3, 49152, True),
     ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct")),
    (("llama", 960, 2560, 32, 15, 5, 49152, True),
     ("HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-360M-Instruct")),
    (("llama", 2048, 8192, 24, 32, 32, 49152, True),
     ("HuggingFaceTB/SmolLM2-1.7B", "HuggingFaceTB/SmolLM2-1.7B-Instruct")),
)
KNOWN: dict[str, dict] = {name: dict(zip(_SHAPE_KEYS, row)) for row, names in _SHAPES for name in names}
LORA_DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for Llama/Mistral-style models


@dataclass
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, c: dict) -> "Shape":
        c = c.get("text_config", c)
        try:
            heads = int(c["num_attention_heads"])
            return cls(hidden=int(c["hidden_size"]), intermediate=int(c["intermediate_size"]),
                       layers=int(c["num_hidden_layers"]), heads=heads,
                       kv_heads=int(c.get("num_key_value_heads") or heads), vocab=int(c["vocab_size"]),
                       tied=bool(c.get("tie_word_embeddings", False)))
        except KeyError as exc:
            raise ZephyrError(f"the model config has no {exc.args[0]!r}; the plan knows decoder-only "
                              "transformers (Llama, Mistral, Qwen2 style)",
                              "pass --model-config with a config.json of such a model") from None

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one decoder layer."""
        h, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, self.intermediate), "up_proj": (h, self.intermediate),
                "down_proj": (self.intermediate, h)}

    @property
    def layer_params(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values()) + 2 * self.hidden

    @property
    def params(self) -> int:
        embed = self.vocab * self.hidden
        return embed * (1 if self.tied else 2) + self.layers * self.layer_params + self.hidden

    def lora_params(self, lora: dict) -> int:
        r = int(lora.get("r", 8))
        targets = lora.get("target_modules") or LORA_DEFAULT_TARGETS
        if isinstance(targets, str):
            every = list(self.linear_shapes())
            targets = every if targets == "all-linear" else [t for t in every if t in targets]
        shapes = self.linear_shapes()
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)


def _upstream_model(folder: Path) -> str | None:
    """The model that the shipped recipe writing this run folder starts from (runs/smollm2-360m-sft: SmolLM2-360M)."""
    producer = producing_recipe(folder)
    if not producer:
        return None
    try:
        raw, _, _ = compose(producer[0], [])
        return (raw.get("model") or {}).get("name_or_path")
    except ZephyrError:
        return None


def model_config(recipe: Recipe, path: str | None = None, folders: dict | None = None) -> tuple[dict, str]:
    """(config dict, where it came from) for the recipe's model, or of the config.json at ``path``
    (--model-config), without loading weights."""
    if path:
        p = Path(path).expanduser()
        p = p / "config.json" if p.is_dir() else p
        if not p.is_file():
            raise ZephyrError(f"--model-config {path} is not a config.json or a folder holding one",
                              "give the path of the model's config.json")
        return json.loads(p.read_text()), str(p)
    model = recipe.model
    return config_of(model.name_or_path, model, folders)


def config_of(name: str, model_cfg: ModelConfig | dict | None = None, folders: dict | None = None) -> tuple[dict, str]:
    """(config dict, where it came from) of a model named in a recipe: the shipped table, a local or run folder
    (``folders``: run folders a pipeline will write, with the config of what it trains there), or AutoConfig.
    ``model_cfg``: the model section, or a generator's ``model_config`` (its revision is read)."""
    if name in KNOWN:
        return dict(KNOWN[name]), f"shipped table ({name})"
    for planned, (config, source) in (folders or {}).items():
        if Path(planned).expanduser().resolve() == Path(name).expanduser().resolve():
            return config, f"{source.split(', trained into')[0]}, trained into {name} by an earlier stage"

    if builtin.is_builtin(name) or is_local_path(name):
        folder = Path(builtin.resolve(name) if builtin.is_builtin(name) else name).expanduser()
        if (folder / "config.json").is_file():
            return json.loads((folder / "config.json").read_text()), str(folder / "config.json")
        upstream = _upstream_model(folder)
        if upstream in KNOWN:  # a run folder not trained yet: the shape of the model its recipe trains
            return dict(KNOWN[upstream]), f"shipped table ({upstream}, trained into {name} by its recipe)"
        raise ZephyrError(f"model folder {name} has no config.json (does the run exist yet?)",
                          "pass --model-config with the config.json of the model it will be")
    try:
        from transformers import AutoConfig

        # The shape only, never the repository's code: a custom architecture is planned from --model-config.
        revision = section_of(ModelConfig, model_cfg).revision or "main"
        c = AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=False)
        return c.to_dict(), f"AutoConfig ({name})"
    except Exception:
        raise ZephyrError(f"cannot read the config of {name!r} (offline, or not cached) and it is not in the shipped table",
                          "pass --model-config path/to/config.json (a few kB from the model's hub page)") from None


def _trainer_value(recipe: Recipe, stage: TrainerStage, key: str):
    trainer = recipe.stage.trainer
    if key in trainer:
        return trainer[key]
    return default(stage, key)


def _training_stage(stage: Stage) -> TrainerStage:
    if not isinstance(stage, TrainerStage):
        raise ZephyrError(f"the training memory plan sizes training stages, and {stage.name} trains nothing",
                          "use stageplan.stage_plan, which sizes the models this stage runs")
    return stage


def estimate(recipe: Recipe, stage: Stage, shape: Shape) -> dict:
    """Per-device memory in GB by component, the total, and the facts it used, for ``stage`` (a trainer stage)
    as ``recipe`` runs it."""
    hw = recipe.hardware
    P = shape.params
    world = hardware.world_size(hw)
    strategy = hw.strategy
    shards = world if strategy in ("zero3", "fsdp2") else 1
    fp32 = hw.precision == "fp32"
    act_bytes = 4 if fp32 else 2
    trains = _training_stage(stage)
    b = hardware.per_device_batch(recipe, trains)
    s = int(_trainer_value(recipe, trains, "max_length") or 1024)
    rows = trains.sequences_per_row * b
    parts: dict[str, float] = {}
    notes: list[str] = []
    layer_16bit = shape.layer_params * 2

    if hw.lora:
        base_bytes = 0.5625 if hw.load_in_4bit else (4 if fp32 else 2)
        parts["weights (frozen base)"] = P * base_bytes / shards
        adapters = shape.lora_params(hw.lora)
        parts["LoRA adapters, gradients, AdamW"] = adapters * 16
        notes.append(f"LoRA: {adapters / 1e6:.1f}M trainable parameters (r={hw.lora.get('r', 8)})")
    elif strategy == "zero2":
        parts["weights (bf16)"] = P * 2
        parts["gradients (sharded)"] = P * 2 / world
        parts["fp32 master weights + AdamW (sharded)"] = P * 12 / world
    elif strategy in ("zero3", "fsdp2"):
        if hw.offload:
            parts["weights, gradients, optimizer"] = 0.0
            notes.append(f"offload: about {P * 16 / hw.num_nodes / GB:.0f} GB of CPU RAM per node")
        else:
            w = 2 if strategy == "zero3" else 4  # FSDP2 keeps fp32 sharded parameters under mixed precision
            parts[f"weights ({'bf16' if w == 2 else 'fp32'}, sharded)"] = P * w / world
            parts["gradients (sharded)"] = P * w / world
            optimizer = "fp32 master weights + AdamW (sharded)" if w == 2 else "AdamW (sharded)"
            parts[optimizer] = P * (12 if w == 2 else 8) / world
        parts["gathered layers in flight"] = 2 * layer_16bit + shape.vocab * shape.hidden * 2
    else:
        parts["weights (fp32; the trainer autocasts)" if not fp32 else "weights (fp32)"] = P * 4
        parts["gradients (fp32)"] = P * 4
        parts["AdamW states (2 x fp32)"] = P * 8

    copies, note = trains.frozen_copies(recipe)
    if copies:
        parts[f"{trains.name.upper()} reference model (16-bit, frozen)"] = copies * P * 2 / shards
    if note:
        notes.append(note)

    h, L = shape.hidden, shape.layers
    if hw.gradient_checkpointing:
        parts["activations (checkpointed)"] = (L * 2 * s * rows * h + 34 * s * rows * h) * act_bytes / 2
    else:
        parts["activations"] = L * 34 * s * rows * h * act_bytes / 2
    if trains.auto_model == "AutoModelForCausalLM":
        parts["logits and loss"] = LOGIT_BYTES["fp32" if fp32 else "16-bit"] * s * rows * shape.vocab
    else:  # a score head (reward model): no vocabulary-sized logits; the untied LM head is counted, a slight excess
        notes.append(f"{trains.auto_model}: no vocabulary logits")
    parts = {k: v / GB for k, v in parts.items()}
    parts["CUDA context and workspace"] = OVERHEAD_GB if hw.device != "cpu" else 0.0
    total = sum(parts.values())
    return {"parts": parts, "total_gb": total, "params": P, "world_size": world, "per_device_batch": b,
            "sequence_length": s, "rows_per_step": rows, "notes": notes}


def verdict(hw: HardwareConfig, est: dict) -> tuple[str, str]:
    """('fits' | 'tight' | 'no' | 'unknown', sentence) of the estimate ``est`` on the devices of profile ``hw``."""
    mem = hw.gpu_memory_gb
    total = est["total_gb"]
    if not mem:
        return "unknown", f"about {total:.1f} GB per process; the profile names no device memory (hardware.gpu_memory_gb)"
    if total > mem:
        return "no", f"does NOT fit: about {total:.1f} GB per device, the devices have {mem:g} GB"
    if total > TIGHT * mem:
        return "tight", f"fits tightly: about {total:.1f} GB of {mem:g} GB per device; expect to tune the batch"
    return "fits", f"fits: about {total:.1f} GB of {mem:g} GB per device"


def plan(recipe: Recipe, stage: Stage, model_config_path: str | None = None) -> tuple[dict, str, str, str]:
    """The memory plan of ``stage`` (a trainer stage) as ``recipe`` runs it: (estimate, verdict, sentence, where the
    model's config came from)."""
    config, source = model_config(recipe, model_config_path)
    est = estimate(recipe, stage, Shape.from_config(config))
    kind, sentence = verdict(recipe.hardware, est)
    return est, kind, sentence, source


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def render(recipe: Recipe, est: dict, sentence: str, source: str) -> str:
    """The memory plan ``est`` of ``recipe`` as text; ``sentence``: its verdict, ``source``: where the model's config
    came from."""
    hw = recipe.hardware
    pairs = f" (chosen + rejected: {est['rows_per_step']} rows)" if est["rows_per_step"] > est["per_device_batch"] else ""
    lines = [f"memory plan: {recipe.stage.name} of {recipe.model.name_or_path} on hardware {hw.name} "
             f"({hw.num_nodes} node(s) x {hw.num_processes} process(es), strategy {hw.strategy}"
             f"{', offload' if hw.offload else ''}{', 4-bit base' if hw.load_in_4bit else ''}"
             f"{', LoRA' if hw.lora else ''}, precision {hw.precision})",
             f"  model: {_count(est['params'])} parameters (config: {source})",
             f"  per device: batch {est['per_device_batch']} x sequence {est['sequence_length']}"
             f"{pairs}, "
             f"gradient checkpointing {'on' if hw.gradient_checkpointing else 'off'}"]
    width = max(len(k) for k in est["parts"])
    for k, v in est["parts"].items():
        lines.append(f"    {k:<{width}}  {v:8.2f} GB")
    lines.append(f"    {'total':<{width}}  {est['total_gb']:8.2f} GB")
    lines += [f"  note: {n}" for n in est["notes"]]
    lines.append(f"  {sentence}")
    return "\n".join(lines)


