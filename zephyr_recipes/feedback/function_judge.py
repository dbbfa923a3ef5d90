"""A module of checking functions as judge (for tasks whose answers a program can check), and the check of the
shape of what its functions return."""

from __future__ import annotations

import inspect
import math
from typing import Iterator

from ..core.errors import ZephyrError
from ..core.schema import HardwareConfig
from .backends import load_callable, make_backend
from .judge_base import WHAT, Item, Judge, Verdict
from .replies import JudgeFailure, parse_verdict
from .specs import FunctionJudgeSpec


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
    def chat_backend(cls, spec: dict, hardware: HardwareConfig | dict | None = None):
        """Asked with a protocol, the module's ``chat(messages) -> str`` plays the chat model (a stand-in)."""
        return make_backend({"type": "function", "function": f"{spec['module']}:chat"})

    @classmethod
    def make(cls, spec: dict, hardware: HardwareConfig | dict | None = None, sampling: dict | None = None,
             where: str = "stage.judge") -> "FunctionJudge":
        return cls(spec["module"])

    # Judge.listwise is a plain False on the class (read there by callers); a function judge knows only once its
    # module is loaded, hence a property over the attribute.
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
                yield i, Verdict((it.parse or parse_verdict)(reply if "[" in reply else f"[[{reply}]]"), reply)
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
