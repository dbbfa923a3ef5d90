"""A chat model as judge, behind any backend (a local transformers model, an OpenAI-compatible endpoint, a model
the runner serves with vLLM), prompted and its replies parsed robustly: a reply that cannot be parsed is asked
again up to ``max_retries`` times, then recorded as a :class:`~.replies.JudgeFailure`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from ..core.errors import ZephyrError
from ..core.schema import HardwareConfig
from ..data.binarize import ASPECTS
from .backends import EndpointBackend, in_flight, make_backend
from .http import EndpointError
from .judge_base import WHAT, Item, Judge, Unparsable, Verdict
from .judge_prompts import ULTRAFEEDBACK_PROMPT, format_conversation
from .replies import (
    JudgeFailure,
    label_probability,
    parse_aspect_ratings,
    parse_grade,
    parse_preference,
    parse_verdict,
)
from .specs import OpenAIJudge, TransformersJudge, VLLMJudge, load_of

TOP_LOGPROBS = 5  # the first token's alternatives asked for when weighing a one-token reply


_DEFAULT_PARSE = {"grade": parse_grade, "compare": parse_preference, "verdict": parse_verdict}


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
    def make(cls, spec: dict, hardware: HardwareConfig | dict | None = None, sampling: dict | None = None,
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
        """One request per item (``asks``: its prompt and labels) asking for the first token's top
        log-probabilities: the preference is the first label's share of the two labels' probability. A reply without
        them is read by the item's parser (a discrete choice); one with neither is asked again (at temperature 1),
        then given up as a failure."""
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
