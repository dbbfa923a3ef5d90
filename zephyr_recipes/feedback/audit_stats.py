"""The audit's statistics: shares with their 95% Wilson interval, seeded bootstrap intervals, Cohen's kappa, the
length coefficient of AlpacaEval's length control, and the flags' precision and recall against a known truth."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Z95 = 1.959963984540054
RESAMPLES = 1000


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
    return {"value": rounded(p), "interval": [rounded(low), rounded(high)], "n": n, "count": k}


def rounded(x: float | None) -> float | None:
    """A figure as audit.json keeps it: 4 decimals; None for a missing or non-finite one."""
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def bootstrap(stat: Callable[[np.ndarray], float], rows: np.ndarray, seed: int) -> dict:
    """A statistic of the rows with its 95% percentile interval over seeded resamples of the rows."""
    value = stat(rows)
    if len(rows) < 2 or value is None or not math.isfinite(value):
        return {"value": rounded(value), "interval": [None, None], "n": int(len(rows))}
    rng = np.random.default_rng(seed)
    got = []
    for _ in range(RESAMPLES):
        v = stat(rows[rng.integers(0, len(rows), len(rows))])
        if v is not None and math.isfinite(v):
            got.append(v)
    low, high = (np.quantile(got, [0.025, 0.975]) if got else (None, None))
    return {"value": rounded(value), "interval": [rounded(low), rounded(high)], "n": int(len(rows))}


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


def precision_recall(flagged: list[bool], truth: list[bool]) -> dict:
    """The flags scored against the truth (pairs known to be the wrong way round): precision (the share of flagged
    pairs that are wrong), recall (the share of wrong pairs flagged), and the prevalence (a flag at random has
    precision equal to it), each with its 95% Wilson interval."""
    tp = sum(f and t for f, t in zip(flagged, truth))
    return {"precision": share(tp, sum(flagged)), "recall": share(tp, sum(truth)),
            "prevalence": share(sum(truth), len(truth)), "flagged": sum(flagged), "pairs": len(truth)}
