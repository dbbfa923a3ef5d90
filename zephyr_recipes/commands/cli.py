"""Command line front end: compose a recipe with Hydra, validate it, freeze it into a run folder, run it.

:func:`main` reads the arguments (:mod:`.parser`) and hands them to the command's ``cmd_*`` handler: :mod:`.recipe`
(show, validate, list, cp, preview), :mod:`.run` (run, plan, rehearse) and :mod:`.results` (report, chat); the
handlers call into :mod:`zephyr_recipes.runtime` and :mod:`zephyr_recipes.reports`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.errors import ZephyrError
from .parser import build
from .recipe import cmd_cp, cmd_list, cmd_preview, cmd_show, cmd_validate
from .results import cmd_chat, cmd_report
from .run import Terminated, cmd_plan, cmd_rehearse, cmd_run

# Each cmd_* handler imports the modules it runs, inside it: the only function-level imports of the package's
# own modules. Importing every command's modules up front (hydra's front end, numpy, the feedback and evaluation
# code ...) took about a second more than this module alone (0.1 s), and `list`, `show`, `--help` and a typo's
# error would all pay it; torch, transformers and datasets are imported only where a stage uses them.


COMMANDS = ("run", "show", "validate", "plan", "rehearse", "list", "cp", "preview", "report", "chat")
HANDLERS = {"run": cmd_run, "show": cmd_show, "validate": cmd_validate, "plan": cmd_plan, "rehearse": cmd_rehearse,
            "list": cmd_list, "cp": cmd_cp, "preview": cmd_preview, "report": cmd_report, "chat": cmd_chat}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] not in COMMANDS and (not argv[0].startswith("-") or argv[0] in ("-m", "--multirun")):
        argv.insert(0, "run")
    args, extra = build().parse_known_args(argv)
    if extra:  # overrides written after an option (preview tiny/sft -n 2 key=value) belong to the overrides
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            build().error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    if args.command is None:
        build().print_help()
        return 2
    handler = HANDLERS[args.command]
    try:
        return handler(args)
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
