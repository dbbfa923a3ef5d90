"""The training loop every :class:`~.base.TrainerStage` shares, from a frozen config to a finished run folder.

Tokenizer (with the chat template checked on real rows), data, TRL's config class, model, then the stage's
trainer; guards against runs that train nothing or diverge; SIGTERM (preemption) finishes the step, saves a
checkpoint and stops; every rank saves (ZeRO-3 and FSDP gather the shards) and rank 0 writes the card.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

from .. import data
from ..core import filemodes, preempt, records, runfolder, segments
from ..core.curves import plot_curves
from ..core.errors import ZephyrError
from ..core.logs import launched_world, rank
from ..core.recipe import Recipe, as_recipe
from ..data.sources import check_split_exists
from ..embedded.builtin import cache_home
from ..model import chat_format, hardware, modeling
from ..model.trainer_fields import TrainsWithTRL

log = logging.getLogger("zephyr_recipes")


def without_unused_test_data(recipe: Recipe | dict) -> Recipe:
    """With eval_strategy 'no' (TRL's default) nothing is evaluated: neither load nor tokenize a test set.
    ``recipe``: the run's typed recipe (a checked mapping is read as one)."""
    recipe = as_recipe(recipe)
    if str(recipe.stage.trainer.get("eval_strategy", "no")) != "no":
        return recipe
    ds = recipe.dataset
    if not ds.test_split and not ds.test_fraction and not any(m.get("test_split") for m in ds.mixture or []):
        return recipe

    for src in [m for m in ds.mixture or [] if m.get("test_split")] or \
            ([dataclasses.asdict(ds)] if ds.test_split and not ds.mixture else []):
        check_split_exists(src, src["test_split"])
    log.info("no evaluation during training (eval_strategy: no): the test data is not loaded")
    mixture = [{**m, "test_split": None} for m in ds.mixture or []]
    return dataclasses.replace(recipe, dataset=dataclasses.replace(ds, test_split=None, test_fraction=None,
                                                                   mixture=mixture))


def short_run(args, rows: int) -> str | None:
    """A warning when warmup leaves fewer than 2 optimizer steps that update at the set learning rate's schedule:
    the first step of a linear warmup is taken at learning rate 0, so a 2-step run with warmup trains one step."""
    import math

    per_step = max(1, args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size))
    total = args.max_steps if args.max_steps and args.max_steps > 0 else \
        math.ceil(args.num_train_epochs * math.ceil(rows / per_step))
    warmup = args.get_warmup_steps(total)
    if not warmup:
        return None
    updating = total - 1  # step 1 of a warmup runs at learning rate 0
    if updating >= 2 and warmup < total:
        return None
    return (f"short run: {total} optimizer step(s) with {warmup} warmup step(s): step 1 runs at learning rate 0"
            f"{' and the learning rate never reaches its set value' if warmup >= total else ''}, so "
            f"{max(updating, 0)} step(s) update the weights; the last logged training loss was computed before the "
            "last update. Set stage.trainer.warmup_steps=0 or train longer for a meaningful comparison")


TRACKIO_PROJECT = "zephyr-recipes"


def tracking(trainer: dict) -> list[str]:
    """The trackers stage.trainer.report_to names."""
    value = trainer.get("report_to", "none")
    return [value] if isinstance(value, str) else list(value or [])


def tracking_store() -> Path:
    """Where trackio keeps its local database: $TRACKIO_DIR, else $ZEPHYR_RECIPES_HOME/trackio (trackio reads it
    once, when it is first imported in the process)."""
    import sys

    if "trackio.utils" in sys.modules:
        return Path(sys.modules["trackio.utils"].TRACKIO_DIR)
    return Path(os.environ.get("TRACKIO_DIR") or cache_home() / "trackio")


def dashboard_command(trainer: dict) -> str:
    return (f"TRACKIO_DIR={tracking_store()} trackio show --project "
            f"{trainer.get('project') or TRACKIO_PROJECT}")


def trainer_args(stage: TrainsWithTRL, recipe: Recipe, placement, folder: Path):
    """TRL's config object of ``stage`` for this run: the recipe's trainer values and what the runner owns."""
    import dataclasses

    cls = stage.config_class()
    fields = {f.name for f in dataclasses.fields(cls)}
    hw = recipe.hardware
    trainer = dict(recipe.stage.trainer)
    if hw.per_device_batch_size:
        trainer["per_device_train_batch_size"] = hw.per_device_batch_size
        trainer["per_device_eval_batch_size"] = hw.per_device_batch_size
    if recipe.stage.global_batch_size:
        trainer["gradient_accumulation_steps"] = hardware.gradient_accumulation(recipe, stage, launched_world())
    # FSDP checkpoints activations itself (fsdp_activation_checkpointing in the generated accelerate config);
    # the trainer's flag must then stay off.
    ckpt = hw.gradient_checkpointing and hw.strategy != "fsdp2"
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; use whichever it has.
    ckpt_key = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    if "trackio" in tracking(trainer):
        store = tracking_store()
        os.environ.setdefault("TRACKIO_DIR", str(store))  # local: never a Space unless the recipe names one
        if "project" in fields:
            trainer.setdefault("project", TRACKIO_PROJECT)
        trainer.setdefault("run_name", recipe.run.name)
    return cls(output_dir=str(folder), bf16=placement.precision == "bf16", fp16=placement.precision == "fp16",
               use_cpu=placement.device == "cpu", seed=recipe.run.seed, **{ckpt_key: ckpt}, **trainer)


