"""Evaluation: the benchmarks of :mod:`zephyr_recipes.benchmarks` (MT-Bench, AlpacaEval 1 and 2.0, Arena-Hard-Auto,
the Open LLM Leaderboard v1 tasks) on ``model.name_or_path``.

Step 4 of the Zephyr method. Each benchmark chosen in ``stage.benchmarks`` runs in the registry's order: the model
answers its prompts (or a benchmark's ``answers`` file holds answers another tool produced, and nothing is
generated), its judge grades or compares, and the benchmark scores by its published protocol. Answers and judgments
are appended to JSONL stores as they arrive, so a killed run started again asks neither the model nor the judge
twice. The run folder holds one folder per benchmark (its stores and its answers in the benchmark's own format),
``scores.json`` (every figure), ``radar.png`` and ``README.md``. A benchmark that could not be scored ends the stage
``failed``, with the reason, after scores.json and the card are written.

This module names no benchmark: the stage's schema, checks, card and summary come from the registry. The stage's
own keys are read typed (``recipe.stage.benchmarks``, ``recipe.stage.vllm``, ``recipe.stage.canary``), and so is
each benchmark's section once checked (``benchmarks.typed_section``; a benchmark's ``run`` reads
``ctx.section(self)``): it is typed from the mapping the config holds (``recipe.config["stage"]``), which validation
completes in place (a benchmark's ``check`` fills in what the recipe leaves null) and which holds a benchmark section
only for the benchmarks chosen (so older runs' frozen configs still match). A judge spec goes to the judge registry
as the mapping it was checked as.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, cast

from .. import benchmarks
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import StageSection, option
from ..evaluation import canary as judge_canary
from ..evaluation import plots
from ..feedback import judge_registry
from ..feedback.backends import TransformersBackend, make_backend
from ..feedback.judge_registry import check_judge, make_judge, reads_prompts
from ..feedback.serve import serving
from ..feedback.specs import JudgeSpec, VLLMGenerator, complete, load_of
from ..model import modeling
from .base import TaskStage
from .eval_card import eval_card

log = logging.getLogger("zephyr_recipes")


BENCHMARKS = tuple(benchmarks.names())


def _stage_schema() -> type:
    """The stage section: the stage's own keys and one section per registered benchmark."""
    fields: list[tuple[str, Any, Any]] = [
        ("benchmarks", list, option([b.name for b in benchmarks.all_benchmarks() if b.default],
                                    f"Which to run: {', '.join(BENCHMARKS)}.")),
        ("model_id", Optional[str], option(None, "Name of the model in answer files and reports; defaults to run.name.")),
        ("batch_size", Any, option("auto", "Generation batch size of the model under test (auto: 64 on a GPU, 32 on "
                                           "the CPU).")),
        ("judge", Optional[JudgeSpec], option(None, "The judge of every judged benchmark, unless one names its own.")),
        ("vllm", Optional[dict], option(None, "Serve the model under test with vLLM for its answers: {max_model_len, "
                                              "dtype, args, concurrency} (see `type: vllm`); null: transformers in "
                                              "this process.")),
        ("canary", judge_canary.CanaryConfig, option(judge_canary.CanaryConfig, "Before scoring, re-judge a sample of "
                                                     "published AlpacaEval judgments with the first judged benchmark's "
                                                     "judge; below the bar the card says the figures are not "
                                                     "comparable with the leaderboard's.")),
    ]
    fields += [(b.name, b.schema, option(b.schema, b.help)) for b in benchmarks.all_benchmarks()]
    cls = dataclasses.make_dataclass("EvalStageConfig", fields, bases=(StageSection,))
    cls.__doc__ = ("Evaluation of model.name_or_path: " + ", ".join(b.title for b in benchmarks.all_benchmarks()) +
                   ".\n\n    Each benchmark's sets are named by a local path, a URL, hf://datasets/<owner>/<name>/<file> "
                   "or a hub dataset id. " + ", ".join(b.name for b in benchmarks.all_benchmarks() if b.optional) +
                   " appear in the resolved config only when chosen.")
    cls.__module__ = __name__
    return cls


EvalStageConfig = _stage_schema()


