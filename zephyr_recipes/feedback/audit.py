"""The audit of an AI-feedback judge: how far to trust it, measured while it works, and a gate on what it got wrong.

``stage.audit`` of the AI-feedback stage names what is measured on a seeded sample of its prompts (every prompt for
a local or function judge; a stated number for a paid API judge, whose extra calls ``plan`` shows):

- **order consistency** (listwise and pairwise judges): the same answers asked again in another seeded order; the
  share of pairs whose chosen and rejected swap, and the first position's win share. A pointwise judge rates each
  answer alone: not applicable;
- **test-retest**: the sampled answers rated a second time; the share of pairs whose direction holds (and the old
  ``self_agreement`` figures: exact agreement and mean difference of the answers' scores);
- **agreement with second judges** (``audit.judges``: a reward-model run folder, another endpoint, a function):
  pair-direction agreement and Cohen's kappa;
- **length bias**: the share of pairs whose chosen answer is the longer, against the share expected from the
  ratings alone (the first second judge's, when there is one; else 0.5), and a length coefficient as AlpacaEval's
  length control fits it (a logistic regression of the preference on the tanh of the standardised length
  difference);
- **self-preference**: where a generator is the judge's own model, its win share against the others;
- **UltraFeedback's overall-score bug**: on input in openbmb/UltraFeedback's schema, the completions whose
  critique-based ``overall_score`` of 10 contradicts their fine-grained ratings (OpenBMB/UltraFeedback issue #8,
  ``fix_overall_score_issue.py``: 10 with a fine-grained mean of 4 or less).

Every share has its 95% Wilson interval; kappa and the length coefficient a seeded bootstrap interval. Each check
that reverses a pair's direction is recorded on it (``retest``, ``order``, ``judge:<name>``); the pair is flagged
when more than half of the checks that ran on it reverse it (``audit.flag_when: majority``, the vote of several
judges that PrefCleanBench found best) or when any does (``any``), and ``audit.action`` keeps, drops or flips
flagged pairs. ``audit.min_*`` bars end the stage with a ZephyrError naming
the measure, its value and its interval when the judge is worse than the bar.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional

import numpy as np

from ..core.errors import ZephyrError
from ..core.schema import option
from ..data.binarize import completion_score, prompt_id
from .judge_registry import judge_load
from .judges import Item, JudgeFailure, make_judge
from .serve import serving
from .specs import JudgeSpec
from .store import Store

Z95 = 1.959963984540054
RESAMPLES = 1000
ACTIONS = ("keep", "drop", "flip")
CHECKS = ("retest", "order", "judges")
API_SAMPLE = 200  # prompts audited by default when the judge is a paid API


@dataclass
class AuditConfig:
    """The audit of the judge (docs/audit.md): measures with 95% intervals, flags per pair, and the gate."""

    enabled: bool = option(False, "Audit the judge: write audit.json, flag pairs, apply the action and the bars.")
    sample: Optional[int] = option(None, "Prompts audited, a seeded sample; null: every prompt for local and "
                                         f"function judges, {API_SAMPLE} for a paid API judge (type openai without "
                                         "serve), whose extra calls and cost `plan` shows.")
    seed: Optional[int] = option(None, "Seed of the sample and of the re-asked orders; null: run.seed.")
    retest: bool = option(True, "Rate the sampled answers a second time (test-retest; folds in self_agreement).")
    order: bool = option(True, "Listwise and pairwise judges: ask the sampled prompts again in another seeded order.")
    judges: list[JudgeSpec] = option([], "Second judges of any type (a reward-model run folder as {type: "
                                         "reward_model, model: runs/...}, another endpoint, a function module): each "
                                         "rates the sampled pairs; agreement and Cohen's kappa.")
    flag_on: list = option(list(CHECKS), "Which checks may flag a pair: retest, order, judges.")
    flag_when: str = option("majority", "When a pair counts as flagged: majority (more than half of the checks that "
                                        "ran on it reverse it: with a retest and one second judge, both) or any (one "
                                        "is enough: more recall, less precision).")
    action: str = option("keep", "What happens to flagged pairs: keep (flag only), drop (left out of the data), or "
                                 "flip (chosen and rejected swapped).")
    min_agreement: Optional[float] = option(None, "End the stage when the pair-direction agreement with a second "
                                                  "judge is below this share (0-1).")
    min_kappa: Optional[float] = option(None, "End the stage when Cohen's kappa with a second judge is below this.")
    min_retest: Optional[float] = option(None, "End the stage when the share of pairs whose direction holds on a "
                                               "second rating is below this.")
    min_order_consistency: Optional[float] = option(None, "End the stage when the share of pairs whose direction "
                                                          "holds in another order is below this.")
    max_longer_chosen: Optional[float] = option(None, "End the stage when the share of pairs whose chosen answer "
                                                      "is the longer is above this.")


BARS = {"min_agreement": ("agreement", "pair-direction agreement with a second judge"),
        "min_kappa": ("kappa", "Cohen's kappa with a second judge"),
        "min_retest": ("retest", "test-retest pair-direction agreement"),
        "min_order_consistency": ("order", "order consistency"),
        "max_longer_chosen": ("length", "share of pairs whose chosen answer is the longer")}


def check(audit: AuditConfig, where: str = "stage.audit") -> None:
    if audit.action not in ACTIONS:
        raise ZephyrError(f"{where}.action is {audit.action!r}", f"use one of: {', '.join(ACTIONS)}")
    if audit.flag_when not in ("majority", "any"):
        raise ZephyrError(f"{where}.flag_when is {audit.flag_when!r}", "use majority or any")
    bad = [c for c in audit.flag_on if c not in CHECKS]
    if bad:
        raise ZephyrError(f"{where}.flag_on names {bad[0]!r}", f"use some of: {', '.join(CHECKS)}")
    if audit.sample is not None and audit.sample < 1:
        raise ZephyrError(f"{where}.sample is {audit.sample}", "use a number of prompts of 1 or more (null: default)")
    for key in BARS:
        value = getattr(audit, key)
        if value is not None and not (-1 <= value <= 1):
            raise ZephyrError(f"{where}.{key} is {value}", "use a share from 0 to 1 (kappa: -1 to 1), or null")


# ------------------------------------------------------------------------------------------------- sample
def is_paid_api(judge: dict) -> bool:
    return judge.get("type") == "openai" and not judge.get("serve")


def sample_size(audit: AuditConfig, judge: dict, prompts: int) -> int:
    """How many prompts the audit covers."""
    if audit.sample is not None:
        return min(prompts, int(audit.sample))
    return min(prompts, API_SAMPLE) if is_paid_api(judge) else prompts


def _rank(seed: int, pid: str) -> str:
    return hashlib.sha1(f"audit:{seed}:{pid}".encode()).hexdigest()


def sampled(audit: AuditConfig, judge: dict, prompts: list[str], seed: int) -> set[str]:
    """The prompt ids the audit covers: a seeded sample, the same on every resume."""
    if not audit.enabled:
        return set()
    ids = sorted({prompt_id(p) for p in prompts}, key=lambda pid: _rank(seed, pid))
    return set(ids[:sample_size(audit, judge, len(ids))])


def loads(audit: AuditConfig, judge: dict, prompts: int, answers_per_prompt: float, judge_requests: int,
          new_tokens: int) -> list[dict]:
    """The audit's extra calls as plan loads (see TaskStage.loads): the judge's second ratings and each second
    judge's ratings, their share of the judge's own calls in the role."""

    if not audit.enabled or not prompts:
        return []
    n = sample_size(audit, judge, prompts)
    out = []
    if audit.retest:
        extra = int(n * answers_per_prompt)
        out.append(judge_load(f"judge, audit test-retest of {n:,} prompts (+{extra / max(judge_requests, 1):.1%} of "
                              "the judge's calls)", judge, extra, new_tokens))  # each judge type's cost model
    for i, spec in enumerate(audit.judges):
        got = asdict(spec)
        out.append(judge_load(f"audit judge {judge_name(got, i)} ({n:,} prompts, 2 answers each)", got, 2 * n,
                              int(spec.sampling.get("max_new_tokens") or new_tokens)))
    return out


# ---------------------------------------------------------------------------------------------- intervals
def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """(share, low, high): the share k/n with its 95% Wilson score interval."""
    if n <= 0:
        return None, None, None
    p = k / n
    den = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)


def share(k: int, n: int) -> dict:
    p, low, high = wilson(k, n)
    return {"value": _r(p), "interval": [_r(low), _r(high)], "n": n, "count": k}


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def bootstrap(stat: Callable[[np.ndarray], float], rows: np.ndarray, seed: int) -> dict:
    """A statistic of the rows with its 95% percentile interval over seeded resamples of the rows."""
    value = stat(rows)
    if len(rows) < 2 or value is None or not math.isfinite(value):
        return {"value": _r(value), "interval": [None, None], "n": int(len(rows))}
    rng = np.random.default_rng(seed)
    got = []
    for _ in range(RESAMPLES):
        v = stat(rows[rng.integers(0, len(rows), len(rows))])
        if v is not None and math.isfinite(v):
            got.append(v)
    low, high = (np.quantile(got, [0.025, 0.975]) if got else (None, None))
    return {"value": _r(value), "interval": [_r(low), _r(high)], "n": int(len(rows))}


def kappa(labels: np.ndarray) -> float:
    """Cohen's kappa of two raters' labels (columns 0 and 1), any number of categories."""
    if len(labels) == 0:
        return float("nan")
    a, b = labels[:, 0], labels[:, 1]
    po = float(np.mean(a == b))
    cats = np.union1d(a, b)
    pe = float(sum(np.mean(a == c) * np.mean(b == c) for c in cats))
    return 1.0 if pe >= 1 else (po - pe) / (1 - pe)


def length_coefficient(rows: np.ndarray) -> float:
    """The slope of a logistic regression of y (column 0: the first answer is chosen) on x (column 1: the tanh of
    the standardised length difference, first minus second), with an intercept, by Newton's method; AlpacaEval's
    length control fits the same term. Positive: the judge favours the longer answer."""
    y, x = rows[:, 0], rows[:, 1]
    if len(rows) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    X = np.column_stack([np.ones_like(x), x])
    w = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ w))
        g = X.T @ (y - p) - 1e-3 * w  # a whisper of ridge keeps a separable sample finite
        h = (X * (p * (1 - p))[:, None]).T @ X + 1e-3 * np.eye(2)
        step = np.linalg.solve(h, g)
        w += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(w[1])


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


def _score(rating: dict | None) -> float | None:
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

    if mode == "listwise" and order is None:
        order = listwise_order(mine, ratings)
    # Order consistency.
    if mode == "pointwise":
        out["order"] = {"applicable": False, "why": "a pointwise judge rates each answer alone: there is no order "
                                                    "to change"}
    else:
        got = [(p, (order or {}).get(p.pid)) for p in mine]
        got = [(p, d) for p, d in got if d is not None]
        held = sum(d == 1 for _, d in got)
        firsts = [f for f in (first_shown(p, ratings) for p in mine) if f is not None]
        out["order"] = {"applicable": True, "consistency": share(held, len(got)),
                        "swapped": share(sum(d == -1 for _, d in got), len(got)),
                        "first_position_wins": share(sum(firsts), len(firsts))}
        for p, d in got:
            if "order" in flag_on:
                ran[p.pid] += 1
                if d != 1:
                    flags[p.pid].append("order")

    # Test-retest, pairs and answers (a listwise judge's second rating is in another order: measured above).
    dirs, answers = [], []
    for p in (mine if mode == "pointwise" else []):
        d = direction(_score(ratings.get(f"{p.chosen_key}:r1")), _score(ratings.get(f"{p.rejected_key}:r1")))
        if d is not None:
            dirs.append(d)
            if "retest" in flag_on:
                ran[p.pid] += 1
                if d < 0:
                    flags[p.pid].append("retest")
    for key, rec in ratings.items():
        if key.endswith(":r1") and prompt_id_of(key) in audited:
            a, b = _score(ratings.get(key[:-1] + "0")), _score(rec)
            if a is not None and b is not None:
                answers.append((a, b))
    if mode == "listwise":
        out["retest"] = {"applicable": False, "why": "a listwise judge's second rating is asked in another seeded "
                                                     "order: order consistency measures test-retest and order together"}
    else:
        out["retest"] = {"pair_direction": share(sum(d == 1 for d in dirs), len(dirs)),
                         "pairs_swapped": share(sum(d == -1 for d in dirs), len(dirs)),
                         "answers_exact": share(sum(a == b for a, b in answers), len(answers)),
                         "answers_mean_abs_diff": _r(float(np.mean([abs(a - b) for a, b in answers]))) if answers
                         else None}

    # Second judges.
    out["judges"] = {}
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
            if "judges" in flag_on:
                ran[p.pid] += 1
                if d < 0:
                    flags[p.pid].append(f"judge:{name}")
        out["judges"][name] = {"agreement": share(agree, n), "ties": ties,
                               "kappa": bootstrap(kappa, np.array(labels, dtype=float).reshape(-1, 2), seed)}

    # Length bias.
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
    out["length"] = {
        "longer_chosen": share(longer, n_len),
        "expected": (share(ref_longer, ref_n) | {"from": f"judge {ref_name}'s ratings"}) if ref_name is not None
        else {"value": 0.5, "interval": [0.5, 0.5], "from": "no second judge: lengths independent of the ratings"},
        "coefficient": bootstrap(length_coefficient, np.array(reg, dtype=float).reshape(-1, 2), seed),
    }

    # Self-preference.
    own = judge_model(judge)
    mine_gens = [g for g in generators if own and (g == own or own.endswith("/" + g) or g.endswith("/" + own))]
    if not mine_gens:
        out["self_preference"] = {"applicable": False, "why": f"no generator is the judge's model ({own or '?'})"}
    else:
        out["self_preference"] = {"applicable": True}
        for g in mine_gens:
            games = [p for p in mine if (p.chosen_model == g) != (p.rejected_model == g)]
            wins = sum(p.chosen_model == g for p in games)
            out["self_preference"][g] = {"win_share": share(wins, len(games))}
    return out, flags, ran


def is_flagged(rule: str, reversed_by: list[str], ran: int) -> bool:
    """A pair is flagged when any check reverses it (``any``) or more than half of those that ran (``majority``)."""
    if not reversed_by:
        return False
    return rule == "any" or len(reversed_by) > ran / 2


def listwise_order(pairs: list[PairView], ratings: dict) -> dict[str, Optional[int]]:
    """A listwise judge's pairs asked again in another seeded order (its second round, which AI feedback groups
    and orders afresh): the direction of each pair there."""
    return {p.pid: direction(_score(ratings.get(f"{p.chosen_key}:r1")), _score(ratings.get(f"{p.rejected_key}:r1")))
            for p in pairs}


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


def judge_name(spec: dict, i: int) -> str:
    return str(spec.get("model") or spec.get("module") or f"judge{i}").rstrip("/").split("/")[-1] or f"judge{i}"


# ------------------------------------------------------------------------------------------------- the gate
def bars(audit: AuditConfig, measures: dict) -> None:
    """A ZephyrError naming the first measure worse than its bar, with its value and interval."""
    checks = []
    retest = measures.get("retest", {}).get("pair_direction", {})
    checks.append(("min_retest", retest, False))  # a listwise judge's retest is its order consistency
    order = measures.get("order", {})
    if order.get("applicable"):
        checks.append(("min_order_consistency", order["consistency"], False))
        checks.append(("min_retest", {**order["consistency"], "label": "order consistency (a listwise judge's "
                                                                   "second rating is asked in another order)"}, False))
    for name, got in measures.get("judges", {}).items():
        checks.append(("min_agreement", {**got["agreement"], "judge": name}, False))
        checks.append(("min_kappa", {**got["kappa"], "judge": name}, False))
    checks.append(("max_longer_chosen", measures.get("length", {}).get("longer_chosen", {}), True))
    for key, got, upper in checks:
        bar = getattr(audit, key)
        value = got.get("value")
        if bar is None or value is None:
            continue
        if (value > bar) if upper else (value < bar):
            label = got.get("label") or BARS[key][1] + (f" ({got['judge']})" if got.get("judge") else "")
            low, high = got.get("interval") or [None, None]
            raise ZephyrError(
                f"the judge fails stage.audit.{key}: {label} is {value:.3f} (95% interval {_fmt(low)} to "
                f"{_fmt(high)}, n={got.get('n')}), {'above' if upper else 'below'} the bar of {bar}",
                f"use a better judge, or rerun with a lower bar (stage.audit.{key}=...) or none "
                f"(stage.audit.{key}=null): the rerun resumes this folder and asks no judge again; audit.json in "
                "the run folder has every measure and every pair's flags")


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3f}"


def apply(action: str, pairs: list[dict], flags: dict[str, list[str]]) -> tuple[list[dict], dict]:
    """Pairs after the action on flagged ones, and a count of what happened."""
    out, counts = [], {"kept": 0, "dropped": 0, "flipped": 0}
    for pair in pairs:
        if not flags.get(pair["prompt_id"]) or action == "keep":
            out.append(pair)
            counts["kept"] += 1
        elif action == "drop":
            counts["dropped"] += 1
        else:
            counts["flipped"] += 1
            out.append({**pair, "chosen": pair["rejected"], "rejected": pair["chosen"], "messages": pair["rejected"],
                        "score_chosen": pair["score_rejected"], "score_rejected": pair["score_chosen"]})
    return out, counts


def precision_recall(flagged: list[bool], truth: list[bool]) -> dict:
    """The flags scored against the truth (pairs known to be the wrong way round): precision (the share of flagged
    pairs that are wrong), recall (the share of wrong pairs flagged), and the prevalence (a flag at random has
    precision equal to it), each with its 95% Wilson interval."""
    tp = sum(f and t for f, t in zip(flagged, truth))
    return {"precision": share(tp, sum(flagged)), "recall": share(tp, sum(truth)),
            "prevalence": share(sum(truth), len(truth)), "flagged": sum(flagged), "pairs": len(truth)}


def card_lines(audit: dict | None) -> list[str]:
    """The dataset card's lines on the audit."""
    if not audit:
        return []
    m = audit["measures"]

    def s(got: dict) -> str:
        if not got or got.get("value") is None:
            return "not measured"
        low, high = got.get("interval") or [None, None]
        return f"{got['value']:.3f} [{_fmt(low)}, {_fmt(high)}] (n={got.get('n')})"

    lines = ["", "## Audit of the judge", "",
             f"{m['pairs_audited']} of {m['pairs']} pairs audited (seed {audit['seed']}); action on flagged pairs: "
             f"{audit['action']} ({audit['applied']}). 95% intervals; `audit.json` has every pair's flags.", "",
             "| measure | value [95% interval] |", "| --- | --- |"]
    order = m["order"]
    held = s(order["consistency"]) if order.get("applicable") else "not applicable: " + order["why"]
    lines.append(f"| order consistency | {held} |")
    if order.get("applicable"):
        lines.append(f"| first position wins (chosen shown before rejected) | {s(order['first_position_wins'])} |")
    retest = m["retest"]
    same = s(retest["pair_direction"]) if "pair_direction" in retest else "not applicable: " + retest["why"]
    lines.append(f"| test-retest pair direction | {same} |")
    for name, got in m["judges"].items():
        lines.append(f"| agreement with {name} | {s(got['agreement'])} |")
        lines.append(f"| Cohen's kappa with {name} | {s(got['kappa'])} |")
    lines.append(f"| chosen answer the longer | {s(m['length']['longer_chosen'])} |")
    lines.append(f"| expected from the ratings alone | {s(m['length']['expected'])} |")
    lines.append(f"| length coefficient | {s(m['length']['coefficient'])} |")
    sp = m["self_preference"]
    if sp.get("applicable"):
        for g, got in sp.items():
            if g != "applicable":
                lines.append(f"| self-preference of {g} | {s(got['win_share'])} |")
    else:
        lines.append(f"| self-preference | not applicable: {sp['why']} |")
    uf = m.get("ultrafeedback")
    if uf:
        lines.append(f"| UltraFeedback overall-score bug (input) | {s(uf)} |")
    truth = m.get("embedded_truth")
    if truth:  # the embedded tasks know the right answer
        lines.append(f"| pairs the wrong way round (embedded truth) | {s(truth['mislabelled'])} |")
        lines.append(f"| ... of the pairs left unflagged | {s(truth['mislabelled_unflagged'])} |")
        lines.append(f"| flag precision / recall | {s(truth['flag_precision'])} / {s(truth['flag_recall'])} |")
    lines.append(f"| pairs flagged | {audit['flagged']} |")
    return lines


