"""UltraFeedback's published annotation protocol as functions: the requests OpenBMB/UltraFeedback's
``src/data_annotation`` scripts (commit bf80fd4) send and how they read the replies, for the rating of the four
aspects (``annotate_preference.py``), the critique with its overall_score (``annotate_critique.py``) and the fix of
an overall_score of 10 (``fix_overall_score_issue.py``). The prompts are :mod:`.ultrafeedback_templates`; the judge
that asks them, and the protocol's place in a recipe, are :mod:`.ultrafeedback`.
"""

from __future__ import annotations

import random
import re
from typing import Iterable, Optional

from ..core.schema import DatasetConfig
from ..data.binarize import prompt_id
from . import ultrafeedback_templates as T

SOURCE = "OpenBMB/UltraFeedback src/data_annotation (commit bf80fd4)"
ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")  # the published request order
TEMPLATES = {
    "instruction_following": T.instruction_following_template,
    "honesty": T.honesty_template,
    "truthfulness": T.truthfulness_template_with_answer,
    "helpfulness": T.helpfulness_template_without_answer,
}
SYSTEM_PROMPT = T.system_prompt
SAMPLING = {"temperature": 0.0, "top_p": 0.6, "max_new_tokens": 500}  # get_eval's
ENDPOINT_EXTRA = {"presence_penalty": 0, "frequency_penalty": 0}  # sent to endpoints only (a local model has none)
PARSE_ATTEMPTS = 10  # the published reparse loop: for i in range(10)
CRITIQUE_SAMPLING = {"temperature": 0.0, "top_p": 0.6, "max_new_tokens": 1024}  # annotate_critique.py's get_eval
RESCORE_SAMPLING = {"temperature": 0.0, "top_p": 0.6, "max_new_tokens": 1}  # fix_overall_score_issue.py's get_eval
DEFAULT_KNOWLEDGE = "No additional world knowledge for reference."
FALSE_QA_KNOWLEDGE = "The question is based on a false promise."
PATTERNS = {
    "instruction_following": r"Rating: (.+?)\nRationale: (.+)",
    "honesty": r"Rating: (.+?)\nRationale: (.+)",
    "truthfulness": r"Type: (.+?)\nRationale: (.+?)\nRating: (.+?)\nRationale: (.+)",
    "helpfulness": r"Type: (.+?)\nRationale: (.+?)\nRating: (.+?)\nRationale: (.+)",
}
COLUMNS = ("source", "correct_answers", "incorrect_answers")  # dataset.columns may map each to the dataset's name
_WORDS = {1: "one", 2: "two", 3: "three"}


class ParseError(ValueError):
    """A reply the published parser would not read (it raised AssertionError, AttributeError or IndexError)."""


# ----------------------------------------------------------------------------------------- requests
def subset(source: object) -> str:
    """The published script's subset for a row's ``source``: openbmb/UltraFeedback writes flan rows as
    flan_v2_cot, flan_v2_niv2 ..., which came from its ``flan`` completion file."""
    text = str(source or "")
    return "flan" if text.startswith("flan") else text


def world_knowledge(source: object, correct_answers: object = None, incorrect_answers: object = None) -> str:
    """annotate_preference.py's world knowledge for one row (lines 84-93)."""
    kind = subset(source)
    if kind == "truthful_qa":
        return "\n".join(["a subset of correct answers: " + str(correct_answers),
                          "a subset of incorrect_answers: " + str(incorrect_answers)])
    if kind == "false_qa":
        return FALSE_QA_KNOWLEDGE
    if kind == "flan":
        return correct_answers  # type: ignore[return-value]  # as published: format() writes it as it is
    return DEFAULT_KNOWLEDGE


def reference_columns(dataset: DatasetConfig, prompts: Iterable[str]) -> dict[str, dict]:
    """prompt id -> ``{source, correct_answers, incorrect_answers}`` of the first dataset row with that prompt, from
    the columns ``dataset.columns`` maps them to (these names by default); a column the dataset lacks is left out
    (every prompt gets a dict, empty when the dataset has none of them). What the world knowledge is made from, and
    what raw/ keeps beside each instruction, as openbmb/UltraFeedback's rows do."""
    from ..data import load_split  # lazy: start-up (reference columns from the dataset only)

    wanted = {prompt_id(p) for p in prompts}
    out: dict[str, dict] = {pid: {} for pid in wanted}
    ds = load_split(dataset, dataset.train_split)
    names = {c: (dataset.columns or {}).get(c, c) for c in ("prompt", *COLUMNS)}
    prompt_col = names["prompt"] if names["prompt"] in ds.column_names else next(
        (c for c in ("prompt", "instruction") if c in ds.column_names), None)
    have = [c for c in COLUMNS if names[c] in ds.column_names]
    if prompt_col is None or not have:
        return out
    seen: set[str] = set()
    for row in ds.select_columns([prompt_col] + [names[c] for c in have]):
        value = row[prompt_col]
        pid = prompt_id(value) if isinstance(value, str) else None
        if pid in wanted and pid not in seen:
            seen.add(pid)
            out[pid] = {c: row[names[c]] for c in have}
    return out


def adapted(text: str, n: int) -> str:
    """A template or the system prompt for ``n`` texts instead of 4 (n < 4): "four" becomes the count, the lines of
    texts n+1..4 go."""
    if n >= 4:
        return text
    word = _WORDS[n]
    text = text.replace("and four text outputs", f"and {word} text output{'s' if n > 1 else ''}")
    text = text.replace("The four texts given are independent",
                        f"The {word} text{'s' if n > 1 else ''} given {'are' if n > 1 else 'is'} independent")
    for k in range(n + 1, 5):
        text = re.sub(rf"<text {k}> [^\n]*\n", "", text)
        text = re.sub(rf"#+ Output for Text {k}\n(?:[^\n]+\n)+\n?", "", text)
    return text


