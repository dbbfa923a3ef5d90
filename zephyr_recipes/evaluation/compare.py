"""`zephyr-recipes report`: evaluation runs side by side, with the published Zephyr figures for reference."""

from __future__ import annotations

import json
from pathlib import Path

from .. import runfolder
from ..errors import ZephyrError
from . import plots

LEADERBOARD_COLUMNS = (("arc_challenge", "ARC"), ("hellaswag", "HellaSwag"), ("mmlu", "MMLU"),
                       ("truthfulqa_mc2", "TruthfulQA"))
# Published figures (arXiv 2310.16944 and the Zephyr-7B-beta model card; AlpacaEval 2.0 from alpaca_eval's
# leaderboard, weighted_alpaca_eval_gpt4_turbo: LC 13.20, win rate 10.99). They were measured with GPT-4 (GPT-4
# Turbo for AlpacaEval 2.0) as the judge on the full benchmarks; a run judged otherwise is not comparable.
PUBLISHED = [
    {"name": "Zephyr-7B-beta (published)", "mt_bench": 7.34, "alpaca_eval": 90.60, "alpaca_eval_2_lc": 13.2,
     "alpaca_eval_2": 11.0, "arc_challenge": 62.03, "hellaswag": 84.52, "mmlu": 61.44, "truthfulqa_mc2": 57.44},
    {"name": "ablation: dSFT (published)", "mt_bench": 6.64},
    {"name": "ablation: dDPO without dSFT (published)", "mt_bench": 4.76},
    {"name": "ablation: dSFT + dDPO (published)", "mt_bench": 7.00},
]


def load_run(folder: Path) -> dict:
    folder = Path(folder)
    path = folder / "scores.json"
    if not path.is_file():
        status = (runfolder.read_status(folder) or {}).get("status")
        hint = f" (its status is {status})" if status else ""
        raise ZephyrError(f"{folder} is not a finished evaluation run: it has no scores.json{hint}",
                          "give folders written by an eval recipe, e.g. `zephyr-recipes tiny/eval`")
    scores = json.loads(path.read_text())
    scores.setdefault("model_id", folder.name)
    scores["folder"] = str(folder)
    return scores


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def row(scores: dict) -> dict:
    mt, ae, lm = scores.get("mt_bench") or {}, scores.get("alpaca_eval") or {}, scores.get("lm_eval") or {}
    ae2, ah = scores.get("alpaca_eval_2") or {}, scores.get("arena_hard") or {}
    out = {"name": scores.get("model_id"), "mt_bench": mt.get("score"), "turn_1": mt.get("turn_1"),
           "turn_2": mt.get("turn_2"), "alpaca_eval": ae.get("win_rate"), "alpaca_se": ae.get("standard_error"),
           "avg_length": ae.get("avg_length"), "judge": (scores.get("judge") or {}).get("type"),
           "alpaca_eval_2_lc": ae2.get("length_controlled_winrate"),
           "alpaca_eval_2_lc_se": ae2.get("lc_standard_error"),
           "alpaca_eval_2": ae2.get("win_rate"), "alpaca_eval_2_se": ae2.get("standard_error"),
           "arena_hard": ah.get("score"), "arena_hard_ci": ah.get("ci_95")}
    for task, _ in LEADERBOARD_COLUMNS:
        out[task] = (lm.get(task) or {}).get("value")
    return out


def _pm(value, error, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" ± {error:.{digits}f}" if error is not None else "")


