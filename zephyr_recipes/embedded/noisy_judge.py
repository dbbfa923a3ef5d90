"""A noisy stand-in judge for the embedded tasks, where the truth is known: the proof of the judge audit.

The embedded judge (:mod:`.judge`) knows the right answer to every embedded instruction. :class:`NoisyJudge` rates
as it does and then errs, seeded, in the ways published judges err:

- ``flip``: the probability that a rating is mirrored (1 <-> 5, 2 <-> 4 on every aspect: a right answer rated as a
  wrong one and the other way round), and that a comparison's preference is reversed;
- ``position_bias``: the probability that a comparison prefers the answer shown first whatever the answers are,
  and that a listwise rating (``rate_list``: a prompt's answers together) rates the answer shown first 5 on every
  aspect (a pointwise rating shows one answer: no position);
- ``length_bias``: rating points added per 10 words of the answer (up to 2 points), and in a comparison the
  probability that the longer answer wins.

Each call draws its noise from a hash of (seed, question, answer(s), how many times this judge was asked it), so
a second rating of the same answer (the audit's test-retest) draws again, a second judge with another seed errs
independently, and the same run on any machine errs the same way. A function judge names a module: the modules in
:mod:`.noisy` hold the instances the docs and the noisy pipeline use (``zephyr_recipes.embedded.noisy.flip20``
...); a module of one's own makes another with ``rate, compare, grade = NoisyJudge(...).functions()``.

:func:`mislabelled` is the truth the audit is scored against: a pair whose chosen answer is worse than its
rejected one by the embedded judge.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

from . import judge, tasks

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


class NoisyJudge:
    def __init__(self, flip: float = 0.0, position_bias: float = 0.0, length_bias: float = 0.0, seed: int = 0):
        for name, value in (("flip", flip), ("position_bias", position_bias)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability (0 to 1), not {value}")
        self.flip, self.position_bias, self.length_bias, self.seed = flip, position_bias, length_bias, seed
        self._asked: Counter = Counter()

    def _rng(self, *parts: str) -> random.Random:
        key = "\x00".join((str(self.seed), *parts))
        self._asked[key] += 1
        digest = hashlib.sha256(f"{key}\x00{self._asked[key]}".encode()).hexdigest()
        return random.Random(int(digest[:16], 16))

    def rate(self, messages: list[dict], response: str) -> dict:
        clean = judge.rate(messages, response)
        rng = self._rng("rate", judge._last_user(messages), response)
        mirrored = rng.random() < self.flip
        bonus = min(2.0, self.length_bias * len(response.split()) / 10)
        out = {}
        for aspect, entry in clean.items():
            r = float(entry["Rating"])
            r = 6 - r if mirrored else r
            out[aspect] = {"Rating": round(min(5.0, r + bonus), 3),
                           "Rationale": "noisy stand-in" + (" (mirrored)" if mirrored else "")}
        return out

    def rate_list(self, messages: list[dict], responses: list[str]) -> list[dict]:
        """The answers of one prompt rated together (a listwise judge): each as ``rate`` does, and with probability
        ``position_bias`` the answer shown first is rated 5 on every aspect whatever it is."""
        out = [self.rate(messages, r) for r in responses]
        rng = self._rng("position", judge._last_user(messages), *responses)
        if out and rng.random() < self.position_bias:
            out[0] = {a: {"Rating": 5.0, "Rationale": "noisy stand-in (shown first)"} for a in out[0]}
        return out

    def compare(self, messages: list[dict], first: str, second: str) -> float:
        rng = self._rng("compare", judge._last_user(messages), first, second)
        if rng.random() < self.position_bias:
            return 1.0
        if self.length_bias and len(first) != len(second) and rng.random() < min(1.0, self.length_bias):
            return 1.0 if len(first) > len(second) else 0.0
        pref = judge.compare(messages, first, second)
        return 1.0 - pref if rng.random() < self.flip else pref

    def grade(self, messages: list[dict], response: str) -> float:
        ratings = self.rate(messages, response)
        return round(1 + 9 * (sum(v["Rating"] for v in ratings.values()) / len(ratings) - 1) / 4, 2)

    def functions(self):
        """(rate, compare, grade): what a pointwise function judge's module holds (add ``rate_list =
        judge.rate_list`` for a listwise one)."""
        return self.rate, self.compare, self.grade


def mislabelled(prompt: str, chosen: str, rejected: str) -> bool:
    """True when the embedded judge rates the chosen answer below the rejected one (the pair is the wrong way
    round); a tie is not mislabelled."""
    messages = [{"role": "user", "content": prompt}]
    a, b = judge.quality(messages, chosen), judge.quality(messages, rejected)
    if a is None or b is None:
        raise ValueError("not an embedded task: its truth is unknown")
    return a < b


# Generators for the proof without a trained model: the typical mistakes of the embedded tasks.
def _answer(messages: list[dict]) -> str:
    return tasks.teacher(messages)


def sloppy(messages: list[dict]) -> str:
    """The right answer with its last word (or digit) dropped."""
    words = _answer(messages).split()
    return " ".join(words[:-1]) if len(words) > 1 else words[0][:-1] or "0"


def lazy(messages: list[dict]) -> str:
    """The input repeated unchanged (the lazy answer), or the number off by one."""
    instruction = judge._last_user(messages)
    for head in tasks.PATTERNS.values():
        if instruction.startswith(head):
            return instruction[len(head):]
    answer = _answer(messages)
    return str(int(answer) + 1) if answer.lstrip("-").isdigit() else answer
