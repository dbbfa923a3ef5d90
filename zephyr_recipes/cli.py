"""Command line front end: compose a recipe with Hydra, validate it, freeze it into a run folder, run it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from .errors import ZephyrError

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
  zephyr-recipes plan zephyr-7b-beta/sft hardware=8gpu-zero3  per-GPU memory estimate, refuses what won't fit
  zephyr-recipes tiny/eval                                  MT-Bench, AlpacaEval 1/2.0, Arena-Hard, lm-eval of runs/tiny-dpo
  zephyr-recipes report runs/tiny-eval runs/other-eval      evaluation runs side by side
  zephyr-recipes chat runs/tiny-dpo "Sort the numbers: 5 3 9"
"""

COMMANDS = ("run", "show", "validate", "plan", "list", "cp", "preview", "report", "chat")


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
        if name == "run":
            s.add_argument("--from", dest="from_stage", metavar="STAGE",
                           help="pipelines: run this stage and every later one again")
            s.add_argument("--only", metavar="STAGE", help="pipelines: run just this stage again")
            s.add_argument("--trust-recipe-code", action="store_true",
                           help="run the Python code the recipe names (function generators and judges from outside "
                                "zephyr_recipes; `validate` lists them). Only this flag allows it, never a recipe")
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
    pl = sub.add_parser("plan", help="estimate per-device memory of a recipe on its hardware profile (no GPU needed)",
                        description="estimate per-device memory of a recipe on its hardware profile from the model "
                                    "config alone; exits 1 when it will not fit", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("recipe", help="shipped recipe name (tiny/sft) or path to a recipe YAML file")
    pl.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value, ~key")
    pl.add_argument("--model-config", metavar="PATH",
                    help="config.json (or a folder holding one) to take the model's shape from")
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
                                     "Table 3: every evaluated model's mean and spread over the seeds, and the "
                                     "pipeline's claims checked seed by seed")
    rep.add_argument("runs", nargs="+", help="evaluation run folders, or pipeline folders (one per seed)")
    rep.add_argument("--out", default=None, help="folder for report.md, scores.json and the charts")
    rep.add_argument("--check", action="store_true",
                     help="pipeline folders: exit 1 unless every claim of the pipeline holds (its 95%% interval "
                          "clear of the bound), naming those that do not; the verdicts, never the figures")
    ch = sub.add_parser("chat", help="chat with a run folder or hub model",
                        description="chat with a run folder or hub model through transformers' pipeline: one "
                                    "prompt from the command line, or lines from stdin until EOF or /exit")
    ch.add_argument("model", help="run folder, saved model, hub id or builtin://tiny-mistral")
    ch.add_argument("prompt", nargs="?", help="one message; without it, read messages from stdin")
    ch.add_argument("--max-new-tokens", type=int, default=256)
    ch.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding")
    ch.add_argument("--system", default=None, help="a system message")
    ch.add_argument("--chat-template", default=None, help="override the model's template (zephyr or a .jinja file)")
    ch.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the pipeline's choice)")
    return p


def _compose(recipe: str, overrides: list[str], deep: bool = True) -> tuple[dict, str]:
    from . import pipeline
    from .compose import compose
    from .validate import validate

    loaded = pipeline.load(recipe, overrides)
    if loaded:
        spec, name, path = loaded
        stages = [{"name": st["name"], "recipe": rname, "config": cfg}
                  for st, rname, cfg in pipeline.stage_configs(spec, path.parent, deep=deep)]
        return {"pipeline": {**spec, "stages": stages}}, name
    raw, name, path = compose(recipe, overrides)
    return validate(raw, name, deep=deep), name


def cmd_show(args) -> int:

    from . import trust
    from .pipeline import dump

    cfg, _ = _compose(args.recipe, args.overrides, deep=False)
    code = trust.describe(cfg)
    if code:
        sys.stdout.write("# Python code this recipe runs:\n" + "".join(f"#   {line}\n" for line in code))
    if args.explain and "pipeline" not in cfg:
        from . import stages
        from .schema import explained

        sys.stdout.write(explained(cfg, stages.get(cfg["stage"]["name"]).schema))
        return 0
    sys.stdout.write(dump(cfg))
    return 0


def cmd_validate(args) -> int:
    from . import trust

    cfg, name = _compose(args.recipe, args.overrides)
    code = [f"python code: {line}" for line in trust.describe(cfg)]
    if "pipeline" in cfg:
        for st in cfg["pipeline"]["stages"]:
            c = st["config"]
            print(f"ok: {name} stage {st['name']}: {c['stage']['name']} of {c['model']['name_or_path']} "
                  f"-> {c['run']['output_dir']}")
        if code:
            print("\n".join(code))
        return 0
    print(f"ok: {name} ({cfg['stage']['name']} of {cfg['model']['name_or_path']} on {_inputs(cfg)}, "
          f"hardware {cfg['hardware']['name']}) -> {cfg['run']['output_dir']}")
    if code:
        print("\n".join(code))
    from . import stages

    if isinstance(stages.get(cfg["stage"]["name"]), stages.TrainerStage):
        _check_template(cfg, args.rows)
    return 0


def _unavailable_here(path: str, locate) -> bool:
    """A hub dataset (offline) or a local path that does not exist on this machine (a recipe from elsewhere)."""
    try:
        return locate(path)[0] == "hub"
    except ZephyrError:
        return True


