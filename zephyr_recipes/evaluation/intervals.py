"""Uncertainty for the ablation's claims: a paired bootstrap over the evaluation's items (MT-Bench-style questions,
AlpacaEval-style instructions), crossed with a bootstrap over seeds when there are several, and the verdict a
claim gets from its interval.

A claim compares one row with another row (or a number) on one metric. Its difference is computed item by item:
the same question graded for both models in the same seed (paired), then averaged. The 95% interval is the
percentile interval of that mean over resamples that draw the items with replacement and, with several seeds,
the seeds with replacement too (every drawn seed sees the same drawn items, as every seed was evaluated on the
same held-out prompts). A claim

- **holds** when the interval is clear of the bound on the claimed side (``above``: the lower end is above 0;
  ``at_least``: at or above 0),
- **fails** when it is clear on the wrong side (``above``: the upper end is at or below 0; ``at_least``: below 0),
- is **not shown** when the interval straddles the bound.

The resampling is seeded, so a report is the same every time it is made from the same folders.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000
SEED = 0
VERDICTS = ("holds", "not shown", "fails")


def _records(path: Path) -> list[dict]:
    """A judgments store's records, the last one per key (as :class:`feedback.store.Store` reads it)."""
    got: dict[str, dict] = {}
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if isinstance(rec, dict) and "key" in rec:
            got[rec["key"]] = rec
    return list(got.values())


def items(eval_folder: Path, metric: str) -> dict[str, float] | None:
    """Per-item values of one evaluation run: ``mt_bench``, a question's mean grade over its turns; ``alpaca_eval``,
    an instruction's win (100), tie (50) or loss (0), averaged over both judging orders. Their mean is the run's
    headline figure. None when the run folder holds no judgments for the metric."""
    folder = Path(eval_folder)
    per: dict[str, list[float]] = {}
    if metric == "mt_bench":
        for rec in _records(folder / "mt_bench" / "judgments.jsonl"):
            if "score" in rec and "failure" not in rec:  # a failure's score -1 (FastChat's) is no grade
                per.setdefault(str(rec["question_id"]), []).append(float(rec["score"]))
    elif metric == "alpaca_eval":
        for rec in _records(folder / "alpaca_eval" / "judgments.jsonl"):
            if "model_preference" in rec:
                per.setdefault(str(rec["instruction_id"]), []).append(100.0 * float(rec["model_preference"]))
    else:
        raise ValueError(f"no per-item values for metric {metric!r}")
    return {k: statistics.fmean(v) for k, v in per.items()} or None


def bootstrap(diffs: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
              seed: int = SEED) -> tuple[float, float, float]:
    """(mean, low, high) of a seeds x items matrix of paired differences: the percentile interval of the mean over
    resamples of the items, crossed with resamples of the seeds when there are several rows."""
    diffs = np.asarray(diffs, dtype=float)
    if diffs.ndim == 1:
        diffs = diffs[None, :]
    n_seeds, n_items = diffs.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    chunk = max(1, 200_000 // max(1, n_seeds * n_items))
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        qi = rng.integers(0, n_items, size=(m, n_items))
        if n_seeds > 1:
            si = rng.integers(0, n_seeds, size=(m, n_seeds))
            picked = diffs[si[:, :, None], qi[:, None, :]]  # m x seeds x items
        else:
            picked = diffs[0][qi][:, None, :]
        stats[start:start + m] = picked.mean(axis=(1, 2))
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(diffs.mean()), float(low), float(high)


def verdict(low: float, high: float, strict: bool) -> str:
    """The claim's verdict from the interval of (run - bound): ``strict`` for ``above``, else ``at_least``."""
    if low > 0 or (not strict and low >= 0):
        return "holds"
    if high < 0 or (strict and high <= 0):
        return "fails"
    return "not shown"


def paired(mine: list[dict | None], theirs: list[dict | float | None]) -> np.ndarray | None:
    """The seeds x items matrix of differences: per seed, ``mine`` (items of the run) minus ``theirs`` (items of the
    other row, or a number), on the items every seed of both rows has. None when a seed lacks items."""
    seeds = [m for m in mine if m is not None]
    others = [t for t in theirs if t is not None]
    if len(seeds) < len(mine) or len(others) < len(theirs):
        return None
    common = set.intersection(*[set(m) for m in seeds], *[set(t) for t in others if isinstance(t, dict)])
    if not common:
        return None
    keys = sorted(common)
    return np.array([[m[k] - (t[k] if isinstance(t, dict) else float(t)) for k in keys]
                     for m, t in zip(seeds, others)])


def fmt(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def interval_text(mean: float, low: float, high: float, digits: int) -> str:
    return f"{fmt(mean, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"