def chosen(stage: Any) -> list:
    """The benchmarks the typed stage section (an ``EvalStageConfig``) chooses, in the registry's order (the order
    they run in)."""
    return [b for b in benchmarks.all_benchmarks() if b.name in stage.benchmarks]


def check_config(recipe: Recipe) -> None:
    """Complete each chosen benchmark's section and refuse what cannot run. The config's stage mapping is completed
    in place (validation types it again after): what is unset or not chosen leaves it."""
    stage, names = recipe.config["stage"], recipe.stage.benchmarks
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown or not names:
        raise ZephyrError(f"stage.benchmarks={names!r}", f"choose from: {', '.join(BENCHMARKS)}")
    if recipe.stage.canary.annotations is None:  # absent unless set, as vllm below
        stage.pop("canary", None)
    else:
        judge_canary.check(recipe.stage.canary)
    vllm = recipe.stage.vllm
    if vllm is None:  # absent unless set: older runs' frozen configs still match
        stage.pop("vllm", None)
    elif not isinstance(vllm, dict):
        raise ZephyrError(f"stage.vllm={vllm!r}", "give vLLM's options ({max_model_len: 2048}), {} for "
                          "its defaults, or null to answer in this process")
    else:
        complete({**vllm, "type": "vllm", "model": recipe.model.name_or_path}, VLLMGenerator, "stage.vllm")
    for bench in benchmarks.all_benchmarks():  # absent unless chosen: older runs' frozen configs still match
        if bench.optional and bench.name not in names:
            stage.pop(bench.name, None)
    for bench in chosen(recipe.stage):
        sec = stage[bench.name]
        bench.check(sec, stage)
        if bench.asks:
            spec = judge_spec(recipe, bench)
            if not spec:
                raise ZephyrError("the eval stage has no judge", "set stage.judge (type: function, transformers or openai)")
            check_judge(spec["type"], bench.asks, bench.title)  # what it asks, it can do
        for key in ("max_samples", "max_questions"):
            value = sec.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ZephyrError(f"stage.{bench.name}.{key}={value!r}", "give a positive number, or null for all")


def _bench_section(recipe: Recipe, bench) -> Any:
    """A chosen benchmark's checked section, typed by its schema (the stage section's field of its name)."""
    return benchmarks.typed_section(bench, getattr(recipe.stage, bench.name))


def _check_judge_ready(judge: dict) -> None:
    env = judge.get("api_key_env")  # a key any judge type declares (openai's, or a registered type's)
    if env and not os.environ.get(env):
        raise ZephyrError(f"the judge's API key variable {env} is not set",
                          f"export {env}=... before the run (keys are read from the environment only)")


def _own_judge(recipe: Recipe, bench) -> Any:
    """A chosen benchmark's own judge (stage.<benchmark>.judge, typed), or None."""
    return getattr(_bench_section(recipe, bench), "judge", None)


def judge_spec(recipe: Recipe, bench) -> dict | None:
    """A benchmark's own judge (stage.<benchmark>.judge), else the stage's, or None: the spec as the mapping it was
    checked as (``dataclasses.asdict`` of the typed spec), which the judge registry takes."""
    spec = _own_judge(recipe, bench) or recipe.stage.judge
    return dataclasses.asdict(spec) if spec is not None else None


def _stage_judge(recipe: Recipe) -> dict:
    """stage.judge as the mapping it was checked as, or {} when unset."""
    return dataclasses.asdict(recipe.stage.judge) if recipe.stage.judge is not None else {}


def _reads_prompts(recipe: Recipe, bench) -> bool:
    """Whether the benchmark's judge reads its judge prompts (checked first: its type can do what it asks)."""
    kind = cast(dict, judge_spec(recipe, bench))["type"]  # a judged benchmark has one (checked at validation)
    check_judge(kind, bench.asks, bench.title)
    return reads_prompts(kind)


def _judge(recipe: Recipe, bench, max_new_tokens: int, temperature: float = 0.0, served=None):
    """The benchmark's judge, made with its token budget and temperature (the spec's own sampling wins);
    ``served(spec, name)`` starts a judge the runner serves (type: vllm) for the rest of the stage."""
    spec = cast(dict, judge_spec(recipe, bench))  # a judged benchmark has one (checked at validation)
    if served is not None and judge_registry.served(spec):
        spec = served(spec, f"judge-{bench.name}")
    where = f"stage.{bench.name}.judge" if _own_judge(recipe, bench) is not None else "stage.judge"
    judge = make_judge(spec, recipe.hardware,
                       sampling={"temperature": temperature, "max_new_tokens": max_new_tokens},
                       where=where, checked=True)  # checked at validation, as part of the stage section
    judge.unparsable = bench.on_unparsable(_bench_section(recipe, bench))  # the benchmark's rule, not the client's
    return judge


