"""An offline judge by word overlap: a PIPELINE CHECK, NOT A QUALITY MEASURE.

It lets MT-Bench and AlpacaEval run end to end with no judge model and no network (``make eval`` on the
embedded default). It reads no meaning: a grade is the unigram F1 of the answer against the reference answer
when there is one, otherwise the share of the question's content words that the answer takes up, scaled by
a sanity factor (an empty, very short or repetitive answer scores low). Numbers it produces say that the
pieces are connected, not how good a model is; use a real judge (``judge.type: openai`` with GPT-4, or a
strong local model) for figures worth comparing with the Zephyr paper's.

Interface as for every function judge: ``grade(messages, response, reference=None)`` -> 1-10 and
``compare(messages, first, second)`` -> 1.0 / 0.0 / 0.5; ``verdict(messages, a, b)`` -> an Arena-Hard verdict.
"""

from __future__ import annotations

import re
from collections import Counter

STOPWORDS = frozenset("""a an and are as at be but by can could did do does for from had has have how i if in into
is it its me my no not of on or our please should so than that the their them then there these they this to
up was we were what when where which who why will with would you your""".split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _content(text: str) -> list[str]:
    return [w for w in _words(text) if w not in STOPWORDS]


def f1(response: str, reference: str) -> float:
    a, b = Counter(_content(response)), Counter(_content(reference))
    common = sum((a & b).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def sanity(response: str) -> float:
    """0 for an empty answer; grows with length up to 20 words; shrinks with repetition."""
    words = _words(response)
    if not words:
        return 0.0
    return min(1.0, len(words) / 20) * (len(set(words)) / len(words))


def score(messages: list[dict], response: str, reference: str | None = None) -> float:
    """0 to 1."""
    if reference:
        return f1(response, reference)
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    wanted = set(_content(question))
    coverage = len(wanted & set(_content(response))) / len(wanted) if wanted else 0.0
    return 0.5 * coverage + 0.5 * sanity(response)


def grade(messages: list[dict], response: str, reference: str | None = None) -> float:
    """MT-Bench-style grade, 1-10 (1 for an empty answer)."""
    return round(1 + 9 * score(messages, response, reference), 2)


def compare(messages: list[dict], first: str, second: str) -> float:
    """1.0 when the first answer scores higher, 0.0 when the second does, 0.5 within 0.01 of each other."""
    a, b = score(messages, first), score(messages, second)
    return 0.5 if abs(a - b) < 0.01 else (1.0 if a > b else 0.0)


def verdict(messages: list[dict], answer_a: str, answer_b: str) -> str:
    """Arena-Hard-style verdict: ``[[A=B]]`` within 0.01, ``[[A>>B]]`` / ``[[B>>A]]`` for a margin of 0.25 or
    more (on the 0-1 score), else ``[[A>B]]`` / ``[[B>A]]``."""
    a, b = score(messages, answer_a), score(messages, answer_b)
    if abs(a - b) < 0.01:
        return "[[A=B]]"
    strong = abs(a - b) >= 0.25
    return f"[[{'A>>B' if strong else 'A>B'}]]" if a > b else f"[[{'B>>A' if strong else 'B>A'}]]"
