"""Rehearsal: run a shipped recipe or pipeline for real on the CPU, with only its heavy parts swapped.

Every stage, key, split name, column, chat template, benchmark and hand-off of the real recipe runs through the
same code as a real run (compose, validate, the worker, TRL, the judges, the report). What cannot run here is
replaced by a small stand-in of the same kind, and every replacement is printed and recorded in the rehearsal
folder (``rehearsal.json``, ``REHEARSAL.md``):

- a hub model becomes a tiny random model of the same architecture family (its ``model_type``), with the
  embedded tokenizer and the template the real model would use (its own, from the shipped twin, when the recipe
  keeps the tokenizer's template; else the recipe's), and the real model's context length;
- a hub dataset becomes a few rows in the same schema, under the same split names and column names;
- API generators become the embedded teacher program, served ones (``serve:``) a transformers generator on a
  stand-in of the model they serve, API judges the embedded judge programs (an AI-feedback judge asked with a
  ``protocol`` keeps it: the program's ``chat(messages)`` plays the chat model, so the protocol's own requests,
  parsing and critiques run);
- a benchmark's public files become a few questions in the same formats, and its sizes shrink (each benchmark
  says how: ``Benchmark.standin``); lm-eval tasks run ARC-schema stand-in questions (the harness, its few-shot
  path and the scoring are real);
- training stops after a few optimizer steps, and the hardware profile runs as ``cpu``; the real profile's
  launcher files (accelerate, DeepSpeed, sbatch) are still written and parsed, beside the stage, as a dry run.

It answers "will this recipe get through every stage and hand-off?", not "how good will it be".
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import time
from pathlib import Path

from .. import benchmarks, stages
from ..core import runfolder
from ..core.catalog import producing_recipe
from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..core.schema import HardwareConfig, defaults_of
from ..data import kinds
from ..data.kinds import RowKind
from ..embedded import builtin
from ..feedback import judge_registry
from ..feedback.specs import served_model
from . import dryrun, launch, pipeline, pipespec, plan
from .compose import compose
from .standins import NEW_TOKENS, ROWS, build_model, write_data
from .validate import validate

log = logging.getLogger("zephyr_recipes")

STEPS = 2  # optimizer steps per training stage
# The template each well-known hub model's tokenizer carries, as the shipped template that renders like it.
OWN_TEMPLATES = {"alignment-handbook/zephyr-7b-sft-full": "zephyr", "HuggingFaceH4/zephyr-7b-beta": "zephyr",
                 "HuggingFaceH4/mistral-7b-sft-beta": "zephyr", "mistralai/Mistral-7B-Instruct-v0.2": "mistral-instruct",
                 "meta-llama/Llama-2-7b-chat-hf": "zephyr", "meta-llama/Llama-3.2-1B-Instruct": "llama-3.2",
                 "Qwen/Qwen2.5-0.5B-Instruct": "chatml", "Qwen/Qwen2.5-1.5B-Instruct": "chatml"}


def _is_hub(name) -> bool:
    if not isinstance(name, str) or not name or builtin.is_builtin(name) or name == "none":
        return False
    if name.startswith(("./", "../", "/", "~")) or Path(name).expanduser().exists():
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None


def _missing_run_folder(path, depth: int = 0) -> tuple[str, str, str | None] | None:
    """(producing recipe, the hub model its chain starts from, the template it trains with) for a local run folder
    of a shipped recipe that is not here yet (./runs/smollm2-360m-dpo: smollm2-360m/dpo, SmolLM2-360M, smollm2)."""
    if depth > 5 or not isinstance(path, str) or not path.startswith(("./", "../", "/", "~")) \
            or Path(path).expanduser().exists():
        return None
    producer = producing_recipe(Path(path).expanduser())
    if not producer:
        return None

    try:
        raw, _, _ = compose(producer[0], [])
    except ZephyrError:
        return None
    model = raw.get("model") or {}
    name, template = model.get("name_or_path"), model.get("chat_template")
    earlier = _missing_run_folder(name, depth + 1)
    if earlier:
        return producer[0], earlier[1], template or earlier[2]
    return producer[0], str(name) if _is_hub(name) else "mistralai/Mistral-7B-v0.1", template


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "--", name)


class Rehearsal:
    """The stand-ins of one rehearsal, built once under ``root`` and reused by every stage."""

    def __init__(self, root: Path, steps: int = STEPS):
        self.root, self.steps = root, steps
        self.swaps: dict[str, list[str]] = {}
        self.parity: dict[str, list[str]] = {}  # stage -> the token-parity check's lines
        self._stage = "?"

    def note(self, text: str) -> None:
        self.swaps.setdefault(self._stage, []).append(text)

    # ------------------------------------------------------------------------------------------- models
    def model(self, name: str, template: str | None = None, own: str | None = None, key: str | None = None) -> str:
        """The stand-in folder of hub model ``name``: a tiny random model of its family. ``template``: the shipped
        template the recipe trains it with, if any; ``own``: the template its tokenizer carries (a run folder's);
        ``key``: the stand-in's name when it is not the hub id's."""
        folder = self.root / "stand-ins" / "models" / _safe(key or name)
        if (folder / "config.json").is_file():
            return str(folder)
        try:
            real, source = plan.config_of(name)
        except ZephyrError:
            real, source = {"model_type": "mistral"}, "unknown shape: Mistral family assumed"
        own = own or OWN_TEMPLATES.get(name) or ("smollm2" if "SmolLM2" in name and "Instruct" in name else None)
        try:
            build_model(folder, real, own, template)
        except ZephyrError:
            raise
        except Exception as exc:  # noqa: BLE001 - transformers' own message names the field
            raise ZephyrError(f"cannot build a stand-in for {name} ({real.get('model_type')}): {exc}",
                              "rehearse with model.name_or_path pointing at a local model of that family") from None
        self.note(f"model {name} -> {folder} (tiny random {real.get('model_type', 'mistral')}, embedded tokenizer"
                  f"{f', its own template as the shipped {own}' if own else ', no template of its own'}; shape from "
                  f"{source})")
        return str(folder)

    # ------------------------------------------------------------------------------------------- data
    def dataset(self, path, train: str, test: str | None, columns: dict, rows_kind: RowKind | None) -> str | None:
        """The stand-in folder, with the same splits and columns, of dataset ``path`` (of the dataset section or a
        mixture entry) when it is a hub dataset or another recipe's run folder that is not here; else None."""
        missing = _missing_run_folder(path)
        if not _is_hub(path) and not missing:
            return None
        splits = [s for s in (train, test) if s]
        folder = self.root / "stand-ins" / "data" / _safe(f"{path}-{'-'.join(splits)}")
        if not (folder / "data").is_dir():
            write_data(folder, splits, rows_kind, columns)
        self.note(f"dataset {path} -> {folder} ({ROWS} rows of {(rows_kind or kinds.PROMPTS).name} in splits "
                  f"{', '.join(splits)})")
        return str(folder)

    # ------------------------------------------------------------------------------------------- specs
    def generator(self, gen: dict, where: str) -> dict:
        kind = gen.get("type")
        keep = {k: gen[k] for k in ("name", "num_completions", "sampling") if k in gen}
        if kind == "vllm":
            model = self._local_or_standin(gen.get("model"), where)
            self.note(f"{where}: vLLM serving {gen.get('model')} -> transformers on {model}")
            return {**keep, "type": "transformers", "model": model, "batch_size": 8}
        if kind == "openai" and gen.get("serve"):
            model = gen.get("model") if gen.get("model") and not _is_hub(gen.get("model")) else \
                served_model(gen["serve"]) or gen.get("model")
            model = self.model(str(model)) if _is_hub(model) else model
            self.note(f"{where}: served `{gen['serve']}` -> transformers on {model}")
            return {**keep, "type": "transformers", "model": model, "batch_size": 8}
        if kind == "openai":
            self.note(f"{where}: {gen.get('model')} at {gen.get('base_url')} -> the embedded teacher program")
            return {**keep, "type": "function", "function": "zephyr_recipes.embedded.tasks:teacher"}
        if kind == "transformers":
            return {**gen, "model": self._local_or_standin(gen.get("model"), where), "batch_size": 8}
        return gen

    def _local_or_standin(self, name, where: str):
        """A hub model's stand-in, or a stand-in for a run folder of another recipe that is not here."""
        missing = _missing_run_folder(name)
        if missing:
            self.note(f"{where}: {name} (the run folder of {missing[0]}, not here) -> a stand-in of {missing[1]}")
            return self.model(missing[1], own=missing[2], key=f"{missing[0]}-output")
        return self.model(name) if _is_hub(name) else name

    def judge(self, judge: dict | None, where: str, module: str) -> dict | None:
        if not judge:
            return judge
        if judge_registry.rehearsal(judge, _is_hub):  # it calls out, or loads a hub model
            if judge.get("protocol"):  # asked the same way: the program plays the chat model (its chat(messages))
                self.note(f"{where}: {judge.get('type')} {judge.get('model')} -> the embedded judge program ({module}),"
                          f" asked with protocol {judge['protocol']}")
                return {"type": "function", "module": module,
                        **{k: judge[k] for k in ("protocol", "sampling", "max_retries") if judge.get(k) is not None}}
            self.note(f"{where}: {judge.get('type')} {judge.get('model')} -> the embedded judge program ({module})")
            return {"type": "function", "module": module}
        if judge.get("model"):
            return {**judge, "model": self._local_or_standin(judge["model"], where)}
        return judge

    # ------------------------------------------------------------------------------------------- a stage
    def stage_config(self, cfg: dict, stage_name: str) -> dict:
        """The rehearsal's version of one validated stage config: a copy of the mapping with the stand-ins written
        in (read from its typed recipe)."""

        self._stage = stage_name
        stage = stages.of(cfg)
        recipe = stage.recipe(cfg)
        staged = copy.deepcopy(cfg)  # what is written: the same mapping, its heavy parts swapped
        hw = recipe.hardware
        if hw.name != "cpu" or hw.device != "cpu":
            self.note(f"hardware {hw.name} -> cpu (its launcher files are written and checked in launchers/)")
        staged["hardware"] = {**defaults_of(HardwareConfig), "name": "cpu", "device": "cpu", "precision": "fp32",
                              "gradient_checkpointing": hw.gradient_checkpointing, "lora": copy.deepcopy(hw.lora)}
        staged["model"] = {**staged["model"], **self._model(recipe, stage.reads_model(recipe))}
        if stage.rows is not None:
            data = staged["dataset"]
            for entry in data.get("mixture") or []:  # mixture entries are free-form mappings
                folder = self.dataset(entry.get("path"), entry.get("train_split") or entry.get("split") or "train",
                                      entry.get("test_split"), entry.get("columns") or {}, stage.rows)
                if folder:
                    entry["path"] = folder
            ds = recipe.dataset
            folder = self.dataset(ds.path, ds.train_split or "train", ds.test_split, ds.columns or {}, stage.rows)
            if folder:
                data["path"] = folder
        st, written = recipe.stage, staged["stage"]
        if isinstance(stage, stages.TrainerStage):
            if st.trainer.get("max_steps") != self.steps:
                written["trainer"] = {**written["trainer"], "max_steps": self.steps}
                self.note(f"stage.trainer.max_steps -> {self.steps}")
            ref_model = getattr(st, "ref_model", None)
            if ref_model is not None and _is_hub(ref_model):
                written["ref_model"] = self.model(ref_model)
        if hasattr(st, "generators"):
            written["generators"] = [self.generator(gen, f"generator {gen.get('name') or i}")
                                     for i, gen in enumerate(written["generators"] or [])]
            self._cap_prompts(recipe, staged["dataset"])
            written["judge"] = self.judge(written.get("judge"), "judge", "zephyr_recipes.embedded.standin_judge")
            written["sampling"] = {**getattr(st, "sampling", {}), "max_new_tokens": NEW_TOKENS}
        if hasattr(st, "benchmarks"):
            self._benchmarks(st.benchmarks, written)
        return staged

    def _model(self, recipe: Recipe, reads_model: bool) -> dict:
        """The model section's keys that change: hub models (and run folders of other recipes that are not here,
        for a stage that loads the model) become their stand-ins."""
        model = recipe.model
        name = model.name_or_path
        missing = _missing_run_folder(name)
        if missing and reads_model:  # a run folder of another recipe, not made here
            self.note(f"model {name} (the run folder of {missing[0]}, not here) -> a stand-in of "
                      f"{missing[1]} carrying the template that recipe trains with ({missing[2] or 'its own'})")
            name = self.model(missing[1], model.chat_template, own=missing[2], key=f"{missing[0]}-output")
        if _is_hub(name):
            name = self.model(name, model.chat_template)
        out = {"name_or_path": name}
        if _is_hub(model.tokenizer_name_or_path):
            out["tokenizer_name_or_path"] = name
        return out

    def _cap_prompts(self, recipe: Recipe, data: dict) -> None:
        """At most 8 prompts (``data``: the dataset section written), unless the stage starts at an offset."""
        limit = recipe.dataset.max_train_samples
        n = 8 if not getattr(recipe.stage, "prompt_offset", None) else limit
        if limit != n:
            data["max_train_samples"] = n
            self.note(f"dataset.max_train_samples -> {n} prompts")

    def _benchmarks(self, names: list[str], written: dict) -> None:
        """Stand-in judges and files for the chosen benchmarks (``written``: the stage section, rewritten in
        place; a benchmark's own section is a mapping of its keys here, which the benchmark rewrites:
        :meth:`~zephyr_recipes.benchmarks.Benchmark.standin`)."""
        lexical = "zephyr_recipes.embedded.lexical_judge"
        written["judge"] = self.judge(written.get("judge"), "stage.judge", lexical)
        standins = benchmarks.Standins(self.root / "stand-ins" / "eval", _remote, NEW_TOKENS)
        for name in names:
            sec = written.get(name)
            if not isinstance(sec, dict):
                continue
            if "judge" in sec:
                sec["judge"] = self.judge(sec["judge"], f"stage.{name}.judge", lexical)
            for line in benchmarks.get(name).standin(sec, standins):
                self.note(line)


def _remote(spec) -> bool:
    return isinstance(spec, str) and (spec.startswith(("http://", "https://", "hf://")) or _is_hub(spec))


# ----------------------------------------------------------------------------------------------- driver
def parity_lines(recipe: Recipe, produced: dict, where: str) -> list[str]:
    """The token-parity check of a rehearsed stage (its stand-ins carry the real templates); printed, and a
    ZephyrError on a mismatch."""
    from . import parity  # lazy: start-up

    lines = parity.run_check(recipe, stages.of(recipe), produced, f"stage {where}")
    for line in lines:
        print(f"{where}: {line}", file=sys.stderr)
    return lines


def default_folder(recipe: str) -> Path:
    return Path("runs") / "rehearsal" / _safe(Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe)


def run(recipe: str, overrides: list[str], out: Path | None = None, steps: int = STEPS,
        argv: list[str] | None = None) -> Path:
    """Rehearse ``recipe`` (a stage or a pipeline) into ``out``; returns the folder."""

    out = Path(out or default_folder(recipe))
    out.mkdir(parents=True, exist_ok=True)
    reh = Rehearsal(out.resolve(), steps)
    argv = argv or ["zephyr-recipes", "rehearse", recipe, *overrides]
    started, outcome, error = time.time(), "complete", None
    loaded = pipespec.load(recipe, [*overrides, f"pipeline.output_dir={out / 'pipeline'}"]) \
        if pipespec.load(recipe, overrides) else None
    known: dict = {}
    tokens: dict = {}  # the token-parity check of each stage, before it loads any weights
    try:
        if loaded:
            spec, name, path = loaded

            def transform(st: dict, rname: str, checked: Recipe) -> dict:
                dryrun.dry_run(checked, rname, argv, out / "launchers" / st["name"], known)
                staged = reh.stage_config(checked.config, st["name"])  # validated again by the pipeline
                reh.parity[st["name"]] = parity_lines(stages.of(staged).recipe(staged), tokens, st["name"])
                return staged

            pipeline.run(spec, path, argv=argv, transform=transform)
        else:
            raw, name, _ = compose(recipe, [*overrides, f"run.output_dir={out / 'run'}"])
            checked = validate(raw, name)
            dryrun.dry_run(checked, name, argv, out / "launchers" / "run", known)
            staged = validate(reh.stage_config(checked.config, "run"), name)
            reh.parity["run"] = parity_lines(staged, tokens, "run")
            launch.execute(staged, name, argv)
    except ZephyrError as exc:
        outcome, error = "failed", str(exc)
        raise
    finally:
        record = {"recipe": recipe, "overrides": overrides, "outcome": outcome, "error": error,
                  "seconds": round(time.time() - started, 1), "steps_per_training_stage": steps,
                  "swapped": reh.swaps, "token_parity": reh.parity}
        runfolder.write_atomic(out / "rehearsal.json", json.dumps(record, indent=2) + "\n")
        runfolder.write_atomic(out / "REHEARSAL.md", render(record))
    return out


def render(record: dict) -> str:
    lines = [f"# Rehearsal of {record['recipe']}", "",
             f"Outcome: **{record['outcome']}** in {record['seconds']} s on the CPU"
             + (f": {record['error']}" if record["error"] else "") + ".", "",
             "Everything else is the recipe's own. What was swapped, per stage:", ""]
    for stage, swaps in record["swapped"].items():
        lines.append(f"## {stage}")
        lines += [f"- {s}" for s in swaps] + [""]
    return "\n".join(lines)
