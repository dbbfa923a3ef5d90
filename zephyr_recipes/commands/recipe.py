"""The commands that read a recipe without running it: ``show``, ``validate``, ``list``, ``cp`` and ``preview``."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..core.errors import ZephyrError

if TYPE_CHECKING:
    from ..core.recipe import Recipe
    from ..core.schema import TrainerStageConfig


def compose_any(recipe: str, overrides: list[str], deep: bool = True) -> tuple[Recipe | dict, str]:
    """(the checked recipe, its name) of a single stage; of a pipeline, ``{"pipeline": spec}`` whose stages each
    hold their checked recipe under ``config`` (:func:`as_mapping` gives the mappings)."""
    from ..runtime import pipespec  # lazy: start-up
    from ..runtime.compose import compose  # lazy: start-up
    from ..runtime.validate import validate  # lazy: start-up

    loaded = pipespec.load(recipe, overrides)
    if loaded:
        from ..runtime import pipeline  # lazy: start-up (a pipeline's stages; a single recipe needs none of it)

        spec, name, path = loaded
        planned = pipeline.stage_configs(spec, path.parent, deep=deep)
        pipeline.check_references(spec, planned)
        stages = [{"name": st["name"], "recipe": rname, "config": checked} for st, rname, checked in planned]
        return {"pipeline": {**spec, "stages": stages}}, name
    raw, name, path = compose(recipe, overrides)
    return validate(raw, name, deep=deep), name



def is_pipeline(cfg: Recipe | dict) -> bool:
    """Whether :func:`compose_any` composed a pipeline (a mapping) rather than a single stage (a recipe)."""
    return isinstance(cfg, dict)



def as_mapping(cfg: Recipe | dict) -> dict:
    """What :func:`compose_any` returned as plain mappings (the checked configs, as config.yaml holds them): what is
    shown, and what the trust gate, the secret routes and the warnings read (they also read raw pipelines)."""
    if not is_pipeline(cfg):
        return cast("Recipe", cfg).config
    spec = cast(dict, cfg)["pipeline"]
    return {"pipeline": {**spec, "stages": [{**st, "config": st["config"].config} for st in spec["stages"]]}}



def single_stage(cfg: Recipe | dict, recipe: str, command: str) -> Recipe:
    """The single stage's recipe, or an error when ``cfg`` is a pipeline."""
    if is_pipeline(cfg):
        raise ZephyrError(f"{recipe} is a pipeline recipe, and `{command}` takes a single stage",
                          f"name one of its stages' recipes (e.g. zephyr-recipes {command} tiny/sft)")
    return cast("Recipe", cfg)



def cmd_show(args) -> int:
    from ..core import greedy, trust  # lazy: start-up
    from ..core.safety import secret_routes  # lazy: start-up
    from ..runtime.pipespec import dump  # lazy: start-up

    cfg, _ = compose_any(args.recipe, args.overrides, deep=False)
    shown = as_mapping(cfg)
    code = trust.describe(shown) + secret_routes(shown)
    if code:
        sys.stdout.write("# code this recipe runs, and where its secrets go:\n"
                         + "".join(f"#   {line}\n" for line in code))
    sys.stdout.write("".join(f"# warning: {line}\n" for line in greedy.warnings(shown)))
    if args.explain and not is_pipeline(cfg):
        from .. import stages  # lazy: start-up
        from ..core.schema import explained  # lazy: start-up

        sys.stdout.write(explained(shown, stages.of(cfg).schema))
        return 0
    sys.stdout.write(dump(shown))
    return 0



