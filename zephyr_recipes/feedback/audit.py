"""The audit of an AI-feedback judge: how far to trust it, measured while it works, and a gate on what it got wrong.

``stage.audit`` of the AI-feedback stage names what is measured on a seeded sample of its prompts (every prompt for
a local or function judge; a stated number for a paid API judge, whose extra calls ``plan`` shows):

- **order consistency** (listwise and pairwise judges): the same answers asked again in another seeded order; the
  share of pairs whose chosen and rejected swap, and the first position's win share. A pointwise judge rates each
  answer alone: not applicable;
- **test-retest**: the sampled answers rated a second time; the share of pairs whose direction holds (and the old
  ``self_agreement`` figures: exact agreement and mean difference of the answers' scores);
- **agreement with second judges** (``audit.judges``: a reward-model run folder, another endpoint, a function):
  pair-direction agreement and Cohen's kappa;
- **length bias**: the share of pairs whose chosen answer is the longer, against the share expected from the
  ratings alone (the first second judge's, when there is one; else 0.5), and a length coefficient as AlpacaEval's
  length control fits it (a logistic regression of the preference on the tanh of the standardised length
  difference);
- **self-preference**: where a generator is the judge's own model, its win share against the others;
- **UltraFeedback's overall-score bug**: on input in openbmb/UltraFeedback's schema, the completions whose
  critique-based ``overall_score`` of 10 contradicts their fine-grained ratings (OpenBMB/UltraFeedback issue #8,
  ``fix_overall_score_issue.py``: 10 with a fine-grained mean of 4 or less).

Every share has its 95% Wilson interval; kappa and the length coefficient a seeded bootstrap interval. Each check
that reverses a pair's direction is recorded on it (``retest``, ``order``, ``judge:<name>``); the pair is flagged
when more than half of the checks that ran on it reverse it (``audit.flag_when: majority``, the vote of several
judges that PrefCleanBench found best) or when any does (``any``), and ``audit.action`` keeps, drops or flips
flagged pairs. ``audit.min_*`` bars end the stage with a ZephyrError naming
the measure, its value and its interval when the judge is worse than the bar.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import HardwareConfig, option
from ..data.binarize import prompt_id
from .audit_measures import (
    CHECKS,
    PairView,
    is_flagged,
    measure,
    mode_of,
    rating_score,
    ultrafeedback_contradictions,
)
from .audit_stats import kappa, length_coefficient, precision_recall, share, wilson
from .judge_registry import judge_load
from .judges import Item, JudgeFailure, make_judge
from .serve import serving
from .specs import JudgeSpec
from .store import Store

# The measures (.audit_measures) and statistics (.audit_stats) that callers import from here.
__all__ = [
    "ACTIONS", "API_SAMPLE", "BARS", "CHECKS", "AuditConfig", "PairView", "apply", "bars", "card_lines", "check",
    "embedded_truth", "is_paid_api", "judge_name", "kappa", "length_coefficient", "loads", "measure",
    "pair_views", "precision_recall", "prompt_id", "run_audit", "sample_size", "sampled", "second_scores", "share",
    "ultrafeedback_contradictions", "wilson",
]

ACTIONS = ("keep", "drop", "flip")
API_SAMPLE = 200  # prompts audited by default when the judge is a paid API


@dataclass
class AuditConfig:
    """The audit of the judge (docs/audit.md): measures with 95% intervals, flags per pair, and the gate."""

    enabled: bool = option(False, "Audit the judge: write audit.json, flag pairs, apply the action and the bars.")
    sample: Optional[int] = option(None, "Prompts audited, a seeded sample; null: every prompt for local and "
                                         f"function judges, {API_SAMPLE} for a paid API judge (type openai without "
                                         "serve), whose extra calls and cost `plan` shows.")
    seed: Optional[int] = option(None, "Seed of the sample and of the re-asked orders; null: run.seed.")
    retest: bool = option(True, "Rate the sampled answers a second time (test-retest; folds in self_agreement).")
    order: bool = option(True, "Listwise and pairwise judges: ask the sampled prompts again in another seeded order.")
    judges: list[JudgeSpec] = option([], "Second judges of any type (a reward-model run folder as {type: "
                                         "reward_model, model: runs/...}, another endpoint, a function module): each "
                                         "rates the sampled pairs; agreement and Cohen's kappa.")
    flag_on: list = option(list(CHECKS), "Which checks may flag a pair: retest, order, judges.")
    flag_when: str = option("majority", "When a pair counts as flagged: majority (more than half of the checks that "
                                        "ran on it reverse it: with a retest and one second judge, both) or any (one "
                                        "is enough: more recall, less precision).")
    action: str = option("keep", "What happens to flagged pairs: keep (flag only), drop (left out of the data), or "
                                 "flip (chosen and rejected swapped).")
    min_agreement: Optional[float] = option(None, "End the stage when the pair-direction agreement with a second "
                                                  "judge is below this share (0-1).")
    min_kappa: Optional[float] = option(None, "End the stage when Cohen's kappa with a second judge is below this.")
    min_retest: Optional[float] = option(None, "End the stage when the share of pairs whose direction holds on a "
                                               "second rating is below this.")
    min_order_consistency: Optional[float] = option(None, "End the stage when the share of pairs whose direction "
                                                          "holds in another order is below this.")
    max_longer_chosen: Optional[float] = option(None, "End the stage when the share of pairs whose chosen answer "
                                                      "is the longer is above this.")


BARS = {"min_agreement": ("agreement", "pair-direction agreement with a second judge"),
        "min_kappa": ("kappa", "Cohen's kappa with a second judge"),
        "min_retest": ("retest", "test-retest pair-direction agreement"),
        "min_order_consistency": ("order", "order consistency"),
        "max_longer_chosen": ("length", "share of pairs whose chosen answer is the longer")}


def check(audit: AuditConfig, where: str = "stage.audit") -> None:
    if audit.action not in ACTIONS:
        raise ZephyrError(f"{where}.action is {audit.action!r}", f"use one of: {', '.join(ACTIONS)}")
    if audit.flag_when not in ("majority", "any"):
        raise ZephyrError(f"{where}.flag_when is {audit.flag_when!r}", "use majority or any")
    bad = [c for c in audit.flag_on if c not in CHECKS]
    if bad:
        raise ZephyrError(f"{where}.flag_on names {bad[0]!r}", f"use some of: {', '.join(CHECKS)}")
    if audit.sample is not None and audit.sample < 1:
        raise ZephyrError(f"{where}.sample is {audit.sample}", "use a number of prompts of 1 or more (null: default)")
    for key in BARS:
        value = getattr(audit, key)
        if value is not None and not (-1 <= value <= 1):
            raise ZephyrError(f"{where}.{key} is {value}", "use a share from 0 to 1 (kappa: -1 to 1), or null")


# ------------------------------------------------------------------------------------------------- sample
def is_paid_api(judge: dict) -> bool:
    return judge.get("type") == "openai" and not judge.get("serve")


def sample_size(audit: AuditConfig, judge: dict, prompts: int) -> int:
    """How many prompts the audit covers."""
    if audit.sample is not None:
        return min(prompts, int(audit.sample))
    return min(prompts, API_SAMPLE) if is_paid_api(judge) else prompts


def _rank(seed: int, pid: str) -> str:
    return hashlib.sha1(f"audit:{seed}:{pid}".encode()).hexdigest()


def sampled(audit: AuditConfig, judge: dict, prompts: list[str], seed: int) -> set[str]:
    """The prompt ids the audit covers: a seeded sample, the same on every resume."""
    if not audit.enabled:
        return set()
    ids = sorted({prompt_id(p) for p in prompts}, key=lambda pid: _rank(seed, pid))
    return set(ids[:sample_size(audit, judge, len(ids))])


def loads(audit: AuditConfig, judge: dict, prompts: int, answers_per_prompt: float, judge_requests: int,
          new_tokens: int) -> list[dict]:
    """The audit's extra calls as plan loads (see TaskStage.loads): the judge's second ratings and each second
    judge's ratings, their share of the judge's own calls in the role."""

    if not audit.enabled or not prompts:
        return []
    n = sample_size(audit, judge, prompts)
    out = []
    if audit.retest:
        extra = int(n * answers_per_prompt)
        out.append(judge_load(f"judge, audit test-retest of {n:,} prompts (+{extra / max(judge_requests, 1):.1%} of "
                              "the judge's calls)", judge, extra, new_tokens))  # each judge type's cost model
    for i, spec in enumerate(audit.judges):
        got = asdict(spec)
        out.append(judge_load(f"audit judge {judge_name(got, i)} ({n:,} prompts, 2 answers each)", got, 2 * n,
                              int(spec.sampling.get("max_new_tokens") or new_tokens)))
    return out


def judge_name(spec: dict, i: int) -> str:
    return str(spec.get("model") or spec.get("module") or f"judge{i}").rstrip("/").split("/")[-1] or f"judge{i}"


# ------------------------------------------------------------------------------------------------- the gate
def bars(audit: AuditConfig, measures: dict) -> None:
    """A ZephyrError naming the first measure worse than its bar, with its value and interval."""
    checks = []
    retest = measures.get("retest", {}).get("pair_direction", {})
    checks.append(("min_retest", retest, False))  # a listwise judge's retest is its order consistency
    order = measures.get("order", {})
    if order.get("applicable"):
        checks.append(("min_order_consistency", order["consistency"], False))
        checks.append(("min_retest", {**order["consistency"], "label": "order consistency (a listwise judge's "
                                                                   "second rating is asked in another order)"}, False))
    for name, got in measures.get("judges", {}).items():
        checks.append(("min_agreement", {**got["agreement"], "judge": name}, False))
        checks.append(("min_kappa", {**got["kappa"], "judge": name}, False))
    checks.append(("max_longer_chosen", measures.get("length", {}).get("longer_chosen", {}), True))
    for key, got, upper in checks:
        bar = getattr(audit, key)
        value = got.get("value")
        if bar is None or value is None:
            continue
        if (value > bar) if upper else (value < bar):
            label = got.get("label") or BARS[key][1] + (f" ({got['judge']})" if got.get("judge") else "")
            low, high = got.get("interval") or [None, None]
            raise ZephyrError(
                f"the judge fails stage.audit.{key}: {label} is {value:.3f} (95% interval {_fmt(low)} to "
                f"{_fmt(high)}, n={got.get('n')}), {'above' if upper else 'below'} the bar of {bar}",
                f"use a better judge, or rerun with a lower bar (stage.audit.{key}=...) or none "
                f"(stage.audit.{key}=null): the rerun resumes this folder and asks no judge again; audit.json in "
                "the run folder has every measure and every pair's flags")


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3f}"


def apply(action: str, pairs: list[dict], flags: dict[str, list[str]]) -> tuple[list[dict], dict]:
    """Pairs after the action on flagged ones, and a count of what happened."""
    out, counts = [], {"kept": 0, "dropped": 0, "flipped": 0}
    for pair in pairs:
        if not flags.get(pair["prompt_id"]) or action == "keep":
            out.append(pair)
            counts["kept"] += 1
        elif action == "drop":
            counts["dropped"] += 1
        else:
            counts["flipped"] += 1
            out.append({**pair, "chosen": pair["rejected"], "rejected": pair["chosen"], "messages": pair["rejected"],
                        "score_chosen": pair["score_rejected"], "score_rejected": pair["score_chosen"]})
    return out, counts


def card_lines(audit: dict | None) -> list[str]:
    """The dataset card's lines on the audit."""
    if not audit:
        return []
    m = audit["measures"]

    def s(got: dict) -> str:
        if not got or got.get("value") is None:
            return "not measured"
        low, high = got.get("interval") or [None, None]
        return f"{got['value']:.3f} [{_fmt(low)}, {_fmt(high)}] (n={got.get('n')})"

    lines = ["", "## Audit of the judge", "",
             f"{m['pairs_audited']} of {m['pairs']} pairs audited (seed {audit['seed']}); action on flagged pairs: "
             f"{audit['action']} ({audit['applied']}). 95% intervals; `audit.json` has every pair's flags.", "",
             "| measure | value [95% interval] |", "| --- | --- |"]
    order = m["order"]
    held = s(order["consistency"]) if order.get("applicable") else "not applicable: " + order["why"]
    lines.append(f"| order consistency | {held} |")
    if order.get("applicable"):
        lines.append(f"| first position wins (chosen shown before rejected) | {s(order['first_position_wins'])} |")
    retest = m["retest"]
    same = s(retest["pair_direction"]) if "pair_direction" in retest else "not applicable: " + retest["why"]
    lines.append(f"| test-retest pair direction | {same} |")
    for name, got in m["judges"].items():
        lines.append(f"| agreement with {name} | {s(got['agreement'])} |")
        lines.append(f"| Cohen's kappa with {name} | {s(got['kappa'])} |")
    lines.append(f"| chosen answer the longer | {s(m['length']['longer_chosen'])} |")
    lines.append(f"| expected from the ratings alone | {s(m['length']['expected'])} |")
    lines.append(f"| length coefficient | {s(m['length']['coefficient'])} |")
    sp = m["self_preference"]
    if sp.get("applicable"):
        for g, got in sp.items():
            if g != "applicable":
                lines.append(f"| self-preference of {g} | {s(got['win_share'])} |")
    else:
        lines.append(f"| self-preference | not applicable: {sp['why']} |")
    uf = m.get("ultrafeedback")
    if uf:
        lines.append(f"| UltraFeedback overall-score bug (input) | {s(uf)} |")
    truth = m.get("embedded_truth")
    if truth:  # the embedded tasks know the right answer
        lines.append(f"| pairs the wrong way round (embedded truth) | {s(truth['mislabelled'])} |")
        lines.append(f"| ... of the pairs left unflagged | {s(truth['mislabelled_unflagged'])} |")
        lines.append(f"| flag precision / recall | {s(truth['flag_precision'])} / {s(truth['flag_recall'])} |")
    lines.append(f"| pairs flagged | {audit['flagged']} |")
    return lines


