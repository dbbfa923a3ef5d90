"""The DeepSpeed files the ZeRO profiles generate, completed the way the trainer completes them (transformers'
HfTrainerDeepSpeedConfig fills every "auto" from the TrainingArguments the worker builds) and then parsed by
DeepSpeed's own DeepSpeedConfig, for the world size of the profile. No GPU: the parser needs none."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ZEPHYR_RECIPES_HOME", str(Path(tempfile.gettempdir()) / "zephyr-recipes-tests"))

pytest.importorskip("deepspeed", reason="the dev extra installs deepspeed (pip install -e '.[dev]')")

from zephyr_recipes import stages  # noqa: E402
from zephyr_recipes.model import hardware  # noqa: E402
from zephyr_recipes.model.modeling import Placement  # noqa: E402
from zephyr_recipes.runtime import launch, plan  # noqa: E402
from zephyr_recipes.runtime.compose import compose  # noqa: E402
from zephyr_recipes.runtime.validate import validate  # noqa: E402
from zephyr_recipes.stages.training import trainer_args  # noqa: E402

ZERO = [("8gpu-zero3", []), ("8gpu-zero3-offload", []), ("2x8gpu-zero3", []),
        ("8gpu-zero3", ["hardware.strategy=zero2"]),
        ("8gpu-zero3", ["hardware.per_device_batch_size=4"])]  # accumulation 2 on 8 GPUs for the 128 of sft


class _AsLaunched:
    """The worker's TrainingArguments as they are in a process of the launched world (world_size from the
    profile; everything else the real object's)."""

    def __init__(self, args, world: int):
        self._args, self.world_size = args, world

    def __getattr__(self, name):
        return getattr(self._args, name)


@pytest.mark.parametrize("recipe", ["zephyr-7b-beta/sft", "zephyr-7b-beta/dpo"])
@pytest.mark.parametrize("profile, extra", ZERO)
def test_generated_deepspeed_config_is_accepted_by_deepspeed(recipe, profile, extra, tmp_path, monkeypatch):
    import deepspeed.runtime.config as ds_config
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    raw, name, _ = compose(recipe, [f"hardware={profile}", *extra])
    cfg = validate(raw, name)
    hw = cfg.config["hardware"]
    world = hardware.world_size(hw)
    launch.write_configs(cfg, tmp_path)
    import transformers.training_args as ta

    monkeypatch.setattr(ta, "is_torch_bf16_gpu_available", lambda *a, **k: True)  # as on the profile's GPUs
    monkeypatch.setenv("WORLD_SIZE", str(world))  # as the launcher sets it for each process
    stage = stages.get(cfg.stage.name)
    args = trainer_args(stage, cfg, Placement(device="cuda", attn_implementation="sdpa", precision="bf16"),
                               tmp_path)
    # What the trainer does with the file: fill "auto" from the arguments, then from the model and step count.
    filled = HfTrainerDeepSpeedConfig(str(tmp_path / hardware.DEEPSPEED_CONFIG))
    view = _AsLaunched(args, world)
    filled.trainer_config_process(view)
    shape = plan.Shape.from_config(plan.KNOWN["mistralai/Mistral-7B-v0.1"])
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=shape.hidden))
    filled.trainer_config_finalize(view, model, num_training_steps=1000)
    assert "auto" not in repr(filled.config)
    # DeepSpeed's parser, in a process of a world of that size.
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: world)
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    parsed = ds_config.DeepSpeedConfig(filled.config)
    assert parsed.world_size == world
    # The batch the runner promised: per-device x accumulation x processes = the recipe's global batch.
    assert parsed.train_micro_batch_size_per_gpu == args.per_device_train_batch_size == hardware.per_device_batch(cfg, stage)
    assert parsed.gradient_accumulation_steps == args.gradient_accumulation_steps == \
        hardware.gradient_accumulation(cfg, stage, world)
    assert parsed.train_batch_size == cfg.stage.global_batch_size
    assert parsed.zero_enabled and parsed.zero_optimization_stage == int(hw["strategy"][-1])
    assert parsed.bfloat16_config.enabled and not parsed.float16_config.enabled
    assert parsed.gradient_clipping == args.max_grad_norm
    offload = parsed.zero_config.offload_optimizer
    assert (offload is not None and str(offload.device).endswith("cpu")) == bool(hw["offload"])
    if hw["strategy"] == "zero3":
        assert parsed.zero_config.gather_16bit_weights_on_model_save  # save_model writes whole weights


def test_deepspeed_parser_refuses_an_inconsistent_batch(monkeypatch):
    """The check above can fail: DeepSpeed itself rejects a global batch that the processes cannot make."""
    import deepspeed.runtime.config as ds_config

    cfg = validate(*compose("zephyr-7b-beta/sft", ["hardware=8gpu-zero3"])[:2])
    ds = hardware.deepspeed_config(cfg.hardware)
    ds.update(train_batch_size=100, train_micro_batch_size_per_gpu=16, gradient_accumulation_steps=1,
              gradient_clipping=1.0, bf16={"enabled": True}, fp16={"enabled": False})
    ds["zero_optimization"].update(reduce_bucket_size=1, stage3_prefetch_bucket_size=1,
                                   stage3_param_persistence_threshold=1)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: 8)
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    with pytest.raises(AssertionError, match="Check batch related parameters"):
        ds_config.DeepSpeedConfig(ds)


@pytest.mark.slow
def test_zero3_steps_on_two_cpu_processes(tmp_path):
    """ZeRO-3 with the profile's generated file steps on CPU processes (DeepSpeed's CPU accelerator, gloo):
    each rank holds half of the parameters and the loss falls. This is DeepSpeed's own engine under torchrun;
    the runner's accelerate launch cannot do it on the CPU (accelerate takes its DeepSpeed path only off the CPU)."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    with socket_port() as port:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", str(port), str(root / "tests" / "zero3_cpu_step.py")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ranks = [json.loads(f.read_text()) for f in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    for r in ranks:
        assert r["world"] == 2 and r["stage"] == 3
        assert r["local_params"] * 2 == pytest.approx(r["total_params"], rel=0.01)  # sharded in two
        assert r["losses"][-1] < r["losses"][0]


class socket_port:
    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False
