"""Where and how a model runs: device, attention kernel, precision, tokenizer and chat template, weights.

Every choice is made and checked before any weights are loaded, and logged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.catalog import producing_recipe
from ..core.errors import ZephyrError
from ..core.recipe import section_of
from ..core.schema import HardwareConfig, ModelConfig
from ..embedded import builtin
from . import chat_format
from .chat_format import TEMPLATES, template_text  # noqa: F401  (re-exported)

log = logging.getLogger("zephyr_recipes")



@dataclass
class Placement:
    device: str  # cpu | cuda
    attn_implementation: str
    precision: str  # bf16 | fp16 | fp32: what the trainer computes in
    weights: str = ""  # bf16 | fp16 | fp32: what the weights are loaded in (model.dtype=auto)
    load_in_4bit: bool = False

    def __post_init__(self):
        self.weights = self.weights or self.precision

    @property
    def dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]

    @property
    def weights_dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.weights]


def weights_precision(hw: HardwareConfig | dict, precision: str) -> str:
    """Precision of the loaded weights for model.dtype=auto.

    Unsharded 16-bit training keeps fp32 weights and lets the trainer autocast: updates of 1e-6 relative size
    vanish in bf16 weights. DeepSpeed ZeRO and FSDP keep fp32 master copies themselves, so they get 16-bit
    weights; a frozen LoRA base stays 16-bit too.
    """
    hw = section_of(HardwareConfig, hw)
    if precision == "fp32" or hw.lora or hw.strategy in ("zero2", "zero3", "fsdp2"):
        return precision
    return "fp32"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_placement(hw: HardwareConfig | dict) -> Placement:
    """Turn the hardware profile into concrete choices for this machine, or refuse with the fix."""
    hw = section_of(HardwareConfig, hw)
    has_cuda = cuda_available()
    device = hw.device
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        gpus = int(hw.num_processes or 1) * int(hw.num_nodes or 1)
        kind = f"{gpus} x {hw.gpu or 'CUDA GPU'}" + (f" ({hw.gpu_memory_gb:g} GB each)" if hw.gpu_memory_gb else "")
        raise ZephyrError(f"hardware profile {hw.name!r} needs {kind}, and this machine has no CUDA GPU",
                          "run with hardware=cpu (or hardware=auto) here, or move the run to a GPU machine")
    attn: str = hw.attn_implementation
    if attn == "auto":
        attn = "flash_attention_2" if device == "cuda" and flash_attn_installed() else "sdpa"
    elif attn == "flash_attention_2":
        if device != "cuda":
            raise ZephyrError("flash_attention_2 needs a CUDA GPU, and this run is on the CPU",
                              "use hardware.attn_implementation=auto (sdpa on the CPU)")
        if not flash_attn_installed():
            raise ZephyrError("hardware.attn_implementation=flash_attention_2 but the flash-attn package is not installed",
                              "pip install 'zephyr-recipes[gpu]' (builds flash-attn), or use "
                              "hardware.attn_implementation=sdpa")
    precision: str = hw.precision
    if precision == "auto":
        if device == "cuda":
            import torch

            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp16" and device != "cuda":
        raise ZephyrError("fp16 mixed precision needs a CUDA GPU", "use hardware.precision=fp32 on the CPU")
    if precision == "bf16" and device == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ZephyrError("this GPU does not support bf16", "use hardware.precision=fp16")
    if hw.load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        raise ZephyrError(f"hardware profile {hw.name!r} loads the base in 4 bits, and bitsandbytes is not installed",
                          "pip install 'zephyr-recipes[qlora]' (peft and bitsandbytes)")
    if hw.lora and importlib.util.find_spec("peft") is None:
        raise ZephyrError(f"hardware profile {hw.name!r} trains LoRA adapters, and peft is not installed",
                          "pip install 'zephyr-recipes[qlora]' (or pip install peft)")
    if hw.strategy in ("zero2", "zero3") and importlib.util.find_spec("deepspeed") is None:
        raise ZephyrError(f"hardware profile {hw.name!r} uses DeepSpeed ZeRO, and deepspeed is not installed",
                          "pip install 'zephyr-recipes[deepspeed]' on every node")
    return Placement(device=device, attn_implementation=attn, precision=precision,
                     weights=weights_precision(hw, precision), load_in_4bit=bool(hw.load_in_4bit))


def lora_config(hw: HardwareConfig | dict):
    """peft.LoraConfig from hardware.lora (arguments passed as is), or None for full fine-tuning."""
    hw = section_of(HardwareConfig, hw)
    if not hw.lora:
        return None
    from peft import LoraConfig

    args = dict(hw.lora)
    args.setdefault("task_type", "CAUSAL_LM")
    try:
        return LoraConfig(**args)
    except (TypeError, ValueError) as exc:
        raise ZephyrError(f"peft.LoraConfig refuses hardware.lora: {str(exc).strip().splitlines()[0]}",
                          "correct hardware.lora (see peft.LoraConfig's arguments)") from None


def is_local_path(name: str) -> bool:
    return name.startswith(("./", "../", "/", "~")) or Path(name).expanduser().exists()


def resolve_source(name: str, what: str = "model") -> str:
    """A builtin:// name becomes its cache folder; a local path must exist; a hub id passes through."""
    if builtin.is_builtin(name):
        return builtin.resolve(name)
    if is_local_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            producer = producing_recipe(path)
            if producer:
                raise ZephyrError(f"{what} folder {name} does not exist: it is the run folder of {producer[0]}",
                                  f"run {producer[1]} first, or point {what}.name_or_path at another run folder, "
                                  "a saved model or a hub id")
            raise ZephyrError(f"{what} folder {name} does not exist",
                              f"point {what}.name_or_path at a run folder or a saved model, or use a hub id")
        return str(path.resolve())
    return name


