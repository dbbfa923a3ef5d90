"""The commands that read finished runs: ``report`` (evaluation runs side by side, a pipeline's ablation, AI
feedback) and ``chat``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import ZephyrError


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
