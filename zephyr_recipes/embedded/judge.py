"""A judge program for the embedded tasks, behind the same interface as model judges.

It stands in for GPT-4 in the embedded default: it knows the right answer to every embedded instruction and
rates a response on two things, as a GPT-4 judge weighs both accuracy and following the user's instructions:

- **correctness** (three quarters of the quality): how close the result in the response (its numbers and task
  words, in order) comes to the right answer (``tasks.closeness``);
- **the result only** (one quarter): every embedded prompt is asked under the system prompt "Answer with the
  result only", and a response that is nothing but a result (numbers and task words, right or wrong) follows it,
  while an empty one or one with anything else in it (a pleasantry before the answer) does not.

So a right answer with a pleasantry before it grades 7.75 of 10, below the right answer alone (10) and above any
answer that is wrong in most of its words: correctness comes first, the form costs a quarter wherever it fails.
Quality is reported on the UltraFeedback aspects (1-5: helpfulness, honesty and truthfulness rate correctness,
instruction following rates the result-only form), as an MT-Bench grade (1-10), as a pairwise preference, and as an
Arena-Hard verdict, all from the same two parts so the AI-feedback ratings and the evaluation agree.
"""

from __future__ import annotations

import re

from . import tasks

# Correctness and the result-only form, as shares of the quality (and so of the 1-10 grade above its floor).
CORRECTNESS_WEIGHT, FORM_WEIGHT = 0.75, 0.25
_VOCABULARY = frozenset(w.lower() for w in tasks.WORDS)
_NUMBER = re.compile(r"-?[0-9]+")


def _last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def _is_result_word(word: str) -> bool:
    return bool(_NUMBER.fullmatch(word)) or word.lower() in _VOCABULARY


def result(response: str) -> str:
    """The result in a response: its numbers and task words (in any case), in order, everything else left out."""
    return " ".join(w for w in response.split() if _is_result_word(w))


def result_only(response: str) -> bool:
    """True when the response is a result and nothing else: at least one word, every word a number or one of the
    embedded tasks' words (in any case), whether or not it is the right result."""
    words = response.split()
    return bool(words) and all(_is_result_word(w) for w in words)


def correctness(messages: list[dict], response: str) -> float | None:
    """How right the result in the response is (0 to 1), or None if the instruction is not an embedded task."""
    answer = tasks.solve(_last_user(messages))
    return None if answer is None else tasks.closeness(answer, result(response))


def quality(messages: list[dict], response: str) -> float | None:
    """Correctness and the result-only form together (0 to 1), or None if the instruction is not an embedded task:
    1.0 for the exact answer alone, 0.0 for an empty or wholly wrong one that is not a result either."""
    right = correctness(messages, response)
    if right is None:
        return None
    return round(CORRECTNESS_WEIGHT * right + FORM_WEIGHT * result_only(response), 4)


def rate(messages: list[dict], response: str) -> dict:
    """UltraFeedback-style ratings, each aspect 1-5 with a rationale: helpfulness, honesty and truthfulness rate
    correctness, instruction following the result-only form (so their mean weighs the two as ``quality`` does)."""
    q = correctness(messages, response)
    if q is None:
        raise ValueError("not an embedded task: the embedded judge cannot rate it")
    rating = 1 + round(4 * q)
    why = "exact answer" if q == 1.0 else ("partly right" if q > 0 else "wrong answer")
    form = result_only(response)
    follows = 5 if form else 1
    how = "the result only" if form else ("no answer" if not response.strip() else "more than the result")
    return {
        "helpfulness": {"Rating": rating, "Rationale": why},
        "honesty": {"Rating": rating, "Rationale": why},
        "instruction_following": {"Rating": follows, "Rationale": how},
        "truthfulness": {"Rating": rating, "Rationale": why},
    }


def grade(messages: list[dict], response: str) -> float:
    """MT-Bench-style single-answer grade, 1-10."""
    q = quality(messages, response)
    if q is None:
        raise ValueError("not an embedded task: the embedded judge cannot grade it")
    return round(1 + 9 * q, 2)


def compare(messages: list[dict], first: str, second: str) -> float:
    """Pairwise preference: 1.0 when the first response is better, 0.0 when the second is, 0.5 for a tie."""
    a, b = quality(messages, first), quality(messages, second)
    if a is None or b is None:
        raise ValueError("not an embedded task: the embedded judge cannot compare")
    return 1.0 if a > b else 0.0 if b > a else 0.5


def verdict(messages: list[dict], answer_a: str, answer_b: str) -> str:
    """Arena-Hard-style verdict on two answers: ``[[A>>B]]`` when A is right by at least half the task more than B,
    ``[[A>B]]`` when A is closer, ``[[A=B]]`` when both are as close, and the same the other way."""
    a, b = quality(messages, answer_a), quality(messages, answer_b)
    if a is None or b is None:
        raise ValueError("not an embedded task: the embedded judge cannot compare")
    if a == b:
        return "My final verdict is tie: [[A=B]]"
    label = ("A>>B" if a - b >= 0.5 else "A>B") if a > b else ("B>>A" if b - a >= 0.5 else "B>A")
    return f"My final verdict: [[{label}]]"
