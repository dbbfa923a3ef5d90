"""The Zephyr paper's ablation (its Table 3) from pipeline folders: one row per evaluated model, each benchmark
metric with an ablation label (:mod:`.figures`: the MT-Bench-style mean grade and the AlpacaEval-style win rate),
averaged over the pipelines given (one per seed), with the spread, every seed's figure, and the pipeline's own
claims, each as a difference with its 95% interval (a paired bootstrap over the held-out items, crossed with the
seeds; :mod:`zephyr_recipes.evaluation.intervals`) and a verdict: holds, not shown or fails. The rounds of an
on-policy pipeline are :mod:`.rounds`.

A pipeline names its claims under ``pipeline.report.claims``::

    report:
      claims:
        - {run: dSFT + dDPO, metric: mt_bench, above: dSFT}         # above another row
        - {run: dSFT + dDPO, metric: alpaca_eval, above: 50}        # above a number
        - {run: dSFT + dDPO, metric: mt_bench, at_least: dSFT-2}    # at or above
        - {run: audited dDPO, metric: mt_bench, recovers: {share: 0.5, of: clean dDPO, over: dSFT}}
          # at least half of another row's gain over a third: run - over >= share * (of - over)
        - {run: dSFT + dDPO, metric: mt_bench, above: dSFT-2, check: false}
          # reported with its verdict, not asserted by `report --check` (a claim that did not hold)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import yaml

from ..core import runfolder
from ..core.errors import ZephyrError, unknown_key
from ..evaluation import intervals, plots
from .figures import (
    ablation_metrics,
    cell,
    compare,
    grade,
    item_scores,
    mean_sd,
    metric,
    metrics_table,
    number,
    short,
    value_of,
    win,
)
from .report import published as published_rows
from .rounds import rounds_report


def __getattr__(name: str):
    if name == "METRICS":  # the table under its former name
        return metrics_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CLAIM_KEYS = {"run", "metric", "above", "at_least", "recovers", "check"}
RECOVERS_KEYS = {"share", "of", "over"}


def is_pipeline_folder(folder: Path) -> bool:
    return (Path(folder) / "pipeline.yaml").is_file()


def check_claims(claims) -> list[dict]:
    """Validate ``pipeline.report.claims``; returns them as a list of dicts."""
    if claims is None:
        return []
    if not isinstance(claims, list):
        raise ZephyrError("pipeline.report.claims must be a list", "write claims as {run, metric, above | at_least}")
    for i, claim in enumerate(claims):
        where = f"pipeline.report.claims[{i}]"
        if not isinstance(claim, dict) or not claim.get("run") or claim.get("metric") not in metrics_table():
            raise ZephyrError(f"{where} needs a run and a metric ({' or '.join(metrics_table())})",
                              "write {run: dSFT + dDPO, metric: mt_bench, above: dSFT}")
        extra = set(claim) - CLAIM_KEYS
        if extra:
            raise unknown_key(where, sorted(extra)[0], sorted(CLAIM_KEYS))
        if not isinstance(claim.get("check", True), bool):
            raise ZephyrError(f"{where}.check is {claim['check']!r}", "write check: false (or leave it out)")
        if sum(k in claim for k in ("above", "at_least", "recovers")) != 1:
            raise ZephyrError(f"{where} needs exactly one of `above`, `at_least` and `recovers`",
                              "name another row (or a number) the run should beat")
        rec = claim.get("recovers")
        if rec is not None and (not isinstance(rec, dict) or set(rec) != RECOVERS_KEYS
                                or not isinstance(rec.get("share"), (int, float)) or not 0 < rec["share"] <= 1):
            raise ZephyrError(f"{where}.recovers needs share (0 to 1), of and over",
                              "write recovers: {share: 0.5, of: clean dDPO, over: dSFT}")
    return claims


def _stages(folder: Path) -> tuple[list[Path], list[dict]]:
    """The evaluation run folders of a pipeline, in stage order, and its claims."""
    spec = (yaml.safe_load((folder / "pipeline.yaml").read_text()) or {}).get("pipeline") or {}
    evals = []
    for st in spec.get("stages") or []:
        stage_folder = Path(st["folder"]) if st.get("folder") else folder / st["name"]  # a sweep's shared stage
        if (stage_folder / "scores.json").is_file():
            evals.append(stage_folder)
        elif st.get("name", "").startswith("eval") and not runfolder.is_complete(stage_folder):
            raise ZephyrError(f"{stage_folder} has not finished", f"run the pipeline to the end (output_dir {folder})")
    if not evals:
        raise ZephyrError(f"{folder} holds no finished evaluation stage", "its pipeline needs eval stages")
    return evals, check_claims((spec.get("report") or {}).get("claims"))


def collect(folders: list[Path]) -> tuple[list[str], dict, list[dict], list[str]]:
    """(row names in order, {name: [scores per seed]}, claims, seed labels)."""
    names: list[str] = []
    per_run: dict[str, list[dict]] = {}
    claims: list[dict] | None = None
    labels: list[str] = []
    for folder in folders:
        folder = Path(folder)
        evals, own_claims = _stages(folder)
        claims = own_claims if claims is None else claims
        status = json.loads((folder / "pipeline.json").read_text()) if (folder / "pipeline.json").is_file() else {}
        labels.append(f"seed {status.get('seed', '?')}" if status.get("seed") is not None else folder.name)
        for ev in evals:
            scores = {**json.loads((ev / "scores.json").read_text()), "eval_folder": str(ev)}
            name = scores.get("model_id") or ev.name
            if name not in per_run:
                names.append(name)
                per_run[name] = []
            per_run[name].append(scores)
    if len(set(labels)) < len(labels):
        labels = [str(Path(f)) for f in folders]
    for name in names:
        if len(per_run[name]) != len(folders):
            raise ZephyrError(f"the row {name!r} is in {len(per_run[name])} of the {len(folders)} pipelines given",
                              "give pipelines of the same recipe (one per seed)")
    return names, per_run, claims or [], labels


def _blend(of: dict, over: dict, share: float, metric: str) -> dict:
    """The bound of a `recovers` claim for one seed: over + share * (of - over), item by item and as a figure."""
    a, b = item_scores(of, metric), item_scores(over, metric)
    va, vb = value_of(of, metric), value_of(over, metric)
    items = None if a is None or b is None else {k: b[k] + share * (a[k] - b[k]) for k in set(a) & set(b)}
    value = None if va is None or vb is None else vb + share * (va - vb)
    return {"_items": items, "_value": value}


def evaluate_claims(claims: list[dict], per_run: dict, labels: list[str]) -> list[dict]:
    """Every claim with its pooled difference, interval and verdict, and the same per seed."""
    out = []
    for claim in claims:
        rec = claim.get("recovers")
        other = claim.get("above", claim.get("at_least"))
        strict = "above" in claim
        metric = claim["metric"]
        sign = ">" if strict else "≥"
        label = metrics_table()[metric][0]
        text = f"{claim['run']} {sign} {other} ({label})" if rec is None else \
            (f"{claim['run']} recovers ≥ {rec['share']:.0%} of {rec['of']}'s gain over {rec['over']} ({label})")
        names = [claim["run"]] + ([other] if isinstance(other, str) else []) + ([rec["of"], rec["over"]] if rec else [])
        missing = next((n for n in names if n not in per_run), None)
        if missing is not None:
            out.append({**claim, "text": text, "verdict": None, "detail": f"no row named {missing!r}"})
            continue
        theirs: list  # one scores dict (or a number) per seed
        if rec is not None:
            theirs = [_blend(o, v, float(rec["share"]), metric) for o, v in zip(per_run[rec["of"]], per_run[rec["over"]])]
        else:
            theirs = per_run[other] if isinstance(other, str) else [float(cast(float, other))] * len(labels)
        got = compare(per_run[claim["run"]], theirs, metric, strict, labels)
        got["held"] = sum(1 for s in got["per_seed"] if s.get("verdict") == "holds")
        out.append({**claim, "text": text, **got})
    return out


def claim_lines(checked: list[dict], n_seeds: int) -> list[str]:
    """The claims as report lines: verdict, pooled difference and interval, then each seed."""
    if not checked:
        return []
    units = sorted({f"{c['items']} {c['unit']}" for c in checked if c.get("unit")})
    over = (f"a paired bootstrap over the held-out items ({', '.join(units)})"
            + (f", crossed with a bootstrap over the {n_seeds} seeds" if n_seeds > 1 else ""))
    lines = ["", f"Claims of this pipeline: each is the difference (run − bound) with its {intervals.LEVEL:.0%} "
             f"interval from {over}. **holds**: the interval is clear of the bound on the claimed side; "
             "**not shown**: it straddles the bound; **fails**: it is clear on the wrong side.", ""]
    for c in checked:
        if c.get("diff") is None:
            lines.append(f"- {c['text']}: cannot be checked, {c.get('detail')}")
            continue
        digits = metric(c["metric"]).ablation_digits
        if c.get("low") is None:
            lines.append(f"- {c['text']}: **no verdict**, {intervals.fmt(c['diff'], digits)} ({c['detail']})")
            continue
        size = f"{c['seeds']} seed(s) × {c['items']} {c['unit']}" if c.get("unit") else \
            f"{c['seeds']} seeds (no per-item judgments: seeds only)"
        line = (f"- {c['text']}: **{c['verdict']}**, "
                f"{intervals.interval_text(c['diff'], c['low'], c['high'], digits)} over {size}")
        if n_seeds > 1 and c.get("unit"):
            per = "; ".join(f"{s['seed']} {s['value']:.{digits}f} vs {s['bound']:.{digits}f}, "
                            f"{intervals.interval_text(s['diff'], s['low'], s['high'], digits)} {s['verdict']}"
                            for s in c["per_seed"])
            line += f". Holds in {c['held']} of {n_seeds} seeds alone ({per})"
        elif c["per_seed"] and c["per_seed"][0]["value"] is not None and c["per_seed"][0]["bound"] is not None:
            s = c["per_seed"][0]
            line += f" ({s['value']:.{digits}f} vs {s['bound']:.{digits}f})"
        lines.append(line)
    return lines


def bars(names: list[str], per_run: dict, path: Path, baselines: dict | None = None) -> None:
    """Both figures per row: the mean over seeds as a bar, each seed as a dot; win rates name their baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (bench, m) in zip(axes, ablation_metrics()):
        means = [mean_sd([value_of(s, m.key) for s in per_run[n]])[0] or 0.0 for n in names]
        ax.bar(range(len(names)), means, color="#8fb3d9")
        for x, n in enumerate(names):
            ys = [value_of(s, m.key) for s in per_run[n] if value_of(s, m.key) is not None]
            ax.scatter([x] * len(ys), ys, color="#1f3b5c", s=14, zorder=3)
        ax.set_xticks(range(len(names)))
        compared = bench.asks == "compare"  # a win rate against a baseline: 50 is a tie
        labels = names if not compared or not baselines else \
            [f"{n} vs {'/'.join(baselines.get(n) or ['?'])}" for n in names]
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(m.ablation_label, fontsize=10)
        if compared:
            ax.axhline(50, color="grey", linewidth=0.8, linestyle="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _columns(baselines: dict) -> list[tuple]:
    """Table 3's columns after the model: (header, the cell of a row's runs). Each ablation metric (mean ± sd over
    the seeds), a benchmark's turns where it has several, and what a comparison was against."""
    cols: list[tuple] = []
    for bench, m in ablation_metrics():
        cols.append((short(m),
                     lambda name, runs, m=m: cell([value_of(s, m.key) for s in runs], m.ablation_digits)))
        for turn in range(1, bench.turns + 1 if bench.turns > 1 else 1):
            cols.append((f"turn {turn}", lambda name, runs, b=bench, m=m, k=f"turn_{turn}":
                         cell([(s.get(b.name) or {}).get(k) for s in runs], m.ablation_digits)))
        if bench.asks == "compare":
            cols.append(("against", lambda name, runs: ", ".join(baselines[name]) or "–"))
    return cols


def _table(names: list[str], per_run: dict, labels: list[str], baselines: dict) -> list[str]:
    """Table 3 (mean ± sd of every row), and with several seeds every seed's figures."""
    cols = _columns(baselines)
    text = ["| model | " + " | ".join(h for h, _ in cols) + " |", "|" + " --- |" * (len(cols) + 1)]
    text += [f"| {name} | " + " | ".join(c(name, per_run[name]) for _, c in cols) + " |" for name in names]
    if len(labels) > 1:
        text += ["", "Every seed:", "", "| model | " + " | ".join(labels) + " |", "|" + " --- |" * (len(labels) + 1)]
        for name in names:
            cells = [" / ".join(number(value_of(s, m.key), m) for _, m in ablation_metrics()) for s in per_run[name]]
            text.append(f"| {name} | " + " | ".join(cells) + " |")
    return text


def _radar(names: list[str], per_run: dict, out: Path) -> str:
    """The grading benchmark's categories, mean over seeds, as a radar chart; its markdown line ('' without)."""
    bench, m = grade()
    cats = {}
    for name in names:
        keys = {k for s in per_run[name] for k in ((s.get(bench.name) or {}).get("categories") or {})}
        cats[name] = {k: mean_sd([((s.get(bench.name) or {}).get("categories") or {}).get(k)
                                  for s in per_run[name]])[0] for k in keys}
    title = f"{short(m)} by task"
    return f"\n![{title}](radar.png)\n" if plots.radar(cats, out / "radar.png", title) else ""


def report(folders: list[Path], out: Path | None = None) -> str:
    """The Table 3 markdown; with ``out``, also writes report.md, table3.png, radar.png and scores.json there."""
    names, per_run, claims, labels = collect(folders)
    n = len(labels)
    compared = win()[0]
    baselines = {n_: sorted({b for s in per_run[n_] for b in compared.baselines(s.get(compared.name))})
                 for n_ in names}
    spread = (f"Figures are the mean ± standard deviation over {n} seeds." if n > 1 else
              "Figures are from one seed; give several pipeline folders (one per seed) for mean and spread.")
    text = ["# The Zephyr ablation (Table 3) on this pipeline", "",
            f"Pipelines: {', '.join(str(f) for f in folders)}. {spread}", ""]
    text += _table(names, per_run, labels, baselines)
    checked = evaluate_claims(claims, per_run, labels)
    text += claim_lines(checked, n)
    judges = sorted({(s.get("judge") or {}).get("module") or (s.get("judge") or {}).get("model") or "?"
                     for runs in per_run.values() for s in runs})
    graded, key = grade()[0], grade()[1].key
    published = "; ".join(f"{p['name'].removeprefix('ablation: ').removesuffix(' (published)')} {p[key]:.2f}"
                          for p in published_rows() if p["name"].startswith("ablation: "))
    text += ["", f"Judge: {', '.join(judges)}. The published Zephyr-7B figures (GPT-4 judge, {graded.title}): "
             f"{published}; they are on another scale and another task, for the shape of the result only.", ""]
    md = "\n".join(text)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    rounds_md, rounds_data = rounds_report(folders, labels, out)
    md += rounds_md
    if out is not None:
        bars(names, per_run, out / "table3.png", baselines)
        md += "\n![Table 3](table3.png)\n"
        md += _radar(names, per_run, out)
        (out / "report.md").write_text(md)
        (out / "scores.json").write_text(json.dumps(
            {"pipelines": [str(f) for f in folders], "seeds": labels, "rows": names,
             "runs": per_run, "claims": [{k: v for k, v in c.items()} for c in checked],
             **({"rounds": rounds_data} if rounds_data else {})}, indent=2, default=str) + "\n")
    return md


def check(folders: list[Path]) -> int:
    """``report --check``: 0 when every claim of the pipelines holds, else 1, naming each claim that does not (on
    stderr). Only the verdicts are asserted, never the figures: another processor's numbers may differ."""
    import sys

    names, per_run, claims, labels = collect(folders)
    checked = evaluate_claims(claims, per_run, labels)
    if not checked:
        print("check: the pipeline states no claims (pipeline.report.claims)", file=sys.stderr)
        return 1
    bad = [c for c in checked if c.get("verdict") != "holds" and c.get("check", True) is not False]
    for c in checked:
        note = "" if c.get("check", True) is not False else " (reported, not asserted: check: false)"
        print(f"check: {c['text']}: {c.get('verdict') or 'no verdict'}{note}", file=sys.stderr)
    asserted = [c for c in checked if c.get("check", True) is not False]
    reported = len(checked) - len(asserted)
    if bad:
        print(f"check: {len(bad)} of {len(asserted)} asserted claim(s) do not hold", file=sys.stderr)
        return 1
    print(f"check: all {len(asserted)} asserted claims hold over {len(labels)} seed(s)"
          + (f"; {reported} more reported, not asserted" if reported else ""), file=sys.stderr)
    return 0