# --------------------------------------------------------------------------------------------- the stage's run
def embedded_truth(views: list[PairView], flags: dict[str, list[str]], by_pid: dict[str, str]) -> dict | None:
    """On the embedded tasks, where the right answer is known: the share of pairs the wrong way round (the chosen
    answer worse than the rejected one by the embedded judge, :func:`~..embedded.noisy_judge.mislabelled`) among all
    pairs, among the pairs the audit left unflagged, and the flags' precision and recall. None on any other data."""
    from ..embedded.noisy_judge import mislabelled  # lazy: start-up (embedded tasks only)

    wrong: dict[str, bool] = {}
    for v in views:
        try:
            wrong[v.pid] = mislabelled(by_pid[v.pid], v.chosen, v.rejected)
        except (ValueError, KeyError):
            return None
    if not wrong:
        return None
    flagged = {pid for pid in wrong if flags.get(pid)}
    kept = [w for pid, w in wrong.items() if pid not in flagged]
    bad = sum(wrong.values())
    return {"mislabelled": share(bad, len(wrong)), "mislabelled_unflagged": share(sum(kept), len(kept)),
            "flag_precision": share(sum(wrong[pid] for pid in flagged), len(flagged)),
            "flag_recall": share(sum(wrong[pid] for pid in flagged), bad)}


