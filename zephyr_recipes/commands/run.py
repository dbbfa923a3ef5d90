"""The commands that run or plan a recipe: ``run`` (a stage, a pipeline, a sweep or a dry run), ``plan`` and
``rehearse``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..core.errors import ZephyrError
from .recipe import compose_any, is_pipeline

if TYPE_CHECKING:
    from ..core.recipe import Recipe


def cmd_plan(args) -> int:
    from .. import stages  # lazy: start-up
    from ..runtime import stageplan  # lazy: start-up
    from ..runtime.timeplan import render_cost  # lazy: start-up

    cfg, _ = compose_any(args.recipe, args.overrides)
    if args.price is not None and not (math.isfinite(args.price) and args.price >= 0):
        raise ZephyrError(f"--price {args.price} is not a cost (negative, nan or inf)",
                          "give the cost of one GPU-hour, e.g. --price 2.5")
    if args.mfu is not None and not 0 < args.mfu <= 1:  # NaN fails this too
        raise ZephyrError(f"--mfu {args.mfu} is not a share between 0 and 1", "e.g. --mfu 0.35")
    # A plan reads the model's shape, never its code (a custom architecture: pass --model-config).
    options = {"gpu": args.gpu, "mfu": args.mfu, "tokens_per_row": args.tokens_per_row}
    if is_pipeline(cfg):
        if args.model_config:
            raise ZephyrError("--model-config applies to a single stage", "plan the stage's recipe with it")
        planned = [(st, st["recipe"], st["config"].replaced("model", trust_remote_code=False))
                   for st in cast(dict, cfg)["pipeline"]["stages"]]
        text, refused = stageplan.pipeline_plan(planned, args.price, **options)
        print(text)
        return 1 if refused else 0
    recipe = cast("Recipe", cfg).replaced("model", trust_remote_code=False)
    sp = stageplan.stage_plan(recipe, stages.of(recipe), args.model_config, **options)
    print(sp.text)
    cost = render_cost([sp.work], args.price) if sp.work is not None and args.price is not None else []
    for line in cost:
        print(f"  total: {line}")
    return 1 if sp.kind == "no" else 0



def cmd_run(args) -> int:
    from ..core import trust  # lazy: start-up
    from ..core.logs import setup_logging  # lazy: start-up
    from ..runtime import launch, pipeline, pipespec  # lazy: start-up
    from ..runtime.compose import compose  # lazy: start-up

    setup_logging()
    trust.allow(args.trust_recipe_code)
    _stop_on_sigterm()
    argv = ["zephyr-recipes", "run", args.recipe, *args.overrides]
    if args.dry_run and args.multirun:  # before anything of the sweep runs: a dry run must never train
        raise ZephyrError("--dry-run of a sweep (-m) is not supported: it would run every point",
                          "dry-run one point of the sweep: the same command without -m and with one value per key")
    if args.multirun:
        from ..runtime import sweep  # lazy: start-up

        out = sweep.run(args.recipe, args.overrides, args.from_stage, args.only, argv[:3])
        print((out / "sweep.md").read_text().split("\n![", 1)[0].rstrip() + "\n")
        print(f"sweep folder: {out}")
        failed = [p["name"] for p in json.loads((out / "sweep.json").read_text())["points"] if p["status"] == "failed"]
        if failed:
            print(f"error: {len(failed)} point(s) failed: {', '.join(failed)} (see {out / 'sweep.md'})", file=sys.stderr)
            return 1
        return 0
    if args.dry_run:
        return _dry_run(args.recipe, args.overrides, argv)
    loaded = pipespec.load(args.recipe, args.overrides)
    if loaded:
        spec, name, path = loaded
        out = pipeline.run(spec, path, args.from_stage, args.only, argv)
        report = out / "report" / "report.md"
        if "report" in spec and not args.only and report.is_file():
            print(report.read_text().split("\n![", 1)[0].rstrip() + "\n")
            print(f"report: {report}")
        print(f"pipeline folder: {out}")
        return 0
    raw, name, path = compose(args.recipe, args.overrides)
    if args.from_stage or args.only:
        raise ZephyrError("--from and --only apply to pipeline recipes", f"{name} is a single stage; drop the flag")
    from ..runtime.validate import validate  # lazy: start-up

    folder = launch.execute(validate(raw, name), name, argv)
    if folder is None:  # submitted to the scheduler
        return 0
    print(f"run folder: {folder}")
    return 0



def _dry_run(recipe: str, overrides: list[str], argv: list[str]) -> int:
    from ..runtime import dryrun, pipeline, pipespec  # lazy: start-up

    loaded = pipespec.load(recipe, overrides)
    if loaded:
        spec, name, path = loaded
        planned = pipeline.stage_configs(spec, path.parent)
        out = Path(spec["output_dir"])
        out = out.with_name(out.name + dryrun.DRY_RUN_SUFFIX)
        known: dict = {}
        for st, rname, checked in planned:
            result = dryrun.dry_run(checked, rname, argv, out / st["name"], known)
            print(f"== stage {st['name']}\n{dryrun.render_dry_run(result)}")
        print(f"dry run of pipeline {name}: {len(planned)} stage(s) checked; files in {out}")
        return 0
    from ..runtime.compose import compose  # lazy: start-up
    from ..runtime.validate import validate  # lazy: start-up

    raw, name, _ = compose(recipe, overrides)
    print(dryrun.render_dry_run(dryrun.dry_run(validate(raw, name), name, argv)))
    return 0



def cmd_rehearse(args) -> int:
    from ..core.logs import setup_logging  # lazy: start-up
    from ..runtime import rehearse  # lazy: start-up

    setup_logging()
    if args.steps < 1:
        raise ZephyrError(f"--steps {args.steps}", "give at least 1 optimizer step per training stage")
    out = rehearse.run(args.recipe, args.overrides, Path(args.out) if args.out else None, args.steps)
    print((out / "REHEARSAL.md").read_text())
    print(f"rehearsal folder: {out}")
    return 0



class Terminated(SystemExit):
    """SIGTERM to the runner: unwinds like Ctrl-C (servers stopped, answers kept, the folder left unfinished)."""



def _stop_on_sigterm() -> None:
    """SIGTERM unwinds the run (training replaces this with its checkpoint-and-stop handler while it trains)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def on_term(signum, _frame):
            raise Terminated(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