# --------------------------------------------------------------------------------------------- the stage's run
def embedded_truth(views: list[PairView], flags: dict[str, list[str]], by_pid: dict[str, str]) -> dict | None:
    """On the embedded tasks, where the right answer is known: the share of pairs the wrong way round (the chosen
    answer worse than the rejected one by the embedded judge, :func:`~..embedded.noisy_judge.mislabelled`) among all
    pairs, among the pairs the audit left unflagged, and the flags' precision and recall. None on any other data."""
    from ..embedded.noisy_judge import mislabelled  # lazy: start-up (embedded tasks only)

    wrong: dict[str, bool] = {}
    for v in views:
        try:
            wrong[v.pid] = mislabelled(by_pid[v.pid], v.chosen, v.rejected)
        except (ValueError, KeyError):
            return None
    if not wrong:
        return None
    flagged = {pid for pid in wrong if flags.get(pid)}
    kept = [w for pid, w in wrong.items() if pid not in flagged]
    bad = sum(wrong.values())
    return {"mislabelled": share(bad, len(wrong)), "mislabelled_unflagged": share(sum(kept), len(kept)),
            "flag_precision": share(sum(wrong[pid] for pid in flagged), len(flagged)),
            "flag_recall": share(sum(wrong[pid] for pid in flagged), bad)}


