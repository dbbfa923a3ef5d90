"""A judge program for the embedded tasks, behind the same interface as model judges.

It stands in for GPT-4 in the embedded default: it knows the right answer to every embedded instruction and
rates a response by how close it comes, on the UltraFeedback aspects (1-5), as an MT-Bench grade (1-10), as a
pairwise preference, and as an Arena-Hard verdict.
"""

from __future__ import annotations

from . import tasks


def _last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def quality(messages: list[dict], response: str) -> float | None:
    """How right the response is (0 to 1), or None if the instruction is not an embedded task."""
    answer = tasks.solve(_last_user(messages))
    return None if answer is None else tasks.closeness(answer, response)


def rate(messages: list[dict], response: str) -> dict:
    """UltraFeedback-style ratings: each aspect 1-5 with a rationale."""
    q = quality(messages, response)
    if q is None:
        raise ValueError("not an embedded task: the embedded judge cannot rate it")
    rating = 1 + round(4 * q)
    follows = 1 + round(4 * min(1.0, q + (0.25 if response.strip() else 0.0)))
    why = "exact answer" if q == 1.0 else ("partly right" if q > 0 else "wrong answer")
    return {
        "helpfulness": {"Rating": rating, "Rationale": why},
        "honesty": {"Rating": rating, "Rationale": why},
        "instruction_following": {"Rating": follows, "Rationale": why},
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