def pair_views(pairs: dict[str, list[dict]], completions: dict[str, dict]) -> list[PairView]:
    """The binarized pairs with the completions they came from (by prompt id and answer text)."""
    by_pid: dict[str, list[dict]] = {}
    for rec in completions.values():
        if "response" in rec:
            by_pid.setdefault(rec["prompt_id"], []).append(rec)
    views = []
    for split, items in pairs.items():
        for pair in items:
            recs = sorted(by_pid.get(pair["prompt_id"], []), key=lambda r: r["key"])
            chosen, rejected = pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]
            c = next((r for r in recs if r["response"] == chosen), None)
            r = next((r for r in recs if r["response"] == rejected and r is not c), None)
            views.append(PairView(pair["prompt_id"], split, chosen, rejected, c["model"] if c else "?",
                                  r["model"] if r else "?", c["key"] if c else None, r["key"] if r else None))
    return views


def second_scores(specs: list[JudgeSpec], views: list[PairView], audited: set[str], prompts: dict[str, str],
                  folder, hardware: HardwareConfig | dict | None) -> dict[str, dict[str, float | None]]:
    """Each second judge's score of every audited pair's two answers, recorded in audit_ratings.jsonl as they
    arrive (a rerun asks nothing twice)."""

    store = Store(folder / "audit_ratings.jsonl")
    out: dict[str, dict[str, float | None]] = {}
    try:
        for i, spec in enumerate(specs):
            name = judge_name(asdict(spec), i)
            while name in out:
                name += f"-{i}"
            todo, seen = [], set()
            for v in views:
                if v.pid not in audited:
                    continue
                for key, text in ((v.chosen_key, v.chosen), (v.rejected_key, v.rejected)):
                    if key and key not in seen and f"{name}:{key}" not in store:
                        seen.add(key)
                        todo.append((key, v.pid, text))
            if todo:
                with serving(asdict(spec), folder, f"audit-{name}") as served:
                    judge = make_judge(served, hardware)
                    items = [Item([{"role": "user", "content": prompts[pid]}], (text,)) for _, pid, text in todo]
                    for j, verdict in judge.ask("rate", items, "the audit"):
                        key = todo[j][0]
                        if isinstance(verdict, JudgeFailure):
                            store.add({"key": f"{name}:{key}", "failure": str(verdict)})
                        else:
                            store.add({"key": f"{name}:{key}", "annotations": verdict.value})
            out[name] = {k.split(":", 1)[1]: rating_score(rec) for k, rec in store.records.items()
                         if k.startswith(f"{name}:")}
    finally:
        store.close()
    return out


