"""Reading a judge's reply: the ratings, grade, preference, verdict or ranking it gives, or a
:class:`JudgeFailure` saying why there is none (a reply is never silently given a score).
"""

from __future__ import annotations

import ast
import json
import math
import re

from ..data.binarize import ASPECTS


class JudgeFailure(Exception):
    """The judge gave no usable answer after its retries; ``raw`` holds its last reply. ``final``: a reply that
    must not be asked again (a benchmark's rule drops it, e.g. two different verdicts)."""

    def __init__(self, reason: str, raw: str = "", final: bool = False):
        super().__init__(reason)
        self.raw = raw
        self.final = final


def parse_aspect_ratings(text: str, aspects=ASPECTS, scale=(1, 5)) -> dict:
    """Ratings per aspect from a judge's reply: JSON first, then 'aspect: N' lines. Raises JudgeFailure."""
    lo, hi = scale
    found: dict = {}
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
            for aspect in aspects:
                item = data.get(aspect)
                if isinstance(item, dict):
                    value = item.get("rating", item.get("Rating"))
                    why = str(item.get("rationale", item.get("Rationale", "")))
                else:
                    value, why = item, ""
                if value is not None:
                    found[aspect] = (float(value), why)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            found = {}
    if len(found) < len(aspects):
        for aspect in aspects:
            if aspect in found:
                continue
            pattern = aspect.replace("_", r"[\s_-]*")
            m = re.search(rf"{pattern}\W{{0,20}}(?:rating\W{{0,5}})?(\d+(?:\.\d+)?)", text, re.I)
            if m:
                found[aspect] = (float(m.group(1)), "")
    missing = [a for a in aspects if a not in found]
    if missing:
        raise JudgeFailure(f"no rating for {', '.join(missing)}", text)
    out = {}
    for aspect, (value, why) in found.items():
        if not lo <= value <= hi:
            raise JudgeFailure(f"{aspect} rating {value:g} is outside {lo}-{hi}", text)
        out[aspect] = {"Rating": int(value) if value.is_integer() else value, "Rationale": why}
    return out


def parse_grade(text: str, scale=(1, 10)) -> float:
    """MT-Bench's single-answer grade, written as [[N]] (FastChat's format; [N] accepted)."""
    m = re.search(r"\[\[(\d+(?:\.\d+)?)\]\]", text) or re.search(r"\[(\d+(?:\.\d+)?)\]", text)
    if not m:
        raise JudgeFailure("no [[rating]] in the reply", text)
    value = float(m.group(1))
    if not scale[0] <= value <= scale[1]:
        raise JudgeFailure(f"grade {value:g} is outside {scale[0]}-{scale[1]}", text)
    return value


def parse_preference(text: str) -> float:
    """Pairwise verdict [[A]], [[B]] or [[C]] (tie) -> 1.0, 0.0, 0.5 for the first answer."""
    m = re.findall(r"\[\[([ABC])\]\]", text)
    if len(set(m)) != 1:
        raise JudgeFailure("no single [[A]], [[B]] or [[C]] verdict in the reply", text)
    return {"A": 1.0, "B": 0.0, "C": 0.5}[m[0]]


# Arena-Hard's pairwise labels, either way round (its judges write A>B, and sometimes B<A).
VERDICT_LABELS = frozenset({"A>>B", "A>B", "A=B", "B=A", "B>A", "B>>A", "A<B", "A<<B", "B<A", "B<<A"})


def parse_verdict(text: str, patterns=(r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"), rule: str = "2025") -> str:
    """The benchmark's reading of a judge reply. Rule 2025: the first pattern that matches (on the upper-cased
    reply), its last match. Rule 2024 (v0.1's leaderboard): the first pattern on the reply as written; two
    different labels are no verdict. Raises JudgeFailure when there is none, or it is not a verdict."""
    if rule == "2024":
        found = sorted({m for m in re.findall(patterns[0], text) if m})
        if len(found) > 1:  # get_score of 2024: no score, and no second ask
            raise JudgeFailure(f"conflicting verdicts {', '.join(found)} (dropped, as arena-hard v0.1 did)", text,
                               final=True)
        if found:
            label = found[0].strip("\n")
            if label not in VERDICT_LABELS:  # a label was found: 2024 asked no more, and its scoring drops it
                raise JudgeFailure(f"{label!r} is not a verdict ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]])",
                                   text, final=True)
            return label
        raise JudgeFailure("no [[A>>B]] ... [[B>>A]] verdict in the reply", text)
    for pattern in patterns:
        found = [m for m in re.findall(pattern, text.upper()) if m]
        if found:
            label = found[-1].strip("\n")
            if label not in VERDICT_LABELS:
                raise JudgeFailure(f"{label!r} is not a verdict ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]])",
                                   text)
            return label
    raise JudgeFailure("no [[A>>B]] ... [[B>>A]] verdict in the reply", text)


def parse_ranking(text: str) -> float:
    """AlpacaEval's ranking reply -> 1.0 when model_1 ranks first, 0.0 when model_2 does, 0.5 for a tie.

    The reply should be a Python literal like ``[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]``;
    code fences, text around the list, JSON quoting and a lone dict are tolerated. Raises JudgeFailure.
    """
    body = re.sub(r"```(?:python|json)?", "", text)
    ranks: dict = {}
    for match in re.finditer(r"\[.*\]|\{.*\}", body, re.S):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and "model" in item and "rank" in item:
                ranks[str(item["model"]).strip()] = item["rank"]
        if ranks:
            break
    if not ranks:  # a list that does not parse as a whole: read the pairs one by one
        for m in re.finditer(r"[\'\"]model[\'\"]\s*:\s*[\'\"](model_[12])[\'\"]\s*,\s*[\'\"]rank[\'\"]\s*:\s*(\d+)", body):
            ranks.setdefault(m.group(1), int(m.group(2)))
    try:
        r1, r2 = (None if ranks.get(k) is None else int(ranks[k]) for k in ("model_1", "model_2"))
    except (TypeError, ValueError):
        raise JudgeFailure("a rank in the reply is not a number", text) from None
    if r1 is None and r2 is None:
        raise JudgeFailure("no ranking of model_1 and model_2 in the reply", text)
    if r1 is None or r2 is None:  # one model ranked: the other holds the remaining place of two
        known = r1 if r2 is None else r2
        if known not in (1, 2):
            raise JudgeFailure(f"rank {known} is not 1 or 2", text)
        r1, r2 = (known, 3 - known) if r2 is None else (3 - known, known)
    if r1 == r2:
        return 0.5
    return 1.0 if r1 < r2 else 0.0


def label_probability(payload: dict, labels: tuple) -> tuple[float | None, str]:
    """(the first label's share of both labels' probability among the first token's top log-probabilities, or
    None when neither is there; the reply's text) from an OpenAI-style chat completion."""
    choice = payload["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    try:
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None, text
    probs = {t["token"]: math.exp(t["logprob"]) for t in top if t.get("token") in labels}
    if not probs:
        return None, text
    return probs.get(labels[0], 0.0) / sum(probs.values()), text
