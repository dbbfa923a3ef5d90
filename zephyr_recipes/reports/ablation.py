"""The Zephyr paper's ablation (its Table 3) from pipeline folders: one row per evaluated model, the
MT-Bench-style mean grade and the AlpacaEval-style win rate, averaged over the pipelines given (one per seed),
with the spread, every seed's figure, and the pipeline's own claims, each as a difference with its 95% interval
(a paired bootstrap over the held-out items, crossed with the seeds; :mod:`.intervals`) and a verdict: holds,
not shown or fails.

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
import statistics
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from .. import benchmarks
from ..core import runfolder
from ..core.errors import ZephyrError, unknown_key
from ..evaluation import intervals, plots
from .report import published as published_rows


@lru_cache(maxsize=None)
def metrics_table() -> dict:
    """The ablation's figures (Table 3): the benchmarks' metrics that carry an ablation label, by metric key. Built
    on first use: it imports every benchmark module, which a run that reports nothing does not need."""
    return {m.key: (m.ablation_label, (b.name, m.path)) for b, m in benchmarks.metrics() if m.ablation_label}


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


def _value(scores: dict, metric: str):
    return benchmarks.value(scores, metric)


def collect(folders: list[Path]) -> tuple[list[str], dict, list[dict], list[str]]:
    """(row names in order, {name: [scores per seed]}, claims, seed labels)."""
    names, per_run, claims, labels = [], {}, None, []
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


def _stats(values: list) -> tuple[float | None, float | None]:
    got = [v for v in values if v is not None]
    if not got:
        return None, None
    return statistics.fmean(got), (statistics.stdev(got) if len(got) > 1 else None)


def _cell(values: list, digits: int) -> str:
    mean, sd = _stats(values)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def _items(scores: dict, metric: str) -> dict | None:
    if "_items" in scores:  # a blend of two rows (a `recovers` claim's bound)
        return scores["_items"]
    return intervals.items(Path(scores["eval_folder"]), metric) if scores.get("eval_folder") else None


def compare(mine: list[dict], theirs: list, metric: str, strict: bool, labels: list[str]) -> dict:
    """One comparison, seed by seed and pooled: the headline figures, the mean difference (mine - theirs) with its
    95% interval and verdict. ``mine`` and ``theirs`` hold one scores dict per seed; ``theirs`` may be numbers."""
    seeds = []
    for i in range(len(labels)):
        a = _value(mine[i], metric)
        b = theirs[i] if not isinstance(theirs[i], dict) else \
            theirs[i]["_value"] if "_items" in theirs[i] else _value(theirs[i], metric)
        seeds.append({"seed": labels[i], "value": a, "bound": None if b is None else float(b)})
    diffs = intervals.paired([_items(s, metric) for s in mine],
                             [t if not isinstance(t, dict) else _items(t, metric) for t in theirs])
    unit = "questions" if metric == "mt_bench" else "instructions"
    if diffs is None:  # no per-item judgments (answers from elsewhere, or an older run): seeds only
        got = [s for s in seeds if s["value"] is not None and s["bound"] is not None]
        if not got:
            return {"verdict": None, "detail": "no figures", "per_seed": seeds}
        diffs = np.array([[s["value"] - s["bound"]] for s in got])
        unit = None
    out = {"per_seed": seeds, "items": diffs.shape[1], "unit": unit, "seeds": diffs.shape[0]}
    if diffs.shape[0] == 1 and diffs.shape[1] == 1:
        d = float(diffs[0, 0])
        out.update(diff=d, low=None, high=None, verdict=None,
                   detail="one seed and no per-item judgments: no interval")
        return out
    out["diff"], out["low"], out["high"] = intervals.bootstrap(diffs)
    out["verdict"] = intervals.verdict(out["low"], out["high"], strict)
    if unit is not None:
        for i, s in enumerate(seeds):
            s["diff"], s["low"], s["high"] = intervals.bootstrap(diffs[i])
            s["verdict"] = intervals.verdict(s["low"], s["high"], strict)
    return out


def _blend(of: dict, over: dict, share: float, metric: str) -> dict:
    """The bound of a `recovers` claim for one seed: over + share * (of - over), item by item and as a figure."""
    a, b = _items(of, metric), _items(over, metric)
    va, vb = _value(of, metric), _value(over, metric)
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
        if rec is not None:
            theirs = [_blend(o, v, float(rec["share"]), metric) for o, v in zip(per_run[rec["of"]], per_run[rec["over"]])]
        else:
            theirs = per_run[other] if isinstance(other, str) else [float(other)] * len(labels)
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
        digits = 2 if c["metric"] == "mt_bench" else 1
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
    for ax, metric in zip(axes, metrics_table()):
        means = [_stats([_value(s, metric) for s in per_run[n]])[0] or 0.0 for n in names]
        ax.bar(range(len(names)), means, color="#8fb3d9")
        for x, n in enumerate(names):
            ys = [_value(s, metric) for s in per_run[n] if _value(s, metric) is not None]
            ax.scatter([x] * len(ys), ys, color="#1f3b5c", s=14, zorder=3)
        ax.set_xticks(range(len(names)))
        labels = names if metric != "alpaca_eval" or not baselines else \
            [f"{n} vs {'/'.join(baselines.get(n) or ['?'])}" for n in names]
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(metrics_table()[metric][0], fontsize=10)
        if metric == "alpaca_eval":
            ax.axhline(50, color="grey", linewidth=0.8, linestyle="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ rounds
def _round_stages(folder: Path) -> tuple[dict, list[dict]] | None:
    """The rounds of a pipeline folder: (rounds spec, [per round: {round, eval, aif, dpo folders}]); None without."""
    spec = (yaml.safe_load((folder / "pipeline.yaml").read_text()) or {}).get("pipeline") or {}
    rounds = spec.get("rounds")
    if not rounds:
        return None
    where = {st["name"]: Path(st.get("folder") or folder / st["name"]) for st in spec.get("stages") or []}
    per = []
    for r in range(1, int(rounds["count"]) + 1):
        got = {"round": r}
        for block in rounds["stages"]:
            f = where.get(f"{block}-r{r}")
            if f is None:
                continue
            if (f / "scores.json").is_file():
                got.setdefault("eval", f)
            elif (f / "summary.json").is_file() and (f / "data").is_dir():
                got.setdefault("aif", f)
        got["dpo"] = where.get(f"{rounds['next_policy']}-r{r}")
        per.append(got)
    start = None
    for st in spec.get("stages") or []:
        if "round" in st:
            continue
        f = where[st["name"]]
        if (f / "scores.json").is_file():
            model = json.loads((f / "scores.json").read_text()).get("model")
            if start is None or model == rounds.get("policy"):
                start = f
    return {**rounds, "start": start}, per


def _round_facts(r: dict) -> dict:
    """Measured figures of one round: grade, win rate, AIF pairs and ties, the policy's own rating, DPO's fit."""
    out = {"round": r["round"]}
    if r.get("eval"):
        scores = json.loads((r["eval"] / "scores.json").read_text())
        out["mt_bench"], out["alpaca_eval"] = _value(scores, "mt_bench"), _value(scores, "alpaca_eval")
    if r.get("aif"):
        summary = json.loads((r["aif"] / "summary.json").read_text())
        out["prompts"] = summary.get("prompts")
        out["pairs"] = (summary.get("pairs") or {}).get("train_prefs", 0) + (summary.get("pairs") or {}).get("test_prefs", 0)
        skipped = (summary.get("binarize") or {}).get("skipped") or {}
        out["tied"] = skipped.get("all_tied", 0)  # prompts whose answers were all rated alike: no pair
        cfg = yaml.safe_load((r["aif"] / runfolder.CONFIG).read_text())
        own = [g.get("name") for g in cfg["stage"]["generators"] if g.get("type") == "transformers"]
        rated = [v for k, v in (summary.get("mean_score_by_generator") or {}).items() if k in own]
        out["policy_rating"] = statistics.fmean(rated) if rated else None
    if r.get("dpo") and runfolder.is_complete(r["dpo"]):
        metrics = (runfolder.read_status(r["dpo"]) or {}).get("metrics") or {}
        out["dpo_loss"] = metrics.get("last_loss")
        out["dpo_first_loss"] = metrics.get("first_loss")
        out["reward_accuracy"] = metrics.get("rewards/accuracies")
        out["reward_margin"] = metrics.get("rewards/margins")
    return out


def _why_not(later: dict, first: dict) -> str:
    """The measured reason a later round did not beat round 1, from what changed between them."""
    parts, causes = [], []
    if later.get("pairs") is not None and first.get("pairs"):
        parts.append(f"{later['pairs']} preference pairs against {first['pairs']} in round 1")
        if later["pairs"] < 0.75 * first["pairs"]:
            causes.append("fewer of the policy's answers differed in rating, so DPO had fewer pairs to learn from")
    if later.get("prompts") and first.get("prompts") and later.get("tied") is not None and first.get("tied") is not None:
        parts.append(f"{later['tied'] / later['prompts']:.0%} of its prompts gave no pair because every answer "
                     f"was rated alike (round 1: {first['tied'] / first['prompts']:.0%})")
    if later.get("policy_rating") is not None and first.get("policy_rating") is not None:
        parts.append(f"the judge's mean rating of the policy's own answers {later['policy_rating']:.2f} "
                     f"(round 1: {first['policy_rating']:.2f})")
        if later["policy_rating"] < first["policy_rating"] - 0.25:
            causes.append("the policy answering the round's prompts was already rated lower than round 1's")
    if later.get("dpo_loss") is not None and later.get("dpo_first_loss") is not None:
        parts.append(f"DPO's loss {later['dpo_first_loss']:.3f} -> {later['dpo_loss']:.3f}")
    if later.get("reward_accuracy") is not None and first.get("reward_accuracy") is not None:
        parts.append(f"final reward accuracy {later['reward_accuracy']:.2f} (round 1: {first['reward_accuracy']:.2f})")
    few = later.get("pairs") is not None and later.get("prompts") and later["pairs"] < later["prompts"] / 2
    if not causes and later.get("dpo_loss") is not None and later.get("dpo_first_loss") is not None \
            and later["dpo_loss"] >= later["dpo_first_loss"]:
        causes.append(f"DPO's loss did not fall in this round ({later['dpo_first_loss']:.3f} -> {later['dpo_loss']:.3f})"
                      + (f" on its {later['pairs']} pairs from {later['prompts']} prompts" if few else "")
                      + ": the round's pairs did not teach the policy beyond what round 1 had")
    if not causes and few:
        causes.append(f"only {later['pairs']} of {later['prompts']} prompts gave a pair, and the round moved the "
                      f"grade by {later['mt_bench'] - first['mt_bench']:+.2f}")
    if not causes and later.get("reward_accuracy") is not None and later["reward_accuracy"] >= 0.9:
        causes.append("DPO fitted its pairs, but the held-out grade did not follow: the pairs taught something the "
                      "held-out prompts do not reward")
    if not causes:
        causes.append("none of these moved enough to explain it: the difference is within what one seed's noise gives")
    return "measured: " + ("; ".join(parts) or "the grades only") + ". The reason, from these figures: " \
        + "; ".join(causes) + "."


def _scores_of(folder: Path | None) -> dict | None:
    if folder is None or not (Path(folder) / "scores.json").is_file():
        return None
    return {**json.loads((Path(folder) / "scores.json").read_text()), "eval_folder": str(folder)}


def _round_comparisons(scored: dict, seeds: list[str], count: int) -> list[dict]:
    """Per round: its difference from dSFT and from round 1, pooled over the seeds and seed by seed."""
    out = []
    for r in range(1, count + 1):
        mine = [scored[label][1][r - 1] if r <= len(scored[label][1]) else None for label in seeds]
        if not seeds or any(m is None for m in mine):
            continue
        got = {"round": r}
        starts = [scored[label][0] for label in seeds]
        if all(starts):
            got["vs_dsft"] = compare(mine, starts, "mt_bench", True, seeds)
        firsts = [scored[label][1][0] if scored[label][1] else None for label in seeds]
        if r > 1 and all(firsts):
            got["vs_round_1"] = compare(mine, firsts, "mt_bench", True, seeds)
        out.append(got)
    return out


def _rounds_summary(comparisons: list[dict], n_seeds: int) -> str:
    """One plain sentence on what the rounds show, from the verdicts."""
    over = f"over {n_seeds} seed(s)"
    vs_dsft = [c for c in comparisons if c.get("vs_dsft", {}).get("verdict")]
    later = [c for c in comparisons if c.get("vs_round_1", {}).get("verdict")]
    beat = [c["round"] for c in vs_dsft if c["vs_dsft"]["verdict"] == "holds"]
    parts = []
    if vs_dsft:
        parts.append(("Every round beats dSFT" if len(beat) == len(vs_dsft) else
                      f"Round {beat[0]} beats dSFT" if len(beat) == 1 else
                      f"Rounds {', '.join(map(str, beat))} beat dSFT" if beat else "No round is shown to beat dSFT")
                     + f" {over}" + (", the others are not shown to" if beat and len(beat) < len(vs_dsft) else "")
                     + ".")
    if later:
        helped = [c["round"] for c in later if c["vs_round_1"]["verdict"] == "holds"]
        if len(helped) == len(later):
            parts.append("Every later round beats round 1: on-policy rounds help on this task.")
        else:
            worse = [c["round"] for c in later if c["vs_round_1"]["verdict"] == "fails"]
            parts.append("Later rounds are not shown to beat round 1 on this task"
                         + (f" (only round {', '.join(map(str, helped))} does)" if helped else "")
                         + (f"; round {', '.join(map(str, worse))} is clearly below it" if worse else "")
                         + ": the on-policy rounds after the first do not help here, by these intervals.")
    return " ".join(parts)


def rounds_report(folders: list[Path], labels: list[str], out: Path | None) -> tuple[str, dict]:
    """Grade by round beside dSFT, seed by seed, with whether rounds 2 and later beat round 1, and why not."""
    found = [(_round_stages(Path(f)), label) for f, label in zip(folders, labels)]
    if not any(x for x, _ in found):
        return "", {}
    text = ["", "## Rounds of on-policy AIF + dDPO", ""]
    data, series = {}, {}
    count = max(int(x[0]["count"]) for x, _ in found if x)
    text += ["| seed | dSFT | " + " | ".join(f"round {r}" for r in range(1, count + 1)) + " |",
             "|" + " --- |" * (count + 2)]
    statements, scored = [], {}
    for x, label in found:
        if not x:
            continue
        rounds, per = x
        start = _scores_of(rounds["start"])
        facts = [_round_facts(r) for r in per]
        data[label] = {"dSFT": _value(start, "mt_bench") if start else None, "rounds": facts}
        scored[label] = (start, [_scores_of(r.get("eval")) for r in per])
        series[label] = [data[label]["dSFT"]] + [f.get("mt_bench") for f in facts]
        cells = ["–" if v is None else f"{v:.2f}" for v in series[label]]
        text.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = list(scored)
    comparisons = _round_comparisons(scored, seeds, count)
    if comparisons:
        text += ["", f"Each round against dSFT and against round 1 (MT-Bench-style grade): the mean difference over "
                 f"{len(seeds)} seed(s) with its {intervals.LEVEL:.0%} interval (a paired bootstrap over the held-out "
                 "questions" + (", crossed with the seeds" if len(seeds) > 1 else "") + ") and the verdict on "
                 "\"beats\": **holds** when the interval is above 0, **not shown** when it straddles 0, **fails** "
                 "when it is at or below 0.", "",
                 "| round | grade | − dSFT | verdict | − round 1 | verdict |", "| --- | --- | --- | --- | --- | --- |"]
        for c in comparisons:
            def cell(k, c=c):
                got = c.get(k)
                if not got or got.get("low") is None:
                    return "–", "–"
                return intervals.interval_text(got["diff"], got["low"], got["high"], 2), f"**{got['verdict']}**"
            grade = _stats([s["value"] for s in c["vs_dsft"]["per_seed"]])[0] if c.get("vs_dsft") else None
            text.append(f"| {c['round']} | {'–' if grade is None else f'{grade:.2f}'} | "
                        + " | ".join(cell("vs_dsft")) + " | " + " | ".join(cell("vs_round_1")) + " |")
        text += ["", _rounds_summary(comparisons, len(seeds))]
    for label in seeds:
        facts = data[label]["rounds"]
        first = facts[0] if facts else {}
        said = []
        for c in comparisons:
            got = c.get("vs_round_1")
            if not got:
                continue
            i = seeds.index(label)
            s = got["per_seed"][i]
            later = facts[c["round"] - 1]
            if s.get("value") is None or s.get("bound") is None:
                said.append(f"round {c['round']}: not evaluated")
                continue
            where = (f" ({s['value']:.2f} vs {s['bound']:.2f}, "
                     + (intervals.interval_text(s["diff"], s["low"], s["high"], 2) if s.get("low") is not None
                        else intervals.fmt(s["value"] - s["bound"], 2)) + ")")
            if s.get("verdict", "holds" if s["value"] > s["bound"] else None) == "holds":
                said.append(f"round {c['round']} beats round 1{where}")
            else:
                how = "is not shown to beat" if s.get("verdict") == "not shown" else "does **not** beat"
                said.append(f"round {c['round']} {how} round 1{where}; " + _why_not(later, first))
        if said:
            statements.append(f"- {label}: " + " ".join(t if t.endswith(".") else t + "." for t in said))
    text += ["", "Per round: the round's model's MT-Bench-style grade and win rate against dSFT; its AI feedback's "
             "pairs, prompts whose answers were all rated alike, and the judge's mean rating of the policy's own "
             "answers; DPO's final loss and reward accuracy.", "",
             "| seed | round | grade | win % | pairs | prompts all tied | policy's rating | DPO loss | reward acc. |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, d in data.items():
        for f in d["rounds"]:
            def c(k, fmt, f=f):
                return "–" if f.get(k) is None else format(f[k], fmt)
            text.append(f"| {label} | {f['round']} | {c('mt_bench', '.2f')} | {c('alpaca_eval', '.1f')} | "
                        f"{c('pairs', 'd')} | {c('tied', 'd')} | {c('policy_rating', '.2f')} | {c('dpo_loss', '.3f')} | "
                        f"{c('reward_accuracy', '.2f')} |")
    if statements:
        text += ["", "Do later rounds beat round 1, seed by seed?", ""] + statements
    md = "\n".join(text) + "\n"
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for label, ys in series.items():
            xs = [x for x, y in enumerate(ys) if y is not None]
            ax.plot(xs, [ys[x] for x in xs], marker="o", label=label)
        ax.set_xticks(range(count + 1))
        ax.set_xticklabels(["dSFT"] + [f"round {r}" for r in range(1, count + 1)])
        ax.set_ylabel("MT-Bench-style grade (1-10)")
        ax.set_title("Grade by round", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(out) / "rounds.png", dpi=110)
        plt.close(fig)
        md += "\n![Grade by round](rounds.png)\n"
    return md, {**data, "comparisons": comparisons}


def report(folders: list[Path], out: Path | None = None) -> str:
    """The Table 3 markdown; with ``out``, also writes report.md, table3.png, radar.png and scores.json there."""
    names, per_run, claims, labels = collect(folders)
    n = len(labels)
    baselines = {n_: sorted({b for s in per_run[n_] for b in (s.get("alpaca_eval") or {}).get("baseline", [])})
                 for n_ in names}
    spread = (f"Figures are the mean ± standard deviation over {n} seeds." if n > 1 else
              "Figures are from one seed; give several pipeline folders (one per seed) for mean and spread.")
    text = ["# The Zephyr ablation (Table 3) on this pipeline", "",
            f"Pipelines: {', '.join(str(f) for f in folders)}. {spread}", "",
            "| model | MT-Bench-style grade | turn 1 | turn 2 | AlpacaEval-style win % | against |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in names:
        runs = per_run[name]
        text.append(f"| {name} | {_cell([_value(s, 'mt_bench') for s in runs], 2)} | "
                    f"{_cell([(s.get('mt_bench') or {}).get('turn_1') for s in runs], 2)} | "
                    f"{_cell([(s.get('mt_bench') or {}).get('turn_2') for s in runs], 2)} | "
                    f"{_cell([_value(s, 'alpaca_eval') for s in runs], 1)} | {', '.join(baselines[name]) or '–'} |")
    if n > 1:
        text += ["", "Every seed:", "", "| model | " + " | ".join(labels) + " |", "|" + " --- |" * (n + 1)]
        for name in names:
            cells = []
            for s in per_run[name]:
                mt, wr = _value(s, "mt_bench"), _value(s, "alpaca_eval")
                cells.append(("–" if mt is None else f"{mt:.2f}") + " / " + ("–" if wr is None else f"{wr:.1f}%"))
            text.append(f"| {name} | " + " | ".join(cells) + " |")
    checked = evaluate_claims(claims, per_run, labels)
    text += claim_lines(checked, n)
    judges = sorted({(s.get("judge") or {}).get("module") or (s.get("judge") or {}).get("model") or "?"
                     for runs in per_run.values() for s in runs})
    published = "; ".join(f"{p['name'].removeprefix('ablation: ').removesuffix(' (published)')} {p['mt_bench']:.2f}"
                          for p in published_rows() if p["name"].startswith("ablation: "))
    text += ["", f"Judge: {', '.join(judges)}. The published Zephyr-7B figures (GPT-4 judge, MT-Bench): {published}; "
             "they are on another scale and another task, for the shape of the result only.", ""]
    md = "\n".join(text)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    rounds_md, rounds_data = rounds_report(folders, labels, out)
    md += rounds_md
    if out is not None:
        bars(names, per_run, out / "table3.png", baselines)
        md += "\n![Table 3](table3.png)\n"
        cats = {}
        for name in names:
            keys = {k for s in per_run[name] for k in ((s.get("mt_bench") or {}).get("categories") or {})}
            cats[name] = {k: _stats([((s.get("mt_bench") or {}).get("categories") or {}).get(k)
                                     for s in per_run[name]])[0] for k in keys}
        if plots.radar(cats, out / "radar.png", "MT-Bench-style grade by task"):
            md += "\n![MT-Bench-style grade by task](radar.png)\n"
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