def _backend(recipe: Recipe, served=None):
    """The model under test: in this process (transformers), or served by vLLM (stage.vllm)."""
    model, vllm = recipe.model, recipe.stage.vllm
    if vllm is not None and served is not None:
        return make_backend(served({**vllm, "type": "vllm", "model": model.name_or_path}, "model"))
    return TransformersBackend(model.name_or_path, dataclasses.asdict(model), recipe.hardware,
                               recipe.stage.batch_size)


def uses_stage_judge(recipe: Recipe) -> bool:
    """Whether a chosen judged benchmark falls back on stage.judge (none: it is unused, and not checked)."""
    return any(b.asks and _own_judge(recipe, b) is None for b in chosen(recipe.stage))


def idle_specs(recipe: Recipe) -> list[str]:
    """The judge settings under ``stage`` this config does not use: stage.judge when every chosen benchmark names
    its own, and the judges of benchmarks not chosen (their keys stay in the config, their endpoints are not
    asked)."""
    idle = [] if uses_stage_judge(recipe) else ["judge"]
    names = {b.name for b in chosen(recipe.stage)}
    idle += [f"{b.name}.judge" for b in benchmarks.all_benchmarks() if b.name not in names]
    return idle


def needs_model(recipe: Recipe) -> bool:
    """Whether the model under test is needed: not when every judged benchmark scores an answers file."""
    return any(b.uses_model(_bench_section(recipe, b)) for b in chosen(recipe.stage))


def _judge_summary(spec: dict) -> dict:
    return judge_registry.summary(spec)


def run(recipe: Recipe, folder: Path) -> dict:
    """Run the chosen benchmarks; returns the scores (also written to scores.json)."""
    model_id = cast(str, recipe.stage.model_id or recipe.run.name)  # validation names every run
    for bench in chosen(recipe.stage):
        if bench.asks:
            _check_judge_ready(cast(dict, judge_spec(recipe, bench)))
    for bench in chosen(recipe.stage):  # answer files in the wrong format stop the run before any model answers
        answers = getattr(_bench_section(recipe, bench), "answers", None)  # a benchmark without the key reads none
        if bench.asks and answers:
            bench.read_answers(answers)
    if needs_model(recipe):
        modeling.resolve_source(recipe.model.name_or_path, "model")  # a missing run folder fails here
    from transformers import set_seed

    set_seed(recipe.run.seed)  # sampled answers (writing, roleplay, AlpacaEval) are repeatable
    loaded = {}
    servers = contextlib.ExitStack()  # models the runner serves (stage.vllm, type: vllm judges), stopped at the end
    started: dict = {}

    def served(spec: dict, name: str) -> dict:
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in started:
            started[key] = servers.enter_context(serving(spec, folder, name))
        return started[key]

    def backend():  # one model for every benchmark, loaded when first needed
        if "b" not in loaded:
            loaded["b"] = _backend(recipe, served)
        return loaded["b"]

    ctx = benchmarks.Context(recipe, folder, model_id, backend,
                             make_judge=lambda bench, tokens, temperature=0.0: _judge(recipe, bench, tokens,
                                                                                      temperature, served),
                             reads_prompts=lambda bench: _reads_prompts(recipe, bench))
    with servers:
        return _run_benchmarks(recipe, folder, model_id, ctx, loaded)


