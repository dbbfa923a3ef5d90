"""Records that tell the truth (issue 28): a run preempted twice and resumed reports the whole run.

Real TRL training of the tiny model through the real command line in a subprocess, stopped with SIGTERM (as a
scheduler stops a job) twice, each time re-run with the same command. Its ``metrics.json`` must equal the
uninterrupted run's: the loss averaged over every step (not the last segment's), the tokens of the whole run (TRL
counts from zero in each new trainer), the steps and FLOPs; its run time is the sum of its segments'. Its weights
equal the uninterrupted run's too (resuming is exact), which is what makes equal metrics the right verdict.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STEPS, SAVE = 36, 6
SFT = ["tiny/sft", f"+stage.trainer.max_steps={STEPS}", f"stage.trainer.save_steps={SAVE}",
       "stage.trainer.logging_steps=5", "dataset.max_train_samples=400", "dataset.max_test_samples=16"]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["TOKENIZERS_PARALLELISM"] = "false"
    return e


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "zephyr_recipes", *SFT, f"+run.output_dir={out}"]


def start(out: Path) -> subprocess.Popen:
    log = open(out.parent / f"{out.name}.log", "a")
    return subprocess.Popen(command(out), cwd=out.parent, env=env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_checkpoint_after(folder: Path, proc: subprocess.Popen, after: int, timeout: float = 300) -> int:
    end = time.time() + timeout
    while time.time() < end:
        done = [int(p.parent.name.split("-")[1]) for p in folder.glob("checkpoint-*/.zephyr-checkpoint-complete")]
        if any(s > after for s in done):
            return max(done)
        assert proc.poll() is None, (folder.parent / f"{folder.name}.log").read_text()[-3000:]
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint after step {after} in {timeout}s")


def status(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def test_preempted_twice_then_resumed_reports_the_whole_run(tmp_path):
    from safetensors.torch import load_file

    ref = tmp_path / "ref"
    done = subprocess.run(command(ref), cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    out = tmp_path / "stopped"
    stops = []
    for _ in range(2):
        proc = start(out)
        wait_for_checkpoint_after(out, proc, stops[-1] if stops else 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 75, (tmp_path / "stopped.log").read_text()[-4000:]
        st = status(out)
        assert st["status"] == "preempted"
        assert st["step"] < STEPS, "the run ended before the signal: make the run longer"
        stops.append(st["step"])
    assert stops[0] < stops[1]
    again = subprocess.run(command(out), cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-4000:]
    assert f"resuming from {out / f'checkpoint-{stops[1]}'}" in log
    assert status(out)["status"] == "complete"

    a, b = load_file(str(out / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in set(a) & set(b)) < 1e-5  # resuming is exact

    whole, once = (json.loads((f / "metrics.json").read_text()) for f in (out, ref))
    print(f"stopped at {stops}; resumed train_loss {whole['train_loss']:.6f} vs {once['train_loss']:.6f}; "
          f"num_tokens {whole.get('num_tokens')} vs {once.get('num_tokens')}; runtime {whole['train_runtime']} vs "
          f"{once['train_runtime']} s")
    assert math.isclose(whole["train_loss"], once["train_loss"], rel_tol=1e-4)
    assert whole["num_tokens"] == once["num_tokens"]
    assert math.isclose(whole["total_flos"], once["total_flos"], rel_tol=1e-6)
    timing = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_wall_seconds"}
    for key in set(once) - timing:  # every other figure: the last logged values, the loss, tokens, FLOPs
        assert whole[key] == pytest.approx(once[key], rel=1e-4), key
    assert whole["resumed_segments"] == 3 and "resumed_segments" not in once
    assert not any(k.startswith("segment_") for k in whole)
    # Run time: the three segments' together. Not equal to the uninterrupted run's (each segment loads the model
    # again and the machine is shared), but of its order, and not the last segment's alone.
    history = json.loads((out / "log_history.json").read_text())
    recorded = [h["segment_runtime"] for h in history if "segment_end" in h]
    assert len(recorded) == 2
    assert whole["train_runtime"] > sum(recorded)
    assert 0.1 < whole["train_runtime"] / once["train_runtime"] < 20  # a shared machine: of the order only
    assert whole["train_steps_per_second"] == pytest.approx(STEPS / whole["train_runtime"], rel=1e-2)
