"""The canary of an evaluation judge: before a benchmark is scored with a judge other than the published one (another
model, another date), re-judge a stated sample of published judgments and measure agreement with their verdicts.

The published judgments are AlpacaEval's own annotations file (``results/<model>/<annotator>/annotations.json`` in
the alpaca_eval repository: ``instruction``, ``output_1`` (the baseline), ``output_2`` (the model), ``preference``
in [1, 2], 2 when the model's answer won). The judge compares the two answers of a seeded sample of them, each in a
seeded order (so a judge's position bias does not line up with one side), and the canary reports:

- ``agreement``: the share of decided items whose winner matches the published one, with its 95% Wilson interval;
- ``kappa``: Cohen's kappa of the two verdicts (agreement beyond what the two sides' base rates give);
- ``majority``: the agreement a judge that always picks the side the published verdicts favour would get. A
  sample whose published verdicts are one-sided (falcon-7b-instruct lost 98% of its games) says little: the
  agreement must clear this too.

Below ``min_agreement`` (or at or below the majority share) the run's card says its judged figures are not
comparable with the leaderboard's.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.errors import ZephyrError
from ..core.schema import option
from ..feedback.audit import kappa, share
from ..feedback.judges import Item, JudgeFailure


@dataclass
class CanaryConfig:
    """Re-judge published judgments before scoring, and say whether the figures are comparable (docs/audit.md)."""

    annotations: Optional[str] = option(None, "AlpacaEval annotations.json of published judgments (instruction, "
                                              "output_1, output_2, preference 1-2); null: no canary.")
    sample: int = option(50, "How many published judgments the judge re-judges (a seeded sample).")
    seed: int = option(0, "Seed of the sample and of the order the two answers are shown in.")
    min_agreement: float = option(0.8, "Below this agreement with the published verdicts (or at or below the "
                                       "majority share) the card says the judged figures are not comparable with "
                                       "the leaderboard's.")


def check(canary: CanaryConfig, where: str = "stage.canary") -> None:
    if canary.annotations is None:
        return
    if int(canary.sample) < 1:
        raise ZephyrError(f"{where}.sample is {canary.sample}", "re-judge 1 or more published judgments, e.g. 50")
    if not 0 <= float(canary.min_agreement) <= 1:
        raise ZephyrError(f"{where}.min_agreement is {canary.min_agreement}", "use a share from 0 to 1, e.g. 0.8")
    path = Path(str(canary.annotations)).expanduser()
    if not path.is_file():
        raise ZephyrError(f"{where}.annotations: {path} does not exist",
                          "name an AlpacaEval annotations.json (alpaca_eval's results/<model>/<annotator>/)")


def load(path: str) -> list[dict]:
    """Published judgments with a decided verdict: {instruction, baseline, model, model_won}."""
    try:
        rows = json.loads(Path(path).expanduser().read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ZephyrError(f"cannot read the canary's annotations {path}: {exc}",
                          "name an AlpacaEval annotations.json (a JSON list of judgments)") from None
    out = []
    for row in rows if isinstance(rows, list) else []:
        try:
            pref = float(row["preference"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(pref) or abs(pref - 1.5) < 1e-9:
            continue  # a tie decides nothing
        if all(isinstance(row.get(k), str) for k in ("instruction", "output_1", "output_2")):
            out.append({"instruction": row["instruction"], "baseline": row["output_1"], "model": row["output_2"],
                        "model_won": pref > 1.5, "generator": row.get("generator_2"),
                        "annotator": row.get("annotator")})
    if not out:
        raise ZephyrError(f"the canary's annotations {path} hold no decided judgment",
                          "name an AlpacaEval annotations.json with preference values of 1 to 2")
    return out


def run(judge, canary: CanaryConfig, judge_name: str) -> dict:
    """Re-judge the sample with ``judge`` (a feedback Judge that compares); the canary's report."""
    rows = load(str(canary.annotations))
    rng = random.Random(canary.seed)
    picked = rng.sample(rows, min(int(canary.sample), len(rows)))
    model_first = [rng.random() < 0.5 for _ in picked]
    items = [Item([{"role": "user", "content": r["instruction"]}],
                  (r["model"], r["baseline"]) if first else (r["baseline"], r["model"]))
             for r, first in zip(picked, model_first)]
    mine: list[Optional[bool]] = [None] * len(items)
    failures = 0
    for i, verdict in judge.ask("compare", items, "the canary"):
        if isinstance(verdict, JudgeFailure):
            failures += 1
            continue
        pref = float(verdict.value)  # for the first answer shown
        if pref == 0.5:
            continue
        mine[i] = (pref > 0.5) == model_first[i]
    decided = [(m, r["model_won"]) for m, r in zip(mine, picked) if m is not None]
    agree = sum(m == p for m, p in decided)
    published_model = sum(p for _, p in decided)
    majority = max(published_model, len(decided) - published_model)
    import numpy as np

    labels = np.array([[float(m), float(p)] for m, p in decided]).reshape(-1, 2)
    got = share(agree, len(decided))
    k = round(kappa(labels), 4) if decided else float("nan")
    bar = float(canary.min_agreement)
    comparable = got["value"] is not None and got["value"] >= bar and agree > majority
    return {"annotations": str(canary.annotations), "annotator": picked[0].get("annotator") if picked else None,
            "generator": picked[0].get("generator") if picked else None, "judge": judge_name,
            "asked": len(items), "undecided": len(items) - len(decided) - failures, "failures": failures,
            "agreement": got, "kappa": k if math.isfinite(k) else None,
            "majority": share(majority, len(decided)), "min_agreement": bar, "comparable": comparable}


def card_lines(result: dict | None) -> list[str]:
    if not result:
        return []
    a = result["agreement"]
    value = "no decided verdicts" if a["value"] is None else \
        f"{a['value']:.3f} [{a['interval'][0]:.3f}, {a['interval'][1]:.3f}] over {a['n']} judgments"
    lines = ["", "## Canary of the judge", "",
             f"The judge ({result['judge']}) re-judged {result['asked']} published judgments of "
             f"{result.get('generator') or 'a model'} by {result.get('annotator') or 'the published annotator'} "
             f"(`{result['annotations']}`): agreement {value}, Cohen's kappa {result['kappa']}, against "
             f"{result['majority']['value']} for always siding with the published majority "
             f"({result['undecided']} undecided, {result['failures']} judge failures)."]
    if result["comparable"]:
        lines.append(f"At or above the bar of {result['min_agreement']}: the judged figures may be set beside the "
                     "leaderboard's, as far as this sample can tell.")
    else:
        lines.append(f"**Below the bar of {result['min_agreement']} (or no better than the majority side): the judged "
                     "figures of this run are not comparable with the leaderboard's.**")
    return lines