def cmd_validate(args) -> int:
    from .. import stages  # lazy: start-up
    from ..core import greedy, trust  # lazy: start-up
    from ..core.logs import setup_logging  # lazy: start-up
    from ..core.safety import secret_routes  # lazy: start-up
    from ..runtime import checkmemo, parity, preflight  # lazy: start-up

    cfg, name = compose_any(args.recipe, args.overrides)
    shown = as_mapping(cfg)
    code = [f"code: {line}" for line in trust.describe(shown)] + secret_routes(shown)
    code += [f"warning: {line}" for line in greedy.warnings(shown)]
    network = not args.no_preflight
    if is_pipeline(cfg):
        produced: set[str] = set()
        checked = []
        tokens: dict = {}  # the token-parity check: run folder -> the tokenizer its stage saves there
        oks = []  # printed last, once every stage passed
        for st in cast(dict, cfg)["pipeline"]["stages"]:
            recipe = st["config"]
            stage = stages.of(recipe)
            checked += [f"{st['name']}: {line}" for line in
                        parity.run_check(recipe, stage, tokens, f"stage {st['name']}")]
            try:
                checked += [f"pre-flight: {st['name']}: {line}" for line in
                            preflight.run(recipe, stage, network=network, produced=produced, strict=False)]
            except ZephyrError as exc:
                raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
            produced.add(str(recipe.run.output_dir))
            oks.append(f"ok: {name} stage {st['name']}: {recipe.stage.name} of {recipe.model.name_or_path} -> "
                       f"{recipe.run.output_dir}")
        print("\n".join(code + checked + oks))
        return 0
    if code:
        print("\n".join(code))
    recipe = cast("Recipe", cfg)
    stage = stages.of(recipe)
    # The slow checks (a tokenizer and the data loaded) are remembered while nothing they read changes.
    memo_key = checkmemo.key(recipe, args.rows, sys.stdout.isatty())
    memo = None if args.recheck else checkmemo.recall(memo_key)
    if memo is not None:
        setup_logging()
        print(f"remembered: the checks below passed at {memo['at']} with this config, code and files "
              "(validate --recheck checks them again)")
        checkmemo.replay(memo)
    else:
        with checkmemo.recording() as printed:
            if isinstance(stage, stages.TrainerStage) and stage.rows is not None:
                _check_template(recipe, stage.rows, args.rows)
            print("\n".join(parity.run_check(recipe, stage)))
        checkmemo.remember(memo_key, printed.copy.getvalue(), printed.logged)
    for line in preflight.run(recipe, stage, network=network, strict=False):
        print(f"pre-flight: {line}")
    if not network:
        print("pre-flight: keys, endpoints and local paths not checked (--no-preflight)")
    # Last, once every check above has passed.
    print(f"ok: {name} ({recipe.stage.name} of {recipe.model.name_or_path} on {stage.reads(recipe)}, "
          f"hardware {recipe.hardware.name}) -> {recipe.run.output_dir}")
    return 0



def _unavailable_here(path: str, locate) -> bool:
    """A hub dataset (offline) or a local path that does not exist on this machine (a recipe from elsewhere)."""
    try:
        return locate(path)[0] == "hub"
    except ZephyrError:
        return True



def _check_template(recipe: Recipe[TrainerStageConfig], rows_kind, limit: int) -> None:
    """Render real rows (of ``rows_kind``, the stage's :class:`~zephyr_recipes.data.kinds.RowKind`) of the recipe's
    data through the chat template the run will use, and show one."""
    from ..core.logs import setup_logging  # lazy: start-up
    from ..data import load_for_stage  # lazy: start-up
    from ..data.preview import render  # lazy: start-up
    from ..data.sources import locate  # lazy: start-up
    from ..model import chat_format, modeling  # lazy: start-up
    from ..stages.training import without_unused_test_data  # lazy: start-up

    setup_logging()
    if recipe.model.trust_remote_code:
        print("chat template: not checked here (model.trust_remote_code: validate runs no code of the model's own); "
              "the run checks it, after --trust-recipe-code")
        return
    try:
        tokenizer = modeling.open_tokenizer(recipe.model)
    except ZephyrError as exc:
        print(f"chat template: not checked here ({exc.problem}); the run checks it before loading weights")
        return
    record: dict = {}
    assistant_only = bool(recipe.stage.trainer.get("assistant_only_loss"))
    modeling.prepare_tokenizer(tokenizer, recipe.model, assistant_only, record)
    t = record["chat_template"]
    print(f"chat template: {t['name']} ({t['source']}); pad token {record['pad_token']['pad_token']!r}")
    try:
        train, _, _ = load_for_stage(without_unused_test_data(recipe), tokenizer, rows_kind)
    except ZephyrError as exc:
        paths = [m.get("path") for m in recipe.dataset.mixture or []] or [recipe.dataset.path]
        if not any(p and _unavailable_here(p, locate) for p in paths):
            raise  # local data that is there and that the run could not read either
        print(f"rows: not checked here ({exc.problem}); the run checks them before loading weights")
        return
    rows = chat_format.check_rows(tokenizer, train, rows_kind, assistant_only, limit=limit)
    chat_format.refuse(rows, t["name"])
    print(chat_format.explain(rows))
    if len(train):
        row = train[0]
        pairs = next(iter(rows_kind.tokenize(tokenizer, row, recipe.stage.trainer).values()))
        color = sys.stdout.isatty()
        legend = "trained text in green" if color else "[[trained]] text, the rest masked"
        print(f"first row as the trainer sees it ({legend}):\n{render(tokenizer, pairs, color)}")



