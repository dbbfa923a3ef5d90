"""Turn rated completions into preference pairs, the Zephyr way.

The rule of arXiv 2310.16944 (and of HuggingFaceH4/ultrafeedback_binarized): every prompt has several
completions, each rated by a judge on the UltraFeedback aspects (helpfulness, honesty, instruction
following, truthfulness). The completion with the highest mean rating is ``chosen``; ``rejected`` is one of
the others drawn at random with a seed. The output rows have the ultrafeedback_binarized schema::

    prompt, prompt_id, chosen, rejected, messages, score_chosen, score_rejected

One function does the work for one prompt, :func:`binarize`, so that the raw openbmb/UltraFeedback rows and
the completions rated by the AI-feedback stage go through exactly the same rule. :func:`binarize_dataset`
maps it over a ``datasets.Dataset`` in the raw UltraFeedback schema and counts what it skipped.

Rules, each counted under its name in :class:`Tally`:

- A rating that is missing, ``"N/A"`` or not a number is ignored (``missing_ratings`` counts them); a
  completion with no usable rating or an empty response takes no part (``unrated_completions``,
  ``empty_responses``).
- ``score="mean"`` scores a completion by the mean of its aspect ratings; ``score="overall"`` by the
  judge's ``overall_score`` (the critique score).
- Ties for the best score go to the completion listed first (``tied_best`` counts the pairs made where that
  happened), so the choice does not depend on the seed.
- ``rejected="random"`` draws among the other completions, ``rejected="lowest"`` takes the lowest score
  (ties: the one listed last). With ``ties="drop"`` (the default) only completions scoring strictly below
  the chosen one are candidates, and a prompt whose completions all score the same is skipped
  (``all_tied``); ``ties="keep"`` allows a rejected answer with the chosen one's score.
- A prompt with fewer than two usable completions is skipped (``too_few_completions``).
- The random draw uses ``random.Random`` seeded by the seed and the prompt's text, so a prompt gets the same
  pair whatever its position in the dataset and however many processes map it.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional

from ..core.schema import BinarizeRule

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
SCHEMA = ("prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen", "score_rejected")
SKIP_REASONS = ("too_few_completions", "all_tied", "empty_prompt")


@dataclass
class Tally:
    """What binarization skipped or decided by rule, summed over prompts."""

    counts: Counter = field(default_factory=Counter)

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] += n

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def prompt_id(prompt: str) -> str:
    """The id ultrafeedback_binarized and ultrachat_200k use: sha256 of the prompt text."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def completion_score(completion: dict, score: Literal["mean", "overall"] = "mean",
                     aspects: Iterable[str] = ASPECTS, tally: Optional[Tally] = None) -> Optional[float]:
    """The score of one completion, or None when it has no usable rating."""
    tally = tally if tally is not None else Tally()
    if score == "overall":
        value = _number(completion.get("overall_score"))
        if value is None:
            tally.add("missing_ratings")
        return value
    annotations = completion.get("annotations") or {}
    ratings = []
    for aspect in aspects:
        entry = annotations.get(aspect)
        rating = _number(entry.get("Rating") if isinstance(entry, dict) else entry)
        if rating is None:
            tally.add("missing_ratings")
        else:
            ratings.append(rating)
    return sum(ratings) / len(ratings) if ratings else None


