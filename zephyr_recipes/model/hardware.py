"""Hardware profiles: checks that need no GPU, the global batch arithmetic, and the accelerate / DeepSpeed /
FSDP configuration a profile generates.

Nothing here launches anything (see :mod:`zephyr_recipes.runtime.launch`) or looks at the current machine: a
profile for 16 GPUs validates on a laptop. The configs are accelerate's and DeepSpeed's own formats, written
into the run folder so that a run can be re-launched by hand with exactly what the runner used.
"""

from __future__ import annotations

import math

from ..core.errors import ZephyrError, did_you_mean
from ..core.recipe import Recipe, as_recipe, section_of
from ..core.schema import HardwareConfig
from . import trainer_fields
from .trainer_fields import TrainsWithTRL

SHARDED = ("zero2", "zero3", "fsdp2")
ACCELERATE_CONFIG = "accelerate.yaml"
DEEPSPEED_CONFIG = "deepspeed.json"


def world_size(hw: HardwareConfig | dict) -> int:
    hw = section_of(HardwareConfig, hw)
    return int(hw.num_nodes) * int(hw.num_processes)


def per_device_batch(recipe: Recipe | dict, stage: TrainsWithTRL) -> int:
    """The per-device training batch the run will use: the profile's when it sets one, else the recipe's, else
    the default of ``stage``'s TRL config."""
    recipe = as_recipe(recipe)
    hw, trainer = recipe.hardware, recipe.stage.trainer
    if hw.per_device_batch_size:
        return int(hw.per_device_batch_size)
    if "per_device_train_batch_size" in trainer:
        return int(trainer["per_device_train_batch_size"])
    return int(trainer_fields.default(stage, "per_device_train_batch_size"))


