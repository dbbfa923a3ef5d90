"""The rounds of an on-policy pipeline (AI feedback and dDPO repeated, each from the last round's policy): the grade
by round beside dSFT, seed by seed, each round against dSFT and round 1 with its interval and verdict, and the
measured reason a later round did not beat the first."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml

from ..core import runfolder
from ..core.recipe import recipe_of
from ..evaluation import intervals
from ..stages.aif import AIFStageConfig
from .figures import compare, grade, mean_sd, short, value_of, win
from .figures import label as metric_label


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
        got: dict = {"round": r}
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
        for m in (grade()[1], win()[1]):
            out[m.key] = value_of(scores, m.key)
    if r.get("aif"):
        summary = json.loads((r["aif"] / "summary.json").read_text())
        out["prompts"] = summary.get("prompts")
        out["pairs"] = (summary.get("pairs") or {}).get("train_prefs", 0) + (summary.get("pairs") or {}).get("test_prefs", 0)
        skipped = (summary.get("binarize") or {}).get("skipped") or {}
        out["tied"] = skipped.get("all_tied", 0)  # prompts whose answers were all rated alike: no pair
        cfg = yaml.safe_load((r["aif"] / runfolder.CONFIG).read_text())
        own = [g.name for g in recipe_of(cfg, AIFStageConfig).stage.generators if g.type == "transformers"]
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
    key = grade()[1].key
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
                      f"grade by {later[key] - first[key]:+.2f}")
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
        got: dict = {"round": r}
        starts = [scored[label][0] for label in seeds]
        if all(starts):
            got["vs_dsft"] = compare(mine, starts, grade()[1].key, True, seeds)
        firsts = [scored[label][1][0] if scored[label][1] else None for label in seeds]
        if r > 1 and all(firsts):
            got["vs_round_1"] = compare(mine, firsts, grade()[1].key, True, seeds)
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



def _grades(found: list, count: int) -> tuple[list[str], dict, dict, dict]:
    """The grade by round, seed by seed: (table lines, {seed: dSFT and round facts}, {seed: grades}, {seed: scores})."""
    key = grade()[1].key
    text = ["| seed | dSFT | " + " | ".join(f"round {r}" for r in range(1, count + 1)) + " |",
            "|" + " --- |" * (count + 2)]
    data, series, scored = {}, {}, {}
    for x, label in found:
        if not x:
            continue
        rounds, per = x
        start = _scores_of(rounds["start"])
        facts = [_round_facts(r) for r in per]
        data[label] = {"dSFT": value_of(start, key) if start else None, "rounds": facts}
        scored[label] = (start, [_scores_of(r.get("eval")) for r in per])
        series[label] = [data[label]["dSFT"]] + [f.get(key) for f in facts]
        cells = ["–" if v is None else f"{v:.2f}" for v in series[label]]
        text.append(f"| {label} | " + " | ".join(cells) + " |")
    return text, data, series, scored


def _comparison_table(comparisons: list[dict], seeds: list[str]) -> list[str]:
    """Each round against dSFT and against round 1, with the verdicts and the summary sentence."""
    bench, m = grade()
    text = ["", f"Each round against dSFT and against round 1 ({short(m)}): the mean difference over "
            f"{len(seeds)} seed(s) with its {intervals.LEVEL:.0%} interval (a paired bootstrap over the held-out "
            f"{bench.items}" + (", crossed with the seeds" if len(seeds) > 1 else "") + ") and the verdict on "
            "\"beats\": **holds** when the interval is above 0, **not shown** when it straddles 0, **fails** "
            "when it is at or below 0.", "",
            "| round | grade | − dSFT | verdict | − round 1 | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        def cells(k, c=c):
            got = c.get(k)
            if not got or got.get("low") is None:
                return "–", "–"
            return (intervals.interval_text(got["diff"], got["low"], got["high"], m.ablation_digits),
                    f"**{got['verdict']}**")
        mean = mean_sd([s["value"] for s in c["vs_dsft"]["per_seed"]])[0] if c.get("vs_dsft") else None
        text.append(f"| {c['round']} | {'–' if mean is None else f'{mean:.2f}'} | "
                    + " | ".join(cells("vs_dsft")) + " | " + " | ".join(cells("vs_round_1")) + " |")
    return text + ["", _rounds_summary(comparisons, len(seeds))]


def _statements(seeds: list[str], data: dict, comparisons: list[dict]) -> list[str]:
    """Per seed: whether each later round beats round 1, and the measured reason where it does not."""
    digits = grade()[1].ablation_digits
    statements = []
    for label in seeds:
        facts = data[label]["rounds"]
        first = facts[0] if facts else {}
        said = []
        for c in comparisons:
            got = c.get("vs_round_1")
            if not got:
                continue
            s = got["per_seed"][seeds.index(label)]
            later = facts[c["round"] - 1]
            if s.get("value") is None or s.get("bound") is None:
                said.append(f"round {c['round']}: not evaluated")
                continue
            where = (f" ({s['value']:.2f} vs {s['bound']:.2f}, "
                     + (intervals.interval_text(s["diff"], s["low"], s["high"], digits) if s.get("low") is not None
                        else intervals.fmt(s["value"] - s["bound"], digits)) + ")")
            if s.get("verdict", "holds" if s["value"] > s["bound"] else None) == "holds":
                said.append(f"round {c['round']} beats round 1{where}")
            else:
                how = "is not shown to beat" if s.get("verdict") == "not shown" else "does **not** beat"
                said.append(f"round {c['round']} {how} round 1{where}; " + _why_not(later, first))
        if said:
            statements.append(f"- {label}: " + " ".join(t if t.endswith(".") else t + "." for t in said))
    return statements


def _facts_table(data: dict) -> list[str]:
    """Per seed and round: the grade, the win rate, the AI feedback's pairs and ties, DPO's fit."""
    (_, g), (_, w) = grade(), win()
    text = ["", f"Per round: the round's model's {short(g)} and win rate against dSFT; its AI "
            "feedback's pairs, prompts whose answers were all rated alike, and the judge's mean rating of the "
            "policy's own answers; DPO's final loss and reward accuracy.", "",
            "| seed | round | grade | win % | pairs | prompts all tied | policy's rating | DPO loss | reward acc. |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, d in data.items():
        for f in d["rounds"]:
            def c(k, fmt, f=f):
                return "–" if f.get(k) is None else format(f[k], fmt)
            text.append(f"| {label} | {f['round']} | {c(g.key, f'.{g.ablation_digits}f')} | "
                        f"{c(w.key, f'.{w.ablation_digits}f')} | {c('pairs', 'd')} | {c('tied', 'd')} | "
                        f"{c('policy_rating', '.2f')} | {c('dpo_loss', '.3f')} | {c('reward_accuracy', '.2f')} |")
    return text


def _plot(series: dict, count: int, out: Path) -> str:
    """The grade by round, one line per seed, as rounds.png; its markdown line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, ys in series.items():
        xs = [x for x, y in enumerate(ys) if y is not None]
        ax.plot(xs, [ys[x] for x in xs], marker="o", label=label)
    ax.set_xticks(range(count + 1))
    ax.set_xticklabels(["dSFT"] + [f"round {r}" for r in range(1, count + 1)])
    ax.set_ylabel(metric_label(grade()[1]))
    ax.set_title("Grade by round", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(out) / "rounds.png", dpi=110)
    plt.close(fig)
    return "\n![Grade by round](rounds.png)\n"


def rounds_report(folders: list[Path], labels: list[str], out: Path | None) -> tuple[str, dict]:
    """Grade by round beside dSFT, seed by seed, with whether rounds 2 and later beat round 1, and why not."""
    found = [(_round_stages(Path(f)), label) for f, label in zip(folders, labels)]
    if not any(x for x, _ in found):
        return "", {}
    count = max(int(x[0]["count"]) for x, _ in found if x)
    table, data, series, scored = _grades(found, count)
    text = ["", "## Rounds of on-policy AIF + dDPO", ""] + table
    seeds = list(scored)
    comparisons = _round_comparisons(scored, seeds, count)
    if comparisons:
        text += _comparison_table(comparisons, seeds)
    statements = _statements(seeds, data, comparisons)
    text += _facts_table(data)
    if statements:
        text += ["", "Do later rounds beat round 1, seed by seed?", ""] + statements
    md = "\n".join(text) + "\n"
    if out is not None:
        md += _plot(series, count, out)
    return md, {**data, "comparisons": comparisons}