def check_world(recipe: Recipe, folder: Path) -> None:
    """A run folder frozen for N processes must be started by a launcher with N processes."""
    want, got = hardware.world_size(recipe.hardware), launched_world()
    if want != got:
        raise ZephyrError(
            f"{folder} was prepared for {want} processes (hardware {recipe.hardware.name}), "
            f"and this worker runs among {got}",
            f"start it with `accelerate launch --config_file {folder / hardware.ACCELERATE_CONFIG} "
            f"-m zephyr_recipes.runtime.worker {folder}`" if want > 1 else
            f"run `python -m zephyr_recipes.runtime.worker {folder}` without a launcher")


class TrainingFailed(ZephyrError):
    """Training ran and produced nothing usable: the folder stays, marked failed, so its log can be read."""


class TrainingGuard:
    """Stops a run whose loss stays NaN or infinite, and refuses to call finished a run that trained nothing.

    Attached to the trainer as ``guard.callback``; ``verdict`` runs after training, on every rank alike.

    A run ends ``failed`` with the reason, never ``complete``, when it made no optimizer step, when its last
    logged loss is not finite, or when ``PATIENCE`` logged losses in a row were not (training stops there, so a
    diverged run does not burn the rest of its hours).
    """

    PATIENCE = 3

    def __init__(self):
        from transformers import TrainerCallback

        guard = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                guard.observe(logs or {}, control)

        self.callback = _Callback()
        self.bad_in_a_row = 0
        self.stopped_at = None

    def observe(self, logs: dict, control) -> None:
        import math

        # transformers replaces a NaN loss by the interval's mean in the logs (logging_nan_inf_filter), so the
        # gradient norm, computed on the same step and never filtered, is watched too.
        values = [logs[k] for k in ("loss", "grad_norm") if isinstance(logs.get(k), (int, float))]
        if not values:
            return
        loss = next((v for v in values if not math.isfinite(v)), values[0])
        self.bad_in_a_row = 0 if all(math.isfinite(v) for v in values) else self.bad_in_a_row + 1
        if self.bad_in_a_row >= self.PATIENCE and self.stopped_at is None:
            self.stopped_at = logs.get("epoch")
            log.error("the loss was %s for %d logged steps in a row: stopping", loss, self.bad_in_a_row)
            control.should_training_stop = True

    def verdict(self, state) -> None:
        import math

        fix = ("lower stage.trainer.learning_rate, check the data (`zephyr-recipes preview`), or for fp16 use "
               "hardware.precision=bf16; then re-run with run.overwrite=true")
        if state.global_step == 0:
            raise TrainingFailed("the run made no optimizer step, so it trained nothing",
                              "give stage.trainer.num_train_epochs > 0 or stage.trainer.max_steps > 0, and check "
                              "that the training data has rows")
        if self.stopped_at is not None:
            raise TrainingFailed(f"the loss was NaN or infinite for {self.PATIENCE} logged steps in a row "
                              f"(stopped at step {state.global_step})", fix)
        losses = [h["loss"] if math.isfinite(h.get("grad_norm", 0.0)) else float("nan")
                  for h in state.log_history if isinstance(h.get("loss"), (int, float))]
        final = [h["train_loss"] for h in state.log_history if isinstance(h.get("train_loss"), (int, float))]
        last = (losses or final or [0.0])[-1]
        if not math.isfinite(last) or (final and not math.isfinite(final[-1])):
            raise TrainingFailed(f"the training loss ended {last}: the weights are not usable", fix)


