"""Preemption: a stopped job loses nothing.

Clusters stop jobs with SIGTERM and a grace period (Slurm: ``--signal=TERM@<seconds>`` before the time limit,
or a preempting job). On SIGTERM a training worker finishes the optimizer step it is in, every rank agrees on
the step to stop at (one all-reduce of a flag per step), the trainer saves a checkpoint there, ``run.json``
says ``preempted``, and the command exits with :data:`EXIT_CODE`. Re-running the same command (or the
requeued job) resumes from that checkpoint. The generated sbatch script asks Slurm for the signal and requeues
the job when the run folder says ``preempted``.
"""

from __future__ import annotations

import logging
import signal

from .errors import ZephyrError

# EX_TEMPFAIL (sysexits.h): a temporary failure, to be retried. Distinct from a failed run (1, 2) and from a
# process killed by the signal (143).
EXIT_CODE = 75
SIGNALS = (signal.SIGTERM,)

log = logging.getLogger("zephyr_recipes")


class Preempted(ZephyrError):
    """The run stopped on a scheduler's signal after saving a checkpoint; re-run to resume."""

    exit_code = EXIT_CODE

    def __init__(self, folder, step: int | None = None):
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"the run was preempted (SIGTERM) and saved a checkpoint{where} in {folder}",
                         "re-run the same command (or requeue the job) to resume from it")


def callback():
    """A TrainerCallback that turns SIGTERM into: finish this step, save a checkpoint, stop training."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self):
            self.requested = False
            self.stopped_at: int | None = None
            self.training = False
            self._previous = {}

        def install(self) -> "StopOnSignal":
            import threading

            if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
                for sig in SIGNALS:
                    self._previous[sig] = signal.signal(sig, self._on_signal)
            return self

        def uninstall(self) -> None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = {}

        def _on_signal(self, signum, _frame):
            if not self.requested:
                self.requested = True
                log.warning("%s received: finishing this step, then saving a checkpoint and stopping",
                            signal.Signals(signum).name)

        def _anyone_requested(self, args) -> bool:
            import torch
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
                return self.requested
            flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32, device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
            return bool(flag.item())

        def on_train_begin(self, args, state, control, **kwargs):
            self.training = True

        def on_step_end(self, args, state, control, **kwargs):
            if self.stopped_at is None and self._anyone_requested(args):
                self.stopped_at = state.global_step
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False

    return StopOnSignal()
