"""Judges for the canary test (a function judge's module): CANARY_JUDGE=longer prefers the longer answer (a judge
with a length bias and nothing else); CANARY_JUDGE=published answers as the published annotations in
CANARY_ANNOTATIONS did (a judge that agrees with the published one), in whatever order the two are shown, and by
length elsewhere (the benchmark's own comparisons)."""

from __future__ import annotations

import json
import os
from functools import lru_cache


@lru_cache(maxsize=2)
def _published(path: str) -> dict:
    return {(r["instruction"], r["output_2"]): float(r["preference"]) > 1.5 for r in json.load(open(path))}


def compare(messages: list[dict], first: str, second: str) -> float:
    won = _published(os.environ["CANARY_ANNOTATIONS"])
    instruction = messages[-1]["content"]
    if os.environ["CANARY_JUDGE"] == "longer" or not ({(instruction, first), (instruction, second)} & set(won)):
        return 1.0 if len(first) > len(second) else 0.0 if len(first) < len(second) else 0.5
    if (instruction, first) in won:  # the model's answer shown first
        return 1.0 if won[(instruction, first)] else 0.0
    return 0.0 if won[(instruction, second)] else 1.0


def grade(messages: list[dict], response: str) -> float:
    return 5.0
