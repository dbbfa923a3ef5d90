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

import yaml

from .. import stages
from ..core import preempt, runfolder, trust
from ..core.errors import ZephyrError
from ..model import hardware
from ..model.modeling import resolve_placement
from ..runtime import worker
from . import plan, preflight, readcheck, reuse, runcheck

SBATCH = "launch.sbatch"
ARRAY_LIMIT = "array_limit"  # hardware.slurm key: how many points of a swept job array run at once
PREEMPT_GRACE_S = 180  # seconds between Slurm's SIGTERM and the time limit: one step plus one checkpoint
PREEMPT_EXIT = preempt.EXIT_CODE
NODE_SCRIPT = "launch_node.sh"


def write_configs(cfg: dict, folder: Path) -> Path:
    """Write accelerate.yaml (and deepspeed.json for ZeRO) into the run folder; returns the accelerate file."""
    hw = cfg["hardware"]
    folder = folder.resolve()
    ds_file = None
    if hw["strategy"] in ("zero2", "zero3"):
        ds_file = folder / hardware.DEEPSPEED_CONFIG
        runfolder.write_atomic(ds_file, json.dumps(hardware.deepspeed_config(hw), indent=2) + "\n")
    acc = folder / hardware.ACCELERATE_CONFIG
    runfolder.write_atomic(acc, "# Generated from the hardware profile " + repr(hw["name"]) + "; accelerate's own format.\n"
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


def run_accelerate(cfg: dict, folder: Path) -> int:
    folder = folder.resolve()
    acc = write_configs(cfg, folder)
    port = cfg["hardware"]["main_process_port"]
    extra = []
    if not _port_free(port):  # another run on this machine holds it: one node needs no fixed port
        extra = ["--main_process_port", str(_any_free_port())]
        print(f"port {port} is busy; rendezvous on {extra[1]} instead", file=sys.stderr)
    cmd = accelerate_command(folder, acc, extra)
    print(f"launching {hardware.world_size(cfg['hardware'])} processes: {show(cmd)}", file=sys.stderr, flush=True)
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
        if problem:
            raise ZephyrError(f"the run failed (accelerate launch exit code {rc}): {problem}",
                              fix or "see the error printed above; re-run the same command to resume")
        raise ZephyrError(f"accelerate launch exited with code {rc}: a process of the run failed",
                          "its error is printed above; fix it and re-run the same command, which resumes "
                          "from the last checkpoint")
    return rc


def sbatch_script(cfg: dict, folder: Path) -> tuple[str, str]:
    """(sbatch script, per-node script) for launcher=slurm."""
    hw = cfg["hardware"]
    folder = folder.resolve()
    acc = folder / hardware.ACCELERATE_CONFIG
    nodes, per_node = hw["num_nodes"], hw["num_processes"]
    slurm = dict(hw["slurm"] or {})
    setup = slurm.pop("setup", None)
    slurm.pop(ARRAY_LIMIT, None)  # a sweep's job array option, not a job's
    # Preemption: SIGTERM a grace period before the time limit (every rank checkpoints and stops), the job may
    # be requeued, and the log is appended to across requeues. hardware.slurm overrides any of them.
    slurm = {"requeue": True, "signal": f"TERM@{PREEMPT_GRACE_S}", "open_mode": "append", **slurm}
    lines = ["#!/bin/bash",
             f"# Generated by zephyr-recipes for run folder {folder}",
             f"# hardware profile {hw['name']}: {nodes} node(s) x {per_node} processes, strategy {hw['strategy']}.",
             f"# Submit with: sbatch {shlex.quote(str(folder / SBATCH))}",
             f"#SBATCH --job-name={cfg['run']['name']}",
             f"#SBATCH --nodes={nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --output={folder}/slurm-%j.out"]
    if hw["device"] != "cpu":
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
        "--main_process_port", str(hw["main_process_port"])],
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


def write_slurm(cfg: dict, folder: Path) -> None:
    """The run folder's launcher files for launcher=slurm (accelerate config, launch.sbatch, launch_node.sh)."""
    folder = folder.resolve()
    write_configs(cfg, folder)
    script, node = sbatch_script(cfg, folder)
    runfolder.write_atomic(folder / SBATCH, script)
    runfolder.write_atomic(folder / NODE_SCRIPT, node)
    (folder / NODE_SCRIPT).chmod(0o755)


def run_slurm(cfg: dict, folder: Path, submit_job: bool = True) -> int:
    folder = folder.resolve()
    write_slurm(cfg, folder)
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