def gradient_accumulation(recipe: Recipe | dict, stage: TrainsWithTRL, world: int | None = None) -> int:
    """Gradient accumulation steps: derived from stage.global_batch_size when set, else the recipe's."""
    recipe = as_recipe(recipe)
    world = world_size(recipe.hardware) if world is None else world
    glob = recipe.stage.global_batch_size
    if not glob:
        return int(recipe.stage.trainer.get("gradient_accumulation_steps", 1))
    per = per_device_batch(recipe, stage)
    step = per * world
    if glob % step:
        near = sorted({max(step, glob // step * step), (glob // step + 1) * step})
        raise ZephyrError(
            f"stage.global_batch_size={glob} is not a multiple of per-device batch {per} x {world} processes = {step}",
            f"use stage.global_batch_size={' or '.join(map(str, near))}, or change the per-device batch "
            f"(hardware.per_device_batch_size) or the process count")
    return glob // step


def check(recipe: Recipe | dict, stage: TrainsWithTRL | None) -> None:
    """Checks of the hardware section against itself and the recipe (``stage``: the training stage it runs, None
    for a stage that trains nothing). Raises ZephyrError with the fix."""
    recipe = as_recipe(recipe)
    hw = recipe.hardware
    name = hw.name
    world = world_size(hw)
    mem = hw.gpu_memory_gb
    if mem is not None and not (isinstance(mem, (int, float)) and math.isfinite(mem) and mem > 0):
        raise ZephyrError(f"hardware.gpu_memory_gb={mem} is not a memory size (it must be a number above 0)",
                          "give one device's memory in GB, e.g. hardware.gpu_memory_gb=80, or null for no plan check")
    if hw.num_processes < 1 or hw.num_nodes < 1:
        raise ZephyrError("hardware.num_processes and hardware.num_nodes must be at least 1",
                          "set hardware.num_processes=1 hardware.num_nodes=1 for one process")
    if hw.launcher == "inprocess" and world > 1:
        raise ZephyrError(f"hardware profile {name!r} asks for {world} processes but launcher=inprocess runs one",
                          "set hardware.launcher=accelerate (one node) or hardware.launcher=slurm (several nodes)")
    if hw.launcher == "accelerate" and hw.num_nodes > 1:
        raise ZephyrError(f"hardware.num_nodes={hw.num_nodes} but launcher=accelerate starts processes on this "
                          "machine only", "set hardware.launcher=slurm to get one launcher per node")
    if hw.strategy == "none" and world > 1:
        raise ZephyrError(f"{world} processes need a way to share the work, but hardware.strategy=none",
                          "set hardware.strategy=ddp (or zero2, zero3, fsdp2)")
    if hw.strategy != "none" and world == 1 and hw.launcher != "inprocess":
        raise ZephyrError(f"hardware.strategy={hw.strategy} with a single process",
                          "set hardware.num_processes to the number of GPUs, or hardware=1gpu for one GPU")
    if hw.strategy != "none" and hw.launcher == "inprocess":
        raise ZephyrError(f"hardware.strategy={hw.strategy} needs several processes, launcher=inprocess runs one",
                          "set hardware.launcher=accelerate, or hardware.strategy=none")
    if hw.strategy in ("zero2", "zero3") and hw.device == "cpu":
        raise ZephyrError(f"hardware.strategy={hw.strategy} (DeepSpeed) is not supported on the CPU here",
                          "use hardware=cpu-2proc-fsdp2 (FSDP2 over gloo) or hardware=cpu-2proc (DDP) on the CPU")
    if hw.strategy == "fsdp2" and hw.device == "cpu" and hw.offload:
        raise ZephyrError("hardware.offload=true moves FSDP2's shards to CPU RAM, and on the CPU they are there already",
                          "set hardware.offload=false")
    if hw.offload and hw.strategy not in ("zero3", "fsdp2"):
        raise ZephyrError(f"hardware.offload=true needs a sharded strategy, but hardware.strategy={hw.strategy}",
                          "set hardware.strategy=zero3 (or fsdp2), or hardware.offload=false")
    if hw.load_in_4bit:
        if not hw.lora:
            raise ZephyrError("hardware.load_in_4bit=true freezes the base in 4 bits, so something else must train",
                              "set hardware.lora (for example hardware=qlora-24gb), or hardware.load_in_4bit=false")
        if hw.device == "cpu":
            raise ZephyrError("hardware.load_in_4bit=true needs a CUDA GPU (bitsandbytes 4-bit kernels)",
                              "use hardware=qlora-24gb on a GPU, or hardware.load_in_4bit=false on the CPU")
        if hw.strategy in SHARDED:
            raise ZephyrError(f"4-bit loading with hardware.strategy={hw.strategy} is not supported by this runner",
                              "use hardware.strategy=ddp (one quantized copy per GPU), or drop load_in_4bit")
    if hw.lora is not None:
        check_lora(hw.lora)
    if hw.main_process_port < 1 or hw.main_process_port > 65535:
        raise ZephyrError(f"hardware.main_process_port={hw.main_process_port} is not a TCP port",
                          "use a free port between 1024 and 65535")
    if hw.per_device_batch_size is not None and hw.per_device_batch_size < 1:
        raise ZephyrError("hardware.per_device_batch_size must be at least 1", "set it to 1 or more, or null")
    if hw.launcher != "slurm" and hw.slurm:
        raise ZephyrError("hardware.slurm only applies to launcher=slurm", "remove hardware.slurm or set launcher=slurm")
    glob = recipe.stage.global_batch_size
    if glob is not None and stage is not None:
        if glob < 1:
            raise ZephyrError("stage.global_batch_size must be at least 1", "set it to the sequences per step")
        if "gradient_accumulation_steps" in (recipe.stage.trainer or {}):
            raise ZephyrError("stage.global_batch_size and stage.trainer.gradient_accumulation_steps are both set; "
                              "accumulation is derived from the global batch",
                              "remove stage.trainer.gradient_accumulation_steps "
                              "(~stage.trainer.gradient_accumulation_steps)")
        gradient_accumulation(recipe, stage)


def check_lora(lora) -> None:
    """LoRA arguments go to peft.LoraConfig as is; check their names against it when peft is installed."""
    import dataclasses
    import importlib.util

    if not isinstance(lora, dict):
        raise ZephyrError("hardware.lora must be a mapping of peft.LoraConfig arguments (r, lora_alpha ...) or null",
                          "write hardware.lora={r: 16, lora_alpha: 16}")
    if importlib.util.find_spec("peft") is None:
        return  # checked when the run starts on a machine with peft
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)}
    for key in lora:
        if key not in known:
            raise ZephyrError(f"unknown key `hardware.lora.{key}`: peft.LoraConfig has no field `{key}`",
                              did_you_mean(key, known) or "see peft.LoraConfig's fields")


def mixed_precision(hw: HardwareConfig | dict) -> str:
    hw = section_of(HardwareConfig, hw)
    return {"bf16": "bf16", "fp16": "fp16"}.get(hw.precision, "no")


def deepspeed_config(hw: HardwareConfig | dict) -> dict:
    """A DeepSpeed config in the form the HF Trainer completes: every "auto" is filled from TrainingArguments."""
    hw = section_of(HardwareConfig, hw)
    stage = {"zero2": 2, "zero3": 3}[hw.strategy]
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_max_live_parameters=1e9, stage3_max_reuse_distance=1e9,
                    stage3_gather_16bit_weights_on_model_save=True)
    else:
        zero.update(allgather_partitions=True, allgather_bucket_size=2e8, reduce_scatter=True)
    if hw.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16},
        "zero_optimization": zero,
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "steps_per_print": 1000000,
        "wall_clock_breakdown": False,
    }