def _hub_error(name: str, exc: Exception, what: str) -> ZephyrError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    fix = ("HF_HUB_OFFLINE is set: download it once with the hub available, or use a local folder"
           if offline else "check the id and revision, your network, and HF_TOKEN for gated models")
    path = Path(name).expanduser()
    if "/" in name and not path.exists() and path.parent.is_dir():
        # runs/my-sft: read as a hub id because no such folder exists, though its parent folder does (a typo, or a
        # run not made yet): say so first.
        producer = producing_recipe(path)
        made = f"run {producer[1]} first, or " if producer else ""
        return ZephyrError(f"cannot load {what} {name!r}: there is no folder {name} (though {path.parent} exists), "
                           f"and as a hub id: {str(exc).strip().splitlines()[0]}",
                           f"{made}check the folder's name (ls {path.parent}); for a hub model: {fix}")
    return ZephyrError(f"cannot load {what} {name!r}: {str(exc).strip().splitlines()[0]}", fix)


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def open_tokenizer(model_cfg: ModelConfig | dict):
    """The tokenizer as saved (no template or pad token decided yet); a ZephyrError when it cannot be loaded.

    A local folder whose tokenizer_config.json names the generic fast tokenizer is opened with that class, which
    is what AutoTokenizer would pick, without AutoTokenizer's config lookup (it imports torch: seconds)."""
    model_cfg = section_of(ModelConfig, model_cfg)
    name = model_cfg.tokenizer_name_or_path or model_cfg.name_or_path
    source = resolve_source(name, "model")
    try:
        folder = Path(source)
        settings = folder / "tokenizer_config.json"
        if folder.is_dir() and (folder / "tokenizer.json").is_file() and settings.is_file():
            import json

            if json.loads(settings.read_text()).get("tokenizer_class") in GENERIC_TOKENIZERS:
                from transformers import PreTrainedTokenizerFast

                return PreTrainedTokenizerFast.from_pretrained(source)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, revision=model_cfg.revision,
                                             trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc, "the tokenizer of") from None


