"""The ablation's figures, read through the benchmark interface: the metrics that carry an ablation label, the
benchmark that grades answers and the one that compares them with a baseline, each figure's value and spread over
seeds, and one comparison's difference with its 95% interval and verdict (:mod:`zephyr_recipes.evaluation.intervals`).
"""

from __future__ import annotations

import re
import statistics
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import benchmarks
from ..benchmarks import Benchmark, Metric
from ..evaluation import intervals


@lru_cache(maxsize=None)
def metrics_table() -> dict:
    """The ablation's figures (Table 3): the benchmarks' metrics that carry an ablation label, by metric key. Built
    on first use: it imports every benchmark module, which a run that reports nothing does not need."""
    return {m.key: (m.ablation_label, (b.name, m.path)) for b, m in benchmarks.metrics() if m.ablation_label}



def ablation_metrics() -> list[tuple[Benchmark, Metric]]:
    """Every (benchmark, metric) of the ablation, in registry order: the columns of Table 3."""
    return [(b, m) for b, m in benchmarks.metrics() if m.ablation_label]


def _role(asks: str) -> tuple[Benchmark, Metric]:
    found = next(((b, m) for b, m in ablation_metrics() if b.asks == asks), None)
    if found is None:
        raise LookupError(f"no benchmark that asks {asks!r} has an ablation metric")
    return found


def grade() -> tuple[Benchmark, Metric]:
    """The benchmark that grades each answer and its ablation metric: the rounds' figure and the radar's."""
    return _role("grade")


def win() -> tuple[Benchmark, Metric]:
    """The benchmark that compares answers with a baseline's and its ablation metric (a win rate; 50 is a tie)."""
    return _role("compare")


def metric(key: str) -> Metric:
    """The ablation metric of this key."""
    return benchmarks.metric(key)[1]


def label(m: Metric) -> str:
    """The metric's label in the ablation: "MT-Bench-style grade (1-10)"."""
    return m.ablation_label or m.label


def short(m: Metric) -> str:
    """The metric's ablation label without its scale: "MT-Bench-style grade (1-10)" -> "MT-Bench-style grade"."""
    return re.sub(r" \([^)]*\)$", "", label(m))


def number(value, m: Metric) -> str:
    """One figure as the ablation writes it: the metric's decimals, % after a percentage, – when missing."""
    if value is None:
        return "–"
    return f"{value:.{m.ablation_digits}f}" + ("%" if m.label.endswith("%") else "")


def value_of(scores: dict, metric: str):
    return benchmarks.value(scores, metric)



def mean_sd(values: list) -> tuple[float | None, float | None]:
    got = [v for v in values if v is not None]
    if not got:
        return None, None
    return statistics.fmean(got), (statistics.stdev(got) if len(got) > 1 else None)



def cell(values: list, digits: int) -> str:
    mean, sd = mean_sd(values)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")



def item_scores(scores: dict, metric: str) -> dict | None:
    if "_items" in scores:  # a blend of two rows (a `recovers` claim's bound)
        return scores["_items"]
    return intervals.items(Path(scores["eval_folder"]), metric) if scores.get("eval_folder") else None



def compare(mine: list, theirs: list, metric: str, strict: bool, labels: list[str]) -> dict:
    """One comparison, seed by seed and pooled: the headline figures, the mean difference (mine - theirs) with its
    95% interval and verdict. ``mine`` and ``theirs`` hold one scores dict per seed; ``theirs`` may be numbers."""
    seeds = []
    for i in range(len(labels)):
        a = value_of(mine[i], metric)
        b = theirs[i] if not isinstance(theirs[i], dict) else \
            theirs[i]["_value"] if "_items" in theirs[i] else value_of(theirs[i], metric)
        seeds.append({"seed": labels[i], "value": a, "bound": None if b is None else float(b)})
    diffs = intervals.paired([item_scores(s, metric) for s in mine],
                             [t if not isinstance(t, dict) else item_scores(t, metric) for t in theirs])
    unit: str | None = benchmarks.metric(metric)[0].items
    if diffs is None:  # no per-item judgments (answers from elsewhere, or an older run): seeds only
        got = [s for s in seeds if s["value"] is not None and s["bound"] is not None]
        if not got:
            return {"verdict": None, "detail": "no figures", "per_seed": seeds}
        diffs = np.array([[s["value"] - s["bound"]] for s in got])
        unit = None  # seeds only
    out = {"per_seed": seeds, "items": diffs.shape[1], "unit": unit, "seeds": diffs.shape[0]}
    if diffs.shape[0] == 1 and diffs.shape[1] == 1:
        d = float(diffs[0, 0])
        out.update(diff=d, low=None, high=None, verdict=None,
                   detail="one seed and no per-item judgments: no interval")
        return out
    out["diff"], out["low"], out["high"] = intervals.bootstrap(diffs)
    out["verdict"] = intervals.verdict(out["low"], out["high"], strict)
    if unit is not None:
        for i, s in enumerate(seeds):
            s["diff"], s["low"], s["high"] = intervals.bootstrap(diffs[i])
            s["verdict"] = intervals.verdict(s["low"], s["high"], strict)
    return out
