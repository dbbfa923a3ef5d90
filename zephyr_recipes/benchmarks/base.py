"""What a benchmark is, for the eval stage and everything that reads its figures.

A benchmark is one module defining one :class:`Benchmark`: its name, the schema of its ``stage.<name>`` section,
what it asks of a judge (``grade``, ``compare``, ``verdict`` or nothing), the answer files it reads precomputed,
its headline :class:`Metric` s (with their uncertainty and direction), the published :class:`Reference` rows a
reader compares with, and ``run``, which answers, judges and scores with what a :class:`Context` hands it. The
scoring arithmetic lives in :mod:`zephyr_recipes.evaluation`; a benchmark module wires it to the stage.

The eval stage, the run card, ``run.json``'s summary, ``zephyr-recipes report``, the ablation report and sweeps ask
:mod:`zephyr_recipes.benchmarks` for benchmarks and metrics; none of them names one.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from ..core.errors import ZephyrError
from ..core.recipe import Recipe, section_of
from ..feedback.judges import ASK_ONCE, Unparsable
from ..feedback.store import Store


@dataclass(frozen=True)
class Metric:
    """One headline figure of a benchmark, found in its result at ``path``.

    ``error`` is where its uncertainty is: a standard error (``uncertainty="se"``) or an interval [low, high]
    (``"ci95"``, ``"ci90"``). ``key`` is unique over all benchmarks: run.json's summary, the ablation's claims and
    sweeps name the figure by it."""

    key: str
    label: str
    path: tuple
    error: Optional[tuple] = None
    uncertainty: str = ""  # "se", "ci95", "ci90", "ci" (its level in the result's "interval") or "" (none)
    higher_is_better: bool = True
    digits: int = 2
    headline: bool = True  # kept in run.json's summary (and offered to sweeps)
    ablation_label: Optional[str] = None  # shown in the ablation report (Table 3) under this label
    ablation_digits: int = 2  # its decimals in the ablation report
    caveat: Optional[tuple] = None  # where the result says the figure is not comparable (a text, shown beside it)

    def value(self, result: dict | None):
        return _dig(result, self.path)

    def spread(self, result: dict | None):
        return _dig(result, self.error) if self.error else None

    def format(self, result: dict | None) -> str:
        """'7.34', '90.60 ± 1.03', '24.1 (90% CI 22.0 to 26.3)', or '–' when there is no value."""
        value = self.value(result)
        if not isinstance(value, (int, float)):
            return "–"
        text = f"{value:.{self.digits}f}"
        spread = self.spread(result)
        if self.uncertainty == "se" and isinstance(spread, (int, float)):
            text += f" ± {spread:.{self.digits}f}"
        elif self.uncertainty.startswith("ci") and isinstance(spread, (list, tuple)) and len(spread) == 2 \
                and all(isinstance(x, (int, float)) for x in spread):
            level = self.uncertainty[2:] or _dig(result, self.path[:-1] + ("interval",)) or "?"
            text += f" ({level}% CI {spread[0]:.{self.digits}f} to {spread[1]:.{self.digits}f})"
        caveat = _dig(result, self.caveat) if self.caveat else None
        if caveat:
            text += f" ({caveat})"
        return text


def _key(sec: Any, name: str) -> Any:
    """A key of a section whose schema may not declare it (the base class serves every benchmark's schema)."""
    return getattr(sec, name, None)


def _dig(result, path):
    for key in path or ():
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


@dataclass(frozen=True)
class Reference:
    """A published row: a model's figures (metric key -> value, or (value, standard error)), the protocol that
    made them, and where they were published."""

    model: str
    values: dict
    protocol: str
    source: str

    def result(self, benchmark: "Benchmark") -> dict:
        """The figures laid out as the benchmark's own result, so its metrics read them."""
        out: dict = {}
        for m in benchmark.metrics:
            got = self.values.get(m.key)
            if got is None:
                continue
            value, error = got if isinstance(got, (tuple, list)) else (got, None)
            _put(out, m.path, value)
            if error is not None and m.error:
                _put(out, m.error, error)
        return out


def _put(d: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        d = d.setdefault(key, {})
    d[path[-1]] = value


@dataclass
class Context:
    """What the eval stage hands a benchmark's ``run``: the frozen config as a typed :class:`Recipe`, the run folder,
    the model under test (loaded when first asked for), its name in answer files, and the benchmark's judge."""

    recipe: Recipe
    folder: Path
    model_id: str
    backend: Callable[[], Any]
    make_judge: Callable[..., Any]  # (benchmark, max_new_tokens, temperature) -> Judge
    reads_prompts: Callable[[Any], bool]  # (benchmark) -> whether its judge reads judge prompts
    extra: dict = field(default_factory=dict)

    @property
    def cfg(self) -> dict:
        """The checked config mapping (config.yaml's contents)."""
        return self.recipe.config

    def section(self, benchmark: "Benchmark") -> Any:
        """The benchmark's own section, checked and completed, as an instance of its ``schema``
        (``dataclasses.asdict`` gives the mapping back)."""
        return typed_section(benchmark, getattr(self.recipe.stage, benchmark.name))  # the eval stage's field

    def chosen(self, name: str) -> bool:
        return name in self.recipe.stage.benchmarks


def typed_section(benchmark: "Benchmark", values: Any) -> Any:
    """A benchmark's section as an instance of its ``schema``: ``values`` itself when it is one, else the checked
    mapping typed (keys it leaves out take their defaults)."""
    return section_of(benchmark.schema, values)


class Benchmark:
    """One benchmark. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    title: ClassVar[str]  # "MT-Bench", "AlpacaEval 2.0" ...
    schema: ClassVar[type]  # the dataclass of stage.<name>
    help: ClassVar[str] = ""  # one line for the stage schema's help
    asks: ClassVar[Optional[str]] = None  # what it asks a judge: grade, compare, verdict; None: no judge
    answer_format: ClassVar[Optional[str]] = None  # the precomputed answer format it reads (stage.<name>.answers)
    metrics: ClassVar[tuple] = ()  # its headline Metric s, the first being its score
    references: ClassVar[tuple] = ()  # published Reference rows
    optional: ClassVar[bool] = False  # kept in the resolved config only when chosen
    default: ClassVar[bool] = False  # in stage.benchmarks unless the recipe chooses (the Zephyr paper's three)
    failures_key: ClassVar[Optional[str]] = "failures"  # the result's count of judgments without a verdict
    own_model: ClassVar[bool] = False  # loads the model under test its own way (the shared generator leaves first)
    size: ClassVar[int] = 0  # prompts in the published set (the plan's request counts)
    turns: ClassVar[int] = 1  # answers per prompt (MT-Bench: 2 turns)
    items: ClassVar[str] = "prompts"  # what reports call its held-out prompts ("questions", "instructions")
    unparsable: ClassVar[Unparsable] = ASK_ONCE  # what happens to a judge reply without a verdict (its published rule)

    def baselines(self, result: dict | None) -> list[str]:
        """The models a result was compared against (a ``compare`` benchmark's baseline); none by default."""
        return list((result or {}).get("baseline") or []) if self.asks == "compare" else []

    def on_unparsable(self, sec: Any) -> Unparsable:
        """The benchmark's rule for a judge reply its reader cannot read (asked again, continued, or dropped); the
        stage hands it to the judge, whose own re-asks do not apply."""
        return self.unparsable

    def workload(self, sec: Any) -> tuple[int, int, int, int]:
        """For the plan: (answers the model writes, tokens per answer, judge requests, tokens per judge reply).
        ``sec``: the typed section; the keys a benchmark's schema may or may not declare are read where it has
        them."""
        full = self.prompt_count(sec)
        n = min(full, _key(sec, "max_questions") or _key(sec, "max_samples") or full)
        new = int(_key(sec, "max_new_tokens") or (_key(sec, "sampling") or {}).get("max_new_tokens") or 1024)
        answers = n * self.turns if self.uses_model(sec) else 0
        judged = n * self.turns * (2 if _key(sec, "both_orders") else 1) if self.asks else 0
        return answers, new, judged, int(_key(sec, "judge_max_new_tokens") or 1024)

    def prompt_count(self, sec: Any) -> int:
        return self.size

    def uses_model(self, sec: Any) -> bool:
        """Whether it needs the model under test: not when an answers file holds the answers."""
        return not _key(sec, "answers")

    def check(self, sec: dict, stage: dict) -> None:
        """Complete and check the section before anything loads (the schema checked keys and types): ``sec`` is the
        config's mapping, completed in place (what config.yaml then holds), and ``stage`` the stage's mapping."""

    def read_answers(self, path: str) -> tuple[Optional[str], dict]:
        """(model name, prompt key -> answer) from a precomputed answers file; refuses another format."""
        raise ZephyrError(f"{self.title} reads no answers file", f"drop stage.{self.name}.answers")

    def run(self, ctx: Context) -> dict:
        raise NotImplementedError

    def protocol(self, sec: Any, result: dict) -> str:
        """How this run's figures were made, in a few words for the report beside the published protocols; ``sec``:
        the section of the run's config.yaml as an instance of ``schema`` (keys an older run's lacks at their
        defaults)."""
        return ""

    def browse(self, runs: list[tuple[str, Path]]) -> Optional[list[dict]]:
        """Per prompt, each compared run's answers with the judge's figures and rationale, for the browsable report
        (:mod:`zephyr_recipes.evaluation.browse` describes an item); ``runs`` is [(name, eval run folder)]. None:
        nothing to browse (a benchmark without per-prompt answers)."""
        return None

    def card(self, sec: Any, result: dict) -> list[str]:
        """The run card's section: markdown lines; ``sec``: the typed section."""
        return [f"## {self.title}\n"] + [f"- {m.label}: **{m.format(result)}**" for m in self.metrics] + [""]

    def notes(self, result: dict) -> list[str]:
        """What a reader of the report must know (judge failures, skipped prompts, approximate figures)."""
        out = []
        n = self.failures(result)
        if n:
            out.append(f"{self.title}: {n} judgment(s) without a verdict (not scored)")
        src = result.get("answers_from")
        if src:
            skipped = f" ({src['missing']} prompt(s) without an answer skipped)" if src.get("missing") else ""
            out.append(f"{self.title}: answers read from {src['file']}{skipped}")
        return out

    def failures(self, result: dict) -> int:
        return int((result or {}).get(self.failures_key) or 0) if self.failures_key else 0

    def headline(self, result: dict) -> dict:
        """Metric key -> value for run.json's summary (the metrics marked headline)."""
        return {m.key: m.value(result) for m in self.metrics if m.headline}

    def unscored(self, result: dict) -> Optional[str]:
        """Why the benchmark has no score (no headline value at all), or None."""
        if any(isinstance(v, (int, float)) for v in self.headline(result).values()):
            return None
        n = self.failures(result)
        if n:
            why = result.get("first_failure") or f"see {self.name}/judgments.jsonl"
            return f"{self.title}: no score, all {n} judgment(s) failed (first: {why})"
        return f"{self.title}: no score (nothing was judged)"

    def standin(self, sec: dict, standins: "Standins") -> list[str]:
        """A rehearsal's version of the benchmark (``zephyr-recipes rehearse``): ``sec``, the section's mapping in the
        stage config the rehearsal writes, rewritten in place so that it runs on the CPU in seconds; returns the
        lines the rehearsal prints and records. By default the keys of :meth:`standin_files` whose value is not
        here (a URL, a hub id; a local path or a builtin:// set is kept) take the stand-in's, and the sizes shrink
        (:meth:`Standins.shrink`). The judges are the rehearsal's, not the benchmark's."""
        swapped = standins.swap(sec, self.standin_files(standins))
        standins.shrink(sec)
        return standins.swapped(self, swapped)

    def standin_files(self, standins: "Standins") -> dict:
        """Key of the section -> its rehearsal stand-in, a few embedded tasks written into ``standins.folder`` in the
        benchmark's public format (``standins.write``). None by default: the section's own sources are used."""
        return {}


@contextlib.contextmanager
def stores(out: Path):
    """A benchmark's answers.jsonl and judgments.jsonl, closed whatever happens."""
    answers, judgments = Store(out / "answers.jsonl"), Store(out / "judgments.jsonl")
    try:
        yield answers, judgments
    finally:
        answers.close()
        judgments.close()


def release(judge) -> None:
    """A local judge model leaves memory before the next one loads."""
    del judge
    gc.collect()


def first_failure(judgments: list[dict]) -> Optional[str]:
    for j in judgments:
        if "failure" in j:
            return str(j["failure"])[:200]
    return None


@dataclass(frozen=True)
class Standins:
    """What a rehearsal hands :meth:`Benchmark.standin`: the folder the stand-in files go in (one for every
    benchmark of the rehearsal, so two benchmarks reading the same format share a file), whether a value names
    something not here (a URL, a hub id), and the token budget of every answer."""

    folder: Path
    remote: Callable[[Any], bool]
    new_tokens: int = 16

    def write(self, name: str, text: str) -> str:
        """``folder/name`` with ``text`` (written once, atomically); its path."""
        path = self.folder / name
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return str(path)

    def swap(self, sec: dict, files: dict) -> list[str]:
        """Each key of ``files`` the section has, set to its stand-in unless it names a local file; the keys set."""
        swapped = []
        for key, value in files.items():
            if key in sec and sec[key] != value and not (isinstance(sec[key], str) and not self.remote(sec[key])):
                sec[key] = value
                swapped.append(key)
        return swapped

    def shrink(self, sec: dict) -> None:
        """The sizes every benchmark's section may have, made small: 4 questions, 10 samples (AlpacaEval's LC GLM
        fits in 5 folds), ``new_tokens`` per answer."""
        if "max_questions" in sec:
            sec["max_questions"] = 4
        if "max_samples" in sec:
            sec["max_samples"] = 10
        if "max_new_tokens" in sec:
            sec["max_new_tokens"] = self.new_tokens
        if "sampling" in sec:
            sec["sampling"] = {**sec["sampling"], "max_new_tokens": self.new_tokens}

    def swapped(self, benchmark: Benchmark, keys: list[str]) -> list[str]:
        """The line that says which of the benchmark's keys now name stand-in files (none when none does)."""
        return [f"stage.{benchmark.name}: {', '.join(keys)} -> stand-in files in {self.folder}"] if keys else []
