"""A chat model for the protocol tests: the rehearsal's stand-in (embedded/standin_judge.py's chat, which answers in
UltraFeedback's reply format), with every request it was sent written to $UF_CHAT_LOG."""

from __future__ import annotations

import json
import os

from zephyr_recipes.embedded import standin_judge


def chat(messages: list[dict]) -> str:
    log = os.environ.get("UF_CHAT_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps(messages) + "\n")
    return standin_judge.chat(messages)
