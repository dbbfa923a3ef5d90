"""Launch a training script with a step timer in every transformers Trainer, the same way for any script.

    python -m bench.timed TIMES.json -m zephyr_recipes tiny/sft ...     (a module)
    python -m bench.timed TIMES.json bench/plain_trl_sft.py ...         (a script)

The benchmark starts both the runner and the plain TRL baseline through this launcher, so both pay the same
small cost for it and neither needs a hook of its own: it wraps ``Trainer.__init__`` to add a callback that
writes the wall-clock time (``time.time()``) at the end of every optimizer step to TIMES.json. The parent
process records when it started the subprocess, so "time to the first optimizer step" counts interpreter
start, imports, data preparation, model loading and the first step alike for both.
"""

from __future__ import annotations

import json
import runpy
import sys
import time


def install(path: str) -> None:
    import transformers

    class StepTimer(transformers.TrainerCallback):
        def __init__(self):
            self.steps: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(time.time())
            with open(path, "w") as fh:
                json.dump({"step_end": self.steps, "num_tokens": _num_tokens(state)}, fh)

    original = transformers.Trainer.__init__

    def init_with_timer(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(StepTimer())

    transformers.Trainer.__init__ = init_with_timer


def _num_tokens(state) -> list:
    return [h["num_tokens"] for h in state.log_history if "num_tokens" in h]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.timed TIMES.json (-m MODULE | SCRIPT) [ARGS ...]")
    install(argv[0])
    if argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv[1:]
        runpy.run_path(argv[1], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
