"""`zephyr-recipes report`: evaluation runs side by side, and beside each benchmark's published rows with the
protocol that made every row. The benchmarks, their metrics and their published rows come from
:mod:`zephyr_recipes.benchmarks`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .. import benchmarks
from ..core import runfolder
from ..core.errors import ZephyrError
from ..evaluation import plots
from ..evaluation.browse import stage_section
from ..feedback.judge_registry import pipeline_check
from . import readcheck


@lru_cache(maxsize=None)
def published() -> list[dict]:
    """Every benchmark's published rows merged by model: {"name": "<model> (published)", metric key: value}."""
    rows: dict[str, dict] = {}
    for bench in benchmarks.all_benchmarks():
        for ref in bench.references:
            row = rows.setdefault(ref.model, {"name": f"{ref.model} (published)"})
            for key, value in ref.values.items():
                row[key] = value[0] if isinstance(value, (tuple, list)) else value
    return list(rows.values())


def __getattr__(name: str):
    """``PUBLISHED``: every benchmark's published rows, built on first use (it imports every benchmark module), for
    the ablation report and report's scores.json."""
    if name == "PUBLISHED":
        return published()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_run(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / "scores.json"
    if not folder.exists():
        raise ZephyrError(f"{folder} does not exist",
                          "give folders written by an eval recipe (e.g. `zephyr-recipes tiny/eval` writes runs/tiny-eval), "
                          "pipeline folders, or AI-feedback run folders")
    if not path.is_file():
        status = (runfolder.read_status(folder) or {}).get("status")
        hint = f" (its status is {status})" if status else ""
        raise ZephyrError(f"{folder} is not a finished evaluation run: it has no scores.json{hint}",
                          "give folders written by an eval recipe, e.g. `zephyr-recipes tiny/eval`")
    readcheck.check(folder)  # a complete folder's records are whole, or the damaged one is named
    try:
        scores = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ZephyrError(f"{path} is not whole JSON ({type(exc).__name__})",
                          "run the evaluation again with run.overwrite=true") from None
    if not isinstance(scores, dict):
        raise ZephyrError(f"{path} is not a mapping of scores", "run the evaluation again with run.overwrite=true")
    scores.setdefault("model_id", folder.name)
    scores["folder"] = str(folder)
    return scores


def _judge_of(scores: dict, bench) -> str:
    judge = (scores.get(bench.name) or {}).get("judge") or scores.get("judge") or {}
    return judge.get("type") or "–" if bench.asks else "–"


def _ran(runs: list[dict]) -> list:
    return [b for b in benchmarks.all_benchmarks() if any(s.get(b.name) for s in runs)]


def table(runs: list[dict], names: list[str]) -> str:
    """One row per run: each headline metric of the benchmarks any run has, with its uncertainty."""
    cols = [(b, m) for b in _ran(runs) for m in b.metrics]
    head = ["run", "judge"] + [m.label for _, m in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, s in zip(names, runs):
        judge = (s.get("judge") or {}).get("type") or "–"
        lines.append("| " + " | ".join([name, judge] + [m.format(s.get(b.name)) for b, m in cols]) + " |")
    return "\n".join(lines)


def beside_published(runs: list[dict], names: list[str]) -> str:
    """Per benchmark: our rows, then its published rows, each with the protocol that made it."""
    out = []
    for bench in _ran(runs):
        refs = bench.references
        head = ["row", "judge"] + [m.label for m in bench.metrics] + ["protocol"]
        lines = [f"### {bench.title}\n", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for name, s in zip(names, runs):
            result = s.get(bench.name)
            if not result:
                continue
            sec = stage_section(Path(s["folder"]), bench)  # typed; an older run's lacking keys at defaults
            lines.append("| " + " | ".join([name, _judge_of(s, bench)] + [m.format(result) for m in bench.metrics]
                                           + [bench.protocol(sec, result) or "–"]) + " |")
        for ref in refs:
            result = ref.result(bench)
            judge = "GPT-4 Turbo" if "Turbo" in ref.protocol else "GPT-4" if bench.asks else "–"
            lines.append("| " + " | ".join([f"{ref.model} (published)", judge] +
                                           [m.format(result) for m in bench.metrics] + [ref.protocol]) + " |")
        if refs:
            lines.append("\nPublished: " + "; ".join(sorted({r.source for r in refs})) + ".")
        else:
            lines.append("\nNo published row for this benchmark among the reference models.")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _notes(runs: list[dict], names: list[str]) -> list[str]:
    """What a reader must know to read the figures: judge failures, skipped prompts, approximate figures."""
    notes = []
    for name, s in zip(names, runs):
        for bench in benchmarks.all_benchmarks():
            if s.get(bench.name):
                notes += [f"{name}: {n}" for n in bench.notes(s[bench.name])]
    return notes


def run_names(runs: list[dict]) -> list[str]:
    """Each run's name in the report: its model_id, with its folder when two runs share one."""
    names = [str(s.get("model_id")) for s in runs]
    if len(set(names)) < len(names):  # the same model_id twice: tell them apart by folder
        names = [f"{n} ({s['folder']})" for n, s in zip(names, runs)]
    return names


# The embedded judges that check the pipeline rather than grade answers (word overlap with a reference).
PIPELINE_CHECKS = ("zephyr_recipes.embedded.lexical_judge",)


def function_judge_note(modules: set[str]) -> str:
    """What the figures of runs graded by function judges mean: a pipeline check, the embedded task's program judge
    (it knows every right answer: quality on that task), or a user's own program (what its code checks)."""
    text = ""
    checks = sorted(m for m in modules if m in PIPELINE_CHECKS)
    embedded = sorted(m for m in modules if m.startswith("zephyr_recipes.embedded.") and m not in PIPELINE_CHECKS)
    own = sorted(m for m in modules if not m.startswith("zephyr_recipes."))
    if checks:
        text += (f"Runs judged by the offline lexical judge ({', '.join(checks)}) measure that the pipeline works, not "
                 "model quality: compare them with each other only, never with the published rows.\n\n")
    if embedded:
        text += (f"Runs judged by the embedded program judge ({', '.join(embedded)}) are graded against the known "
                 "answer of every embedded task (correctness and the answer-only form): quality on that task, "
                 "comparable between these runs, not with the published rows of chat benchmarks.\n\n")
    if own:
        text += (f"Runs judged by a function judge of your own ({', '.join(own)}) measure what that program checks; "
                 "compare them with each other only, never with the published rows (judged by GPT-4).\n\n")
    return text


def report(folders: list[Path], out: Path | None = None) -> str:
    """The markdown report; with ``out``, also writes report.md, scores.json and radar.png there."""
    runs = [load_run(f) for f in folders]
    names = run_names(runs)
    text = "# Evaluation report\n\n## Runs\n\n" + table(runs, names) + "\n\n"
    judges = [(s.get(b.name) or {}).get("judge") or s.get("judge") or {}
              for s in runs for b in _ran(runs) if b.asks and s.get(b.name)]
    text += function_judge_note({str(j.get("module") or j.get("type") or "?") for j in judges if pipeline_check(j)})
    notes = _notes(runs, names)
    if notes:
        text += "".join(f"- {n}\n" for n in notes) + "\n"
    text += ("## Published figures (for reference), beside ours\n\nEach benchmark's published rows (full benchmarks, "
             "7B models) with the protocol that made them, under this report's runs with theirs. A figure is "
             "comparable with a published one only when judge and protocol agree.\n\n" + beside_published(runs, names))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        graded = [b for b in _ran(runs) if b.asks == "grade"]
        drawn = graded and plots.radar({n: (s.get(graded[0].name) or {}).get("categories") or {}
                                        for n, s in zip(names, runs)}, out / "radar.png", f"{graded[0].title} by category")
        if drawn:
            text += f"\n![{graded[0].title} by category](radar.png)\n"
        (out / "report.md").write_text(text)
        (out / "scores.json").write_text(json.dumps({"runs": runs, "published": published()}, indent=2) + "\n")
    return text