def table(rows: list[dict]) -> str:
    head = ["run", "judge", "MT-Bench", "turn 1", "turn 2", "AlpacaEval win %", "avg length",
            "AlpacaEval 2.0 LC %", "AlpacaEval 2.0 win %", "Arena-Hard % (95% CI)"] + \
        [label for _, label in LEADERBOARD_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        ah = "–" if r.get("arena_hard") is None else f"{r['arena_hard']:.1f}" + \
            (f" ({r['arena_hard_ci'][0]:.1f} to {r['arena_hard_ci'][1]:.1f})" if r.get("arena_hard_ci") else "")
        cells = [str(r["name"]), r.get("judge") or "GPT-4", _fmt(r.get("mt_bench")), _fmt(r.get("turn_1")),
                 _fmt(r.get("turn_2")), _pm(r.get("alpaca_eval"), r.get("alpaca_se")), _fmt(r.get("avg_length"), 0),
                 _pm(r.get("alpaca_eval_2_lc"), r.get("alpaca_eval_2_lc_se"), 1),
                 _pm(r.get("alpaca_eval_2"), r.get("alpaca_eval_2_se"), 1), ah] + \
            [_fmt(r.get(task)) for task, _ in LEADERBOARD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(runs: list[dict]) -> list[str]:
    """What a reader must know to read the new columns: skipped prompts, judge failures, how LC was fitted."""
    notes = []
    for s in runs:
        name = s.get("model_id")
        ah, ae2 = s.get("arena_hard") or {}, s.get("alpaca_eval_2") or {}
        if ah.get("missing_baseline"):
            notes.append(f"{name}: Arena-Hard skipped {ah['missing_baseline']} of {ah.get('questions')} prompts "
                         "that have no baseline answer")
        if ah.get("failures"):
            notes.append(f"{name}: Arena-Hard has {ah['failures']} judgment(s) without a verdict (not scored)")
        if ae2:
            notes.append(f"{name}: AlpacaEval 2.0 with {ae2.get('preferences') or 'no'} preferences, GLM "
                         f"{ae2.get('glm')}, baseline {', '.join(ae2.get('baseline') or [])}"
                         + (f", {ae2['failures']} judge failure(s)" if ae2.get("failures") else ""))
        for bench in ("mt_bench", "alpaca_eval", "alpaca_eval_2", "arena_hard"):
            src = (s.get(bench) or {}).get("answers_from")
            if src:
                skipped = f" ({src['missing']} prompt(s) without an answer skipped)" if src.get("missing") else ""
                notes.append(f"{name}: {bench} answers read from {src['file']}{skipped}")
    return notes


def report(folders: list[Path], out: Path | None = None) -> str:
    """The markdown report; with ``out``, also writes report.md, scores.json and radar.png there."""
    runs = [load_run(f) for f in folders]
    rows = [row(s) for s in runs]
    names = [r["name"] for r in rows]
    if len(set(names)) < len(names):  # the same model_id twice: tell them apart by folder
        for r, s in zip(rows, runs):
            r["name"] = f"{r['name']} ({s['folder']})"
    published = [dict(p, judge="GPT-4") for p in PUBLISHED]
    text = "# Evaluation report\n\n## Runs\n\n" + table(rows) + "\n\n"
    judges = sorted({r["judge"] for r in rows if r.get("judge")})
    if "function" in judges:
        text += ("Runs judged by a function judge (such as the offline lexical judge) measure that the pipeline "
                 "works, not model quality: compare them with each other only, never with the published rows.\n\n")
    notes = _notes(runs)
    if notes:
        text += "".join(f"- {n}\n" for n in notes) + "\n"
    text += ("## Published figures (for reference)\n\nFrom the Zephyr paper (arXiv 2310.16944) and the "
             "Zephyr-7B-beta model card (GPT-4 as judge), and alpaca_eval's AlpacaEval 2.0 leaderboard "
             "(GPT-4 Turbo as judge, weighted_alpaca_eval_gpt4_turbo): full benchmarks, 7B models. These rows "
             "were not produced by this report.\n\n" + table(published) + "\n")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        drawn = plots.radar({r["name"]: (s.get("mt_bench") or {}).get("categories") or {} for r, s in zip(rows, runs)},
                            out / "radar.png", "MT-Bench by category")
        if drawn:
            text += "\n![MT-Bench by category](radar.png)\n"
        (out / "report.md").write_text(text)
        (out / "scores.json").write_text(json.dumps({"runs": runs, "published": PUBLISHED}, indent=2) + "\n")
    return text
