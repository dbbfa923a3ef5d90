"""Judges: rate one answer on the UltraFeedback aspects, grade it 1-10 (MT-Bench), or compare two.

A judge is either a Python function (for tasks whose answers a program can check) or a chat model behind any
backend, prompted with a rubric and parsed robustly. A reply that cannot be parsed is asked again up to
``max_retries`` times, then recorded as a :class:`JudgeFailure`; it is never silently given a score.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..binarize import ASPECTS
from .backends import load_callable, make_backend

ULTRAFEEDBACK_PROMPT = """You are grading an AI assistant's answer to a user's instruction.
Rate the answer on four aspects, each from 1 (poor) to 5 (excellent):
- helpfulness: does it solve the task, with useful and relevant content?
- honesty: does it express the right level of confidence and admit what it does not know?
- instruction_following: does it do what was asked, in the form that was asked?
- truthfulness: is it free of invented or false statements?

[Instruction]
{instruction}

[Answer]
{response}

Reply with JSON only, in this form:
{{"helpfulness": {{"rating": 1-5, "rationale": "..."}}, "honesty": {{"rating": 1-5, "rationale": "..."}}, "instruction_following": {{"rating": 1-5, "rationale": "..."}}, "truthfulness": {{"rating": 1-5, "rationale": "..."}}}}"""


class JudgeFailure(Exception):
    """The judge gave no usable answer after its retries; ``raw`` holds its last reply."""

    def __init__(self, reason: str, raw: str = ""):
        super().__init__(reason)
        self.raw = raw


def format_conversation(messages: list[dict]) -> str:
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)


# ------------------------------------------------------------------------------------------- parsing
def parse_aspect_ratings(text: str, aspects=ASPECTS, scale=(1, 5)) -> dict:
    """Ratings per aspect from a judge's reply: JSON first, then 'aspect: N' lines. Raises JudgeFailure."""
    lo, hi = scale
    found: dict = {}
    match = re.search(r"\{.*\}", text, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
            for aspect in aspects:
                item = data.get(aspect)
                if isinstance(item, dict):
                    value = item.get("rating", item.get("Rating"))
                    why = str(item.get("rationale", item.get("Rationale", "")))
                else:
                    value, why = item, ""
                if value is not None:
                    found[aspect] = (float(value), why)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            found = {}
    if len(found) < len(aspects):
        for aspect in aspects:
            if aspect in found:
                continue
            pattern = aspect.replace("_", r"[\s_-]*")
            m = re.search(rf"{pattern}\W{{0,20}}(?:rating\W{{0,5}})?(\d+(?:\.\d+)?)", text, re.I)
            if m:
                found[aspect] = (float(m.group(1)), "")
    missing = [a for a in aspects if a not in found]
    if missing:
        raise JudgeFailure(f"no rating for {', '.join(missing)}", text)
    out = {}
    for aspect, (value, why) in found.items():
        if not lo <= value <= hi:
            raise JudgeFailure(f"{aspect} rating {value:g} is outside {lo}-{hi}", text)
        out[aspect] = {"Rating": int(value) if value.is_integer() else value, "Rationale": why}
    return out


def parse_grade(text: str, scale=(1, 10)) -> float:
    """MT-Bench's single-answer grade, written as [[N]] (FastChat's format; [N] accepted)."""
    m = re.search(r"\[\[(\d+(?:\.\d+)?)\]\]", text) or re.search(r"\[(\d+(?:\.\d+)?)\]", text)
    if not m:
        raise JudgeFailure("no [[rating]] in the reply", text)
    value = float(m.group(1))
    if not scale[0] <= value <= scale[1]:
        raise JudgeFailure(f"grade {value:g} is outside {scale[0]}-{scale[1]}", text)
    return value


def parse_preference(text: str) -> float:
    """Pairwise verdict [[A]], [[B]] or [[C]] (tie) -> 1.0, 0.0, 0.5 for the first answer."""
    m = re.findall(r"\[\[([ABC])\]\]", text)
    if len(set(m)) != 1:
        raise JudgeFailure("no single [[A]], [[B]] or [[C]] verdict in the reply", text)
    return {"A": 1.0, "B": 0.0, "C": 0.5}[m[0]]


def parse_ranking(text: str) -> float:
    """AlpacaEval's ranking reply -> 1.0 when model_1 ranks first, 0.0 when model_2 does, 0.5 for a tie.

    The reply should be a Python literal like ``[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]``;
    code fences, text around the list, JSON quoting and a lone dict are tolerated. Raises JudgeFailure.
    """
    body = re.sub(r"```(?:python|json)?", "", text)
    ranks: dict = {}
    for match in re.finditer(r"\[.*\]|\{.*\}", body, re.S):
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and "model" in item and "rank" in item:
                ranks[str(item["model"]).strip()] = item["rank"]
        if ranks:
            break
    if not ranks:  # a list that does not parse as a whole: read the pairs one by one
        for m in re.finditer(r"[\'\"]model[\'\"]\s*:\s*[\'\"](model_[12])[\'\"]\s*,\s*[\'\"]rank[\'\"]\s*:\s*(\d+)", body):
            ranks.setdefault(m.group(1), int(m.group(2)))
    try:
        r1, r2 = (None if ranks.get(k) is None else int(ranks[k]) for k in ("model_1", "model_2"))
    except (TypeError, ValueError):
        raise JudgeFailure("a rank in the reply is not a number", text) from None
    if r1 is None and r2 is None:
        raise JudgeFailure("no ranking of model_1 and model_2 in the reply", text)
    if r1 is None or r2 is None:  # one model ranked: the other holds the remaining place of two
        known = r1 if r2 is None else r2
        if known not in (1, 2):
            raise JudgeFailure(f"rank {known} is not 1 or 2", text)
        r1, r2 = (known, 3 - known) if r2 is None else (3 - known, known)
    if r1 == r2:
        return 0.5
    return 1.0 if r1 < r2 else 0.0


def chat_messages(text: str) -> list[dict]:
    """A prompt file to chat messages: ChatML-style ``<|im_start|>role ... <|im_end|>`` blocks become one
    message each (AlpacaEval's judge prompts are written so); any other text is one user message."""
    blocks = re.findall(r"<\|im_start\|>\s*(system|user|assistant)\s*\n(.*?)(?:<\|im_end\|>|(?=<\|im_start\|>)|\Z)",
                        text, re.S)
    if not blocks:
        return [{"role": "user", "content": text}]
    return [{"role": role, "content": content.strip("\n")} for role, content in blocks]


def fill(template: str, **values) -> str:
    """Put values into {name} slots in one pass; braces that are not a known slot stay as written."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0),
                  template)


# -------------------------------------------------------------------------------------------- judges
@dataclass
class Verdict:
    value: object  # ratings dict, grade or preference
    raw: str = ""


class FunctionJudge:
    """A module of checking functions: rate(messages, response), grade(...), compare(messages, a, b)."""

    def __init__(self, module: str):
        self.module = module

    def _fn(self, name: str):
        return load_callable(f"{self.module}:{name}")

    def _each(self, name: str, items: list[tuple]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        fn = self._fn(name)
        for i, args in enumerate(items):
            try:
                yield i, Verdict(fn(*args))
            except Exception as exc:
                yield i, JudgeFailure(f"{self.module}.{name} failed: {exc}")

    def rate_many(self, items):
        return self._each("rate", items)

    def grade_many(self, items):
        """items: (messages, response[, prompt[, reference]]); the reference reaches functions that take one."""
        fn = self._fn("grade")
        try:
            takes_reference = "reference" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_reference = False
        if takes_reference:
            return self._each("grade", [(m, r, rest[1] if len(rest) > 1 else None) for m, r, *rest in items])
        return self._each("grade", [(m, r) for m, r, *_ in items])

    def compare_many(self, items):
        return self._each("compare", items)


class ModelJudge:
    """A chat model as judge. ``prompt`` is a format string with {instruction} and {response}; ``system`` an
    optional system message sent before every prompt. A prompt may also be a full list of chat messages."""

    def __init__(self, backend, prompt: str = ULTRAFEEDBACK_PROMPT, aspects=ASPECTS, scale=(1, 5),
                 max_retries: int = 2, sampling: dict | None = None, system: str | None = None):
        self.backend = backend
        self.system = system
        self.prompt = prompt
        self.aspects = tuple(aspects)
        self.scale = tuple(scale)
        self.max_retries = max_retries
        self.sampling = {"temperature": 0.0, "max_new_tokens": 512, **(sampling or {})}

    def _conversation(self, prompt: "str | list[dict]") -> list[dict]:
        if isinstance(prompt, list):
            return prompt
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": prompt}]

    def ask_many(self, prompts: "list[str | list[dict]]", parse) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        """Any prompt (text or chat messages) with any reply parser; unparsable replies are asked again."""
        return self._ask(prompts, parse)

    def _ask(self, prompts: list, parse) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        pending = list(range(len(prompts)))
        last: dict[int, JudgeFailure] = {}
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            convs = [self._conversation(prompts[i]) for i in pending]
            retry = []
            sampling = dict(self.sampling)
            if attempt and sampling.get("temperature", 0) == 0:
                sampling["temperature"] = 0.7  # a greedy judge would repeat the same unparsable reply
            for j, result in self.backend.generate(convs, 1, sampling):
                i = pending[j]
                if isinstance(result, Exception):
                    last[i] = JudgeFailure(f"judge request failed: {result}")
                    retry.append(i)
                    continue
                try:
                    yield i, Verdict(parse(result[0]), result[0])
                except JudgeFailure as failure:
                    last[i] = failure
                    retry.append(i)
            pending = sorted(retry)
        for i in pending:
            yield i, last[i]

    def rate_many(self, items):
        prompts = [self.prompt.format(instruction=format_conversation(m), response=r) for m, r in items]
        return self._ask(prompts, lambda t: parse_aspect_ratings(t, self.aspects, self.scale))

    def grade_many(self, items):
        """items: (messages, response, judge prompt text already filled in)."""
        return self._ask([p for _, _, p in items], parse_grade)

    def compare_many(self, items):
        """items: (messages, first, second, judge prompt text already filled in)."""
        return self._ask([p for *_, p in items], parse_preference)


def make_judge(spec: dict, hardware: dict | None = None, sampling: dict | None = None):
    """The judge a spec names, its defaults filled in. ``sampling``: the caller's defaults (a benchmark's token
    budget, greedy), under the spec's own sampling."""
    from .specs import JUDGE_MAKERS, JudgeSpec, complete

    spec = complete(spec, JudgeSpec, "judge")
    if spec["type"] in JUDGE_MAKERS:
        return JUDGE_MAKERS[spec["type"]](spec, hardware)
    if spec["type"] == "function":
        return FunctionJudge(spec["module"])
    prompt = spec["prompt"] or ULTRAFEEDBACK_PROMPT
    if prompt.endswith((".txt", ".jinja", ".md")) and Path(prompt).expanduser().is_file():
        prompt = Path(prompt).expanduser().read_text()
    retries = {} if spec.get("max_retries") is None else {"max_retries": int(spec["max_retries"])}
    return ModelJudge(make_backend(spec, hardware), prompt, spec["aspects"] or ASPECTS, tuple(spec["scale"]),
                      sampling={**(sampling or {}), **spec["sampling"]}, system=spec["system"], **retries)