def execute(cfg: dict, name: str, argv: list[str], produced: set[str] | None = None,
            submit: bool = True, again: bool = False, code_checked: bool = False) -> Path | None:
    """Check, freeze and start one validated stage config on its launcher.

    Returns the finished run folder, or None when the run was handed to the scheduler. Every check that can
    refuse (trust, the pre-flight of keys, endpoints, paths and disk, the memory plan, this machine's devices) runs
    before the run folder is touched. ``produced``: folders an earlier stage of a pipeline writes. ``submit=False``
    (launcher=slurm): prepare the folder and its scripts and return it, for a sweep's job array to submit.
    ``again``: run a stage that redoes only what changed (AI feedback) even when its folder is finished with this
    config and code (a pipeline whose earlier stage ran again). ``code_checked``: the pipeline ran
    commands/runcheck.py for every stage already.
    """

    hw = cfg["hardware"]
    stage = stages.get(cfg["stage"]["name"])  # the front end's one look-up: the checks below receive the stage
    # Checks that read the config only, first (the plan reads shapes, never a model's code): a run that cannot fit
    # is refused on any machine, and one that needs devices this machine lacks says which. Then trust, then what
    # lies outside the process.
    plan.check_before_launch(cfg, stage)
    if hw["launcher"] != "slurm":
        resolve_placement(hw)  # this machine runs the processes: refuse before making a folder when it can't
    trust.check(cfg)
    for line in preflight.run(cfg, stage, network=True, produced=produced):  # keys, endpoints, paths, disk
        worker.log.info("pre-flight: %s", line)
    code = reuse.code_of(cfg, stage)  # the code it runs by reference: part of the run's identity
    with runfolder.locked(Path(cfg["run"]["output_dir"]), argv):
        def ready() -> None:  # what the run will run later (modules, tokenizers, the judge), before it starts
            for line in [] if code_checked else runcheck.run(cfg, stage, produced):
                worker.log.info("pre-flight: %s", line)

        done = reuse.before_prepare(cfg, stage, code, again, ready)
        if done is not None:
            readcheck.check(done)  # reused only when its records are whole
            return done
        folder, resume_from = runfolder.prepare(stage.recipe(cfg), revise=stage.revisable)
        runfolder.set_status(folder, (runfolder.read_status(folder) or {}).get("status", "running"),
                             launch={"command": argv, "recipe": name, "launcher": hw["launcher"]}, code=code)
        if hw["launcher"] == "inprocess":
            worker.run(folder, resume_from, argv=argv, recipe=name, stage=stage)
        elif hw["launcher"] == "accelerate":
            run_accelerate(cfg, folder)
        else:
            run_slurm(cfg, folder, submit)
            return None if submit else folder
    return folder


# ------------------------------------------------------------------------------------------------ dry run
DRY_RUN_SUFFIX = ".dry-run"
LAUNCHER_FILES = (hardware.ACCELERATE_CONFIG, hardware.DEEPSPEED_CONFIG, SBATCH, NODE_SCRIPT)


def dry_run_folder(cfg: dict) -> Path:
    """Where a dry run writes what the run would: beside the run folder, never inside it."""
    folder = Path(cfg["run"]["output_dir"]).expanduser()
    return folder.with_name(folder.name + DRY_RUN_SUFFIX)


def check_launcher_files(folder: Path) -> list[str]:
    """Parse the launcher files in ``folder`` with their own tools (accelerate's loader, DeepSpeed's JSON, bash -n
    for the scripts); returns one line per file checked."""
    done = []
    acc = folder / hardware.ACCELERATE_CONFIG
    if acc.is_file():
        from accelerate.commands.config.config_args import load_config_from_file

        try:
            load_config_from_file(str(acc))  # accelerate's own loader: refuses unknown keys
        except Exception as exc:  # noqa: BLE001 - its message names the key
            raise ZephyrError(f"accelerate refuses the generated {acc}: {exc}",
                              "report it: the profile generates a config accelerate does not accept") from None
        done.append(f"{acc.name}: accepted by accelerate's config loader")
    ds = folder / hardware.DEEPSPEED_CONFIG
    if ds.is_file():
        body = json.loads(ds.read_text())
        if "zero_optimization" not in body:
            raise ZephyrError(f"{ds} has no zero_optimization section", "report it: the profile's ZeRO file is wrong")
        done.append(f"{ds.name}: ZeRO stage {body['zero_optimization']['stage']}"
                    f"{', offload' if 'offload_param' in body['zero_optimization'] else ''} (\"auto\" values are "
                    "filled from the trainer's arguments at launch)")
    for script in (SBATCH, NODE_SCRIPT):
        path = folder / script
        if path.is_file():
            out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            if out.returncode:
                raise ZephyrError(f"the generated {path} is not valid bash: {out.stderr.strip()}",
                                  "check hardware.slurm (its setup lines are copied into the script)")
            done.append(f"{script}: bash -n ok")
    return done


