"""What every judge is: the :class:`Judge` interface, the :class:`Item` s it is asked about, the :class:`Verdict` s
it gives, and the :class:`Unparsable` rule for a reply that cannot be read.

Every judge answers one call, ``judge.ask(kind, items, benchmark)``, for items that carry both what a program reads
(messages, answers, reference) and what a chat model reads (prompt, reply parser); no caller needs to know which
judge it holds. The judge types are in :mod:`.function_judge`, :mod:`.model_judge` and :mod:`.reward_judge`.
"""

from __future__ import annotations

import builtins
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Optional

from ..core.errors import ZephyrError
from ..core.schema import HardwareConfig
from .backends import make_backend
from .replies import JudgeFailure, parse_verdict
from .specs import JudgeSpec


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


def _no_types(kind: str, benchmark: str | None = None) -> list[str]:
    return []


# The judge types that can do a kind (for a benchmark), for the refusal's fix. The judge registry, which knows every
# type, puts its own answer here when it is imported (it imports this module; this one does not import it).
able_types: Callable[[str, str | None], list[str]] = _no_types


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
    # its typed settings (a JudgeSpec subclass, each field with its help); `type` in this class is the name above
    Settings: ClassVar[builtins.type[JudgeSpec]] = JudgeSpec
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
    def make(cls, spec: dict, hardware: HardwareConfig | dict | None = None, sampling: dict | None = None,
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
    def chat_backend(cls, spec: dict, hardware: HardwareConfig | dict | None = None):
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
        able = able_types(kind, benchmark)
        types = ", ".join(able[:-1]) + f" or {able[-1]}" if len(able) > 1 else "".join(able)
        return ZephyrError(f"a judge of type {judge_type or cls.type} cannot {WHAT.get(kind, kind)}, which "
                           f"{benchmark} needs", f"give {benchmark} a judge of type {types or 'that can'}")

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
                yield i, Verdict((items[i].parse or parse_verdict)(reply), reply)
            except JudgeFailure as failure:
                yield i, failure