def _check_template(cfg: dict, limit: int) -> None:
    """Render real rows of the recipe's data through the chat template the run will use, and show one."""
    from . import chat_format, modeling, stages
    from .data import load_for_stage
    from .data.preview import render, tokenize_dpo, tokenize_sft
    from .data.sources import locate
    from .logs import setup_logging
    from .stages.training import without_unused_test_data

    setup_logging()
    rows_kind = stages.get(cfg["stage"]["name"]).rows
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
        train, _, _ = load_for_stage(without_unused_test_data(cfg), tokenizer)
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
        pairs = (tokenize_sft(tokenizer, row["messages"], cfg["stage"]["trainer"]) if rows_kind == "chat"
                 else tokenize_dpo(tokenizer, row, cfg["stage"]["trainer"], "chosen"))
        color = sys.stdout.isatty()
        legend = "trained text in green" if color else "[[trained]] text, the rest masked"
        print(f"first row as the trainer sees it ({legend}):\n{render(tokenizer, pairs, color)}")


def _inputs(cfg: dict) -> str:
    from . import stages

    return stages.get(cfg["stage"]["name"]).reads(cfg)


def cmd_list(args) -> int:
    import yaml

    from .compose import RECIPES_DIR, list_options, list_recipes

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
    from . import stages

    print("\nstages (stage.name; `zephyr-recipes show RECIPE` prints every key of a stage with its default):")
    for name in stages.names():
        print(f"  {name:<10} {stages.get(name).summary}")
    return 0


def cmd_cp(args) -> int:
    from .compose import find_recipe

    src, _ = find_recipe(args.recipe)
    dest = Path(args.dest)
    if dest.exists():
        raise ZephyrError(f"{dest} already exists", "choose another destination; nothing was overwritten")
    shutil.copyfile(src, dest)
    print(f"copied {src.name} to {dest}; run it with `zephyr-recipes {dest}`")
    return 0


def cmd_preview(args) -> int:
    from . import modeling
    from .data.preview import preview
    from .logs import setup_logging

    setup_logging()
    cfg, _ = _compose(args.recipe, args.overrides)
    if args.examples < 0 or args.sample < 1:
        raise ZephyrError("-n must be 0 or more and --sample at least 1", "e.g. -n 3 --sample 2000")
    tokenizer = modeling.load_tokenizer(cfg["model"])
    color = {"auto": None, "always": True, "never": False}[args.color]
    preview(cfg, tokenizer, n=args.examples, sample=args.sample, color=color,
            out_dir=args.out or f"{cfg['run']['output_dir'].rstrip('/')}-preview")
    return 0


def cmd_plan(args) -> int:
    from . import plan

    cfg, _ = _compose(args.recipe, args.overrides)
    est, kind, sentence, source = plan.plan(cfg, args.model_config)
    print(plan.render(cfg, est, sentence, source))
    if kind == "no":
        print(f"  fix: {plan.advice(cfg)}")
        return 1
    return 0


def cmd_run(args) -> int:
    from . import launch, pipeline, trust
    from .compose import compose
    from .logs import setup_logging

    setup_logging()
    trust.allow(args.trust_recipe_code)
    argv = ["zephyr-recipes", "run", args.recipe, *args.overrides]
    if args.multirun:
        from . import sweep

        out = sweep.run(args.recipe, args.overrides, args.from_stage, args.only, argv[:3])
        print((out / "sweep.md").read_text().split("\n![", 1)[0].rstrip() + "\n")
        print(f"sweep folder: {out}")
        failed = [p["name"] for p in json.loads((out / "sweep.json").read_text())["points"] if p["status"] == "failed"]
        if failed:
            print(f"error: {len(failed)} point(s) failed: {', '.join(failed)} (see {out / 'sweep.md'})", file=sys.stderr)
            return 1
        return 0
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
    from .validate import validate

    folder = launch.execute(validate(raw, name), name, argv)
    if folder is None:  # submitted to the scheduler
        return 0
    print(f"run folder: {folder}")
    return 0


def cmd_report(args) -> int:
    from .evaluation import ablation
    from .evaluation.compare import report

    folders = [Path(r) for r in args.runs]
    pipelines = [ablation.is_pipeline_folder(f) for f in folders]
    if any(pipelines) and not all(pipelines):
        raise ZephyrError("the folders mix pipeline folders and evaluation run folders",
                          "give pipeline folders (one per seed) or evaluation run folders, not both")
    if args.check and not all(pipelines):
        raise ZephyrError("--check needs pipeline folders (their claims are what it checks)",
                          "give pipeline folders, e.g. runs/tiny-zephyr")
    make = ablation.report if all(pipelines) else report
    print(make(folders, Path(args.out) if args.out else None))
    if args.out:
        print(f"written: {Path(args.out) / 'report.md'}", file=sys.stderr)
    if args.check:
        return ablation.check(folders)
    return 0


def cmd_chat(args) -> int:
    from . import chat

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
    handler = {"run": cmd_run, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan, "list": cmd_list,
               "cp": cmd_cp, "preview": cmd_preview, "report": cmd_report, "chat": cmd_chat}
    try:
        return handler[args.command](args)
    except ZephyrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 75 (preempted, requeue) or 2
    except BrokenPipeError:  # output piped into head and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("interrupted: the run folder is kept unfinished; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