def load_tokenizer(model_cfg: ModelConfig | dict, assistant_only: bool = False, record: dict | None = None,
                   where: str = "model"):
    """The tokenizer with the chat template the run trains with (see :mod:`chat_format`) and a pad token.

    ``record``, when given, receives what was decided (template, pad token) for provenance and the card. ``where``:
    the recipe's key of ``model_cfg``, for the fix of an error (a generator's is ``stage.generators.0.model_config``).
    """
    tokenizer = open_tokenizer(model_cfg)
    return prepare_tokenizer(tokenizer, model_cfg, assistant_only, record, where)


def prepare_tokenizer(tokenizer, model_cfg: ModelConfig | dict, assistant_only: bool = False, record: dict | None = None,
                      where: str = "model"):
    """Set the chat template the run trains with and a pad token; see :func:`load_tokenizer`."""
    model_cfg = section_of(ModelConfig, model_cfg)
    name = model_cfg.tokenizer_name_or_path or model_cfg.name_or_path
    choice = chat_format.choose(tokenizer, model_cfg, assistant_only, model_name=name, where=where)
    tokenizer.chat_template = choice.text
    log.info("%s", choice.note)
    pad = chat_format.ensure_pad_token(tokenizer)
    if pad["how"] != "the tokenizer's own":
        log.info("pad token: %s, %s", pad["pad_token"], pad["how"])
    if record is not None:
        record["chat_template"] = choice.record()
        record["pad_token"] = pad
    return tokenizer


