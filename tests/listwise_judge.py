"""A listwise function judge for the tests: the embedded judge's ratings, given to a prompt's answers together, and
a record of every list it was shown (to check the groups AI feedback forms)."""

from __future__ import annotations

import json
import os

from zephyr_recipes.embedded import judge


def rate_list(messages: list[dict], responses: list[str]) -> list[dict]:
    log = os.environ.get("LISTWISE_JUDGE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"prompt": messages[-1]["content"], "responses": responses}) + "\n")
    return [judge.rate(messages, r) for r in responses]


def rate(messages: list[dict], response: str) -> dict:
    raise AssertionError("a listwise judge is asked per group, never per answer")
