"""FSDP2 across two CPU processes through the profile machinery (hardware=cpu-2proc-fsdp2, `accelerate launch`,
gloo), and preemption.

- SFT and DPO of the tiny model, sharded, end with the weights of a one-process run with the same global batch.
  Tolerance: TOL (absolute, fp32). The runs see the same rows in the same order and differ only in how
  floating-point sums are split (each rank sums its half of the batch, then the halves are reduced), which
  moves results by a few fp32 ulps per step (~1e-7 relative); AdamW then divides by sqrt(v), so such ulps
  can grow to ~1e-6 on weights of order 1 over a few steps. Measured: 5e-7 after 16 SFT steps, 3e-8 after 4 DPO steps.
  A real difference (a lost step, a different batch, an unsynchronised gradient) moves weights by about the
  learning rate (1e-3 .. 1e-4), two orders above TOL.
- SIGTERM, then `kill -9` of the whole launch (front end, launcher and workers), each followed by the same
  command again: each re-run resumes from the sharded checkpoint; the run ends with the uninterrupted weights.
- SIGTERM: every rank finishes its step, a checkpoint is written, run.json says `preempted`, the command exits
  75; the re-run resumes and ends with the uninterrupted weights.
- The finished folder is a plain unsharded HF model folder that transformers' pipeline() loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ZEPHYR_RECIPES_HOME", str(Path(tempfile.gettempdir()) / "zephyr-recipes-tests"))

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-5
STEPS, SAVE = 16, 4
SFT = ["tiny/sft", f"+stage.trainer.max_steps={STEPS}", f"stage.trainer.save_steps={SAVE}",
       "stage.global_batch_size=4"]
SHARDED = ["hardware=cpu-2proc-fsdp2", "hardware.per_device_batch_size=2"]
ONE = ["hardware=cpu", "hardware.per_device_batch_size=4"]

pytestmark = pytest.mark.slow


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["TOKENIZERS_PARALLELISM"] = "false"
    return e


def command(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "zephyr_recipes", *args, f"+run.output_dir={out}"]


def run(out: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(out, *args), cwd=out.parent, env=env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def run_here(out: Path, *args: str) -> None:
    """A one-process run in this process (no interpreter start-up)."""
    from zephyr_recipes.commands.cli import main

    assert main(["run", *args, f"+run.output_dir={out}"]) == 0


def start(out: Path, *args: str) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / f"{out.name}.log", "w")
    return subprocess.Popen(command(out, *args), cwd=out.parent, env=env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_checkpoint(folder: Path, proc: subprocess.Popen, step: int, timeout: float = 300) -> Path:
    """Until checkpoint-<step> is fully written by both ranks."""
    ckpt = folder / f"checkpoint-{step}"
    needed = ["trainer_state.json", "rng_state_0.pth", "rng_state_1.pth", "scheduler.pt"]
    end = time.time() + timeout
    while time.time() < end:
        if all((ckpt / n).exists() for n in needed):
            time.sleep(0.2)
            return ckpt
        assert proc.poll() is None, (folder.parent / f"{folder.name}.log").read_text()[-3000:]
        time.sleep(0.02)
    raise AssertionError(f"no {ckpt} after {timeout}s")


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    keys = set(a) & set(b)
    assert {k for k in a if not k.startswith("lm_head")} <= keys  # a tied lm_head may be written by one only
    return max((a[k] - b[k]).abs().max().item() for k in keys)


def status(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def distcp_shards(ckpt: Path) -> list[str]:
    return sorted(p.name for p in (ckpt / "pytorch_model_fsdp_0").glob("*.distcp"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fsdp")


@pytest.fixture(scope="module")
def sharded_sft(work):
    """An uninterrupted sharded SFT run: the reference of the resume tests."""
    out = work / "sharded"
    proc = run(out, *SFT, *SHARDED)
    return out, proc.stdout + proc.stderr


def test_sharded_sft_equals_one_process_and_is_a_plain_hf_folder(work, sharded_sft):
    out, log = sharded_sft
    assert "sharding: FSDP2 (fully_shard) over 2 CPU processes" in log
    assert "batch: 2 per device x 1 accumulation x 2 processes = 4 global batch" in log
    assert status(out)["status"] == "complete"
    one = work / "one"
    run_here(one, *SFT, *ONE)
    diff = max_diff(weights(out), weights(one))
    print(f"sft: max |sharded - one process| = {diff:.3g}")
    assert diff < TOL
    # Something trained: the weights moved from the initial ones by far more than TOL.
    from zephyr_recipes.embedded import builtin

    assert max_diff(weights(out), weights(Path(builtin.resolve("builtin://tiny-mistral")))) > 100 * TOL
    # A plain, unsharded model folder: no checkpoints, no distributed-checkpoint files, one safetensors file.
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not any(n.startswith("checkpoint-") or n.endswith(".distcp") or n.startswith("pytorch_model_fsdp")
                   for n in names), names
    from transformers import pipeline

    chat = pipeline("text-generation", model=str(out), device="cpu")
    reply = chat([{"role": "user", "content": "What is 2 + 3?"}], max_new_tokens=5, do_sample=False)
    assert reply[0]["generated_text"][-1]["role"] == "assistant"


def test_sigterm_then_kill_9_each_resume_to_the_uninterrupted_weights(work, sharded_sft):
    """One run stopped twice: SIGTERM (preempted, exit 75, re-run resumes), then kill -9 of the whole launch
    (re-run resumes from the last sharded checkpoint). It ends with the uninterrupted run's weights."""
    ref, _ = sharded_sft
    out = work / "stopped"
    proc = start(out, *SFT, *SHARDED)
    wait_for_checkpoint(out, proc, SAVE)
    proc.send_signal(signal.SIGTERM)  # to the front end, as a scheduler signals the job's command
    rc = proc.wait(timeout=300)
    log = (work / "stopped.log").read_text()
    assert rc == 75, log[-4000:]
    st = status(out)
    assert st["status"] == "preempted", st
    step = st["step"]
    assert SAVE <= step < STEPS
    # The step it stopped at was saved (not only the last periodic checkpoint), by both ranks.
    assert Path(st["checkpoint"]) == out / f"checkpoint-{step}"
    assert distcp_shards(out / f"checkpoint-{step}") == ["__0_0.distcp", "__1_0.distcp"]
    assert "SIGTERM received" in log and "preempted" in log and "Traceback" not in log
    assert not (out / "model.safetensors").exists()  # it does not look finished

    # Re-run; kill -9 the front end, accelerate's launcher and both workers at once after the next checkpoint.
    proc = start(out, *SFT, *SHARDED)
    nxt = (step // SAVE + 1) * SAVE
    wait_for_checkpoint(out, proc, nxt)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert f"resuming from {out / f'checkpoint-{step}'}" in (work / "stopped.log").read_text()
    assert status(out)["status"] == "running"  # nothing got to say otherwise
    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert nxt <= last < STEPS
    assert distcp_shards(out / f"checkpoint-{last}") == ["__0_0.distcp", "__1_0.distcp"]

    again = run(out, *SFT, *SHARDED)
    assert f"resuming from {out / f'checkpoint-{last}'}" in again.stdout + again.stderr, \
        (again.stdout + again.stderr)[-4000:]
    assert status(out)["status"] == "complete"
    diff = max_diff(weights(out), weights(ref))
    print(f"SIGTERM at step {step}, kill -9 after step {last}, resumed: max |resumed - uninterrupted| = {diff:.3g}")
    assert diff < TOL


def test_sharded_dpo_equals_one_process(work, sharded_sft):
    sft, _ = sharded_sft
    # The DPO loss proper. The recipe adds TRL's `sft` term, a token mean over each device's rows: its gradient
    # depends on how a batch is split over devices (DDP too), so a sharded run differs from one process by
    # about the learning rate there (measured 6e-4 after 4 steps) -- a property of that loss, not of sharding.
    dpo = ["tiny/dpo", f"model.name_or_path={sft}", "dataset.path=builtin://tiny-ultrafeedback",
           "+stage.trainer.max_steps=4", "stage.global_batch_size=16", "stage.trainer.loss_type=[sigmoid]"]
    sharded, one = work / "dpo-sharded", work / "dpo-one"
    log = run(sharded, *dpo, "hardware=cpu-2proc-fsdp2", "hardware.per_device_batch_size=8")
    assert "sharding: FSDP2" in log.stdout + log.stderr
    run_here(one, *dpo, "hardware=cpu", "hardware.per_device_batch_size=16")
    moved = max_diff(weights(one), weights(sft))
    diff = max_diff(weights(sharded), weights(one))
    print(f"dpo: max |sharded - one process| = {diff:.3g} (training moved weights by {moved:.3g})")
    assert moved > 10 * TOL
    assert diff < TOL
