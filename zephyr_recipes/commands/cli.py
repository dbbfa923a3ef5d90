"""Command line front end: compose a recipe with Hydra, validate it, freeze it into a run folder, run it."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from ..core.errors import ZephyrError

# Each cmd_* handler imports the modules it runs, inside it: the only function-level imports of the package's
# own modules. Importing every command's modules up front (hydra's front end, numpy, the feedback and evaluation
# code ...) took about a second more than this module alone (0.1 s), and `list`, `show`, `--help` and a typo's
# error would all pay it; torch, transformers and datasets are imported only where a stage uses them.

EPILOG = """\
recipes are shipped names (tiny/sft, zephyr-7b-beta/dpo) or paths to any recipe YAML file.
overrides use Hydra's grammar:
  key=value              stage.trainer.learning_rate=1e-5   run.name=my-run
  group=option           hardware=1gpu   model=mistral-7b-v0.1   dataset=ultrachat_200k
  +key=value             add a key (plain key=value also adds dotted keys): +stage.trainer.max_steps=20
  ~key                   delete a key: ~stage.trainer.eval_steps

examples:
  zephyr-recipes tiny/sft                                   train the embedded default (CPU, seconds)
  zephyr-recipes tiny/dpo                                   DPO on its output
  zephyr-recipes -m tiny/dpo stage.trainer.beta=0.01,0.1,0.5  a sweep: one run per value, sweep.md + sweep.png
  zephyr-recipes show zephyr-7b-beta/sft hardware=cpu       print the resolved config, run nothing
  zephyr-recipes show tiny/aif --explain                    ... with every key's help as a comment
  zephyr-recipes their_aif.yaml --trust-recipe-code         run a recipe whose Python code (validate lists it) you read
  zephyr-recipes tiny/reward                                a reward model on the AIF pairs, held-out pair accuracy
  zephyr-recipes path/to/their_recipe.yaml run.name=mine    run a recipe a colleague sent
  zephyr-recipes validate tiny/sft model=smollm2-135m-instruct   check keys, chat template and rows; no weights
  zephyr-recipes list                                       shipped recipes and the options of every group
  zephyr-recipes preview tiny/sft -n 2                      rows as the trainer sees them, token lengths
  zephyr-recipes tiny/sft hardware=cpu-2proc                two processes through accelerate launch (gloo)
  zephyr-recipes plan zephyr-7b-beta/sft hardware=8gpu-zero3  per-GPU memory, tokens, FLOPs and hours; refuses what won't fit
  zephyr-recipes plan zephyr-7b-beta/zephyr hardware=8gpu-zero3 --price 2.5   every stage and the total, with cost
  zephyr-recipes zephyr-7b-beta/sft --dry-run               everything before the weights load; launcher files written
  zephyr-recipes rehearse zephyr-7b-beta/zephyr             the whole pipeline on the CPU with small stand-ins
  zephyr-recipes tiny/eval                                  MT-Bench, AlpacaEval 1/2.0, Arena-Hard, lm-eval of runs/tiny-dpo
  zephyr-recipes report runs/tiny-eval runs/other-eval      evaluation runs side by side
  zephyr-recipes chat runs/tiny-dpo "Sort the numbers: 5 3 9"
