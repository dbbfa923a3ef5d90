"""What a stage is: a name, the schema of its ``stage`` section, a check that runs before any weights load, and
``run(recipe, folder)``.

Two kinds cover the method. A :class:`TrainerStage` wraps one TRL trainer (dSFT, dDPO, reward modelling): the
runner loads the tokenizer, the data, the model and TRL's config class, and the stage only says which trainer to
build from them (:mod:`.training` holds the shared loop: guards, preemption, saving, the model card). A
:class:`TaskStage` does its own work in one process (AI feedback, evaluation) and returns a summary, which the
runner writes with a card and the run's status.

The worker, validation, the memory plan and the pipeline ask :mod:`zephyr_recipes.stages` for a stage by name
and read these attributes; none of them branches on a stage's name. Every method reads the run's config as a typed
:class:`~zephyr_recipes.core.recipe.Recipe` (``recipe.model.dtype``, ``recipe.stage.trainer``); ``stage.recipe(cfg)``
makes one from a checked mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..core import fingerprint, records, runfolder
from ..core.errors import ZephyrError
from ..core.recipe import Recipe, recipe_of
from ..data import kinds
from ..data.kinds import RowKind
from ..model import modeling
from .training import train


@dataclass
class RunContext:
    """What the worker knows about the launch besides the config: for provenance and resuming."""

    argv: list[str]
    recipe: str = "?"
    resume_from: Optional[Path] = None
    started: float = field(default_factory=time.time)


class Stage:
    """One step of the method. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    schema: ClassVar[type]  # the dataclass of the `stage` section (see zephyr_recipes.core.schema)
    # The kind of row its dataset section feeds (zephyr_recipes.data.kinds), or None when it reads no dataset.
    rows: ClassVar[Optional[RowKind]] = None
    one_process: ClassVar[bool] = False  # refuses hardware profiles that launch several processes

    @property
    def summary(self) -> str:
        """One line for `zephyr-recipes list`: the first line of the stage class's docstring."""
        return (type(self).__doc__ or "").strip().splitlines()[0].rstrip(".")

    def recipe(self, cfg: dict) -> Recipe:
        """A checked, resolved config as the typed recipe this stage's methods read (its stage section of
        :attr:`schema`)."""
        return recipe_of(cfg, self.schema)

    def reads(self, recipe: Recipe) -> str:
        """What the stage reads, in a few words for `validate`: its dataset or its mixture's sources."""
        ds = recipe.dataset
        if ds.mixture:
            parts = [f"{m.get('path')}[{m.get('split') or ds.train_split}] x{m.get('weight', 1)}" for m in ds.mixture]
            return "a mixture of " + " + ".join(parts)
        return f"{ds.path}[{ds.train_split}]"

    def check(self, recipe: Recipe) -> None:
        """Refuse what cannot run, after the schema checked keys and types and before anything loads."""

    def reads_model(self, recipe: Recipe) -> bool:
        """Whether the run loads model.name_or_path (the pre-flight checks that a local one exists)."""
        return True

    def idle(self, recipe: Recipe) -> list[str]:
        """Dotted keys under ``stage`` whose settings this config does not use (an unused judge): the pre-flight
        asks none of their keys, endpoints or paths."""
        return []

    # Whether a finished run folder of this stage takes a changed config (or code) and redoes only what changed,
    # reusing the rest (AI feedback); otherwise a changed config or code runs the stage anew.
    revisable: ClassVar[bool] = False

    def code_refs(self, recipe: Recipe) -> list[fingerprint.CodeRef]:
        """The code the run of ``recipe`` runs by reference (core/fingerprint.py): part of the finished stage's
        identity. By default every function generator's and judge's module (``type: function``: ``function`` or
        ``module``) and every embedded resource (``builtin://...``) the config names, wherever it names them; a
        stage that runs other code by reference adds it."""
        return code_refs_in(recipe.config)

    def judge_probes(self, recipe: Recipe) -> list[tuple[str, dict, str, str]]:
        """The judges the run asks, for the pre-flight that puts one constructed item through each before the run
        (runtime/runcheck.py): (where in the config, judge spec, what it asks: rate | grade | compare, title)."""
        return []

    def run(self, recipe: Recipe, folder: Path, ctx: RunContext) -> Path:
        raise NotImplementedError