def binarize(prompt: str, completions: list[dict], *, seed: int = 42,
             rejected: Literal["random", "lowest"] = BinarizeRule.rejected,
             score: Literal["mean", "overall"] = BinarizeRule.score,
             ties: Literal["drop", "keep"] = BinarizeRule.ties, tally: Optional[Tally] = None) -> Optional[dict]:
    """One preference row in the ultrafeedback_binarized schema, or None when the prompt is skipped.

    ``completions`` are dicts with ``response`` and either ``annotations`` (aspect -> {Rating, Rationale})
    or ``overall_score``, as in openbmb/UltraFeedback; ``model`` and anything else is ignored.
    """
    if rejected not in ("random", "lowest"):
        raise ValueError(f"rejected must be 'random' or 'lowest', not {rejected!r}")
    if score not in ("mean", "overall"):
        raise ValueError(f"score must be 'mean' or 'overall', not {score!r}")
    if ties not in ("drop", "keep"):
        raise ValueError(f"ties must be 'drop' or 'keep', not {ties!r}")
    tally = tally if tally is not None else Tally()
    if not isinstance(prompt, str) or not prompt.strip():
        tally.add("empty_prompt")
        return None
    scored: list[tuple[int, float, str]] = []
    for i, c in enumerate(completions or []):
        response = c.get("response") if isinstance(c, dict) else None
        if not isinstance(response, str) or not response.strip():
            tally.add("empty_responses")
            continue
        value = completion_score(c, score, tally=tally)
        if value is None:
            tally.add("unrated_completions")
            continue
        scored.append((i, value, response))
    if len(scored) < 2:
        tally.add("too_few_completions")
        return None
    best = max(value for _, value, _ in scored)
    chosen = next(item for item in scored if item[1] == best)  # first listed among the best
    others = [item for item in scored if item is not chosen]
    if ties == "drop":
        others = [item for item in others if item[1] < best]
        if not others:
            tally.add("all_tied")
            return None
    if sum(1 for _, value, _ in scored if value == best) > 1:  # a pair is made: counted apart from the skipped
        tally.add("tied_best")
    if rejected == "lowest":
        low = min(value for _, value, _ in others)
        reject = [item for item in others if item[1] == low][-1]
    else:
        rng = random.Random(f"{seed}:{prompt_id(prompt)}")
        reject = others[rng.randrange(len(others))]
    user = {"role": "user", "content": prompt}
    chosen_msgs = [user, {"role": "assistant", "content": chosen[2]}]
    rejected_msgs = [user, {"role": "assistant", "content": reject[2]}]
    return {"prompt": prompt, "prompt_id": prompt_id(prompt), "chosen": chosen_msgs, "rejected": rejected_msgs,
            "messages": chosen_msgs, "score_chosen": float(chosen[1]), "score_rejected": float(reject[1])}


def binarize_dataset(ds, *, prompt_column: str = "instruction", completions_column: str = "completions",
                     seed: int = 42, rejected: str = BinarizeRule.rejected, score: str = BinarizeRule.score,
                     ties: str = BinarizeRule.ties):
    """Map :func:`binarize` over a dataset in openbmb/UltraFeedback's schema.

    Returns ``(dataset in the ultrafeedback_binarized schema, tally dict)``. The map goes through
    ``datasets``' fingerprint cache, so a second call on the same data and options is read from disk.
    """
    options = {"seed": seed, "rejected": rejected, "score": score, "ties": ties}

    def one(row):
        t = Tally()
        out = binarize(row[prompt_column], row[completions_column], tally=t, **options)
        tally = {k: int(t.counts.get(k, 0)) for k in TALLY_KEYS}
        if out is None:
            return {**{k: None for k in SCHEMA}, "_tally": tally, "_keep": False}
        return {**out, "_tally": tally, "_keep": True}

    import datasets

    message = {"content": datasets.Value("string"), "role": datasets.Value("string")}
    features = datasets.Features({
        "prompt": datasets.Value("string"), "prompt_id": datasets.Value("string"),
        "chosen": datasets.List(message), "rejected": datasets.List(message), "messages": datasets.List(message),
        "score_chosen": datasets.Value("float64"), "score_rejected": datasets.Value("float64"),
        "_tally": {k: datasets.Value("int64") for k in TALLY_KEYS}, "_keep": datasets.Value("bool")})
    mapped = ds.map(one, remove_columns=ds.column_names, features=features, desc="binarizing rated completions")
    tally: Counter = Counter()
    for row_tally in mapped["_tally"]:
        tally.update({k: v for k, v in row_tally.items() if v})
    kept = mapped.filter(lambda keep: keep, input_columns="_keep", desc="dropping skipped prompts")
    return kept.remove_columns(["_tally", "_keep"]), dict(sorted(tally.items()))


ANSWER_REASONS = ("missing_ratings", "unrated_completions", "empty_responses")


def binarize_tally(tally: Tally) -> dict:
    """A tally in three disjoint parts for a summary: ``skipped`` (prompts that gave no pair, by reason),
    ``chosen_among_tied_best`` (pairs whose chosen answer was the first listed of several tied for the best score)
    and ``answers_left_out`` (answers not considered: empty, unrated, ratings missing)."""
    counts = tally.as_dict()
    return {"skipped": {k: counts[k] for k in SKIP_REASONS if counts.get(k)},
            "chosen_among_tied_best": counts.get("tied_best", 0),
            "answers_left_out": {k: counts[k] for k in ANSWER_REASONS if counts.get(k)}}


TALLY_KEYS = ("missing_ratings", "unrated_completions", "empty_responses", "tied_best", *SKIP_REASONS)