def dry_run(cfg: dict, name: str, argv: list[str], out: Path | None = None, known: dict | None = None) -> dict:
    """Everything `run` does before loading weights, with nothing started and the run folder untouched.

    Checks trust (reported, not refused: nothing runs), the plan, this machine's devices, the run folder (its lock,
    whether it holds a finished run of this config or something else), then writes the resolved config and the
    launcher files into ``out`` (default: beside the run folder, ``<run folder>.dry-run``), parses them with their
    own tools and returns what the run would launch. ``known`` carries what earlier pipeline stages will write
    (models and data) from stage to stage, for the plan.
    """

    hw = cfg["hardware"]
    stage = stages.get(cfg["stage"]["name"])
    folder = Path(cfg["run"]["output_dir"]).expanduser().resolve()
    out = Path(out or dry_run_folder(cfg)).resolve()
    notes: list[str] = []
    needs = trust.foreign(cfg)
    if needs and not trust.trusted():
        notes.append("the run needs --trust-recipe-code for: " + "; ".join(f"{w} = {n}" for w, n in needs))

    try:
        checked_outside = preflight.run(cfg, stage, network=True, produced=(known or {}).get("produced", set()),
                                        strict=False)
    except ZephyrError as exc:
        checked_outside = []
        notes.append(f"pre-flight: the run would refuse: {exc.problem} (fix: {exc.fix})")
    known = {} if known is None else known
    known.setdefault("produced", set()).add(str(folder))
    known.setdefault("folders", {})
    known.setdefault("data", {})
    try:
        sp = plan.stage_plan(cfg, stage, folders=known["folders"], data=known["data"])
    except ZephyrError as exc:
        sp = plan.StagePlan(f"plan: not made here ({exc.problem})", "unknown")
    if sp.trained:
        known["folders"][str(cfg["run"]["output_dir"])] = sp.trained
    if sp.writes:
        known["data"][str(folder)] = sp.writes
    if sp.kind == "no" and not hw["ignore_memory_plan"]:
        notes.append("the run would refuse: the memory plan says it does not fit (see the plan)")
    if hw["launcher"] != "slurm":
        try:
            resolve_placement(hw)
        except ZephyrError as exc:
            notes.append(f"not on this machine: {exc.problem}")
    with runfolder.locked(folder, argv):
        state = "new"
        if runfolder.finished_alike(stage.recipe(cfg)) is not None:
            state = "finished already (the run would do nothing)"
        elif folder.exists() and any(folder.iterdir()):
            status = runfolder.read_status(folder)
            if status is None:
                notes.append(f"the run would refuse: {folder} exists and is not a run folder")
                state = "not a run folder"
            else:
                state = f"holds a run ({status.get('status')}); " + (
                    "run.overwrite=true: the run would replace it" if cfg["run"]["overwrite"]
                    else "the run would resume it if its config matches")
    out.mkdir(parents=True, exist_ok=True)
    for stale in LAUNCHER_FILES:  # an earlier dry run's files for another profile must not be checked as this one's
        (out / stale).unlink(missing_ok=True)
    runfolder.write_atomic(out / runfolder.CONFIG, yaml.safe_dump(cfg, sort_keys=False))
    runfolder.write_atomic(out / "plan.txt", sp.text + "\n")
    if hw["launcher"] == "inprocess":
        command = " ".join(shlex.quote(a) for a in argv) + f"  (in this process: worker on {folder})"
    else:
        acc = write_configs(cfg, out)
        if hw["launcher"] == "accelerate":
            command = show(accelerate_command(folder, folder / hardware.ACCELERATE_CONFIG))
        else:
            script, node = sbatch_script(cfg, folder)
            runfolder.write_atomic(out / SBATCH, script)
            runfolder.write_atomic(out / NODE_SCRIPT, node)
            command = f"sbatch {shlex.quote(str(folder / SBATCH))}"
        del acc
    checked = check_launcher_files(out) + [f"pre-flight: {line}" for line in checked_outside]
    summary = {"recipe": name, "run_folder": str(folder), "run_folder_state": state, "launcher": hw["launcher"],
               "command": command, "checked": checked, "notes": notes, "files": str(out), "plan": sp.text,
               "memory": dry_run_memory(sp), "tokens": sp.work.tokens if sp.work is not None else None}
    runfolder.write_atomic(out / "dry-run.json", json.dumps(summary, indent=2) + "\n")
    return summary


def dry_run_memory(sp: plan.StagePlan) -> dict:
    """The memory plan a dry run prints, as data: its verdict and, for a training stage, GB per device by part."""
    out: dict = {"verdict": sp.kind}
    if sp.memory is not None:
        out.update(per_device_gb=round(sp.memory["total_gb"], 3),
                   parts={k: round(v, 3) for k, v in sp.memory["parts"].items()},
                   per_device_batch=sp.memory["per_device_batch"], sequence_length=sp.memory["sequence_length"])
    return out


def render_dry_run(result: dict) -> str:
    lines = [result["plan"], f"dry run of {result['recipe']}: nothing was started and {result['run_folder']} was not "
             "touched", f"  run folder: {result['run_folder_state']}",
             f"  would launch: {result['command']}"]
    lines += [f"  checked {c}" for c in result["checked"]]
    lines += [f"  note: {n}" for n in result["notes"]]
    lines.append(f"  files the run would use: {result['files']}")
    return "\n".join(lines)