def train(stage, recipe: Recipe, folder: Path, ctx) -> Path:
    """Train ``stage`` as ``recipe`` says into ``folder``; every rank runs this."""
    resume_from, started = ctx.resume_from, ctx.started
    main_process = rank() == 0
    guard = preempt.callback().install()  # SIGTERM from here on: finish the step, checkpoint, stop
    try:
        check_world(recipe, folder)
        placement = modeling.resolve_placement(recipe.hardware)
        log.info("device: %s | precision: %s (weights %s%s) | attention: %s | hardware: %s",
                 placement.device, placement.precision, placement.weights,
                 ", 4-bit base" if placement.load_in_4bit else "", placement.attn_implementation,
                 recipe.hardware.name)
        tok_record: dict = {}
        assistant_only = bool(recipe.stage.trainer.get("assistant_only_loss"))
        tokenizer = modeling.load_tokenizer(recipe.model, assistant_only=assistant_only, record=tok_record)
        train, eval_dataset, data_info = data.load_for_stage(without_unused_test_data(recipe), tokenizer, stage.rows)
        if len(train) == 0:
            raise ZephyrError(f"no training rows are left in {recipe.dataset.path} after the row checks and filters",
                              "see the data log above for why rows were dropped (dataset.max_prompt_tokens, empty "
                              "or malformed rows), or point dataset.path at other data")
        rows = chat_format.check_rows(tokenizer, train, stage.rows, assistant_only)
        chat_format.refuse(rows, tok_record["chat_template"]["name"])
        log.info("%s", chat_format.explain(rows))
        args = trainer_args(stage, recipe, placement, folder)
        glob = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        log.info("batch: %d per device x %d accumulation x %d processes = %d global batch (sequences per step)%s",
                 args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size, glob,
                 " = stage.global_batch_size" if recipe.stage.global_batch_size == glob else "")
        hardware.enable_fsdp_on_cpu(recipe.hardware)
        model = stage.load_model(recipe.model.name_or_path, recipe, placement)
        log.info("model: %s (%.2fM parameters)", recipe.model.name_or_path,
                 sum(p.numel() for p in model.parameters()) / 1e6)
        tok_record["resized_embeddings"] = modeling.fit_embeddings(model, tokenizer)

        def load_other(name):  # the DPO reference: same placement, embeddings fitted to the same tokenizer
            other = stage.load_model(name, recipe, placement)
            modeling.fit_embeddings(other, tokenizer)
            return other

        trainer, extra = stage.build_trainer(recipe, model, tokenizer, train, eval_dataset, args, load_other)
        short = short_run(args, len(train))
        if short and main_process:
            log.warning("%s", short)
            extra["short_run"] = short
        loss_guard = TrainingGuard()
        trainer.add_callback(loss_guard.callback)
        extra["tokenizer"] = tok_record
        if "trackio" in tracking(recipe.stage.trainer):
            extra["tracking"] = {"tracker": "trackio", "store": str(tracking_store()),
                                 "project": getattr(args, "project", None) or TRACKIO_PROJECT, "run": args.run_name,
                                 "dashboard": dashboard_command({"project": getattr(args, "project", None)})}
        hw = recipe.hardware
        extra["distributed"] = {"world_size": args.world_size, "strategy": hw.strategy,
                                "launcher": hw.launcher, "nodes": hw.num_nodes,
                                "global_batch_size": glob}
        prov = records.provenance(ctx.argv, ctx.recipe, placement, data_info, extra)
        if main_process:
            records.write_json(folder / "provenance.json", prov)
        if resume_from:
            log.info("resuming from %s", resume_from)
        trainer.add_callback(guard)
        trainer.add_callback(runfolder.checkpoint_marker())
        trainer.add_callback(segments.callback(trainer, guard))  # after guard: records the segment it stops
        if main_process and (runfolder.read_status(folder) or {}).get("status") == "preempted":
            runfolder.set_status(folder, "running", resumed_from=str(resume_from) if resume_from else None)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if guard.stopped_at is not None and trainer.state.global_step < trainer.state.max_steps:
            if main_process:
                runfolder.set_status(folder, "preempted", preempted=runfolder.now(), step=guard.stopped_at,
                                     checkpoint=str(folder / f"checkpoint-{guard.stopped_at}"))
            raise preempt.Preempted(folder, guard.stopped_at)
        loss_guard.verdict(trainer.state)
        # Every rank takes part in saving (ZeRO-3 and FSDP gather the shards); the trainer writes on rank 0 only.
        hardware.gather_for_save(trainer)
        trainer.save_model(str(folder))
        if trainer.is_world_process_zero():
            _finish(stage, folder, recipe, trainer, eval_dataset, tokenizer, prov, started)
    finally:
        guard.uninstall()
    return folder


def _finish(stage, folder: Path, recipe: Recipe, trainer, eval_dataset, tokenizer, prov: dict, started: float) -> None:
    tokenizer.save_pretrained(str(folder))
    filemodes.open_to_umask(folder, "*.safetensors")  # safetensors writes 0600; the rest of the folder is 0666-umask
    history = trainer.state.log_history
    whole = segments.whole_run(history)  # a resumed run: the whole run's loss, time and speed, not the last segment's
    if whole:
        next(h for h in reversed(history) if "train_loss" in h).update(whole)
    records.write_json(folder / "log_history.json", history)
    metrics = {k: v for k, v in records.final_metrics(history).items() if not k.startswith("segment_")}
    metrics.update(stage.results(trainer, eval_dataset))
    metrics["train_wall_seconds"] = round(time.time() - started, 2)
    records.write_json(folder / "metrics.json", metrics)
    curves = plot_curves(history, recipe.stage.name, stage.curves, folder / "training_curves.png")
    (folder / "README.md").write_text(records.model_card(recipe, prov, metrics, curves, stage.card_usage(recipe),
                                                        stage.trl_config))
    for ckpt in folder.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    runfolder.set_status(folder, "complete", finished=runfolder.now(), metrics=metrics)
    log.info("finished: %s (loss %.4f -> %.4f)", folder, metrics.get("first_loss", float("nan")),
             metrics.get("last_loss", float("nan")))
    if prov.get("tracking"):
        log.info("curves: %s (trackio, local)", prov["tracking"]["dashboard"])


