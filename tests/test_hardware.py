"""Hardware profiles: composition with every recipe, validation, the generated accelerate / DeepSpeed / FSDP
configs as accelerate itself reads them, a real two-process CPU run through `accelerate launch`, and the
Slurm path as far as it runs without Slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ZEPHYR_RECIPES_HOME", str(Path(tempfile.gettempdir()) / "zephyr-recipes-tests"))

from zephyr_recipes import stages  # noqa: E402
from zephyr_recipes.commands.cli import main  # noqa: E402
from zephyr_recipes.core.catalog import list_options, list_recipes  # noqa: E402
from zephyr_recipes.core.errors import ZephyrError  # noqa: E402
from zephyr_recipes.model import hardware  # noqa: E402
from zephyr_recipes.runtime import launch  # noqa: E402
from zephyr_recipes.runtime.compose import compose, find_recipe  # noqa: E402
from zephyr_recipes.runtime.validate import validate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROFILES = list_options()["hardware"]
MULTI = [p for p in PROFILES if p not in ("cpu", "auto", "1gpu", "qlora-24gb")]
FAST = ["+stage.trainer.max_steps=2", "+dataset.max_train_samples=64"]


def cfg_for(recipe: str, *overrides: str):
    raw, name, _ = compose(recipe, list(overrides))
    return validate(raw, name)


def stage_of(cfg):
    return stages.get(cfg.stage.name)


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["TOKENIZERS_PARALLELISM"] = "false"
    return e


def test_required_profiles_ship():
    for name in ("cpu", "cpu-2proc", "1gpu", "8gpu-ddp", "8gpu-zero3", "8gpu-zero3-offload", "8gpu-fsdp2",
                 "2x8gpu-zero3", "qlora-24gb"):
        assert name in PROFILES


SINGLE_STAGE = [r for r in list_recipes() if "pipeline" not in (yaml.safe_load(find_recipe(r)[0].read_text()) or {})]


def _pairs():
    """Every (recipe, profile): make test takes a quarter of the grid that still meets every recipe and every profile
    (each recipe with about three profiles, each profile with about five recipes, a one-process stage with a
    multi-process profile among them); make test-slow takes the rest."""
    out = []
    for i, recipe in enumerate(SINGLE_STAGE):
        for j, profile in enumerate(PROFILES):
            fast = (i + j) % 4 == 0
            out.append(pytest.param(recipe, profile, marks=() if fast else pytest.mark.slow, id=f"{recipe}-{profile}"))
    return out


@pytest.mark.parametrize("recipe, profile", _pairs())
def test_every_profile_composes_with_every_recipe(recipe, profile):
    if cfg_for(recipe).stage.name in ("aif", "eval") and profile in MULTI:
        with pytest.raises(ZephyrError, match="stage runs in one process"):
            cfg_for(recipe, f"hardware={profile}")
        return
    cfg = cfg_for(recipe, f"hardware={profile}")
    hw = cfg.hardware
    assert hw.name == profile
    # The global batch of a recipe that states one is kept exactly on every profile.
    if getattr(cfg.stage, "global_batch_size", None):
        stage = stage_of(cfg)
        acc = hardware.gradient_accumulation(cfg, stage)
        assert hardware.per_device_batch(cfg, stage) * acc * hardware.world_size(hw) == cfg.stage.global_batch_size


def test_validate_command_passes_for_gpu_profile_on_a_cpu_machine(capsys):
    assert main(["validate", "zephyr-7b-beta/sft", "hardware=2x8gpu-zero3"]) == 0
    assert "hardware 2x8gpu-zero3" in capsys.readouterr().out


def test_global_batch_derives_accumulation():
    cfg = cfg_for("zephyr-7b-beta/sft", "hardware=1gpu")
    assert hardware.gradient_accumulation(cfg, stage_of(cfg)) == 128 // 16
    cfg = cfg_for("zephyr-7b-beta/sft", "hardware=8gpu-zero3")
    assert hardware.gradient_accumulation(cfg, stage_of(cfg)) == 1
    cfg = cfg_for("zephyr-7b-beta/dpo", "hardware=qlora-24gb")
    assert (hardware.per_device_batch(cfg, stage_of(cfg)), hardware.gradient_accumulation(cfg, stage_of(cfg))) == (4, 32)


@pytest.mark.parametrize("overrides, problem, fix", [
    (["stage.global_batch_size=100", "hardware=8gpu-zero3"], "not a multiple of per-device batch 16 x 8",
     "stage.global_batch_size=128"),
    (["hardware=8gpu-zero3", "+stage.trainer.gradient_accumulation_steps=4"], "both set",
     "~stage.trainer.gradient_accumulation_steps"),
    (["hardware=cpu", "hardware.num_processes=2"], "launcher=inprocess runs one", "hardware.launcher=accelerate"),
    (["hardware=8gpu-zero3", "hardware.num_nodes=2"], "launcher=accelerate starts processes on this machine",
     "hardware.launcher=slurm"),
    (["hardware=cpu-2proc", "hardware.strategy=zero3"], "not supported on the CPU", "cpu-2proc"),
    (["hardware=cpu-2proc", "hardware.strategy=none"], "strategy=none", "hardware.strategy=ddp"),
    (["hardware=8gpu-ddp", "hardware.offload=true"], "needs a sharded strategy", "zero3"),
    (["hardware=qlora-24gb", "hardware.lora=null"], "something else must train", "hardware.lora"),
    (["hardware=qlora-24gb", "hardware.device=cpu"], "needs a CUDA GPU", "load_in_4bit=false"),
    (["hardware=qlora-24gb", "+hardware.lora.rank=8"], "unknown key `hardware.lora.rank`", ""),
    (["hardware=cpu", "+hardware.stratgy=ddp"], "unknown key `hardware.stratgy`", "strategy"),
])
def test_hardware_errors_name_the_fix(overrides, problem, fix):
    recipe = "zephyr-7b-beta/sft"
    with pytest.raises(ZephyrError) as err:
        cfg_for(recipe, *overrides)
    assert problem in err.value.problem
    assert fix in (err.value.fix or "")


def test_lora_with_ref_model_is_refused():
    with pytest.raises(ZephyrError, match="adapters disabled"):
        cfg_for("zephyr-7b-beta/dpo", "hardware=qlora-24gb", "+stage.ref_model=HuggingFaceH4/mistral-7b-sft-beta")


def _accelerate_view(acc: Path, folder: Path):
    """What `accelerate launch --config_file acc -m zephyr_recipes.runtime.worker folder` would run with: accelerate's
    own parser, validation and environment builders, stopping short of starting processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as acc_launch

    args = launch_command_parser().parse_args(["--config_file", str(acc), "-m", "zephyr_recipes.runtime.worker",
                                               str(folder)])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        # as accelerate.commands.launch.launch_command does before deepspeed_launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(
            list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else []))
        _, child = acc_launch.prepare_deepspeed_cmd_env(args)
    else:
        child = acc_launch.prepare_multi_gpu_env(args)
    return args, defaults, child


