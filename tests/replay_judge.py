"""A judge that replays published verdicts, for the replay tests: a function judge (stage.judge type function,
module tests.replay_judge) that answers each AlpacaEval comparison with the preference alpaca_eval's annotator
recorded for that instruction, so the published annotations go through the same code a live run uses.

Its table comes from two environment variables: ZR_REPLAY_VERDICTS, a JSON-lines file of {instruction, preference,
switched} (preference in alpaca_eval's coding: 1 the baseline, 2 the model, 1.5 or 0 a draw, null no verdict;
switched: whether alpaca_eval showed the model's output first, when known), and ZR_REPLAY_BASELINE, the baseline
file the run reads (to tell the baseline's output from the model's). A pair shown in another order than the
recorded one is refused (a judge failure), so a replay also checks that the run judged in alpaca_eval's order.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache


@lru_cache(maxsize=4)
def _table(verdicts: str, baseline: str) -> tuple[dict, dict]:
    recorded = {}
    for line in open(verdicts, encoding="utf-8"):
        if line.strip():
            row = json.loads(line)
            recorded[row["instruction"]] = row
    rows = json.load(open(baseline, encoding="utf-8"))
    base = {r["instruction"]: r.get("output", r.get("output_1")) for r in rows}
    return recorded, base


def compare(messages: list[dict], first: str, second: str) -> float:
    recorded, base = _table(os.environ["ZR_REPLAY_VERDICTS"], os.environ["ZR_REPLAY_BASELINE"])
    instruction = messages[-1]["content"]
    row = recorded[instruction]
    pref = row["preference"]
    if pref is None:
        raise ValueError("the published annotation has no preference for this instruction")
    model_first = first != base[instruction]
    if row.get("switched") is not None and row["switched"] != model_first:
        raise ValueError("shown in another order than the one alpaca_eval recorded")
    model = 0.5 if pref in (0, 0.0) else float(pref) - 1.0  # the model's preference in [0, 1]
    return model if model_first else 1.0 - model


def grade(messages: list[dict], response: str) -> float:
    raise ValueError("the replay judge has no recorded grades")