def accelerate_config(hw: HardwareConfig | dict, deepspeed_file: str | None = None) -> dict:
    """The `accelerate launch --config_file` content for a profile (accelerate's ClusterConfig fields)."""
    hw = section_of(HardwareConfig, hw)
    world = world_size(hw)
    out: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "num_machines": hw.num_nodes,
        "num_processes": world,  # accelerate counts processes over all machines
        "machine_rank": 0,  # per node: --machine_rank on the command line (see the Slurm script)
        "main_process_port": hw.main_process_port,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": hw.device == "cpu",
        "gpu_ids": "all",
        "enable_cpu_affinity": False,
        "downcast_bf16": "no",
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "tpu_env": [],
    }
    strategy = hw.strategy
    if strategy in ("zero2", "zero3"):
        # Precision lives in the DeepSpeed file ("auto", filled from the trainer); accelerate refuses a
        # mixed_precision of its own next to a deepspeed_config_file.
        out["distributed_type"] = "DEEPSPEED"
        out["deepspeed_config"] = {"deepspeed_config_file": deepspeed_file or DEEPSPEED_CONFIG,
                                   "zero3_init_flag": strategy == "zero3",
                                   "deepspeed_multinode_launcher": "standard"}
        return out
    out["mixed_precision"] = mixed_precision(hw)
    if strategy == "fsdp2":
        out["distributed_type"] = "FSDP"
        out["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": bool(hw.offload),
            "fsdp_reshard_after_forward": True,
            # Checkpoints: every rank writes its own shards (fast, no gather; resume reads them back). The
            # final save switches to a full state dict (gather_for_save), so the run folder holds ordinary
            # safetensors.
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            # FSDP checkpoints activations itself; the trainer's own flag is then left off (they conflict).
            "fsdp_activation_checkpointing": bool(hw.gradient_checkpointing),
        }
    else:
        # ddp. On the CPU accelerate still starts the processes through torchrun; the trainer (use_cpu) then
        # joins them over gloo.
        out["distributed_type"] = "MULTI_GPU"
    return out


def fsdp_on_cpu(hw: HardwareConfig | dict) -> bool:
    hw = section_of(HardwareConfig, hw)
    """True when this process must switch accelerate to FSDP2 itself (see :func:`enable_fsdp_on_cpu`)."""
    return hw.strategy == "fsdp2" and hw.device == "cpu" and world_size(hw) > 1


def enable_fsdp_on_cpu(hw: HardwareConfig | dict) -> None:
    """FSDP2 on CPU processes, through the same accelerate config and trainer path as on GPUs.

    `accelerate launch` starts the processes and exports the FSDP settings of accelerate.yaml (FSDP_VERSION,
    FSDP_STATE_DICT_TYPE ...), but accelerate's state only turns a launch into FSDP for accelerator devices:
    with ``use_cpu`` it stays plain multi-CPU data parallel and the FSDP settings are dropped without a word
    (accelerate 1.x, AcceleratorState). torch's ``fully_shard`` itself runs on CPU tensors over gloo. So before
    the trainer builds its Accelerator, this creates the shared accelerator state as the launcher configured it
    and marks it FSDP with the plugin read from those same settings; the trainer, its checkpointing and its
    final gathered save then take their ordinary FSDP2 paths. Called on every rank; a no-op elsewhere.
    """
    if not fsdp_on_cpu(hw):
        return
    import os

    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, TorchDynamoPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        raise ZephyrError("hardware.strategy=fsdp2 but this process was not started with the FSDP settings",
                          f"start the run through `zephyr-recipes run` or `accelerate launch --config_file "
                          f"<run folder>/{ACCELERATE_CONFIG}`")
    partial = PartialState(cpu=True)
    state = AcceleratorState(cpu=True, dynamo_plugin=TorchDynamoPlugin(), _from_accelerator=True)
    if state.distributed_type == DistributedType.FSDP:
        return
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise ZephyrError(f"FSDP2 on the CPU expected accelerate's multi-CPU state, found {state.distributed_type}",
                          "use hardware=cpu-2proc (DDP) on this machine")
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    # Both shared states: every later AcceleratorState() (the trainer's Accelerator makes one) copies the
    # process-level state over its own before it finds itself initialized.
    state.distributed_type = partial.distributed_type = DistributedType.FSDP
    import logging

    logging.getLogger("zephyr_recipes").info(
        "sharding: FSDP2 (fully_shard) over %d CPU processes (gloo); checkpoints %s", state.num_processes,
        str(state.fsdp_plugin.state_dict_type).rsplit(".", 1)[-1].lower())


def gather_for_save(trainer) -> None:
    """Before the final save_model of an FSDP run: gather a full state dict (rank 0 writes plain safetensors)
    instead of the sharded checkpoint format the run used while training. Call on every rank."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if getattr(trainer, "is_fsdp_enabled", False) and plugin is not None and \
            "FULL_STATE_DICT" not in str(plugin.state_dict_type):
        plugin.set_state_dict_type("FULL_STATE_DICT")
