"""A benchmark made for the test that a new benchmark is its module and one registry line: it counts the letters
of a word (no model, no judge)."""

from dataclasses import dataclass

from zephyr_recipes.benchmarks import Benchmark, Metric
from zephyr_recipes.core.schema import option


@dataclass
class ToyConfig:
    word: str = option("toy", "The word whose letters are counted.")


class Toy(Benchmark):
    name = "toy"
    title = "Toy"
    schema = ToyConfig
    help = "Counts letters."
    optional = True
    failures_key = None
    metrics = (Metric("toy_letters", "Toy letters", ("letters",), digits=0),)

    def uses_model(self, sec):
        return False

    def run(self, ctx):
        return {"letters": len(ctx.section(self).word)}

    def protocol(self, sec, result):
        return "counts letters"


BENCHMARK = Toy()
