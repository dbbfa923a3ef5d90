"""The replay judge (tests/replay_judge.py) without a tie: where alpaca_eval's annotation recorded a draw, this judge
prefers whichever output it was shown first. Every draw in the AlpacaEval 1 annotations it replays is a pair of
identical outputs, which alpaca_eval records as a draw without asking; a run that asks the judge about them gets a
win or a loss instead, and the published figure no longer comes out."""

from __future__ import annotations

from tests import replay_judge


def compare(messages: list[dict], first: str, second: str) -> float:
    value = replay_judge.compare(messages, first, second)
    return 1.0 if value == 0.5 else value
