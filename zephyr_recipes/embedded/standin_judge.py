"""The AI-feedback judge of a rehearsal (`zephyr-recipes rehearse`): the embedded judge's ratings where an answer is
right, and otherwise a stable rating from 1 to 3 derived from a hash of the answer, so that the tiny random models
standing in for real generators still give ties and pairs of both kinds. It checks the plumbing (rubric, rating
shape, binarization, hand-off to DPO), not quality. With ``protocol: ultrafeedback`` its :func:`chat` plays GPT-4:
it answers UltraFeedback's aspect, critique and re-scoring requests in their published reply formats, with the same
ratings."""

from __future__ import annotations

import hashlib
import re

from . import judge


def rate(messages: list[dict], response: str) -> dict:
    if judge.correctness(messages, response):
        return judge.rate(messages, response)
    rating = 1 + int(hashlib.sha1(response.encode()).hexdigest()[:4], 16) % 3
    why = "rehearsal stand-in rating"
    return {aspect: {"Rating": rating, "Rationale": why}
            for aspect in ("helpfulness", "honesty", "instruction_following", "truthfulness")}


# ---------------------------------------------------------------------- as a chat model (protocol ultrafeedback)
_HEADERS = {"# Instruction Following Assessment": "instruction_following",
            "# Honesty and Uncertainty Expression Assessment": "honesty",
            "# Truthfulness and Hallucination Assessment": "truthfulness",
            "# Informativeness / Helpfulness Assessment": "helpfulness"}


def _texts(prompt: str) -> tuple[str, list[str]]:
    """The instruction and the texts of an UltraFeedback annotation request (its Annotation section)."""
    body = prompt.split("## Annotation\n\n### Input\nInstruction: ", 1)[-1]
    instruction, _, rest = body.partition("\n\nTexts:\n")
    rest = re.split(r"\n\n(?:World Knowledge:|### Output)\n", rest)[0]
    parts = re.split(r"(?:^|\n)<text \d+> ", rest)
    return instruction, [p for p in parts[1:]]


def chat(messages: list[dict]) -> str:
    """The rehearsal's stand-in for GPT-4 asked as UltraFeedback asked it: an aspect request answered in the
    published reply format (one block per text: Rating and Rationale, or Type, Rationale, Rating and Rationale), a
    critique request with a feedback line and "Overall Score: N", a re-scoring request with the score alone. The
    ratings are :func:`rate`'s."""
    prompt = messages[-1]["content"]
    aspect = next((a for h, a in _HEADERS.items() if prompt.startswith(h)), None)
    if aspect is None:
        instruction = prompt.split("### Instruction\n", 1)[-1].split("\n\n### Answer\n", 1)
        answer = instruction[1].split("\n---\n", 1)[0] if len(instruction) > 1 else ""
        ratings = rate([{"role": "user", "content": instruction[0]}], answer)
        score = 2 * round(sum(r["Rating"] for r in ratings.values()) / 4)
        if prompt.rstrip().endswith("Overall Score:"):
            return str(score)  # the overall_score fix's one-token re-annotation
        return f"Rehearsal stand-in feedback on the answer.\nOverall Score: {score}"
    instruction, texts = _texts(prompt)
    blocks = []
    for k, text in enumerate(texts, 1):
        rating = rate([{"role": "user", "content": instruction}], text)[aspect]["Rating"]
        if aspect in ("instruction_following", "honesty"):
            blocks.append(f"#### Output for Text {k}\nRating: {rating}\nRationale: rehearsal stand-in rating.")
        else:
            kind = "None" if rating >= 4 else "1"
            blocks.append(f"#### Output for Text {k}\nType: {kind}\nRationale: rehearsal stand-in type.\n"
                          f"Rating: {rating}\nRationale: rehearsal stand-in rating.")
    return "\n\n".join(blocks)