def pair_views(pairs: dict[str, list[dict]], completions: dict[str, dict]) -> list[PairView]:
    """The binarized pairs with the completions they came from (by prompt id and answer text)."""
    by_pid: dict[str, list[dict]] = {}
    for rec in completions.values():
        if "response" in rec:
            by_pid.setdefault(rec["prompt_id"], []).append(rec)
    views = []
    for split, items in pairs.items():
        for pair in items:
            recs = sorted(by_pid.get(pair["prompt_id"], []), key=lambda r: r["key"])
            chosen, rejected = pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]
            c = next((r for r in recs if r["response"] == chosen), None)
            r = next((r for r in recs if r["response"] == rejected and r is not c), None)
            views.append(PairView(pair["prompt_id"], split, chosen, rejected, c["model"] if c else "?",
                                  r["model"] if r else "?", c["key"] if c else None, r["key"] if r else None))
    return views


def second_scores(specs: list[JudgeSpec], views: list[PairView], audited: set[str], prompts: dict[str, str],
                  folder, hardware: dict | None) -> dict[str, dict[str, float | None]]:
    """Each second judge's score of every audited pair's two answers, recorded in audit_ratings.jsonl as they
    arrive (a rerun asks nothing twice)."""

    store = Store(folder / "audit_ratings.jsonl")
    out: dict[str, dict[str, float | None]] = {}
    try:
        for i, spec in enumerate(specs):
            name = judge_name(asdict(spec), i)
            while name in out:
                name += f"-{i}"
            todo, seen = [], set()
            for v in views:
                if v.pid not in audited:
                    continue
                for key, text in ((v.chosen_key, v.chosen), (v.rejected_key, v.rejected)):
                    if key and key not in seen and f"{name}:{key}" not in store:
                        seen.add(key)
                        todo.append((key, v.pid, text))
            if todo:
                with serving(asdict(spec), folder, f"audit-{name}") as served:
                    judge = make_judge(served, hardware)
                    items = [Item([{"role": "user", "content": prompts[pid]}], (text,)) for _, pid, text in todo]
                    for j, verdict in judge.ask("rate", items, "the audit"):
                        key = todo[j][0]
                        if isinstance(verdict, JudgeFailure):
                            store.add({"key": f"{name}:{key}", "failure": str(verdict)})
                        else:
                            store.add({"key": f"{name}:{key}", "annotations": verdict.value})
            out[name] = {k.split(":", 1)[1]: _score(rec) for k, rec in store.records.items()
                         if k.startswith(f"{name}:")}
    finally:
        store.close()
    return out


