"""Start a frozen run folder on the profile's launcher: in process, `accelerate launch`, or a Slurm job.

Nothing here starts processes itself beyond calling the real launchers: several processes are
``accelerate launch --config_file <run folder>/accelerate.yaml -m zephyr_recipes.runtime.worker <run folder>``, several
nodes are a generated sbatch script that runs that same command once per node with the node's rank. The
generated files stay in the run folder, so a run can be re-launched by hand with exactly what was used.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import cast

import yaml

from .. import stages
from ..core import preempt, records, runfolder, trust
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..model import hardware
from ..model.modeling import resolve_placement
from ..reports import readcheck
from . import preflight, reuse, runcheck, stageplan, worker

SBATCH = "launch.sbatch"
ARRAY_LIMIT = "array_limit"  # hardware.slurm key: how many points of a swept job array run at once
PREEMPT_GRACE_S = 180  # seconds between Slurm's SIGTERM and the time limit: one step plus one checkpoint
PREEMPT_EXIT = preempt.EXIT_CODE
NODE_SCRIPT = "launch_node.sh"


def write_configs(recipe: Recipe, folder: Path) -> Path:
    """Write accelerate.yaml (and deepspeed.json for ZeRO) into the run folder; returns the accelerate file."""
    hw = recipe.hardware
    folder = folder.resolve()
    ds_file = None
    if hw.strategy in ("zero2", "zero3"):
        ds_file = folder / hardware.DEEPSPEED_CONFIG
        runfolder.write_atomic(ds_file, json.dumps(hardware.deepspeed_config(hw), indent=2) + "\n")
    acc = folder / hardware.ACCELERATE_CONFIG
    runfolder.write_atomic(acc, "# Generated from the hardware profile " + repr(hw.name) + "; accelerate's own format.\n"
                           + yaml.safe_dump(hardware.accelerate_config(hw, str(ds_file) if ds_file else None),
                                            sort_keys=True))
    return acc


def _source_root() -> str | None:
    """The folder to put on PYTHONPATH when the package runs from a source checkout rather than an install."""
    root = Path(__file__).resolve().parent.parent.parent
    return None if "site-packages" in root.parts or "dist-packages" in root.parts else str(root)


def child_env() -> dict:
    env = dict(os.environ)
    root = _source_root()
    if root:
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in parts if p != root])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def accelerate_command(folder: Path, acc: Path, extra: list[str] | None = None, python: str | None = None) -> list[str]:
    # `python -m accelerate.commands.launch` is `accelerate launch` from this interpreter's environment.
    return [python or sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc), *(extra or []),
            "-m", "zephyr_recipes.runtime.worker", str(folder)]


def show(cmd: list[str]) -> str:
    text = " ".join(shlex.quote(c) for c in cmd)
    return text.replace(f"{shlex.quote(sys.executable)} -m accelerate.commands.launch", "accelerate launch", 1)


class _LauncherNoise:
    """Passes the processes' output through as it comes, minus the launcher's own traceback and failure summary
    (torchrun's ChildFailedError block), which repeat what the failing worker already printed."""

    def __init__(self, out):
        self.out, self.hold, self.fences = out, None, -1
        self.error: tuple[str, str] | None = None  # the first "error: ... / fix: ..." a process printed

    def line(self, line: bytes) -> None:
        said = line.decode("utf-8", "replace").rstrip("\n")
        if said.startswith("error: ") and self.error is None:
            self.error = (said.removeprefix("error: "), "")
        elif said.startswith("  fix: ") and self.error is not None and not self.error[1]:
            self.error = (self.error[0], said.removeprefix("  fix: "))
        if self.fences >= 0:  # inside the summary block: two ===== fences close it
            if line.startswith(b"====="):
                self.fences += 1
                if self.fences == 2:
                    self.fences = -1
            return
        if self.hold is not None:
            self.hold.append(line)
            text = line.strip()
            if text and not line[:1].isspace() and not text.startswith((b"Traceback", b"During handling",
                                                                         b"The above exception")):
                held, self.hold = self.hold, None
                if b"ChildFailedError" in text:
                    self.fences = 0
                elif b"SignalException" in text:
                    pass  # torchrun passing a SIGTERM on to the workers (preemption): they say what happened
                else:
                    self.out.write(b"".join(held))
            return
        if line.startswith(b"Traceback (most recent call last):"):
            self.hold = [line]
            return
        self.out.write(line)

    def pump(self, fd: int) -> None:
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.line(line + b"\n")
            if pending and self.hold is None and self.fences < 0 and not b"Traceback".startswith(pending[:9]):
                self.out.write(pending)  # progress bars redraw with \r and no newline: show them now
                pending = b""
            self.out.flush()
        if pending:
            self.line(pending)
        if self.hold:
            self.out.write(b"".join(self.hold))
        self.out.flush()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _any_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward_signals(proc: subprocess.Popen) -> dict:
    """SIGTERM to this front end goes on to the launcher (torchrun hands it to every worker, which checkpoints
    and stops; see :mod:`zephyr_recipes.core.preempt`); the front end keeps relaying output until they exit."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    return {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM,)}


def run_accelerate(recipe: Recipe, folder: Path) -> int:
    folder = folder.resolve()
    acc = write_configs(recipe, folder)
    hw = recipe.hardware
    port = hw.main_process_port
    extra = []
    if not _port_free(port):  # another run on this machine holds it: one node needs no fixed port
        extra = ["--main_process_port", str(_any_free_port())]
        print(f"port {port} is busy; rendezvous on {extra[1]} instead", file=sys.stderr)
    cmd = accelerate_command(folder, acc, extra)
    print(f"launching {hardware.world_size(hw)} processes: {show(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    previous = _forward_signals(proc)
    try:
        assert proc.stdout is not None  # stdout=PIPE
        noise = _LauncherNoise(sys.stderr.buffer)
        noise.pump(proc.stdout.fileno())
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rc != 0:
        status = runfolder.read_status(folder) or {}
        if status.get("status") == "preempted":
            raise preempt.Preempted(folder, status.get("step"))
        error = str(status.get("error") or "").strip()
        problem, _, fix = error.partition("\n  fix: ")
        problem = problem.removeprefix("ZephyrError: ")
        if not problem and noise.error is not None:  # the process that failed was not the one that records it
            problem, fix = noise.error
        if status.get("status") not in ("failed", "complete"):
            # Rank 0 was stopped before it could record the failure (another rank failed first and the launcher
            # ended the rest): the folder must not go on saying "running".
            said = f"{problem}\n  fix: {fix}" if problem and fix else problem
            runfolder.set_status(folder, "failed", error=records.redact(
                said or f"accelerate launch exit code {rc}: a process of the run failed")[:2000])
        if problem:
            raise ZephyrError(f"the run failed (accelerate launch exit code {rc}): {problem}",
                              fix or "see the error printed above; re-run the same command to resume")
        raise ZephyrError(f"accelerate launch exited with code {rc}: a process of the run failed",
                          "its error is printed above; fix it and re-run the same command, which resumes "
                          "from the last checkpoint")
    return rc


def sbatch_script(recipe: Recipe, folder: Path) -> tuple[str, str]:
    """(sbatch script, per-node script) for launcher=slurm."""
    hw = recipe.hardware
    folder = folder.resolve()
    acc = folder / hardware.ACCELERATE_CONFIG
    nodes, per_node = hw.num_nodes, hw.num_processes
    slurm = dict(hw.slurm or {})
    setup = slurm.pop("setup", None)
    slurm.pop(ARRAY_LIMIT, None)  # a sweep's job array option, not a job's
    # Preemption: SIGTERM a grace period before the time limit (every rank checkpoints and stops), the job may
    # be requeued, and the log is appended to across requeues. hardware.slurm overrides any of them.
    slurm = {"requeue": True, "signal": f"TERM@{PREEMPT_GRACE_S}", "open_mode": "append", **slurm}
    lines = ["#!/bin/bash",
             f"# Generated by zephyr-recipes for run folder {folder}",
             f"# hardware profile {hw.name}: {nodes} node(s) x {per_node} processes, strategy {hw.strategy}.",
             f"# Submit with: sbatch {shlex.quote(str(folder / SBATCH))}",
             f"#SBATCH --job-name={recipe.run.name}",
             f"#SBATCH --nodes={nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --output={folder}/slurm-%j.out"]
    if hw.device != "cpu":
        lines.append(f"#SBATCH --gpus-per-node={per_node}")
    for key, value in slurm.items():
        opt = "--" + str(key).replace("_", "-")
        if value is True:
            lines.append(f"#SBATCH {opt}")
        elif value not in (False, None):
            lines.append(f"#SBATCH {opt}={value}")
    lines += ["", "set -euo pipefail"]
    if setup:
        lines += [setup] if isinstance(setup, str) else list(setup)
    lines += ["# Rendezvous: the first node of the allocation hosts rank 0.",
              'export ZEPHYR_MAIN_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
              "rc=0",
              f"srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 bash {shlex.quote(str(folder / NODE_SCRIPT))}"
              " || rc=$?",
              "# A run stopped by SIGTERM saved a checkpoint and says so in run.json: requeue it; it resumes there.",
              f"if grep -q '\"status\": \"preempted\"' {shlex.quote(str(folder / runfolder.STATUS))}; then",
              '  echo "preempted: requeueing job $SLURM_JOB_ID"',
              '  scontrol requeue "$SLURM_JOB_ID"',
              f"  exit {PREEMPT_EXIT}",
              "fi",
              'exit "$rc"',
              ""]
    cmd = accelerate_command(folder, acc, [
        "--num_machines", str(nodes), "--num_processes", str(nodes * per_node),
        "--machine_rank", "__RANK__", "--main_process_ip", "__IP__",
        "--main_process_port", str(hw.main_process_port)],
        # With setup lines (activating an environment on the node) the node's own `python` runs; otherwise the
        # interpreter that prepared the run, on the shared filesystem.
        python="python" if setup else None)
    text = " ".join(shlex.quote(c) for c in cmd)
    text = text.replace("__RANK__", '"$MACHINE_RANK"').replace("__IP__", '"$MAIN_IP"')
    node = ["#!/bin/bash",
            f"# One node's share of run {folder}: one `accelerate launch` with this node's rank.",
            "# Started once per node by launch.sbatch (srun); runs by hand too: SLURM_NODEID=0 ZEPHYR_MAIN_IP=host bash "
            + NODE_SCRIPT,
            "set -euo pipefail",
            'MACHINE_RANK="${SLURM_NODEID:-${SLURM_PROCID:?run inside a Slurm job step or set SLURM_NODEID}}"',
            'MAIN_IP="${ZEPHYR_MAIN_IP:?launch.sbatch sets it to the first node of SLURM_JOB_NODELIST}"']
    root = _source_root()
    if root:
        node.append(f'export PYTHONPATH={shlex.quote(root)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    node += ['export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"', f"exec {text}", ""]
    return "\n".join(lines), "\n".join(node)


def write_slurm(recipe: Recipe, folder: Path) -> None:
    """The run folder's launcher files for launcher=slurm (accelerate config, launch.sbatch, launch_node.sh)."""
    folder = folder.resolve()
    write_configs(recipe, folder)
    script, node = sbatch_script(recipe, folder)
    runfolder.write_atomic(folder / SBATCH, script)
    runfolder.write_atomic(folder / NODE_SCRIPT, node)
    (folder / NODE_SCRIPT).chmod(0o755)


def run_slurm(recipe: Recipe, folder: Path, submit_job: bool = True) -> int:
    folder = folder.resolve()
    write_slurm(recipe, folder)
    submit = ["sbatch", str(folder / SBATCH)]
    if not submit_job:  # a sweep's job array submits it
        runfolder.set_status(folder, "prepared", submit=" ".join(map(shlex.quote, submit)))
        return 0
    if shutil.which("sbatch") is None:
        runfolder.set_status(folder, "prepared", submit=" ".join(map(shlex.quote, submit)))
        print(f"wrote {folder / SBATCH} and {folder / NODE_SCRIPT}; sbatch is not available on this machine.\n"
              f"submit from a Slurm login node with:\n  {' '.join(map(shlex.quote, submit))}")
        return 0
    out = subprocess.run(submit, capture_output=True, text=True)
    if out.returncode != 0:
        raise ZephyrError(f"sbatch refused the job: {(out.stderr or out.stdout).strip().splitlines()[-1:]}",
                          f"adjust hardware.slurm (partition, account, time) or edit {folder / SBATCH} and submit it")
    job = out.stdout.strip().split()[-1] if out.stdout.strip() else "?"
    runfolder.set_status(folder, "queued", slurm_job=job)
    print(f"submitted Slurm job {job}: {folder / SBATCH}; log: {folder}/slurm-{job}.out")
    return 0


def execute(recipe: Recipe, name: str, argv: list[str], produced: set[str] | None = None,
            submit: bool = True, again: bool = False, code_checked: bool = False) -> Path | None:
    """Check, freeze and start one validated stage recipe on its launcher (``recipe.config`` is what
    config.yaml holds).

    Returns the finished run folder, or None when the run was handed to the scheduler. Every check that can
    refuse (trust, the pre-flight of keys, endpoints, paths and disk, the memory plan, this machine's devices) runs
    before the run folder is touched. ``produced``: folders an earlier stage of a pipeline writes. ``submit=False``
    (launcher=slurm): prepare the folder and its scripts and return it, for a sweep's job array to submit.
    ``again``: run a stage that redoes only what changed (AI feedback) even when its folder is finished with this
    config and code (a pipeline whose earlier stage ran again). ``code_checked``: the pipeline ran
    runtime/runcheck.py for every stage already.
    """

    stage = stages.of(recipe)  # the front end's one look-up: the checks below receive the stage
    hw = recipe.hardware
    # Checks that read the config only, first (the plan reads shapes, never a model's code): a run that cannot fit
    # is refused on any machine, and one that needs devices this machine lacks says which. Then trust, then what
    # lies outside the process.
    stageplan.check_before_launch(recipe, stage)
    if hw.launcher != "slurm":
        resolve_placement(hw)  # this machine runs the processes: refuse before making a folder when it can't
    trust.check(recipe.config)  # trust reads mappings (it also reads raw pipelines and sweeps)
    for line in preflight.run(recipe, stage, network=True, produced=produced):  # keys, endpoints, paths, disk
        worker.log.info("pre-flight: %s", line)
    code = reuse.code_of(recipe, stage)  # the code it runs by reference: part of the run's identity
    with runfolder.locked(Path(cast(str, recipe.run.output_dir)), argv):  # validation sets every run's folder
        def ready() -> None:  # what the run will run later (modules, tokenizers, the judge), before it starts
            for line in [] if code_checked else runcheck.run(recipe, stage, produced):
                worker.log.info("pre-flight: %s", line)

        done = reuse.before_prepare(recipe, stage, code, again, ready)
        if done is not None:
            readcheck.check(done)  # reused only when its records are whole
            return done
        folder, resume_from = runfolder.prepare(recipe, revise=stage.revisable)
        runfolder.set_status(folder, (runfolder.read_status(folder) or {}).get("status", "running"),
                             launch={"command": argv, "recipe": name, "launcher": hw.launcher}, code=code)
        if hw.launcher == "inprocess":
            worker.run(folder, resume_from, argv=argv, recipe=name, stage=stage)
        elif hw.launcher == "accelerate":
            run_accelerate(recipe, folder)
        else:
            run_slurm(recipe, folder, submit)
            return None if submit else folder
    return folder