def run_audit(audit: AuditConfig, judge: dict, generators: list[str], pairs: dict[str, list[dict]],
              completions: dict[str, dict], ratings: dict[str, dict], prompts: list[str], audited: set[str],
              folder, hardware: HardwareConfig | dict | None, seed: int, input_rows: list[dict] | None = None,
              order: dict[str, Optional[int]] | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Measure, write audit.json, hold the judge to the bars, act on the flagged pairs. Returns the pairs to write
    and the summary's audit entry."""
    import json
    from pathlib import Path

    folder = Path(folder)
    mode = mode_of(ratings)
    views = pair_views(pairs, completions)
    by_pid = {prompt_id(p): p for p in prompts}
    second = second_scores(audit.judges, views, audited, by_pid, folder, hardware) if audit.judges else {}
    measures, reversed_by, ran = measure(views, ratings, second, judge, generators, audited, seed, mode, order,
                                         audit.flag_on)
    flags = {pid: checks for pid, checks in reversed_by.items() if is_flagged(audit.flag_when, checks, ran[pid])}
    truth = embedded_truth(views, flags, by_pid)
    if truth is not None:
        measures["embedded_truth"] = truth
    if input_rows is not None:
        uf = ultrafeedback_contradictions(input_rows)
        if uf is not None:
            measures["ultrafeedback"] = uf
    out = {}
    counts = {"kept": 0, "dropped": 0, "flipped": 0}
    for split, items in pairs.items():
        out[split], c = apply(audit.action, items, flags)
        for k in counts:
            counts[k] += c[k]
    flagged = sum(1 for f in flags.values() if f)
    done = {"keep": "kept", "drop": "dropped", "flip": "flipped"}[audit.action]
    per_pair = [{"prompt_id": v.pid, "split": v.split, "chosen_model": v.chosen_model,
                 "rejected_model": v.rejected_model, "chosen_key": v.chosen_key, "rejected_key": v.rejected_key,
                 "audited": v.pid in audited, "checks": ran[v.pid], "reversed_by": reversed_by[v.pid],
                 "flags": flags.get(v.pid, []),
                 "action": done if flags.get(v.pid) else "kept"} for v in views]
    report = {"seed": seed, "mode": mode, "action": audit.action, "flag_when": audit.flag_when, "applied": counts,
              "flagged": flagged, "flag_on": list(audit.flag_on), "measures": measures, "pairs": per_pair}
    tmp = folder / "audit.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(folder / "audit.json")
    bars(audit, measures)
    summary = {k: v for k, v in report.items() if k != "pairs"}
    return out, summary