def code_refs_in(obj, where: str = "") -> list[fingerprint.CodeRef]:
    """The function modules and embedded resources a config (or a part of one) names, with where it names them."""
    from ..embedded import builtin  # lazy: start-up

    found: list[fingerprint.CodeRef] = []
    if isinstance(obj, dict):
        if isinstance(obj.get("type"), str):  # a generator or judge: its function or module, or its type as code
            for key in ("function", "module", "type"):
                if isinstance(obj.get(key), str) and obj[key] and (key != "type" or ":" in obj[key]):
                    module = obj[key].partition(":")[0]
                    found.append(fingerprint.CodeRef(module, module=module, where=f"{where}.{key}".lstrip(".")))
        for key, value in obj.items():
            found += code_refs_in(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += code_refs_in(value, f"{where}[{i}]")
    elif builtin.is_builtin(obj):
        resource = builtin.PREFIX + str(obj)[len(builtin.PREFIX):].partition("/")[0]
        # The embedded resources are built into a cache folder named by builtin.VERSION: that version is what the
        # data and weights are, so it is their fingerprint.
        found.append(fingerprint.CodeRef(resource, version=f"v{builtin.VERSION}", where=where.lstrip(".")))
    return found


class TrainerStage(Stage):
    """A stage that trains with one TRL trainer; :meth:`build_trainer` is all a subclass must write."""

    trl_config: ClassVar[str]  # the name of the TRL config class of stage.trainer (SFTConfig, DPOConfig ...)
    trl_module: ClassVar[str] = "trl"  # the module that holds it (trl.experimental.orpo for ORPOConfig)
    curves: ClassVar[tuple[str, ...]] = ("loss",)  # logged metrics drawn in training_curves.png
    sequences_per_row: ClassVar[int] = 1  # sequences in memory per row: 2 for chosen + rejected (the plan)
    # What the trainer does with a row longer than max_length (the plan counts tokens so): "truncate" (SFT, DPO,
    # KTO cut it, and drop a row left with nothing to train on) or "drop" (the reward trainer filters it out).
    overlong: ClassVar[str] = "truncate"
    auto_model: ClassVar[str] = "AutoModelForCausalLM"  # transformers' class of the trained model
    model_options: ClassVar[dict] = {}  # for its from_pretrained (num_labels ...)
    # The time plan's model FLOPs utilisation, and the published figure it comes from.
    mfu: ClassVar[float] = 0.33
    mfu_source: ClassVar[str] = "torchtitan's Llama-3.1-8B bf16 training on H100s: 33-39%"

    def texts(self, row: dict) -> list[list[dict]]:
        """The conversations of one prepared row that go through the model (the time plan counts their tokens)."""
        assert self.rows is not None, f"stage {self.name} reads no rows"
        return list(self.rows.conversations(row).values())

    def config_class(self):
        """TRL's config class of stage.trainer: the one place it is found (validation, the plan, training)."""
        import importlib

        return getattr(importlib.import_module(self.trl_module), self.trl_config)

    def frozen_copies(self, recipe: Recipe) -> tuple[int, str | None]:
        """Frozen models held beside the trained one while training (the plan counts their weights), and a note
        for the plan when there are none for a reason."""
        return 0, None

    def load_model(self, name: str, recipe: Recipe, placement):
        return modeling.load_model(name, recipe.model, placement, self.auto_model, **self.model_options)

    def card_usage(self, recipe: Recipe) -> str:
        """The model card's "Use" section: how to load and use what the stage trained."""
        return f"""```python
from transformers import pipeline

chat = pipeline("text-generation", model="{recipe.run.output_dir}")
print(chat([{{"role": "user", "content": "Reverse the words: red green blue"}}], max_new_tokens=32)[0]["generated_text"])
```
"""

    def build_trainer(self, recipe: Recipe, model, tokenizer, train, eval_dataset, args, load_other) -> tuple[Any, dict]:
        """The TRL trainer, and facts for provenance and the card (e.g. the DPO reference)."""
        raise NotImplementedError

    def results(self, trainer, eval_dataset) -> dict:
        """Figures added to metrics.json after training (e.g. held-out accuracy)."""
        return {}

    def run(self, recipe: Recipe, folder: Path, ctx: RunContext) -> Path:
        return train(self, recipe, folder, ctx)


class PreferenceStage(TrainerStage):
    """A trainer stage on preference pairs (prompt, chosen, rejected): both answers of a row are in memory."""

    rows = kinds.PAIRS
    sequences_per_row = 2


class TaskStage(Stage):
    """A stage that does its own work in one process and returns a summary of it."""

    one_process = True
    result_file: ClassVar[str] = "summary.json"
    finished_hint: ClassVar[str] = ""  # logged after "finished: <folder>"

    def inputs(self, recipe: Recipe) -> dict:
        """What the stage reads, for provenance."""
        return {}

    def loads(self, recipe: Recipe) -> list[dict]:
        """The models the stage asks, for the plan: {role, model, how (local | served | api | function), batch,
        requests, new_tokens, spec}. Local models load one at a time."""
        return []

    def writes_rows(self, recipe: Recipe, loads: list[dict]) -> tuple[int, float] | None:
        """(training rows, tokens per row) of the dataset the stage writes, for the plan of a later stage."""
        return None

    def execute(self, recipe: Recipe, folder: Path) -> dict:
        raise NotImplementedError

    def card(self, recipe: Recipe, prov: dict, result: dict) -> str:
        raise NotImplementedError

    def headline(self, result: dict) -> dict:
        """The few figures kept in run.json."""
        return {}

    def unfinished(self, recipe: Recipe, result: dict) -> Optional[str]:
        """Why the work did not produce what it is for (the run ends failed with this reason), or None."""
        return None

    def run(self, recipe: Recipe, folder: Path, ctx: RunContext) -> Path:
        import logging

        prov = records.provenance(ctx.argv, ctx.recipe, None, self.inputs(recipe), {})
        records.write_json(folder / "provenance.json", prov)
        # wall_seconds covers every invocation of the folder (resumed, revised): earlier ones are summed in run.json.
        before = float((runfolder.read_status(folder) or {}).get("wall_seconds") or 0)
        try:
            result = self.execute(recipe, folder)
        except BaseException:  # stopped or failed: its time still counts for the next invocation
            runfolder.set_status(folder, (runfolder.read_status(folder) or {}).get("status", "failed"),
                                 wall_seconds=round(before + time.time() - ctx.started, 2))
            raise
        result["wall_seconds_this_invocation"] = round(time.time() - ctx.started, 2)
        result["wall_seconds"] = round(before + result["wall_seconds_this_invocation"], 2)
        runfolder.set_status(folder, (runfolder.read_status(folder) or {}).get("status", "running"),
                             wall_seconds=result["wall_seconds"])
        records.write_json(folder / self.result_file, result)
        (folder / "README.md").write_text(self.card(recipe, prov, result))
        reason = self.unfinished(recipe, result)
        if reason:  # the figures and the card stay for a look; the run is not complete
            runfolder.set_status(folder, "failed", summary=self.headline(result))
            raise ZephyrError(reason, f"see {folder / self.result_file} and the judgments beside it")
        runfolder.set_status(folder, "complete", finished=runfolder.now(), summary=self.headline(result))
        logging.getLogger("zephyr_recipes").info("finished: %s (%s)", folder,
                                                 self.finished_hint.format(folder=folder))
        return folder