def fit_embeddings(model, tokenizer) -> dict | None:
    """Grow the embedding matrix when the tokenizer has more tokens than it has rows; returns what was done."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return None
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    done = {"from": rows, "to": len(tokenizer)}
    log.warning("the tokenizer has %d tokens and the model's embedding matrix %d rows: resized to %d "
                "(new rows start at the mean of the old ones)", len(tokenizer), rows, len(tokenizer))
    return done


def standalone(model: str, model_cfg: dict | None, hardware: HardwareConfig | dict | None,
               purpose: str) -> tuple[ModelConfig, Placement]:
    """The model section and the placement of a model used outside training (a generator, a judge): the model
    section's defaults with the tokenizer's own chat template, under ``model_cfg``; the run's hardware profile,
    or the defaults (the GPU when there is one)."""
    cfg = section_of(ModelConfig, {"chat_template": None, **(model_cfg or {}), "name_or_path": model})
    hw = hardware if isinstance(hardware, HardwareConfig) else section_of(HardwareConfig, {"name": purpose,
                                                                                       **(hardware or {})})
    return cfg, resolve_placement(hw)


def load_model(name: str, model_cfg: ModelConfig | dict, placement: Placement, auto_class: str = "AutoModelForCausalLM",
               **options):
    """``name`` through transformers' ``auto_class`` (a causal LM unless a stage trains another head), in the
    placement's dtype and attention kernel; ``options`` go to from_pretrained (num_labels ...)."""
    import torch
    import transformers

    model_cfg = section_of(ModelConfig, model_cfg)
    source = resolve_source(name, "model")
    dtype = placement.weights_dtype if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype)
    extra: dict[str, Any] = {}
    if placement.load_in_4bit:
        from transformers import BitsAndBytesConfig

        dtype = placement.dtype  # the frozen 4-bit base computes in the training precision
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=placement.dtype, bnb_4bit_quant_storage=placement.dtype)
        extra["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}  # quantized weights load on the GPU
    check_weight_files(source, name)
    try:
        model, info = getattr(transformers, auto_class).from_pretrained(
            source, revision=model_cfg.revision, dtype=dtype,
            attn_implementation=placement.attn_implementation,
            trust_remote_code=bool(model_cfg.trust_remote_code), output_loading_info=True,
            **extra, **options)
    except (OSError, ValueError) as exc:
        raise _hub_error(name, exc, "model") from None
    except RuntimeError as exc:
        if "mismatch" in str(exc) or "size" in str(exc):
            raise ZephyrError(f"the weights of model {name} do not fit the shapes its config.json declares "
                              "(hidden_size, intermediate_size, vocab_size ... differ from the tensors in the weight "
                              "files)", "use the config.json saved with these weights, or the weights of this "
                              "config") from None
        raise
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError":
            raise ZephyrError(f"the weight files of model {name} cannot be read: {str(exc).splitlines()[0]}",
                              "the files are damaged or incomplete: copy or save the model again") from None
        raise
    _refuse_new_weights(name, model, info, auto_class)
    return model


def _refuse_new_weights(name: str, model, info: dict, auto_class: str) -> None:
    """Tensors the config declares and the weight files lack are freshly random: training from them is not
    training this model. A head a stage adds on purpose (a reward model's score) is expected."""
    try:
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            return  # ZeRO-3 loads the shards itself
    except ImportError:
        pass
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = [k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys") or []]
    if auto_class != "AutoModelForCausalLM":
        prefix = f"{getattr(model, 'base_model_prefix', 'model')}."
        missing = [k for k in missing if k.startswith(prefix)]
        unexpected = []
    problems = [f"{len(v)} {what} (e.g. {v[0]})" for v, what in
                ((missing, "tensors the config declares are missing from the weight files and would start random"),
                 (unexpected, "tensors in the weight files are not in the model the config declares"),
                 (mismatched, "tensors have other shapes than the config declares")) if v]
    if problems:
        raise ZephyrError(f"the weights of model {name} do not match its config.json: {'; '.join(problems)}",
                          "use the config.json saved with these weights (num_hidden_layers, hidden_size ... must "
                          "describe the tensors in the files); nothing was trained")


def check_weight_files(source: str, name: str | None = None) -> None:
    """Refuse, before loading, a local model folder whose .safetensors files are empty or cut short (a full disk or
    an interrupted copy): their header says how long they must be."""
    import json
    import struct

    folder = Path(source)
    if not folder.is_dir():
        return
    tensors: dict = {}
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        problem = None
        if size < 8:
            problem = "is empty" if size == 0 else f"is {size} bytes long"
        else:
            with open(path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = fh.read(n) if 8 + n <= size else b""
            try:
                meta = json.loads(header) if header else None
            except ValueError:
                meta = None
            if meta is None or not isinstance(meta, dict):
                problem = "has a damaged header"
            else:
                end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"
                           and isinstance(v, dict) and "data_offsets" in v), default=0)
                if 8 + n + end > size:
                    problem = f"is cut short ({size} of {8 + n + end} bytes)"
                tensors.update({k: v.get("shape") for k, v in meta.items() if isinstance(v, dict)})
        if problem:
            raise ZephyrError(f"the weight file {path} of model {name or source} {problem}",
                              "the model was not completely written or copied (a full disk, an interrupted "
                              "download): save or copy it again, or point at another model")
    _check_shape(folder, tensors, name or source)


def _check_shape(folder: Path, tensors: dict, name: str) -> None:
    """The layer count and width the config.json declares against the tensors in the weight files' headers."""
    import json
    import re

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return
    if not tensors or not isinstance(config, dict):
        return
    fix = ("use the config.json saved with these weights (its num_hidden_layers and hidden_size must describe the "
           "tensors in the files), or the weights of this config")
    layers = {int(m.group(1)) for k in tensors if (m := re.search(r"(?:^|\.)layers\.(\d+)\.", k))}
    declared = config.get("num_hidden_layers")
    if layers and isinstance(declared, int) and declared != len(layers):
        raise ZephyrError(f"model {name}: config.json declares {declared} layers and its weight files hold "
                          f"{len(layers)}; the {'missing' if declared > len(layers) else 'extra'} layers would "
                          f"{'start random' if declared > len(layers) else 'be dropped'}", fix)
    hidden = config.get("hidden_size")
    embed = next((v for k, v in tensors.items() if k.endswith("embed_tokens.weight") and isinstance(v, list)), None)
    if isinstance(hidden, int) and embed and len(embed) == 2 and embed[1] != hidden:
        raise ZephyrError(f"model {name}: config.json declares hidden_size {hidden} and its weight files hold "
                          f"embeddings {embed[1]} wide", fix)
