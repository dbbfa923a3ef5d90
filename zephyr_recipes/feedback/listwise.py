"""Listwise judging: the answers of one prompt rated together, in groups, as UltraFeedback's annotators saw them.

A judge that declares ``listwise`` (see :class:`~zephyr_recipes.feedback.judges.Judge`) is asked once per group
of a prompt's answers instead of once per answer. This module forms the groups; the AI-feedback stage asks the
judge and writes one rating record per answer with the group's composition beside it.

The rule (:func:`groups`), for the answers of one prompt that still need a rating in one round:

- they are put in a seeded order (the run's seed, the prompt, the round) and cut into groups of ``size``
  (4, UltraFeedback's number of completions per instruction);
- a last group of fewer than ``size`` answers is filled up to ``size`` with other answers of the same prompt
  (drawn with the same seed): these *fillers* are shown to the judge so that every request has the published
  shape, but their ratings from that request are not recorded (each answer keeps the rating of the group it was
  rated in). So a prompt with 5 answers is asked twice: answers 1-4, then answer 5 beside 3 fillers;
- a prompt with fewer than ``size`` answers in all is rated in one smaller group (2 or 3 answers side by side; a
  lone answer alone): there is nothing to fill with. A judge that needs a fixed group size says how it adapts.

Groups depend only on the run's seed, the prompt, the round and the answer keys, so a resumed run forms the same
groups again.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

GROUP_SIZE = 4  # UltraFeedback rates 4 completions per instruction together


@dataclass
class Group:
    """Answers of one prompt rated together. ``keys``: the answers whose ratings are recorded, ``fillers``: answers
    shown beside them only to fill the group; ``shown``: all of them in the order handed to the judge."""

    prompt_id: str
    round: int
    keys: list[str]
    fillers: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)

    def seed(self, seed: int) -> int:
        """A seed for the judge's own shuffles of this group (stable across runs and resumes)."""
        text = f"{seed}:{self.prompt_id}:{self.round}:{','.join(self.shown)}"
        return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def groups(prompt_id: str, todo: list[str], others: list[str], seed: int, round: int = 0,
           size: int = GROUP_SIZE) -> list[Group]:
    """The groups of one prompt's answers ``todo`` (keys needing a rating in this round); ``others``: the prompt's
    other answers (already rated), which may fill the last group."""
    rng = random.Random(f"{seed}:{prompt_id}:{round}")
    todo = sorted(todo)
    rng.shuffle(todo)
    out = [Group(prompt_id, round, todo[i:i + size]) for i in range(0, len(todo), size)]
    if out and len(out[-1].keys) < size:
        last = out[-1]
        pool = sorted(set(todo[:len(todo) - len(last.keys)]) | (set(others) - set(todo)))
        rng.shuffle(pool)
        last.fillers = pool[:size - len(last.keys)]
    for group in out:  # the order shown: rated answers and fillers mixed, so a filler has no fixed place
        group.shown = group.keys + group.fillers
        rng.shuffle(group.shown)
    return out