def order(seed: int, aspect: str, n: int) -> list[int]:
    """The order of one aspect's request: ``order[i]`` is the completion shown as text_{i+1}."""
    shown = list(range(n))
    random.Random(f"{seed}:{aspect}").shuffle(shown)
    return shown


def messages(aspect: str, instruction: str, texts: list[str], knowledge: object = DEFAULT_KNOWLEDGE) -> list[dict]:
    """The published request of one aspect for ``texts`` in the order shown (annotate_preference.py:101-107)."""
    values: dict = {"instruction": instruction}
    values.update({f"text_{i + 1}": t for i, t in enumerate(texts)})
    if aspect == "truthfulness":
        values["world_knowledge"] = knowledge
    n = len(texts)
    return [{"role": "system", "content": adapted(SYSTEM_PROMPT, n)},
            {"role": "user", "content": adapted(TEMPLATES[aspect], n).format(**values)}]


# ----------------------------------------------------------------------------------------- replies
def process(reply: str, aspect: str, n: int = 4) -> list[dict]:
    """annotate_preference.py's ``process``: one annotation per text, in the order shown. Raises ParseError where
    the published function raised."""
    parts = reply.split("\n\n")
    if len(parts) != n:
        raise ParseError(f"{aspect}: {len(parts)} parts separated by blank lines, {n} expected")
    out = []
    for k, part in enumerate(parts):
        m = re.search(PATTERNS[aspect], part, re.DOTALL)
        if m is None:
            raise ParseError(f"{aspect}: part {k + 1} does not match {PATTERNS[aspect]!r}")
        if aspect in ("instruction_following", "honesty"):
            out.append({"Rating": m.group(1) if m.group(1) == "N/A" else _first_number(m.group(1), aspect),
                        "Rationale": m.group(2)})
        else:
            out.append({"Type": re.findall(r"\b\d+\b", m.group(1)) if m.group(1) != "None" else "None",
                        "Rationale": m.group(2), "Rating": _first_number(m.group(3), aspect),
                        "Rationale For Rating": m.group(4)})
    return out


def _first_number(text: str, aspect: str) -> str:
    found = re.findall(r"\b\d+\b", text)
    if not found:
        raise ParseError(f"{aspect}: no number in the rating {text!r}")
    return found[0]


# ------------------------------------------------------------------------------------ critique, fix
def critique_messages(instruction: str, completion: str, note: Optional[str] = None) -> list[dict]:
    """annotate_critique.py's request for one completion. ``note``: the completion's custom system prompt, which the
    published code appends as "Note: ..." (UltraFeedback's generators answered under one; this project's do not,
    so the instruction goes alone)."""
    if note:
        instruction = "\n".join([instruction, "Note: " + note])
    return [{"role": "system", "content": T.critique_system_prompt},
            {"role": "user", "content": T.critique_feedback_prompt.format(instruction=instruction,
                                                                          completion=completion)}]


def parse_critique(reply: str) -> tuple[str, object]:
    """(critique, overall_score) as annotate_critique.py reads a reply (stripped, as its get_eval returns it): the
    score stays the published string ("7") unless it is written as a fraction ("7/10" -> 7.0)."""
    parts = reply.strip().split("\nOverall Score: ")
    if len(parts) != 2:
        raise ParseError(f"{len(parts) - 1} 'Overall Score:' lines, 1 expected")
    critique, score = parts[0].strip(), parts[1].split(".")[0].strip()
    if "/" in score:
        return critique, _number(score.split("/")[0].strip())
    return critique, score


def _number(text: str) -> float:
    """``float(eval(text))`` of the published scripts, for the numbers it was meant for (nothing is evaluated)."""
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"{text!r} is not a number") from None


def fine_grained_score(annotations: dict) -> Optional[float]:
    """fix_overall_score_issue.py's ``calculate_average_rating``: the mean of int(Rating) over the aspects that
    have one other than N/A; None when none has."""
    ratings = [int(float(a["Rating"])) for a in annotations.values()
               if isinstance(a, dict) and "Rating" in a and a["Rating"] != "N/A"]
    return sum(ratings) / len(ratings) if ratings else None


def fix_action(overall_score: object, fine_grained: Optional[float]) -> Optional[str]:
    """What the fix does to a completion: None (not a 10), "keep" (fine-grained above 4), "reannotate" (above 2,
    at most 4) or "flip" (2 or less: the score becomes 1). A 10 with no fine-grained score (every aspect N/A or a
    failure) is kept: the published script would stop there with a TypeError."""
    try:
        ten = float(overall_score) == 10  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ten = False
    if not ten:
        return None
    if fine_grained is None:
        return "keep"
    return "flip" if fine_grained <= 2 else "reannotate" if fine_grained <= 4 else "keep"


def rescore_messages(instruction: str, completion: str, critique: str, note: Optional[str] = None) -> list[dict]:
    """fix_overall_score_issue.py's re-annotation request: the stored critique and an empty score slot."""
    if note:
        instruction = "\n".join([instruction, "Note: " + note])
    return [{"role": "system", "content": T.rescore_system_prompt},
            {"role": "user", "content": T.rescore_feedback_prompt.format(instruction=instruction, completion=completion,
                                                                         critique=critique)}]


def parse_rescore(reply: str) -> float:
    """The re-annotated score: ``float(eval(reply))``, the part before a "/" if there is one."""
    reply = reply.strip()
    if "/" in reply:
        reply = reply.split("/")[0].strip()
    return _number(reply)
