"""The audit's measures on the binarized pairs: order consistency, test-retest, agreement with second judges,
length bias and self-preference, with the checks that reverse each pair; and UltraFeedback's overall-score bug on
input rows. :mod:`.audit` runs them in the AI-feedback stage."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from ..data.binarize import completion_score
from .audit_stats import bootstrap, kappa, length_coefficient, rounded, share

CHECKS = ("retest", "order", "judges")


# ---------------------------------------------------------------------------------------- UltraFeedback bug
def ultrafeedback_contradictions(rows: list[dict]) -> dict | None:
    """On rows in openbmb/UltraFeedback's schema: completions whose critique-based overall_score is 10 while their
    fine-grained ratings average 4 or less (the signature of the bug the upstream fix repaired: 2 or less flipped to
    1, 2-4 re-annotated). None when the rows are not in that schema."""
    checked = flagged = flip = 0
    examples: list[dict] = []
    for i, row in enumerate(rows):
        comps = row.get("completions") if isinstance(row, dict) else None
        if not isinstance(comps, list):
            continue
        for j, comp in enumerate(comps):
            if not isinstance(comp, dict) or "overall_score" not in comp or not comp.get("annotations"):
                continue
            fine = completion_score(comp)
            try:
                overall = float(comp["overall_score"])
            except (TypeError, ValueError):
                continue
            if fine is None:
                continue
            checked += 1
            if overall == 10 and fine <= 4:
                flagged += 1
                flip += fine <= 2
                if len(examples) < 20:
                    examples.append({"row": i, "completion": j, "overall_score": overall,
                                     "fine_grained_score": round(fine, 3), "fix": "flip" if fine <= 2 else "re-annotate"})
    if not checked:
        return None
    return {**share(flagged, checked), "unit": "completions", "to_flip": flip, "examples": examples}


# ------------------------------------------------------------------------------------------------ measures
@dataclass
class PairView:
    """One binarized pair as the audit reads it."""

    pid: str
    split: str
    chosen: str
    rejected: str
    chosen_model: str
    rejected_model: str
    chosen_key: Optional[str]  # the completion's key in completions.jsonl
    rejected_key: Optional[str]


def rating_score(rating: dict | None) -> float | None:
    if not rating or "annotations" not in rating:
        return None
    return completion_score({"annotations": rating["annotations"]})


def _orient(seed: int, pid: str) -> bool:
    """A seeded coin per pair: True shows the chosen answer as A (so kappa and the regression see both labels)."""
    return random.Random(f"orient:{seed}:{pid}").random() < 0.5


def direction(first: float | None, second: float | None) -> Optional[int]:
    """1 when the first scores higher, -1 lower, 0 tied, None when either is unrated."""
    if first is None or second is None:
        return None
    return (first > second) - (first < second)


# What a check saw: per pair it looked at, (the pair's prompt id, its flag when the check reverses it, else None).
Looked = list[tuple[str, Optional[str]]]


def measure(pairs: list[PairView], ratings: dict, second: dict[str, dict[str, float | None]], judge: dict,
            generators: list[str], audited: set[str], seed: int, mode: Literal["pointwise", "listwise"],
            order: dict[str, Optional[int]] | None = None,
            flag_on: list | None = None) -> tuple[dict, dict, dict]:
    """The measures and each pair's flags.

    ``ratings``: completions.jsonl-style rating records by key (``<completion key>:r0`` / ``:r1``); ``second``:
    second judge name -> {completion key: score}; ``order``: prompt id -> the direction of the pair when asked in
    another order (1 held, -1 swapped; listwise judges). Returns (measures, {pair's prompt id: [checks that
    reverse it]}, {pair's prompt id: how many checks ran on it})."""
    flag_on = list(CHECKS) if flag_on is None else flag_on
    mine = [p for p in pairs if p.pid in audited]
    flags: dict[str, list[str]] = {p.pid: [] for p in pairs}
    ran: dict[str, int] = {p.pid: 0 for p in pairs}  # how many checks looked at each pair
    out: dict = {"pairs_audited": len(mine), "pairs": len(pairs)}

    def tally(check: str, looked: Looked) -> None:
        """A check that may flag counts on each pair it looked at, and flags those it reverses."""
        if check not in flag_on:
            return
        for pid, flag in looked:
            ran[pid] += 1
            if flag is not None:
                flags[pid].append(flag)

    if mode == "listwise" and order is None:
        order = listwise_order(mine, ratings)
    out["order"], looked = order_consistency(mine, ratings, mode, order)
    tally("order", looked)
    out["retest"], looked = retest(mine, ratings, audited, mode)
    tally("retest", looked)
    out["judges"], looked = agreement(mine, second, seed)
    tally("judges", looked)
    out["length"] = length_bias(mine, second, seed)
    out["self_preference"] = self_preference(mine, judge, generators)
    return out, flags, ran


def order_consistency(mine: list[PairView], ratings: dict, mode: str,
                      order: dict[str, Optional[int]] | None) -> tuple[dict, Looked]:
    """The share of pairs whose direction holds when asked in another order, and the first position's win share
    (listwise and pairwise judges; a pointwise judge rates each answer alone)."""
    if mode == "pointwise":
        return {"applicable": False, "why": "a pointwise judge rates each answer alone: there is no order "
                                            "to change"}, []
    got = [(p, (order or {}).get(p.pid)) for p in mine]
    got = [(p, d) for p, d in got if d is not None]
    held = sum(d == 1 for _, d in got)
    firsts = [f for f in (first_shown(p, ratings) for p in mine) if f is not None]
    return ({"applicable": True, "consistency": share(held, len(got)),
             "swapped": share(sum(d == -1 for _, d in got), len(got)),
             "first_position_wins": share(sum(firsts), len(firsts))},
            [(p.pid, None if d == 1 else "order") for p, d in got])


def retest(mine: list[PairView], ratings: dict, audited: set[str], mode: str) -> tuple[dict, Looked]:
    """Test-retest, of pairs and of answers (a listwise judge's second rating is in another order: measured by
    :func:`order_consistency`)."""
    dirs: list[int] = []
    answers: list[tuple[float, float]] = []
    looked: Looked = []
    for p in (mine if mode == "pointwise" else []):
        d = direction(rating_score(ratings.get(f"{p.chosen_key}:r1")),
                      rating_score(ratings.get(f"{p.rejected_key}:r1")))
        if d is not None:
            dirs.append(d)
            looked.append((p.pid, "retest" if d < 0 else None))
    for key, rec in ratings.items():
        if key.endswith(":r1") and prompt_id_of(key) in audited:
            a, b = rating_score(ratings.get(key[:-1] + "0")), rating_score(rec)
            if a is not None and b is not None:
                answers.append((a, b))
    if mode == "listwise":
        return {"applicable": False, "why": "a listwise judge's second rating is asked in another seeded "
                                            "order: order consistency measures test-retest and order together"}, looked
    return {"pair_direction": share(sum(d == 1 for d in dirs), len(dirs)),
            "pairs_swapped": share(sum(d == -1 for d in dirs), len(dirs)),
            "answers_exact": share(sum(a == b for a, b in answers), len(answers)),
            "answers_mean_abs_diff": rounded(float(np.mean([abs(a - b) for a, b in answers]))) if answers
            else None}, looked


def agreement(mine: list[PairView], second: dict[str, dict[str, float | None]], seed: int) -> tuple[dict, Looked]:
    """Per second judge: its pair-direction agreement, ties and Cohen's kappa (each pair shown in a seeded
    orientation, so that both labels occur)."""
    out: dict = {}
    looked: Looked = []
    for name, scores in second.items():
        labels, agree, n, ties = [], 0, 0, 0
        for p in mine:
            d = direction(scores.get(p.chosen_key or ""), scores.get(p.rejected_key or ""))
            if d is None:
                continue
            n += 1
            agree += d == 1
            ties += d == 0
            a_is_chosen = _orient(seed, p.pid)
            labels.append((1 if a_is_chosen else -1, d if a_is_chosen else -d))
            looked.append((p.pid, f"judge:{name}" if d < 0 else None))
        out[name] = {"agreement": share(agree, n), "ties": ties,
                     "kappa": bootstrap(kappa, np.array(labels, dtype=float).reshape(-1, 2), seed)}
    return out, looked


def length_bias(mine: list[PairView], second: dict[str, dict[str, float | None]], seed: int) -> dict:
    """The share of pairs whose chosen answer is the longer, the share expected from the first second judge's
    ratings (0.5 without one), and the length coefficient."""
    longer, n_len, reg = 0, 0, []
    lens = [(len(p.chosen), len(p.rejected)) for p in mine]
    diffs = np.array([c - r for c, r in lens], dtype=float)
    sd = float(np.std(diffs)) or 1.0
    ref_name = next(iter(second), None)
    ref_longer = ref_n = 0
    for p, (c, r) in zip(mine, lens):
        if c != r:
            n_len += 1
            longer += c > r
            if ref_name is not None:
                d = direction(second[ref_name].get(p.chosen_key or ""), second[ref_name].get(p.rejected_key or ""))
                if d:
                    ref_n += 1
                    ref_longer += (c > r) == (d > 0)
        a_is_chosen = _orient(seed, p.pid)
        delta = (c - r) if a_is_chosen else (r - c)
        reg.append((1.0 if a_is_chosen else 0.0, math.tanh(delta / sd)))
    return {
        "longer_chosen": share(longer, n_len),
        "expected": (share(ref_longer, ref_n) | {"from": f"judge {ref_name}'s ratings"}) if ref_name is not None
        else {"value": 0.5, "interval": [0.5, 0.5], "from": "no second judge: lengths independent of the ratings"},
        "coefficient": bootstrap(length_coefficient, np.array(reg, dtype=float).reshape(-1, 2), seed),
    }


def self_preference(mine: list[PairView], judge: dict, generators: list[str]) -> dict:
    """Where a generator is the judge's own model, its win share against the others."""
    own = judge_model(judge)
    mine_gens = [g for g in generators if own and (g == own or own.endswith("/" + g) or g.endswith("/" + own))]
    if not mine_gens:
        return {"applicable": False, "why": f"no generator is the judge's model ({own or '?'})"}
    out: dict = {"applicable": True}
    for g in mine_gens:
        games = [p for p in mine if (p.chosen_model == g) != (p.rejected_model == g)]
        wins = sum(p.chosen_model == g for p in games)
        out[g] = {"win_share": share(wins, len(games))}
    return out


def is_flagged(rule: str, reversed_by: list[str], ran: int) -> bool:
    """A pair is flagged when any check reverses it (``any``) or more than half of those that ran (``majority``)."""
    if not reversed_by:
        return False
    return rule == "any" or len(reversed_by) > ran / 2


def listwise_order(pairs: list[PairView], ratings: dict) -> dict[str, Optional[int]]:
    """A listwise judge's pairs asked again in another seeded order (its second round, which AI feedback groups
    and orders afresh): the direction of each pair there."""
    return {p.pid: direction(rating_score(ratings.get(f"{p.chosen_key}:r1")),
                             rating_score(ratings.get(f"{p.rejected_key}:r1"))) for p in pairs}


def first_shown(p: PairView, ratings: dict) -> Optional[bool]:
    """In the first rating, whether the chosen answer was shown before the rejected one (None when they were not
    rated side by side)."""
    group = (ratings.get(f"{p.chosen_key}:r0") or {}).get("group") or {}
    shown = next(iter((group.get("shown") or {}).values()), None)
    if not shown or p.chosen_key not in shown or p.rejected_key not in shown:
        return None
    return shown.index(p.chosen_key) < shown.index(p.rejected_key)


def mode_of(ratings: dict) -> Literal["pointwise", "listwise"]:
    """listwise when the judge rated answers in groups (their records carry the group)."""
    return "listwise" if any("group" in r for r in ratings.values()) else "pointwise"


def prompt_id_of(key: str) -> str:
    return key.split(":", 1)[0]


def judge_model(judge: dict) -> str | None:
    return judge.get("model") or judge.get("module") or judge.get("function")