"""

COMMANDS = ("run", "show", "validate", "plan", "rehearse", "list", "cp", "preview", "report", "chat")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zephyr-recipes",
        description="Run Zephyr-style alignment recipes (dSFT, AI feedback, dDPO, evaluation) on TRL. "
                    "`zephyr-recipes RECIPE [overrides]` is short for `zephyr-recipes run RECIPE [overrides]`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("run", "compose, validate and run a recipe"),
                       ("show", "print the fully resolved config of a recipe without running it"),
                       ("validate", "check a recipe (keys against TRL, types, values; the chat template on real rows of its "
                                     "data) without loading weights")):
        s = sub.add_parser(name, help=text, description=text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("recipe", help="shipped recipe name (tiny/sft) or path to a recipe YAML file")
        s.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value, ~key")
        if name == "show":
            s.add_argument("--explain", action="store_true",
                           help="write each key's help (from its schema) as a comment above it")
        if name == "validate":
            s.add_argument("--rows", type=int, default=200, metavar="N",
                           help="render the first N rows of the data through the chat template (default 200)")
            s.add_argument("--no-preflight", action="store_true",
                           help="check the recipe only: not the API keys, endpoints and local paths it names (a "
                                "recipe meant for another machine)")
        if name == "run":
            s.add_argument("--from", dest="from_stage", metavar="STAGE",
                           help="pipelines: run this stage and every later one again")
            s.add_argument("--only", metavar="STAGE", help="pipelines: run just this stage again")
            s.add_argument("--trust-recipe-code", action="store_true",
                           help="run the Python code the recipe names (function generators and judges from outside "
                                "zephyr_recipes; `validate` lists them). Only this flag allows it, never a recipe")
            s.add_argument("--dry-run", action="store_true",
                           help="do everything before loading weights (compose, validate, trust, plan, the folder "
                                "lock, the launcher files), write the files to <run folder>.dry-run, print the "
                                "command it would launch, start nothing")
            s.add_argument("-m", "--multirun", action="store_true",
                           help="sweep: one run per combination of the swept values (key=a,b  key=range(1,4)  "
                                "key=choice(a,b)), into <run.output_dir>-sweep/ with sweep.md and sweep.png")
    pv = sub.add_parser("preview", help="show training rows as the trainer sees them and their token lengths",
                        description="Show N rows as the trainer sees them (trained tokens highlighted against "
                                    "masked ones) and token-length statistics with a histogram PNG. "
                                    "Loads the tokenizer only, never the weights.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pv.add_argument("recipe", help="shipped recipe name (tiny/sft) or path to a recipe YAML file")
    pv.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value, ~key")
    pv.add_argument("-n", "--examples", type=int, default=3, help="rows to print (default 3)")
    pv.add_argument("--sample", type=int, default=2000, help="rows to measure for the statistics (default 2000)")
    pv.add_argument("--out", default=None, help="folder for lengths.png and preview.json (default <run folder>-preview)")
    pv.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                    help="highlight with terminal colours; without, trained text is [[bracketed]]")
    pv.add_argument("--trust-recipe-code", action="store_true",
                    help="allow the model's own Python files (model.trust_remote_code) to load its tokenizer")
    pl = sub.add_parser("plan", help="estimate memory, tokens, FLOPs, hours and cost of a recipe or pipeline on its "
                                     "hardware profile (no GPU needed)",
                        description="estimate per-device memory of a recipe (or every stage of a pipeline) on its "
                                    "hardware profile from the model config alone, and its tokens, FLOPs, hours at a "
                                    "stated MFU and cost at --price; exits 1 when it will not fit", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("recipe", help="shipped recipe name (tiny/sft) or path to a recipe YAML file")
    pl.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value, ~key")
    pl.add_argument("--model-config", metavar="PATH",
                    help="config.json (or a folder holding one) to take the model's shape from")
    pl.add_argument("--price", type=float, metavar="PER_GPU_HOUR",
                    help="cost of one GPU-hour (any currency): the plan adds the cost per stage and in total")
    pl.add_argument("--gpu", metavar="MODEL", help="the GPU model for the hours (h100-80gb, a100-80gb ...); "
                    "default: the profile's hardware.gpu")
    pl.add_argument("--mfu", type=float, metavar="SHARE", help="model FLOPs utilisation for training stages "
                    "(default: the stage's published figure, printed)")
    pl.add_argument("--tokens-per-row", type=float, metavar="N",
                    help="tokens per training row, where the data is not on this machine")
    rh = sub.add_parser("rehearse", help="run a recipe or pipeline for real on the CPU with small stand-ins for its "
                                         "models, data, judges and hardware (minutes)",
                        description="Run a recipe or pipeline end to end on the CPU with every stage, key, split, "
                                    "column, chat template, benchmark and hand-off of the real one; only the heavy "
                                    "parts are swapped (hub models -> tiny random models of the same family, hub "
                                    "datasets -> a few rows in the same schema, API judges and generators -> offline "
                                    "programs, a few optimizer steps, the profile -> cpu with its launcher files still "
                                    "written and checked). What was swapped is printed and kept in REHEARSAL.md.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    rh.add_argument("recipe", help="shipped recipe or pipeline (zephyr-7b-beta/zephyr) or a recipe YAML file")
    rh.add_argument("overrides", nargs="*", help="Hydra overrides, as for run")
    rh.add_argument("--out", default=None, help="rehearsal folder (default runs/rehearsal/<recipe>)")
    rh.add_argument("--steps", type=int, default=2, help="optimizer steps per training stage (default 2)")
    sub.add_parser("list", help="list shipped recipes and the options of every config group",
                   description="list shipped recipes and the options of every config group")
    cp = sub.add_parser("cp", help="copy a shipped recipe to a file you can edit and share",
                        description="copy a shipped recipe to a file you can edit and share")
    cp.add_argument("recipe")
    cp.add_argument("dest")
    rep = sub.add_parser("report", help="evaluation runs side by side, or the paper's ablation from pipeline folders",
                         description="evaluation runs side by side in a markdown table (and an MT-Bench radar "
                                     "chart), with the published Zephyr-7B-beta figures for reference; given "
                                     "pipeline folders (one per seed, e.g. runs/tiny-zephyr), the Zephyr paper's "
                                     "Table 3: every evaluated model's mean and spread over the seeds, and each of "
                                     "the pipeline's claims with its 95% interval and verdict. AI-feedback run "
                                     "folders (e.g. runs/tiny-aif) may be given alone or beside either. With --out, "
                                     "also report.html: one self-contained page (no network) with the tables and "
                                     "plots, and every prompt of every benchmark and AI-feedback run with each "
                                     "model's answers side by side, the judge's grades or verdicts and rationale, "
                                     "filterable by category and by where the models disagree")
    rep.add_argument("runs", nargs="+", help="evaluation run folders, or pipeline folders (one per seed); AI-feedback "
                                             "run folders alone or beside either")
    rep.add_argument("--out", default=None, help="folder for report.md, report.html, scores.json and the charts")
    rep.add_argument("--check", action="store_true",
                     help="pipeline folders: exit 1 unless every claim of the pipeline holds (its 95%% interval "
                          "clear of the bound), naming those that do not; the verdicts, never the figures")
    ch = sub.add_parser("chat", help="chat with a run folder or hub model",
                        description="chat with a run folder or hub model through transformers' pipeline: one "
                                    "prompt from the command line, or lines from stdin until EOF or /exit")
    ch.add_argument("model", help="run folder, saved model, hub id or builtin://tiny-mistral")
    ch.add_argument("prompt", nargs="?", help="one message; without it, read messages from stdin")
    ch.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                    help="most tokens of one answer (default 256)")
    ch.add_argument("--temperature", type=float, default=0.0,
                    help="sampling temperature; 0 for greedy decoding (default 0.0: greedy)")
    ch.add_argument("--system", default=None, help="a system message (default: none)")
    ch.add_argument("--chat-template", default=None, help="override the model's template (zephyr or a .jinja file; "
                    "default: the template saved with the model)")
    ch.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the pipeline's choice)")
    return p


def _compose(recipe: str, overrides: list[str], deep: bool = True) -> tuple[dict, str]:
    from ..runtime import pipeline  # lazy: start-up
    from ..runtime.compose import compose  # lazy: start-up
    from ..runtime.validate import validate  # lazy: start-up

    loaded = pipeline.load(recipe, overrides)
    if loaded:
        spec, name, path = loaded
        planned = pipeline.stage_configs(spec, path.parent, deep=deep)
        pipeline.check_references(spec, planned)
        stages = [{"name": st["name"], "recipe": rname, "config": cfg} for st, rname, cfg in planned]
        return {"pipeline": {**spec, "stages": stages}}, name
    raw, name, path = compose(recipe, overrides)
    return validate(raw, name, deep=deep), name


def _single_stage(cfg: dict, recipe: str, command: str) -> None:
    if "pipeline" in cfg:
        raise ZephyrError(f"{recipe} is a pipeline recipe, and `{command}` takes a single stage",
                          f"name one of its stages' recipes (e.g. zephyr-recipes {command} tiny/sft)")


def cmd_show(args) -> int:

    from ..core import greedy, trust  # lazy: start-up
    from ..core.safety import secret_routes  # lazy: start-up
    from ..runtime.pipeline import dump  # lazy: start-up

    cfg, _ = _compose(args.recipe, args.overrides, deep=False)
    code = trust.describe(cfg) + secret_routes(cfg)
    if code:
        sys.stdout.write("# code this recipe runs, and where its secrets go:\n"
                         + "".join(f"#   {line}\n" for line in code))
    sys.stdout.write("".join(f"# warning: {line}\n" for line in greedy.warnings(cfg)))
    if args.explain and "pipeline" not in cfg:
        from .. import stages  # lazy: start-up
        from ..core.schema import explained  # lazy: start-up

        sys.stdout.write(explained(cfg, stages.get(cfg["stage"]["name"]).schema))
        return 0
    sys.stdout.write(dump(cfg))
    return 0


def cmd_validate(args) -> int:
    from .. import stages  # lazy: start-up
    from ..core import greedy, trust  # lazy: start-up
    from ..core.safety import secret_routes  # lazy: start-up
    from ..runtime import parity, preflight  # lazy: start-up

    cfg, name = _compose(args.recipe, args.overrides)
    code = [f"code: {line}" for line in trust.describe(cfg)] + secret_routes(cfg)
    code += [f"warning: {line}" for line in greedy.warnings(cfg)]
    network = not args.no_preflight
    if "pipeline" in cfg:
        produced: set[str] = set()
        checked = []
        tokens: dict = {}  # the token-parity check: run folder -> the tokenizer its stage saves there
        for st in cfg["pipeline"]["stages"]:
            c = st["config"]
            checked += [f"{st['name']}: {line}" for line in
                        parity.run_check(c, stages.get(c["stage"]["name"]), tokens, f"stage {st['name']}")]
            try:
                checked += [f"pre-flight: {st['name']}: {line}"
                            for line in preflight.run(c, stages.get(c["stage"]["name"]), network=network,
                                                              produced=produced, strict=False)]
            except ZephyrError as exc:
                raise ZephyrError(f"pipeline stage {st['name']!r}: {exc.problem}", exc.fix) from None
            produced.add(str(c["run"]["output_dir"]))
        print("\n".join(code + checked + [f"ok: {name} stage {st['name']}: {st['config']['stage']['name']} of "
                                          f"{st['config']['model']['name_or_path']} -> "
                                          f"{st['config']['run']['output_dir']}" for st in cfg["pipeline"]["stages"]]))
        return 0
    if code:
        print("\n".join(code))
    stage = stages.get(cfg["stage"]["name"])
    if isinstance(stage, stages.TrainerStage) and stage.rows is not None:
        _check_template(cfg, stage.rows, args.rows)
    print("\n".join(parity.run_check(cfg, stage)))
    for line in preflight.run(cfg, stage, network=network, strict=False):
        print(f"pre-flight: {line}")
    if not network:
        print("pre-flight: keys, endpoints and local paths not checked (--no-preflight)")
    # Last, once every check above has passed.
    print(f"ok: {name} ({cfg['stage']['name']} of {cfg['model']['name_or_path']} on {_inputs(cfg)}, "
          f"hardware {cfg['hardware']['name']}) -> {cfg['run']['output_dir']}")
    return 0


def _unavailable_here(path: str, locate) -> bool:
    """A hub dataset (offline) or a local path that does not exist on this machine (a recipe from elsewhere)."""
    try:
        return locate(path)[0] == "hub"
    except ZephyrError:
        return True


def _check_template(cfg: dict, rows_kind, limit: int) -> None:
    """Render real rows (of ``rows_kind``, the stage's :class:`~zephyr_recipes.data.kinds.RowKind`) of the recipe's
    data through the chat template the run will use, and show one."""
    from ..core.logs import setup_logging  # lazy: start-up
    from ..data import load_for_stage  # lazy: start-up
    from ..data.preview import render  # lazy: start-up
    from ..data.sources import locate  # lazy: start-up
    from ..model import chat_format, modeling  # lazy: start-up
    from ..stages.training import without_unused_test_data  # lazy: start-up

    setup_logging()
    if cfg["model"].get("trust_remote_code"):
        print("chat template: not checked here (model.trust_remote_code: validate runs no code of the model's own); "
              "the run checks it, after --trust-recipe-code")
        return
    try:
        tokenizer = modeling.open_tokenizer(cfg["model"])
    except ZephyrError as exc:
        print(f"chat template: not checked here ({exc.problem}); the run checks it before loading weights")
        return
    record: dict = {}
    assistant_only = bool(cfg["stage"]["trainer"].get("assistant_only_loss"))
    modeling.prepare_tokenizer(tokenizer, cfg["model"], assistant_only, record)
    t = record["chat_template"]
    print(f"chat template: {t['name']} ({t['source']}); pad token {record['pad_token']['pad_token']!r}")
    try:
        train, _, _ = load_for_stage(without_unused_test_data(cfg), tokenizer, rows_kind)
    except ZephyrError as exc:
        paths = [m.get("path") for m in cfg["dataset"].get("mixture") or []] or [cfg["dataset"]["path"]]
        if not any(p and _unavailable_here(p, locate) for p in paths):
            raise  # local data that is there and that the run could not read either
        print(f"rows: not checked here ({exc.problem}); the run checks them before loading weights")
        return
    rows = chat_format.check_rows(tokenizer, train, rows_kind, assistant_only, limit=limit)
    chat_format.refuse(rows, t["name"])
    print(chat_format.explain(rows))
    if len(train):
        row = train[0]
        pairs = next(iter(rows_kind.tokenize(tokenizer, row, cfg["stage"]["trainer"]).values()))
        color = sys.stdout.isatty()
        legend = "trained text in green" if color else "[[trained]] text, the rest masked"
        print(f"first row as the trainer sees it ({legend}):\n{render(tokenizer, pairs, color)}")


def _inputs(cfg: dict) -> str:
    from .. import stages  # lazy: start-up

    return stages.get(cfg["stage"]["name"]).reads(cfg)


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
    cfg, _ = _compose(args.recipe, args.overrides)
    _single_stage(cfg, args.recipe, "preview")
    from ..core import trust  # lazy: start-up

    trust.allow(args.trust_recipe_code)
    trust.check({"model": cfg["model"]})  # the tokenizer may be the model's own code
    if args.examples < 0 or args.sample < 1:
        raise ZephyrError("-n must be 0 or more and --sample at least 1", "e.g. -n 3 --sample 2000")
    tokenizer = modeling.load_tokenizer(cfg["model"])
    color = {"auto": None, "always": True, "never": False}[args.color]
    rows = stages.get(cfg["stage"]["name"]).rows
    if rows is None:
        raise ZephyrError(f"stage {cfg['stage']['name']} reads no dataset, so there are no rows to preview",
                          "preview a recipe of a stage that trains (sft, dpo, reward)")
    preview(cfg, tokenizer, rows, n=args.examples, sample=args.sample, color=color,
            out_dir=args.out or f"{cfg['run']['output_dir'].rstrip('/')}-preview")
    return 0


def cmd_plan(args) -> int:
    from .. import stages  # lazy: start-up
    from ..runtime import plan  # lazy: start-up
    from ..runtime.timeplan import render_cost  # lazy: start-up

    cfg, _ = _compose(args.recipe, args.overrides)
    if args.price is not None and not (math.isfinite(args.price) and args.price >= 0):
        raise ZephyrError(f"--price {args.price} is not a cost (negative, nan or inf)",
                          "give the cost of one GPU-hour, e.g. --price 2.5")
    if args.mfu is not None and not 0 < args.mfu <= 1:  # NaN fails this too
        raise ZephyrError(f"--mfu {args.mfu} is not a share between 0 and 1", "e.g. --mfu 0.35")
    # A plan reads the model's shape, never its code (a custom architecture: pass --model-config).
    for c in [st["config"] for st in cfg["pipeline"]["stages"]] if "pipeline" in cfg else [cfg]:
        c["model"] = {**c["model"], "trust_remote_code": False}
    options = {"gpu": args.gpu, "mfu": args.mfu, "tokens_per_row": args.tokens_per_row}
    if "pipeline" in cfg:
        if args.model_config:
            raise ZephyrError("--model-config applies to a single stage", "plan the stage's recipe with it")
        planned = [(st, st["recipe"], st["config"]) for st in cfg["pipeline"]["stages"]]
        text, refused = plan.pipeline_plan(planned, args.price, **options)
        print(text)
        return 1 if refused else 0
    sp = plan.stage_plan(cfg, stages.get(cfg["stage"]["name"]), args.model_config, **options)
    print(sp.text)
    cost = render_cost([sp.work], args.price) if sp.work is not None and args.price is not None else []
    for line in cost:
        print(f"  total: {line}")
    return 1 if sp.kind == "no" else 0


def cmd_run(args) -> int:
    from ..core import trust  # lazy: start-up
    from ..core.logs import setup_logging  # lazy: start-up
    from ..runtime import launch, pipeline  # lazy: start-up
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
    loaded = pipeline.load(args.recipe, args.overrides)
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
    from ..runtime import launch, pipeline  # lazy: start-up

    loaded = pipeline.load(recipe, overrides)
    if loaded:
        spec, name, path = loaded
        planned = pipeline.stage_configs(spec, path.parent)
        out = Path(spec["output_dir"])
        out = out.with_name(out.name + launch.DRY_RUN_SUFFIX)
        known: dict = {}
        for st, rname, cfg in planned:
            result = launch.dry_run(cfg, rname, argv, out / st["name"], known)
            print(f"== stage {st['name']}\n{launch.render_dry_run(result)}")
        print(f"dry run of pipeline {name}: {len(planned)} stage(s) checked; files in {out}")
        return 0
    from ..runtime.compose import compose  # lazy: start-up
    from ..runtime.validate import validate  # lazy: start-up

    raw, name, _ = compose(recipe, overrides)
    print(launch.render_dry_run(launch.dry_run(validate(raw, name), name, argv)))
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


def cmd_report(args) -> int:
    from ..evaluation import browse  # lazy: start-up
    from ..reports import ablation, page  # lazy: start-up
    from ..reports.report import report  # lazy: start-up

    folders = [Path(r) for r in args.runs]
    aifs = [f for f in folders if browse.is_aif_folder(f)]
    rest = [f for f in folders if f not in aifs]
    pipelines = [ablation.is_pipeline_folder(f) for f in rest]
    if any(pipelines) and not all(pipelines):
        raise ZephyrError("the folders mix pipeline folders and evaluation run folders",
                          "give pipeline folders (one per seed) or evaluation run folders, not both "
                          "(AI-feedback run folders go with either)")
    if args.check and not (rest and all(pipelines)):
        raise ZephyrError("--check needs pipeline folders (their claims are what it checks)",
                          "give pipeline folders, e.g. runs/tiny-zephyr")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ZephyrError(f"--out {out} is a file, and the report is written into a folder (report.md, report.html)",
                          "give a folder: --out reports/<name> (the file is left as it is)")
    text = ""
    if rest:
        text = (ablation.report if all(pipelines) else report)(rest, out)
    if aifs:
        text = (text.rstrip("\n") + "\n\n" if text else "# AI feedback report\n\n") + browse.aif_markdown(aifs)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.md").write_text(text)
    print(text)
    if out is not None:
        pipes = rest if rest and all(pipelines) else []
        page.build(out, text, [f for f in rest if not pipes], pipes, aifs)
        print(f"written: {out / 'report.md'}, {out / 'report.html'} (open it in a browser: file://"
              f"{(out / 'report.html').resolve()})", file=sys.stderr)
    if args.check:
        return ablation.check(rest)
    return 0


def cmd_chat(args) -> int:
    from ..runtime import chat  # lazy: start-up

    return chat.run(args.model, args.prompt, args.max_new_tokens, args.temperature, args.system,
                    args.chat_template, args.device)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] not in COMMANDS and (not argv[0].startswith("-") or argv[0] in ("-m", "--multirun")):
        argv.insert(0, "run")
    args, extra = _parser().parse_known_args(argv)
    if extra:  # overrides written after an option (preview tiny/sft -n 2 key=value) belong to the overrides
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            _parser().error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    if args.command is None:
        _parser().print_help()
        return 2
    handler = {"run": cmd_run, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan,
               "rehearse": cmd_rehearse, "list": cmd_list,
               "cp": cmd_cp, "preview": cmd_preview, "report": cmd_report, "chat": cmd_chat}
    try:
        return handler[args.command](args)
    except ZephyrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 75 (preempted, requeue) or 2
    except BrokenPipeError:  # output piped into head and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        from ..core.runfolder import unwritable  # lazy: start-up

        # A full disk or a folder turned read-only while the run wrote: the folder stays unfinished, never complete.
        print(f"error: {unwritable(Path(exc.filename or '.'), exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run folder is kept unfinished; re-run the same command to resume", file=sys.stderr)
        return 130
    except Terminated as exc:
        print("stopped (SIGTERM): the answers received are kept, the run folder is unfinished; re-run the same "
              "command to resume", file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1


if __name__ == "__main__":
    raise SystemExit(main())
