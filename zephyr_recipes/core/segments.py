"""A resumed run reports the whole run, not its last segment.

A run preempted and resumed trains in segments, one ``trainer.train()`` each. The trainer's own summary
(``train_loss``, ``train_runtime``, samples and steps per second) covers only the segment it ends, and TRL's token
count (``num_tokens``) starts again at zero in each new trainer. The log history, which the trainer keeps in every
checkpoint's ``trainer_state.json``, carries the earlier segments' logs; :func:`callback` adds what it lacks:

- when a segment stops on SIGTERM it logs at the step it stops at (so its checkpoint's history ends exactly
  there) and that entry records the segment (``segment_start``, ``segment_end``, ``segment_runtime`` and
  ``segment_loss_sum``, the sum of its steps' losses);
- a resumed trainer carries TRL's token count on from the history, so ``num_tokens`` counts the whole run;
- the final summary entry records where its segment started.

:func:`whole_run` then turns the history into the whole run's figures, equal (up to float rounding) to those of a
run never interrupted; where a segment ended without a record (a ``kill -9`` resumed from a periodic checkpoint)
its losses are taken from the logged averages, and its time is not known.
"""

from __future__ import annotations

import time


def _last(history: list[dict], key: str):
    return next((h[key] for h in reversed(history) if isinstance(h.get(key), (int, float))), None)


def callback(trainer, guard):
    """The TrainerCallback (add it after ``guard``, the preemption callback, whose stop it records)."""
    from transformers import TrainerCallback

    class Segments(TrainerCallback):
        begun = 0.0
        first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.begun, self.first_step = time.time(), state.global_step
            tokens = _last(state.log_history, "num_tokens")
            if state.global_step > 0 and tokens is not None and hasattr(trainer, "_total_train_tokens"):
                trainer._total_train_tokens = tokens  # TRL counts from zero in every new trainer

        def on_step_end(self, args, state, control, **kwargs):
            if guard.stopped_at is not None and guard.stopped_at == state.global_step:
                control.should_log = True  # the checkpoint's history then ends at the step the run stops at
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.log_history:
                return
            entry = state.log_history[-1]
            if "train_loss" in entry:
                entry.setdefault("segment_start", self.first_step)
            elif guard.stopped_at == state.global_step and "loss" in entry and "segment_end" not in entry:
                entry.update(segment_start=self.first_step, segment_end=state.global_step,
                             segment_runtime=round(time.time() - self.begun, 4),
                             segment_loss_sum=float(getattr(trainer, "_total_loss_scalar", 0.0)))

    return Segments()


def whole_run(history: list[dict]) -> dict:
    """The summary figures of the whole run from a resumed run's history ({} for a run trained in one go)."""
    final = next((h for h in reversed(history) if isinstance(h.get("train_loss"), (int, float))), None)
    if final is None or not final.get("segment_start"):
        return {}
    start, end = int(final["segment_start"]), int(final.get("step") or 0)
    ends = [h for h in history if "segment_end" in h and int(h["segment_end"]) <= start]
    loss_sum = sum(float(h["segment_loss_sum"]) for h in ends)
    runtime = sum(float(h.get("segment_runtime") or 0.0) for h in ends)
    covered = max((int(h["segment_end"]) for h in ends), default=0)
    prev = covered
    for h in history:  # steps between the last recorded segment and this one: their logged average losses
        step = h.get("step")
        if isinstance(h.get("loss"), (int, float)) and isinstance(step, int) and covered < step <= start:
            loss_sum += float(h["loss"]) * (step - prev)
            prev = step
    steps = end - start
    loss_sum += float(final["train_loss"]) * steps
    out: dict = {"train_loss": loss_sum / max(end, 1), "resumed_segments": len(ends) + 1 + (prev < start)}
    seg_runtime = final.get("train_runtime")
    if isinstance(seg_runtime, (int, float)) and seg_runtime > 0:
        total = runtime + float(seg_runtime)
        out["train_runtime"] = round(total, 4)
        sps = final.get("train_samples_per_second")
        if isinstance(sps, (int, float)) and steps > 0:
            out["train_samples_per_second"] = round(sps * seg_runtime / steps * end / total, 3)
        out["train_steps_per_second"] = round(end / total, 3)
    return out