def run_audit(audit: AuditConfig, judge: dict, generators: list[str], pairs: dict[str, list[dict]],
              completions: dict[str, dict], ratings: dict[str, dict], prompts: list[str], audited: set[str],
              folder, hardware: dict | None, seed: int, input_rows: list[dict] | None = None,
              order: dict[str, Optional[int]] | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Measure, write audit.json, hold the judge to the bars, act on the flagged pairs. Returns the pairs to write
    and the summary's audit entry."""
    import json
    from pathlib import Path

    folder = Path(folder)
    mode = mode_of(ratings)
    views = pair_views(pairs, completions)
    by_pid = {prompt_id(p): p for p in prompts}
    second = second_scores(audit.judges, views, audited, by_pid, folder, hardware) if audit.judges else {}
    measures, reversed_by, ran = measure(views, ratings, second, judge, generators, audited, seed, mode, order,
                                         audit.flag_on)
    flags = {pid: checks for pid, checks in reversed_by.items() if is_flagged(audit.flag_when, checks, ran[pid])}
    truth = embedded_truth(views, flags, by_pid)
    if truth is not None:
        measures["embedded_truth"] = truth
    if input_rows is not None:
        uf = ultrafeedback_contradictions(input_rows)
        if uf is not None:
            measures["ultrafeedback"] = uf
    out = {}
    counts = {"kept": 0, "dropped": 0, "flipped": 0}
    for split, items in pairs.items():
        out[split], c = apply(audit.action, items, flags)
        for k in counts:
            counts[k] += c[k]
    flagged = sum(1 for f in flags.values() if f)
    done = {"keep": "kept", "drop": "dropped", "flip": "flipped"}[audit.action]
    per_pair = [{"prompt_id": v.pid, "split": v.split, "chosen_model": v.chosen_model,
                 "rejected_model": v.rejected_model, "chosen_key": v.chosen_key, "rejected_key": v.rejected_key,
                 "audited": v.pid in audited, "checks": ran[v.pid], "reversed_by": reversed_by[v.pid],
                 "flags": flags.get(v.pid, []),
                 "action": done if flags.get(v.pid) else "kept"} for v in views]
    report = {"seed": seed, "mode": mode, "action": audit.action, "flag_when": audit.flag_when, "applied": counts,
              "flagged": flagged, "flag_on": list(audit.flag_on), "measures": measures, "pairs": per_pair}
    tmp = folder / "audit.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(folder / "audit.json")
    bars(audit, measures)
    summary = {k: v for k, v in report.items() if k != "pairs"}
    return out, summary
