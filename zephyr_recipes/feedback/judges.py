"""Judges: rate one answer on the UltraFeedback aspects, grade it 1-10 (MT-Bench), compare two, or give an
Arena-Hard verdict on two.

A judge is a Python module of checking functions (for tasks whose answers a program can check), a chat model
behind any backend, prompted and parsed robustly, or a type a stage module registers (a reward model). Every
judge answers one call, ``judge.ask(kind, items, benchmark)``, for :class:`Item` s that carry both what a program
reads (messages, answers, reference) and what a chat model reads (prompt, reply parser); no caller needs to know
which judge it holds. A reply that cannot be parsed is asked again up to ``max_retries`` times, then recorded as a
:class:`JudgeFailure`; it is never silently given a score.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

from ..core.errors import ZephyrError
from ..data.binarize import ASPECTS
from ..model import modeling
from ..model.scoring import Scorer, load_reward_model
from . import judge_registry
from .backends import EndpointBackend, in_flight, load_callable, make_backend
from .http import EndpointError
from .specs import (
    FunctionJudgeSpec,
    JudgeSpec,
    OpenAIJudge,
    RewardModelJudgeSpec,
    TransformersJudge,
    VLLMJudge,
    load_of,
)

# This project's own single-answer rubric (protocol single_answer, the default of a chat-model judge): one answer per
# request, all four aspects in one JSON reply. It is not UltraFeedback's protocol, which asks per aspect with four
# answers side by side (feedback/ultrafeedback.py, protocol: ultrafeedback); the name is kept for compatibility.
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
    """The judge gave no usable answer after its retries; ``raw`` holds its last reply. ``final``: a reply that
    must not be asked again (a benchmark's rule drops it, e.g. two different verdicts)."""

    def __init__(self, reason: str, raw: str = "", final: bool = False):
        super().__init__(reason)
        self.raw = raw
        self.final = final


@dataclass(frozen=True)
class Unparsable:
    """What happens to a judge reply its reader cannot read: the benchmark's published rule, not the judge client's.

    ``asks``: requests in all, the first included (1: the reply is dropped, recorded as a failure). A later ask
    starts the conversation afresh, or (``follow_up``) goes on with the judge's reply and this user message.
    ``temperature``: of the later asks (None: the first ask's). ``joined``: the replies so far are read together,
    each after a newline, as arena-hard v0.1's ``get_score`` reads its accumulated judgment. A failure marked
    ``final`` (two different verdicts) is never asked again. Request errors (timeouts, 5xx) are the client's
    business: they are retried by the judge's own ``max_retries``."""

    asks: int = 1
    follow_up: Optional[str] = None
    temperature: Optional[float] = None
    joined: bool = False
    rule: str = "asked once; a reply without a verdict is recorded as a failure and not scored"


ASK_ONCE = Unparsable()


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


# Arena-Hard's pairwise labels, either way round (its judges write A>B, and sometimes B<A).
VERDICT_LABELS = frozenset({"A>>B", "A>B", "A=B", "B=A", "B>A", "B>>A", "A<B", "A<<B", "B<A", "B<<A"})


def parse_verdict(text: str, patterns=(r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"), rule: str = "2025") -> str:
    """The benchmark's reading of a judge reply. Rule 2025: the first pattern that matches (on the upper-cased
    reply), its last match. Rule 2024 (v0.1's leaderboard): the first pattern on the reply as written; two
    different labels are no verdict. Raises JudgeFailure when there is none, or it is not a verdict."""
    if rule == "2024":
        found = sorted({m for m in re.findall(patterns[0], text) if m})
        if len(found) > 1:  # get_score of 2024: no score, and no second ask
            raise JudgeFailure(f"conflicting verdicts {', '.join(found)} (dropped, as arena-hard v0.1 did)", text,
                               final=True)
        if found:
            label = found[0].strip("\n")
            if label not in VERDICT_LABELS:  # a label was found: 2024 asked no more, and its scoring drops it
                raise JudgeFailure(f"{label!r} is not a verdict ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]])",
                                   text, final=True)
            return label
        raise JudgeFailure("no [[A>>B]] ... [[B>>A]] verdict in the reply", text)
    for pattern in patterns:
        found = [m for m in re.findall(pattern, text.upper()) if m]
        if found:
            label = found[-1].strip("\n")
            if label not in VERDICT_LABELS:
                raise JudgeFailure(f"{label!r} is not a verdict ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]])",
                                   text)
            return label
    raise JudgeFailure("no [[A>>B]] ... [[B>>A]] verdict in the reply", text)


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
WHAT = {"rate": "rate an answer on the feedback aspects", "grade": "grade an answer 1-10",
        "compare": "compare two answers", "verdict": "give a verdict on two answers"}
_SLIGHT = {1.0: "[[A>B]]", 0.5: "[[A=B]]", 0.0: "[[B>A]]"}  # a comparison as an Arena-Hard verdict


@dataclass
class Verdict:
    value: Any  # ratings dict, grade, preference for the first answer, or a verdict label
    raw: str = ""
    weighted: bool = False  # a preference weighed from token log-probabilities, not a discrete choice
    shown: dict | None = None  # listwise: the order the answers were shown in, per request (name -> item indices)


@dataclass
class Item:
    """One judged question, in both forms a judge may need.

    ``messages``, ``answers`` and ``reference`` are what a program or a reward model reads: the conversation, the
    answer (rate, grade) or the two answers in the order shown (compare, verdict), and a reference answer. ``prompt``
    (text or chat messages) and ``parse`` are what a chat model reads and how its reply is read; a null prompt of a
    rating is the judge's own rubric, a null parse the kind's usual reader. ``labels``: for a comparison whose
    reply is one token naming the better answer (first, second), a judge that offers token log-probabilities
    weighs the two by them. ``seed``: for a listwise judge, the seed of its own shuffles of the answers.
    """

    messages: list
    answers: tuple
    reference: str | None = None
    prompt: "str | list[dict] | None" = None
    parse: Callable[[str], object] | None = None
    labels: tuple | None = None
    unparsable: Unparsable | None = None  # the benchmark's rule; None: the judge's own (max_retries re-asks)
    seed: int | None = None


class Judge:
    """What every judge is. ``ask(kind, items, benchmark)`` yields ``(index, Verdict | JudgeFailure)`` for each
    :class:`Item`, in any order, where kind is one of :data:`WHAT`: rate (the UltraFeedback aspects), grade
    (MT-Bench, 1-10), compare (the preference for the first answer: 1, 0.5 or 0, or a probability when
    weighted) and verdict (an Arena-Hard label). ``KINDS`` says at the class level what a judge can do, so a
    recipe is refused before anything runs; ``READS_PROMPTS`` whether it reads the items' prompts (a benchmark
    need not load its judge prompts otherwise); ``offers_logprobs`` whether it can weigh a one-token reply by
    its log-probabilities.

    ``listwise``: whether the judge rates the answers of one prompt together (AI feedback then groups them, see
    :mod:`.listwise`, and calls ``rate_lists`` with one item per group, all its answers in ``answers``; each
    verdict's value is a list of ratings, one per answer in the item's order, and ``shown`` the orders the
    judge showed them in)."""

    type: str = "judge"  # the judge type's name: the recipe's `type:`
    Settings: ClassVar[builtins.type[JudgeSpec]] = JudgeSpec  # its typed settings (a JudgeSpec subclass, each field with its help)
    KINDS: ClassVar[frozenset] = frozenset()  # what it can judge: rate, grade (one answer), compare, verdict (two) ...
    BENCHMARKS: ClassVar[Optional[frozenset]] = None  # the benchmarks (titles) it may judge; None: any it can
    READS_PROMPTS: ClassVar[bool] = False
    PIPELINE_CHECK: ClassVar[bool] = False  # a program, not a model: its figures show that the pipeline works
    SERVED: ClassVar[bool] = False  # the runner serves it (starts and stops a server) for the stage
    PROBED: ClassVar[bool] = True  # the pre-flight asks it one constructed item (an endpoint: its key and address only)
    CHAT: ClassVar[bool] = False  # a chat model (or a program playing one): it can be asked with a protocol
    NOT_CHAT: ClassVar[str] = "is not a chat model"  # what the refusal of a protocol says of it
    offers_logprobs: bool = False
    unparsable: Optional[Unparsable] = None  # set by the stage from the benchmark (Benchmark.on_unparsable)
    listwise: bool = False

    def rate_lists(self, items: list[Item]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        raise ZephyrError(f"a judge of type {self.type} does not rate answers together", "rate them one by one")

    def compare_many(self, items: list[Item]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        """The preference for each item's first answer: a judge with compare in its ``KINDS`` defines it."""
        raise NotImplementedError(f"judge type {self.type} does not say how it compares (compare_many)")

    @classmethod
    def make(cls, spec: dict, hardware: dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "Judge":
        """The judge of a checked spec (every key of ``Settings`` present). ``sampling``: the caller's settings
        (a benchmark's token budget and temperature), under the spec's own; ``where``: the spec's key in the recipe,
        for the fix of an error."""
        raise NotImplementedError(f"judge type {cls.type} does not say how it is made (classmethod make)")

    @classmethod
    def load(cls, role: str, spec: dict, requests: int, new_tokens: int) -> dict:
        """Its cost model, for ``plan``: what ``requests`` judgments of ``new_tokens`` ask of the machine (see
        :func:`.specs.load_of` for the fields). By default a program in this process."""
        return {"role": role, "requests": int(requests), "new_tokens": int(new_tokens), "spec": spec, "batch": 64,
                "how": "function", "model": spec.get("module") or spec.get("model") or cls.type}

    @classmethod
    def calls_out(cls, spec: dict, is_hub) -> bool:
        """Whether it calls out of this machine or loads a hub model (a rehearsal uses the embedded judge)."""
        return False

    @classmethod
    def chat_backend(cls, spec: dict, hardware: dict | None = None):
        """The chat model a protocol asks (``CHAT`` types; ``protocol: ultrafeedback``): the backend the spec names."""
        return make_backend(spec, hardware)

    @classmethod
    def can(cls, kind: str, benchmark: str | None = None) -> bool:
        """A judge that compares gives slight verdicts when it has none of its own."""
        if benchmark is not None and cls.BENCHMARKS is not None and benchmark not in cls.BENCHMARKS:
            return False
        return kind in cls.KINDS or (kind == "verdict" and "compare" in cls.KINDS)

    @classmethod
    def refusal(cls, kind: str, benchmark: str, judge_type: str | None = None) -> ZephyrError:
        able = judge_registry.able(kind, benchmark)
        types = ", ".join(able[:-1]) + f" or {able[-1]}" if len(able) > 1 else "".join(able)
        return ZephyrError(f"a judge of type {judge_type or cls.type} cannot {WHAT.get(kind, kind)}, which "
                           f"{benchmark} needs", f"give {benchmark} a judge of type {types}")

    def ask(self, kind: str, items: list[Item], benchmark: str,
            unparsable: Optional[Unparsable] = None) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        """``unparsable``: the benchmark's rule for a reply its reader cannot read (default: the one the stage set
        on this judge, else the judge's own re-asks)."""
        if not self.can(kind):
            raise self.refusal(kind, benchmark)
        rule = unparsable or self.unparsable
        items = list(items)
        if rule is not None:
            items = [it if it.unparsable is not None else dataclasses.replace(it, unparsable=rule) for it in items]
        return getattr(self, f"{kind}_many")(items)

    def verdict_many(self, items: list[Item]):
        """Slight verdicts ([[A>B]], [[A=B]], [[B>A]]) from comparisons, read by each item's verdict reader."""
        for i, verdict in self.compare_many(items):
            if isinstance(verdict, JudgeFailure):
                yield i, verdict
                continue
            try:
                reply = _SLIGHT.get(float(verdict.value))
            except (TypeError, ValueError):
                reply = None
            if reply is None:
                yield i, JudgeFailure(f"a comparison of {verdict.value} is not a verdict (1, 0.5 or 0 for the first "
                                      "answer)", verdict.raw)
                continue
            try:
                yield i, Verdict((items[i].parse or _parse_verdict)(reply), reply)
            except JudgeFailure as failure:
                yield i, failure


def _parse_verdict(text: str):
    return parse_verdict(text)


class FunctionJudge(Judge):
    """A module of checking functions: rate(messages, response), grade(messages, response[, reference]),
    compare(messages, a, b) and verdict(messages, a, b) (a verdict label, or a reply holding one; without it
    verdicts come from compare). A module with rate_list(messages, responses) -> a list of ratings (one per
    response, in order, each shaped as rate's) is a listwise judge in AI feedback."""

    type = "function"
    Settings = FunctionJudgeSpec
    KINDS = frozenset(WHAT)
    PIPELINE_CHECK = True
    CHAT = True  # with a protocol, the module's chat(messages) plays the chat model

    def __init__(self, module: str):
        self.module = module

    @classmethod
    def chat_backend(cls, spec: dict, hardware: dict | None = None):
        """Asked with a protocol, the module's ``chat(messages) -> str`` plays the chat model (a stand-in)."""
        return make_backend({"type": "function", "function": f"{spec['module']}:chat"})

    @classmethod
    def make(cls, spec: dict, hardware: dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "FunctionJudge":
        return cls(spec["module"])

    @property
    def listwise(self) -> bool:  # type: ignore[override]
        try:
            self._fn("rate_list")
        except ZephyrError:
            return False
        return True

    def rate_lists(self, items: list[Item]):
        fn, name = self._fn("rate_list"), f"{self.module}.rate_list"
        for i, it in enumerate(items):
            try:
                value = fn(it.messages, list(it.answers))
            except Exception as exc:
                yield i, JudgeFailure(f"{name} failed: {exc}")
                continue
            if not isinstance(value, (list, tuple)) or len(value) != len(it.answers):
                raise ZephyrError(f"{name} returned {repr(value)[:200]} for {len(it.answers)} responses, and a "
                                  f"rate_list function must return a list of {len(it.answers)} ratings (one per "
                                  f"response, in order), each {RESULT_SHAPES['rate']}; nothing of it was recorded",
                                  f"fix {name} (docs/ai-feedback.md) and run the same command again")
            ratings = [checked_result(name, "rate", v) for v in value]
            yield i, Verdict(ratings, shown={"all": list(range(len(it.answers)))})

    def _fn(self, name: str):
        return load_callable(f"{self.module}:{name}")

    def _each(self, name: str, items: list[tuple]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        fn = self._fn(name)
        for i, args in enumerate(items):
            try:
                value = fn(*args)
            except Exception as exc:
                yield i, JudgeFailure(f"{self.module}.{name} failed: {exc}")
                continue
            # A result of the wrong shape is the function's bug, not the answer's: stop before it is recorded.
            yield i, Verdict(checked_result(f"{self.module}.{name}", name, value))

    def rate_many(self, items: list[Item]):
        return self._each("rate", [(it.messages, it.answers[0]) for it in items])

    def grade_many(self, items: list[Item]):
        """The reference reaches functions that take one."""
        fn = self._fn("grade")
        try:
            takes_reference = "reference" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_reference = False
        if takes_reference:
            return self._each("grade", [(it.messages, it.answers[0], it.reference) for it in items])
        return self._each("grade", [(it.messages, it.answers[0]) for it in items])

    def compare_many(self, items: list[Item]):
        return self._each("compare", [(it.messages, *it.answers[:2]) for it in items])

    def verdict_many(self, items: list[Item]):
        try:
            fn = self._fn("verdict")
        except ZephyrError:
            return super().verdict_many(items)
        return self._verdicts(fn, items)

    def _verdicts(self, fn, items: list[Item]):
        for i, it in enumerate(items):
            try:
                reply = str(fn(it.messages, *it.answers[:2]))
            except Exception as exc:
                yield i, JudgeFailure(f"{self.module}.verdict failed: {exc}")
                continue
            try:  # a bare label is read as the judge's [[label]]
                yield i, Verdict((it.parse or _parse_verdict)(reply if "[" in reply else f"[[{reply}]]"), reply)
            except JudgeFailure as failure:
                yield i, failure


RESULT_SHAPES = {
    "rate": "a dict of aspect -> rating, each a number or {'Rating': number, 'Rationale': str}, e.g. "
            "{'helpfulness': {'Rating': 4, 'Rationale': '...'}, 'honesty': 5, ...}",
    "grade": "a number (MT-Bench: 1-10)",
    "compare": "a number from 0 to 1: the preference for the first answer (1, 0.5 for a tie, 0)",
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def checked_result(function: str, kind: str, value):
    """A function judge's result in the shape ``kind`` needs (ratings normalised to {'Rating', 'Rationale'}), or a
    ZephyrError naming the expected shape; the caller records nothing for it."""
    ok = True
    if kind == "rate":
        ok = isinstance(value, dict) and bool(value) and all(
            isinstance(k, str) and (_is_number(v) or isinstance(v, dict) and _is_number(v.get("Rating")))
            for k, v in value.items())
        if ok:
            value = {k: v if isinstance(v, dict) else {"Rating": v, "Rationale": ""} for k, v in value.items()}
    elif kind == "grade":
        ok = _is_number(value)
    elif kind == "compare":
        ok = _is_number(value) and 0 <= value <= 1
    if not ok:
        shown = repr(value)
        raise ZephyrError(f"{function} returned {shown[:200]} ({type(value).__name__}), and a {kind} function must "
                          f"return {RESULT_SHAPES[kind]}; nothing of it was recorded",
                          f"fix {function} (the hooks' signatures and results: docs/security.md) and run the "
                          "same command again")
    return value


_DEFAULT_PARSE = {"grade": parse_grade, "compare": parse_preference, "verdict": _parse_verdict}


class ModelJudge(Judge):
    """A chat model as judge. ``prompt`` is the rating rubric, a format string with {instruction} and
    {response}; ``system`` an optional system message sent before every prompt given as text (a prompt given as
    chat messages is sent as it is). The other kinds take their prompt from each item."""

    KINDS = frozenset(WHAT)
    READS_PROMPTS = True
    CHAT = True

    def __init__(self, backend, prompt: str = ULTRAFEEDBACK_PROMPT, aspects=ASPECTS, scale=(1, 5),
                 max_retries: int = 2, sampling: dict | None = None, system: str | None = None,
                 judge_type: str = "transformers"):
        self.backend = backend
        self.system = system
        self.prompt = prompt
        self.aspects = tuple(aspects)
        self.scale = tuple(scale)
        self.max_retries = max_retries
        self.sampling = {"temperature": 0.0, "max_new_tokens": 512, **(sampling or {})}
        self.type = judge_type
        self.offers_logprobs = isinstance(backend, EndpointBackend)

    @classmethod
    def make(cls, spec: dict, hardware: dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "ModelJudge":
        prompt = spec["prompt"] or ULTRAFEEDBACK_PROMPT
        if prompt.endswith((".txt", ".jinja", ".md")) and Path(prompt).expanduser().is_file():
            prompt = Path(prompt).expanduser().read_text()
        retries = {} if spec.get("max_retries") is None else {"max_retries": int(spec["max_retries"])}
        return cls(make_backend(spec, hardware, f"{where}.model_config"), prompt, spec["aspects"] or ASPECTS,
                   tuple(spec["scale"]), sampling={**(sampling or {}), **spec["sampling"]}, system=spec["system"],
                   judge_type=spec["type"], **retries)

    @classmethod
    def load(cls, role: str, spec: dict, requests: int, new_tokens: int) -> dict:
        return load_of(role, spec, requests, new_tokens)  # the backend's: local, served or an API

    def _conversation(self, prompt: "str | list[dict]") -> list[dict]:
        if isinstance(prompt, list):
            return prompt
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": prompt}]

    def _own_rule(self) -> Unparsable:
        """The judge's own rule, for callers that are no benchmark (AI feedback): ``max_retries`` fresh re-asks, a
        greedy judge's at temperature 0.7 (it would repeat the same unparsable reply)."""
        greedy = self.sampling.get("temperature", 0) == 0
        return Unparsable(self.max_retries + 1, temperature=0.7 if greedy else None,
                          rule=f"asked again up to {self.max_retries} time(s), then recorded as a failure")

    def _ask(self, prompts: list, parsers: list,
             rules: Optional[list] = None) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        """Each prompt (text or chat messages) read by its parser; a reply that does not parse goes by its rule
        (:class:`Unparsable`), a request that failed is retried up to ``max_retries`` times."""
        own = self._own_rule()
        rules = [r or own for r in (rules or [None] * len(prompts))]
        convs = {i: self._conversation(prompts[i]) for i in range(len(prompts))}
        replies: dict[int, list[str]] = {i: [] for i in convs}
        errors: dict[int, int] = {i: 0 for i in convs}
        pending = list(range(len(prompts)))
        while pending:
            groups: dict[float | None, list[int]] = {}
            for i in pending:
                later = rules[i].temperature if replies[i] else None
                groups.setdefault(later, []).append(i)
            retry = []
            for temp, members in groups.items():
                sampling = dict(self.sampling) if temp is None else {**self.sampling, "temperature": temp}
                for j, result in self.backend.generate([convs[i] for i in members], 1, sampling):
                    i = members[j]
                    if isinstance(result, Exception):
                        errors[i] += 1
                        if errors[i] > self.max_retries:
                            yield i, JudgeFailure(f"judge request failed: {result}")
                        else:
                            retry.append(i)
                        continue
                    reply = result[0]
                    replies[i].append(reply)
                    text = "".join("\n" + r for r in replies[i]) if rules[i].joined else reply
                    try:
                        yield i, Verdict(parsers[i](text), text)
                    except JudgeFailure as failure:
                        if failure.final or len(replies[i]) >= rules[i].asks:
                            yield i, failure
                            continue
                        if rules[i].follow_up:
                            convs[i] = convs[i] + [{"role": "assistant", "content": reply},
                                                   {"role": "user", "content": rules[i].follow_up}]
                        retry.append(i)
            pending = sorted(retry)

    def _prompted(self, kind: str, items: list[Item]):
        missing = next((i for i, it in enumerate(items) if it.prompt is None), None)
        if missing is not None:
            raise ZephyrError(f"question {missing} has no judge prompt, and a judge of type {self.type} needs one to "
                              f"{WHAT[kind]}", "give the benchmark's judge prompts (they are not loaded for judges "
                                               "that read none)")
        return self._ask([it.prompt for it in items], [it.parse or _DEFAULT_PARSE[kind] for it in items],
                         [it.unparsable for it in items])

    def rate_many(self, items: list[Item]):
        prompts = [it.prompt if it.prompt is not None else
                   self.prompt.format(instruction=format_conversation(it.messages), response=it.answers[0])
                   for it in items]
        rubric = lambda t: parse_aspect_ratings(t, self.aspects, self.scale)  # noqa: E731
        return self._ask(prompts, [it.parse or rubric for it in items], [it.unparsable for it in items])

    def grade_many(self, items: list[Item]):
        return self._prompted("grade", items)

    def compare_many(self, items: list[Item]):
        if items and self.offers_logprobs:
            weighed = [(it.prompt, it.labels) for it in items if it.labels is not None and it.prompt is not None]
            if len(weighed) == len(items):
                return self._weighed(items, weighed)
        return self._prompted("compare", items)

    def verdict_many(self, items: list[Item]):
        return self._prompted("verdict", items)

    def _weighed(self, items: list[Item],
                 asks: list[tuple[str | list[dict], tuple]]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        """One request per item (``asks``: its prompt and labels) asking for the first token's top log-probabilities: the preference is the first
        label's share of the two labels' probability. A reply without them is read by the item's parser (a
        discrete choice); one with neither is asked again (at temperature 1), then given up as a failure."""
        endpoint, concurrency = self.backend.endpoint, self.backend.concurrency
        sampling = dict(self.sampling)
        if "max_new_tokens" in sampling:
            sampling["max_tokens"] = sampling.pop("max_new_tokens")
        sampling.pop("do_sample", None)
        sampling.update(logprobs=True, top_logprobs=TOP_LOGPROBS)

        def one(i: int) -> Verdict | JudgeFailure:
            (item, (prompt, labels)), last = (items[i], asks[i]), JudgeFailure("no reply")
            tries = item.unparsable.asks if item.unparsable else self.max_retries + 1
            for attempt in range(tries):
                extra = {} if attempt == 0 else {"temperature": 1.0}
                try:
                    payload = endpoint.complete(self._conversation(prompt), **{**sampling, **extra})
                except EndpointError as exc:
                    last = JudgeFailure(f"judge request failed: {exc}")
                    continue
                p, text = label_probability(payload, labels)
                if p is not None:
                    return Verdict(p, text, weighted=True)
                try:
                    return Verdict((item.parse or parse_preference)(text), text)
                except JudgeFailure as failure:
                    last = failure
            return last

        for i, result in in_flight(one, len(items), concurrency):  # one() turns a request's error into a failure
            yield i, JudgeFailure(f"judge request failed: {result}") if isinstance(result, EndpointError) else result


class TransformersModelJudge(ModelJudge):
    """A local chat model (transformers, batched) as judge."""

    type = "transformers"
    Settings = TransformersJudge

    @classmethod
    def calls_out(cls, spec: dict, is_hub) -> bool:
        return bool(is_hub(spec.get("model")))


class OpenAIModelJudge(ModelJudge):
    """A chat model behind an OpenAI-compatible endpoint (or a server the runner starts with ``serve``)."""

    type = "openai"
    Settings = OpenAIJudge

    PROBED = False

    @classmethod
    def calls_out(cls, spec: dict, is_hub) -> bool:
        return True


class VLLMModelJudge(ModelJudge):
    """A model the runner serves with vLLM for the stage, asked through its OpenAI-compatible API."""

    type = "vllm"
    Settings = VLLMJudge
    SERVED = True

    PROBED = False

    @classmethod
    def calls_out(cls, spec: dict, is_hub) -> bool:
        return True


TOP_LOGPROBS = 5  # the first token's alternatives asked for when weighing a one-token reply


def label_probability(payload: dict, labels: tuple) -> tuple[float | None, str]:
    """(the first label's share of both labels' probability among the first token's top log-probabilities, or
    None when neither is there; the reply's text) from an OpenAI-style chat completion."""
    choice = payload["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    try:
        top = choice["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None, text
    probs = {t["token"]: math.exp(t["logprob"]) for t in top if t.get("token") in labels}
    if not probs:
        return None, text
    return probs.get(labels[0], 0.0) / sum(probs.values()), text


# --------------------------------------------------------------------------------- reward-model judge
class RewardModelJudge(Judge):
    """A trained reward model as judge: it rates one answer and compares two, reading the conversation itself.

    A rating is the reward written on every aspect (so binarization's mean score is the reward itself, and a
    higher reward makes the chosen answer); a comparison is 1.0, 0.0 or 0.5 as the first answer's reward is
    higher, lower or equal (Arena-Hard gets slight verdicts from it). Nothing is sampled, so the judge agrees with
    itself exactly. It gives no 1-10 grades: MT-Bench is refused when the recipe is validated.
    """

    type = "reward_model"
    Settings = RewardModelJudgeSpec
    KINDS = frozenset({"rate", "compare"})
    NOT_CHAT = "scores answers itself"
    READS_PROMPTS = False

    @classmethod
    def make(cls, spec: dict, hardware: dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "RewardModelJudge":
        return cls.from_spec(spec, hardware)

    @classmethod
    def load(cls, role: str, spec: dict, requests: int, new_tokens: int) -> dict:
        return load_of(role, spec, requests, new_tokens)  # a local model, scored in batches

    def __init__(self, model: str, hardware: dict | None = None, model_config: dict | None = None,
                 batch_size: Any = "auto", max_length: Optional[int] = None, aspects=None,
                 system: Optional[str] = None):
        cfg, self.placement = modeling.standalone(model, model_config, hardware, "judge")
        # chat_template null: the one the reward model was trained with
        tokenizer = modeling.load_tokenizer(cfg, where="stage.judge.model_config")
        net = load_reward_model(model, cfg, self.placement)
        if not self.placement.load_in_4bit:
            net = net.to(self.placement.device)
        if batch_size == "auto":
            batch_size = 64 if self.placement.device == "cuda" else 16
        self.scorer = Scorer(net.eval(), tokenizer, int(batch_size), max_length)
        self.aspects = tuple(aspects or ASPECTS)
        self.system = system
        self.name = model

    @classmethod
    def from_spec(cls, spec: dict, hardware: dict | None = None) -> "RewardModelJudge":
        """The judge of a checked ``{type: reward_model, model, ...}`` spec."""
        return cls(spec["model"], hardware, spec["model_config"], spec["batch_size"], spec["max_length"],
                   spec["aspects"], spec["system"])

    def _conversation(self, messages: list[dict], response: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system and \
            not any(m.get("role") == "system" for m in messages) else []
        return system + list(messages) + [{"role": "assistant", "content": response}]

    def scores(self, pairs: list[tuple]) -> list[float]:
        """Rewards of (messages, response) pairs."""
        return self.scorer.score([self._conversation(m, r) for m, r in pairs])

    def _streamed(self, pairs: list[tuple]) -> Iterator[tuple[int, float]]:
        """(index, reward) a few batches at a time, so the caller records ratings as they come."""
        step = self.scorer.batch_size * 8
        for start in range(0, len(pairs), step):
            for j, value in enumerate(self.scores(pairs[start:start + step])):
                yield start + j, value

    def rate_many(self, items) -> Iterator[tuple[int, Any]]:
        for i, value in self._streamed([(it.messages, it.answers[0]) for it in items]):
            if not math.isfinite(value):
                yield i, JudgeFailure(f"the reward model returned {value}")
                continue
            rating = repr(value)
            why = f"reward {value:.6g} from {self.name}"
            yield i, Verdict({a: {"Rating": rating, "Rationale": why} for a in self.aspects}, f"reward {rating}")

    def compare_many(self, items) -> Iterator[tuple[int, Any]]:
        """The first answer against the second, by their rewards; prompts are not read."""
        items = list(items)
        first = self.scores([(it.messages, it.answers[0]) for it in items])
        second = self.scores([(it.messages, it.answers[1]) for it in items])
        for i, (x, y) in enumerate(zip(first, second)):
            yield i, Verdict(1.0 if x > y else 0.0 if x < y else 0.5, f"rewards {x!r} vs {y!r}")


# ---------------------------------------------------------------------------------------------- making
# The judge types are registered in .judge_registry (one line each); these are its answers, under their old names.
def judge_types() -> dict:
    """Judge type -> the class its judges are."""
    return {name: judge_registry.judge_class(name) for name in judge_registry.names()}


check_judge = judge_registry.check_judge
reads_prompts = judge_registry.reads_prompts
make_judge = judge_registry.make_judge