@pytest.mark.parametrize("profile", MULTI)
def test_generated_configs_are_what_accelerate_accepts(profile, tmp_path, monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

    cfg = cfg_for("zephyr-7b-beta/sft", f"hardware={profile}")
    hw = cfg.config["hardware"]
    acc = launch.write_configs(cfg, tmp_path)
    loaded = load_config_from_file(str(acc))  # accelerate's own loader: refuses unknown keys
    assert isinstance(loaded, ClusterConfig)
    assert loaded.num_processes == hardware.world_size(hw)
    assert loaded.num_machines == hw["num_nodes"]
    args, defaults, child = _accelerate_view(acc, tmp_path)
    assert args.num_processes == hardware.world_size(hw)
    for key, value in child.items():
        monkeypatch.setenv(key, value)
    if hw["strategy"] in ("zero2", "zero3"):
        assert defaults.distributed_type == DistributedType.DEEPSPEED
        ds = json.loads((tmp_path / hardware.DEEPSPEED_CONFIG).read_text())
        assert ds["zero_optimization"]["stage"] == int(hw["strategy"][-1])
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"
        # accelerate's DeepSpeedPlugin reads the file through the launcher's environment. It does not import
        # deepspeed; the engine itself (deepspeed.initialize) can only be checked where deepspeed is installed.
        plugin = DeepSpeedPlugin()
        assert plugin.hf_ds_config.is_zero3() == (hw["strategy"] == "zero3")
        assert plugin.hf_ds_config.is_offload() == hw["offload"]
        assert plugin.zero3_init_flag == (hw["strategy"] == "zero3")
    elif hw["strategy"] == "fsdp2":
        assert defaults.distributed_type == DistributedType.FSDP
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2
        assert plugin.activation_checkpointing == hw["gradient_checkpointing"] and plugin.cpu_ram_efficient_loading
        # each rank checkpoints its own shards; the final save gathers (hardware.gather_for_save)
        assert "SHARDED_STATE_DICT" in str(plugin.state_dict_type)
    else:
        assert defaults.distributed_type == DistributedType.MULTI_GPU
        assert child["ACCELERATE_MIXED_PRECISION"] == hardware.mixed_precision(hw)
    assert defaults.use_cpu == (hw["device"] == "cpu")


@pytest.mark.slow
def test_two_process_cpu_run_through_accelerate_launch(tmp_path):
    """The real launch path: `zephyr-recipes run` -> accelerate launch -> 2 workers over gloo."""
    out = tmp_path / "run"
    trace = tmp_path / "trace"
    e = env()  # tests/trace_site/sitecustomize.py records each rank's examples in the launched workers
    e["ZEPHYR_RECIPES_TRACE_DIR"] = str(trace)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "trace_site"), e["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, "-m", "zephyr_recipes", "tiny/sft", "hardware=cpu-2proc",
                           "stage.trainer.per_device_train_batch_size=8", "stage.global_batch_size=32",
                           "stage.trainer.packing=false", *FAST,  # rows, not packed rows, are traced per rank
                           f"+run.output_dir={out}"],
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "accelerate launch --config_file" in log
    # per-device batch x accumulation x processes = global batch, printed at the start
    assert "batch: 8 per device x 2 accumulation x 2 processes = 32 global batch" in log
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "complete"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["distributed"]["world_size"] == 2 and prov["distributed"]["launcher"] == "accelerate"
    assert "zephyr-recipes run tiny/sft" in prov["command"]
    # both ranks trained, on different rows: within the first optimizer step their examples are disjoint
    ranks = {r: json.loads((trace / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert all(v["world_size"] == 2 for v in ranks.values())
    step0 = [set(ranks[r]["examples"][:16]) for r in (0, 1)]  # 8 per device x 2 accumulation
    assert len(step0[0]) == len(step0[1]) == 16
    assert not step0[0] & step0[1]
    # only rank 0 wrote the run folder: the files of a one-process run, train.log from rank 0 alone
    expected = {"config.yaml", "run.json", "accelerate.yaml", "train.log", "provenance.json", "model.safetensors",
                "config.json", "tokenizer.json", "tokenizer_config.json", "log_history.json", "metrics.json",
                "README.md", "training_curves.png"}
    names = {p.name for p in out.iterdir()}
    assert expected <= names
    assert not any(re.search(r"rank[_-]?1|\.1\.|-1\b", n) for n in names), names
    train_log = (out / "train.log").read_text()
    assert "2 processes" in train_log and "rank 1" not in train_log
    assert train_log.count("model: builtin://tiny-mistral") == 1


def _sbatch_options(text: str) -> dict:
    opts = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH "):
            k, _, v = line[len("#SBATCH "):].partition("=")
            opts[k] = v or True
    return opts


def test_slurm_script_for_two_nodes(tmp_path):
    cfg = cfg_for("zephyr-7b-beta/sft", "hardware=2x8gpu-zero3", "+hardware.slurm.partition=gpu")
    launch.write_configs(cfg, tmp_path)
    script, node = launch.sbatch_script(cfg, tmp_path)
    opts = _sbatch_options(script)
    assert opts["--nodes"] == "2" and opts["--ntasks-per-node"] == "1" and opts["--gpus-per-node"] == "8"
    assert opts["--partition"] == "gpu" and opts["--exclusive"] is True and opts["--time"] == "24:00:00"
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in script
    assert re.search(r"srun --nodes=2 --ntasks-per-node=1 .*launch_node\.sh", script)
    assert "SLURM_NODEID" in node and "SLURM_PROCID" in node
    assert re.search(r'--num_machines 2 --num_processes 16 --machine_rank "\$MACHINE_RANK" '
                     r'--main_process_ip "\$MAIN_IP" --main_process_port 29500', node)
    assert "-m zephyr_recipes.runtime.worker" in node
    for text in (script, node):
        f = tmp_path / "check.sh"
        f.write_text(text)
        assert subprocess.run(["bash", "-n", str(f)]).returncode == 0


def test_sbatch_asks_for_sigterm_and_requeues_a_preempted_run(tmp_path):
    """The generated script runs under bash with stand-ins for srun and scontrol: a run whose folder says
    `preempted` is requeued (exit 75); a failed one is not, and its exit code passes through."""
    cfg = cfg_for("zephyr-7b-beta/sft", "hardware=2x8gpu-zero3")
    script, _ = launch.sbatch_script(cfg, tmp_path)
    opts = _sbatch_options(script)
    assert opts["--requeue"] is True and opts["--signal"] == "TERM@180" and opts["--open-mode"] == "append"
    cfg = cfg_for("zephyr-7b-beta/sft", "hardware=2x8gpu-zero3", "+hardware.slurm.signal=TERM@600")
    assert _sbatch_options(launch.sbatch_script(cfg, tmp_path)[0])["--signal"] == "TERM@600"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f'#!/bin/bash\nif [ "$1" = show ]; then echo node1; exit 0; fi\n'
                                   f'echo "$@" >> {tmp_path}/scontrol.calls\n')
    for status, srun_rc, expect_rc, requeued in (("preempted", 1, 75, True), ("failed", 3, 3, False)):
        (fake / "srun").write_text(f"#!/bin/bash\necho '{{\"status\": \"{status}\"}}' > {tmp_path}/run.json\n"
                                   f"exit {srun_rc}\n")
        for f in fake.iterdir():
            f.chmod(0o755)
        (tmp_path / "scontrol.calls").unlink(missing_ok=True)
        e = env()
        e.update(PATH=f"{fake}{os.pathsep}{e['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node1")
        (tmp_path / "job.sbatch").write_text(script)
        proc = subprocess.run(["bash", str(tmp_path / "job.sbatch")], env=e, capture_output=True, text=True)
        assert proc.returncode == expect_rc, proc.stdout + proc.stderr
        calls = (tmp_path / "scontrol.calls").read_text() if (tmp_path / "scontrol.calls").exists() else ""
        assert ("requeue 4242" in calls) == requeued, calls


@pytest.mark.slow
def test_slurm_path_runs_one_node_with_two_cpu_processes(tmp_path, capsys):
    """`run` on a Slurm profile writes the scripts (and prints the sbatch command where sbatch is missing);
    the per-node script then trains, as srun would start it on the first node."""
    out = tmp_path / "run"
    rc = main(["run", "tiny/sft", "hardware=cpu-2proc", "hardware.launcher=slurm", "hardware.main_process_port=29541",
               *FAST, f"+run.output_dir={out}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sbatch" in printed and str(out / launch.SBATCH) in printed
    assert json.loads((out / "run.json").read_text())["status"] in ("prepared", "queued")
    opts = _sbatch_options((out / launch.SBATCH).read_text())
    assert opts["--nodes"] == "1" and "--gpus-per-node" not in opts
    e = env()
    e.update(SLURM_NODEID="0", ZEPHYR_MAIN_IP="127.0.0.1", SLURM_JOB_NODELIST="localhost")
    proc = subprocess.run(["bash", str(out / launch.NODE_SCRIPT)], cwd=tmp_path, env=e, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert "x 2 processes" in (out / "train.log").read_text()


@pytest.mark.slow  # worker subprocesses; make test's budget on a slower 2-core machine (make test-slow)
def test_worker_refuses_a_multi_process_folder_without_its_launcher(tmp_path):
    from zephyr_recipes.core import runfolder

    cfg = cfg_for("tiny/sft", "hardware=cpu-2proc", f"+run.output_dir={tmp_path / 'run'}")
    folder, _ = runfolder.prepare(cfg)
    proc = subprocess.run([sys.executable, "-m", "zephyr_recipes.runtime.worker", str(folder)], env=env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "prepared for 2 processes" in proc.stderr and "accelerate launch --config_file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_failing_multi_process_run_ends_in_one_clear_error(tmp_path):
    import socket

    out = tmp_path / "run"
    bad = tmp_path / "broken.jsonl"  # there (the pre-flight passes), unreadable (the workers fail on it)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json at all\n')
    with socket.socket() as busy:  # the profile's port is taken by something else on this machine
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "zephyr_recipes", "tiny/sft", "hardware=cpu-2proc",
                               f"hardware.main_process_port={port}", f"dataset.path={bad}",
                               f"+run.output_dir={out}"],
                              cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert f"port {port} is busy" in proc.stderr
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("error: the run failed (accelerate launch exit code")
    assert "broken.jsonl" in last[0] and last[1].startswith("  fix: ")
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "failed"  # kept: a launched run's folder


def test_trainer_keys_owned_by_the_profile_are_refused():
    with pytest.raises(ZephyrError) as err:
        cfg_for("tiny/sft", "+stage.trainer.deepspeed=ds.json")
    assert "hardware.strategy=zero2 or zero3" in err.value.fix


@pytest.mark.parametrize("profile, weights", [("1gpu", "fp32"), ("8gpu-ddp", "fp32"), ("8gpu-zero3", "bf16"),
                                              ("8gpu-fsdp2", "bf16"), ("qlora-24gb", "bf16"), ("cpu", "fp32")])
def test_weights_precision_follows_who_keeps_fp32_masters(profile, weights):
    from zephyr_recipes.model.modeling import weights_precision

    hw = cfg_for("zephyr-7b-beta/sft", f"hardware={profile}").hardware
    precision = "fp32" if profile == "cpu" else "bf16"
    assert weights_precision(hw, precision) == weights
