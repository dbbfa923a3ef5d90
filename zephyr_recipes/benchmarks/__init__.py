"""The registry of benchmarks: one module each, defining one :class:`~.base.Benchmark` called ``BENCHMARK``.

Adding a benchmark is one module and one line below: the eval stage's schema, its checks, the run card, run.json's
summary, ``report``, the ablation and sweeps all read the benchmarks from here. The order is the order they run in
(the random streams of the earlier ones stay as they were when one is added). An installed package adds a
benchmark through the entry-point group ``zephyr_recipes.benchmarks`` (:mod:`zephyr_recipes.core.registry`); it
runs after the built-in ones.
"""

from __future__ import annotations

from ..core.errors import ZephyrError, did_you_mean
from ..core.registry import Registry
from .base import Benchmark, Context, Metric, Reference, Standins, typed_section  # noqa: F401 - the interface, re-exported

MODULES = {
    "mt_bench": "zephyr_recipes.benchmarks.mt_bench",
    "alpaca_eval": "zephyr_recipes.benchmarks.alpaca_eval",
    "alpaca_eval_2": "zephyr_recipes.benchmarks.alpaca_eval_2",
    "arena_hard": "zephyr_recipes.benchmarks.arena_hard",
    "lm_eval": "zephyr_recipes.benchmarks.lm_eval",
    "ifeval": "zephyr_recipes.benchmarks.ifeval",
}


def _unknown(name, known: list[str]) -> tuple[str, str]:
    return f"{name!r} is not a benchmark", did_you_mean(str(name), known) or f"choose from: {', '.join(known)}"


REGISTRY: Registry[Benchmark] = Registry("benchmark", "zephyr_recipes.benchmarks", "BENCHMARK", MODULES, Benchmark,
                                         _unknown)


def names() -> list[str]:
    return REGISTRY.names()


def get(name) -> Benchmark:
    """The benchmark called ``name``, or an error listing them."""
    return REGISTRY.get(name)


def all_benchmarks() -> list[Benchmark]:
    return REGISTRY.values()


def metrics(headline_only: bool = False) -> list[tuple[Benchmark, Metric]]:
    """Every (benchmark, metric), in registry order."""
    return [(b, m) for b in all_benchmarks() for m in b.metrics if m.headline or not headline_only]


def metric(key: str) -> tuple[Benchmark, Metric]:
    """The benchmark and metric whose key is ``key``."""
    for b, m in metrics():
        if m.key == key:
            return b, m
    raise ZephyrError(f"{key!r} is not a benchmark metric",
                      did_you_mean(key, [m.key for _, m in metrics()]) or
                      f"choose from: {', '.join(m.key for _, m in metrics())}")


def value(scores: dict, key: str):
    """A metric's value in an eval run's scores.json (None when absent)."""
    bench, m = metric(key)
    return m.value(scores.get(bench.name))


def headline(scores: dict) -> dict:
    """Metric key -> value of every benchmark in an eval run's scores (run.json's summary, sweeps)."""
    out = {}
    for b in all_benchmarks():
        if scores.get(b.name):
            out.update({k: v for k, v in b.headline(scores[b.name]).items() if v is not None})
    return out
