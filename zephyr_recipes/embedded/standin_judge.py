"""The AI-feedback judge of a rehearsal (`zephyr-recipes rehearse`): the embedded judge's ratings where an answer is
right, and otherwise a stable rating from 1 to 3 derived from a hash of the answer, so that the tiny random models
standing in for real generators still give ties and pairs of both kinds. It checks the plumbing (rubric, rating
shape, binarization, hand-off to DPO), not quality."""

from __future__ import annotations

import hashlib

from . import judge


def rate(messages: list[dict], response: str) -> dict:
    if judge.correctness(messages, response):
        return judge.rate(messages, response)
    rating = 1 + int(hashlib.sha1(response.encode()).hexdigest()[:4], 16) % 3
    why = "rehearsal stand-in rating"
    return {aspect: {"Rating": rating, "Rationale": why}
            for aspect in ("helpfulness", "honesty", "instruction_following", "truthfulness")}