def _run_benchmarks(recipe: Recipe, folder: Path, model_id: str, ctx, loaded: dict) -> dict:
    result: dict = {"model_id": model_id}
    if needs_model(recipe):  # else every answer came from a file: model.name_or_path was not used
        result["model"] = recipe.model.name_or_path
    if uses_stage_judge(recipe):  # else every judged benchmark has its own (shown in its section)
        result["judge"] = _judge_summary(_stage_judge(recipe))
    judged = [b for b in chosen(recipe.stage) if b.asks]
    canary = recipe.stage.canary  # set (validation drops an unset one from the config) when it names annotations
    if canary.annotations is not None and judged:  # the judge re-judges published verdicts before it scores anything
        result["canary"] = judge_canary.run(ctx.make_judge(judged[0], 1024), canary,
                                            " ".join(str(v) for v in
                                                     _judge_summary(cast(dict, judge_spec(recipe, judged[0])))
                                                     .values()))
    for bench in chosen(recipe.stage):
        if bench.own_model:  # a benchmark that loads the model its own way: the generator leaves memory first
            loaded.clear()
            gc.collect()
        result[bench.name] = bench.run(ctx)
        if bench.asks:
            result[bench.name]["judge"] = _judge_summary(cast(dict, judge_spec(recipe, bench)))
            result[bench.name]["unparsable"] = bench.on_unparsable(_bench_section(recipe, bench)).rule
    imported = {b.name: result[b.name]["answers_from"]["file"] for b in chosen(recipe.stage)
                if isinstance(result.get(b.name), dict) and (result[b.name].get("answers_from") or {}).get("file")}
    if imported and "model" not in result:
        result["answers_from"] = imported
    loaded.clear()
    gc.collect()
    graded = [b for b in chosen(recipe.stage) if b.asks == "grade" and (result[b.name] or {}).get("categories")]
    if graded:  # the radar of grades by category
        plots.radar({model_id: result[graded[0].name]["categories"]}, folder / "radar.png")
    return result


class Eval(TaskStage):
    """MT-Bench, AlpacaEval 1/2.0, Arena-Hard and lm-eval tasks of model.name_or_path (the benchmarks registry)."""

    name = "eval"
    schema = EvalStageConfig
    rows = None  # the benchmarks name their own sets
    result_file = "scores.json"
    finished_hint = "compare runs with `zephyr-recipes report {folder} ...`"

    def check(self, recipe: Recipe) -> None:
        check_config(recipe)

    def reads(self, recipe: Recipe) -> str:
        return ", ".join(recipe.stage.benchmarks or []) or "no benchmarks"

    def inputs(self, recipe: Recipe) -> dict:
        return {"model": recipe.model.name_or_path}

    def idle(self, recipe: Recipe) -> list[str]:
        return idle_specs(recipe)

    def reads_model(self, recipe: Recipe) -> bool:
        """Not when every benchmark scores answers another tool produced."""
        return needs_model(recipe)

    def loads(self, recipe: Recipe) -> list[dict]:
        """For the plan: the model under test answering each chosen benchmark, and each benchmark's judge."""
        out: list[dict] = []
        name = recipe.model.name_or_path
        model = {"type": "transformers", "model": name, "batch_size": recipe.stage.batch_size}
        if recipe.stage.vllm is not None:
            model = {**recipe.stage.vllm, "type": "vllm", "model": name}
        for bench in chosen(recipe.stage):
            answers, new, judged, budget = bench.workload(_bench_section(recipe, bench))
            if answers:
                out.append(load_of(f"{bench.name} answers", model, answers, new))
            if judged:
                out.append(judge_registry.judge_load(f"{bench.name} judge", cast(dict, judge_spec(recipe, bench)), judged,
                                                     budget))
        return out

    def execute(self, recipe: Recipe, folder: Path) -> dict:
        return run(recipe, folder)

    def card(self, recipe: Recipe, prov: dict, result: dict) -> str:
        return eval_card(recipe, prov, result) + "\n".join(judge_canary.card_lines(result.get("canary"))) + "\n"

    def headline(self, result: dict) -> dict:
        """Every chosen benchmark's headline figures, and its judge failures (``<benchmark>_judge_failures``)."""
        out = benchmarks.headline(result)
        for bench in benchmarks.all_benchmarks():
            if result.get(bench.name) and bench.failures_key:
                out[f"{bench.name}_judge_failures"] = bench.failures(result[bench.name])
        return out

    def unfinished(self, recipe: Recipe, result: dict) -> Optional[str]:
        """Why the run is not complete: the benchmarks that could not be scored."""
        reasons = [bench.unscored(result[bench.name] or {}) for bench in chosen(recipe.stage)]
        reasons = [r for r in reasons if r]
        return "; ".join(reasons) if reasons else None


STAGE = Eval()