def cmd_list(args) -> int:
    import yaml

    from ..core.catalog import RECIPES_DIR, list_options, list_recipes  # lazy: start-up

    print("recipes:")
    for name in list_recipes():
        try:
            doc = yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text()) or {}
            info = doc.get("recipe") or doc.get("pipeline") or {}
        except Exception:
            info = {}
        print(f"  {name:<28} {info.get('description', '')}")
    print("\nconfig groups (pick one with group=option):")
    for group, options in list_options().items():
        print(f"  {group:<10} {', '.join(options)}")
    from .. import benchmarks, stages  # lazy: start-up

    def origin(registry, name: str) -> str:
        where = registry.origin(name)
        return "" if where == "built in" else f" (from {where})"

    print("\nstages (stage.name; `zephyr-recipes show RECIPE` prints every key of a stage with its default):")
    for name in stages.names():
        print(f"  {name:<10} {stages.get(name).summary}{origin(stages.REGISTRY, name)}")
    print("\nbenchmarks (stage.benchmarks of an eval recipe, e.g. tiny/eval):")
    for name in benchmarks.names():
        print(f"  {name:<14} {benchmarks.get(name).title}{origin(benchmarks.REGISTRY, name)}")
    from ..data import kinds  # lazy: start-up

    print("\nrow kinds (what one prepared row of a stage's data is; docs/row-kinds.md):")
    for name in kinds.KINDS.names():
        kind = kinds.get(name)
        print(f"  {name:<10} {', '.join(kind.columns)}: {kind.summary}{origin(kinds.KINDS, name)}")
    return 0



def cmd_cp(args) -> int:
    from ..runtime.compose import find_recipe  # lazy: start-up

    src, _ = find_recipe(args.recipe)
    dest = Path(args.dest)
    if dest.exists():
        raise ZephyrError(f"{dest} already exists", "choose another destination; nothing was overwritten")
    shutil.copyfile(src, dest)
    print(f"copied {src.name} to {dest}; run it with `zephyr-recipes {dest}`")
    return 0



def cmd_preview(args) -> int:
    from .. import stages  # lazy: start-up
    from ..core.logs import setup_logging  # lazy: start-up
    from ..data.preview import preview  # lazy: start-up
    from ..model import modeling  # lazy: start-up

    setup_logging()
    cfg, _ = compose_any(args.recipe, args.overrides)
    recipe = single_stage(cfg, args.recipe, "preview")
    from ..core import trust  # lazy: start-up

    trust.allow(args.trust_recipe_code)
    stage = stages.of(recipe)
    # The tokenizer may be the model's own code; trust reads config mappings (it also reads raw pipelines).
    trust.check({"model": dataclasses.asdict(recipe.model)})
    if args.examples < 0 or args.sample < 1:
        raise ZephyrError("-n must be 0 or more and --sample at least 1", "e.g. -n 3 --sample 2000")
    tokenizer = modeling.load_tokenizer(recipe.model)
    color = {"auto": None, "always": True, "never": False}[args.color]
    rows = stage.rows
    if rows is None:
        raise ZephyrError(f"stage {recipe.stage.name} reads no dataset, so there are no rows to preview",
                          "preview a recipe of a stage that trains (sft, dpo, reward)")
    preview(recipe, tokenizer, rows, n=args.examples, sample=args.sample, color=color,
            out_dir=args.out or f"{str(recipe.run.output_dir).rstrip('/')}-preview")
    return 0
