"""The argument parser: every command, its arguments and its help (``zephyr-recipes --help``)."""

from __future__ import annotations

import argparse

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



def _at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum`` (a count of rows or steps), else a usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    return parse


RECIPE_HELP = "shipped recipe name (tiny/sft) or path to a recipe YAML file"
OVERRIDES_HELP = "Hydra overrides: key=value, group=option, +key=value, ~key"


def _recipe_command(sub, name: str, recipe_help: str = RECIPE_HELP, overrides_help: str = OVERRIDES_HELP,
                    **parser_args) -> argparse.ArgumentParser:
    """A subcommand that takes a recipe and its overrides (run, show, validate, preview, plan, rehearse)."""
    parser = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **parser_args)
    parser.add_argument("recipe", help=recipe_help)
    parser.add_argument("overrides", nargs="*", help=overrides_help)
    return parser


def build() -> argparse.ArgumentParser:
    """The parser of every command (``zephyr-recipes --help``)."""
    p = argparse.ArgumentParser(
        prog="zephyr-recipes",
        description="Run Zephyr-style alignment recipes (dSFT, AI feedback, dDPO, evaluation) on TRL. "
                    "`zephyr-recipes RECIPE [overrides]` is short for `zephyr-recipes run RECIPE [overrides]`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_show_validate(sub)
    _add_preview(sub)
    _add_plan(sub)
    _add_rehearse(sub)
    _add_list_and_cp(sub)
    _add_report(sub)
    _add_chat(sub)
    return p


def _add_run_show_validate(sub) -> None:
    """Run, show and validate: a recipe and its overrides, and each one's options."""
    for name, text in (("run", "compose, validate and run a recipe"),
                       ("show", "print the fully resolved config of a recipe without running it"),
                       ("validate", "check a recipe (keys against TRL, types, values; the chat template on real rows of its "
                                     "data) without loading weights")):
        s = _recipe_command(sub, name, help=text, description=text, epilog=EPILOG)
        if name == "show":
            s.add_argument("--explain", action="store_true",
                           help="write each key's help (from its schema) as a comment above it")
        if name == "validate":
            s.add_argument("--rows", type=_at_least(1), default=200, metavar="N",
                           help="render the first N rows of the data through the chat template (default 200)")
            s.add_argument("--no-preflight", action="store_true",
                           help="check the recipe only: not the API keys, endpoints and local paths it names (a "
                                "recipe meant for another machine)")
            s.add_argument("--recheck", action="store_true",
                           help="check the chat template, the rows and the token parity again even when a check of "
                                "the same config, code and local files passed before (validate remembers those)")
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


def _add_preview(sub) -> None:
    """The `preview` subcommand."""
    pv = _recipe_command(sub, "preview", help="show training rows as the trainer sees them and their token lengths",
                         description="Show N rows as the trainer sees them (trained tokens highlighted against "
                                     "masked ones) and token-length statistics with a histogram PNG. "
                                     "Loads the tokenizer only, never the weights.",
                         epilog=EPILOG)
    pv.add_argument("-n", "--examples", type=_at_least(0), default=3, help="rows to print (default 3)")
    pv.add_argument("--sample", type=_at_least(1), default=2000, help="rows to measure for the statistics (default 2000)")
    pv.add_argument("--out", default=None, help="folder for lengths.png and preview.json (default <run folder>-preview)")
    pv.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                    help="highlight with terminal colours; without, trained text is [[bracketed]]")
    pv.add_argument("--trust-recipe-code", action="store_true",
                    help="allow the model's own Python files (model.trust_remote_code) to load its tokenizer")


def _add_plan(sub) -> None:
    """The `plan` subcommand."""
    pl = _recipe_command(sub, "plan", help="estimate memory, tokens, FLOPs, hours and cost of a recipe or pipeline on its "
                                      "hardware profile (no GPU needed)",
                         description="estimate per-device memory of a recipe (or every stage of a pipeline) on its "
                                     "hardware profile from the model config alone, and its tokens, FLOPs, hours at a "
                                     "stated MFU and cost at --price; exits 1 when it will not fit", epilog=EPILOG)
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


def _add_rehearse(sub) -> None:
    """The `rehearse` subcommand."""
    rh = _recipe_command(sub, "rehearse", help="run a recipe or pipeline for real on the CPU with small stand-ins for its "
                                          "models, data, judges and hardware (minutes)",
                         description="Run a recipe or pipeline end to end on the CPU with every stage, key, split, "
                                     "column, chat template, benchmark and hand-off of the real one; only the heavy "
                                     "parts are swapped (hub models -> tiny random models of the same family, hub "
                                     "datasets -> a few rows in the same schema, API judges and generators -> offline "
                                     "programs, a few optimizer steps, the profile -> cpu with its launcher files still "
                                     "written and checked). What was swapped is printed and kept in REHEARSAL.md.",
                         epilog=EPILOG,
                         recipe_help="shipped recipe or pipeline (zephyr-7b-beta/zephyr) or a recipe YAML file",
                         overrides_help="Hydra overrides, as for run")
    rh.add_argument("--out", default=None, help="rehearsal folder (default runs/rehearsal/<recipe>)")
    rh.add_argument("--steps", type=_at_least(1), default=2, help="optimizer steps per training stage (default 2)")


def _add_list_and_cp(sub) -> None:
    """The `list` and `cp` subcommands."""
    sub.add_parser("list", help="list shipped recipes and the options of every config group",
                   description="list shipped recipes and the options of every config group")
    cp = sub.add_parser("cp", help="copy a shipped recipe to a file you can edit and share",
                        description="copy a shipped recipe to a file you can edit and share")
    cp.add_argument("recipe")
    cp.add_argument("dest")


def _add_report(sub) -> None:
    """The `report` subcommand."""
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


def _add_chat(sub) -> None:
    """The `chat` subcommand."""
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
