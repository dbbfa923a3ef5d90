"""UltraFeedback's own annotation protocol, as a judge option: ``stage.judge.protocol: ultrafeedback``.

What OpenBMB/UltraFeedback's ``src/data_annotation/annotate_preference.py`` (commit bf80fd4) does, on any chat
model this project can ask (an OpenAI-compatible endpoint, a served or local model, or a function playing one):

- **one request per aspect**, in the published order (instruction_following, honesty, truthfulness, helpfulness),
  each the aspect's published template (:mod:`.ultrafeedback_templates`) under the published system prompt, the
  group's completions as ``text_1..text_4`` in a random order drawn for that aspect (seeded here: the run's seed,
  the prompt, the group and the aspect; the published script drew without a seed);
- **templates**: truthfulness uses ``truthfulness_template_with_answer`` and helpfulness
  ``helpfulness_template_without_answer``. The published script imports names that do not exist
  (``truthfulness_template``, ``helpfulness_template``); it passes world knowledge to truthfulness only, so those
  are the only variants it can have formatted without an error;
- **world knowledge** for truthfulness, by the row's source (:func:`world_knowledge`): truthful_qa (its correct
  and incorrect answers), false_qa (the published sentence), flan (its correct answers, as written), else
  "No additional world knowledge for reference.";
- **sampling**: temperature 0, top_p 0.6, at most 500 new tokens (presence and frequency penalty 0 sent to an
  endpoint); a recipe's ``judge.sampling`` overrides key by key, and the card says so;
- **parsing** (:func:`process`): the reply split on ``"\\n\\n"`` into exactly one part per text, the aspect's
  regex on each, ratings kept as the published strings ("4", "N/A"), types as a list of digit strings or the
  string "None";
- **retries**: a reply that does not parse is asked again with the same request, up to 10 parses in all (the
  published loop's count; it also sends an 11th request whose reply it never reads, which is not sent here); an
  aspect that never parses makes the group's ratings a recorded failure, never scored (the published script
  left that aspect's list empty);
- **critique and overall_score** (``binarize.score: overall``): ``annotate_critique.py``'s request per completion
  (:func:`critique_messages`, :func:`parse_critique`), then ``fix_overall_score_issue.py``'s rule on every
  overall_score of 10 (:func:`fix_action`), so the bug of UltraFeedback issue #8 (a score of 1 written as 10) can
  neither happen here (no score is rescaled) nor be left in: a 10 whose aspect ratings average 2 or less becomes 1,
  one that averages more than 2 and at most 4 is asked again as published (the stored critique and an empty score
  slot, one token), one above 4 stays.

Groups of fewer than 4 completions (a prompt with 2 or 3 answers) are asked with the templates and system prompt
cut to that many texts (:func:`adapted`): the words "four" become the count, and the lines of the missing texts go.
The published protocol never had fewer than 4.

The published requests and readers are :mod:`.ultrafeedback_protocol` (importable from here); this module is the
judge that asks them, the protocol's registration, its plan and card, and the AI-feedback step of the critiques.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..core.errors import ZephyrError
from ..core.schema import DatasetConfig, HardwareConfig
from ..data.binarize import prompt_id
from . import ultrafeedback_templates as T
from .backends import EndpointBackend
from .judge_registry import judge_class
from .judges import Item, JudgeFailure, ModelJudge, Verdict, make_judge
from .serve import serving
from .specs import JUDGE_PROTOCOLS, register_protocol
from .store import Store
from .ultrafeedback_protocol import (
    ASPECTS,
    COLUMNS,
    CRITIQUE_SAMPLING,
    DEFAULT_KNOWLEDGE,
    ENDPOINT_EXTRA,
    FALSE_QA_KNOWLEDGE,
    PARSE_ATTEMPTS,
    PATTERNS,
    RESCORE_SAMPLING,
    SAMPLING,
    SOURCE,
    SYSTEM_PROMPT,
    TEMPLATES,
    ParseError,
    adapted,
    critique_messages,
    fine_grained_score,
    fix_action,
    messages,
    order,
    parse_critique,
    parse_rescore,
    process,
    reference_columns,
    rescore_messages,
    subset,
    world_knowledge,
)

# The published protocol's pieces (.ultrafeedback_protocol) are importable from here, as they were.
__all__ = [
    "ASPECTS", "COLUMNS", "CRITIQUE_SAMPLING", "DEFAULT_KNOWLEDGE", "ENDPOINT_EXTRA", "FALSE_QA_KNOWLEDGE", "NAME",
    "PARSE_ATTEMPTS", "PATTERNS", "RESCORE_SAMPLING", "SAMPLING", "SOURCE", "SYSTEM_PROMPT", "T", "TEMPLATES",
    "ParseError", "UltraFeedbackJudge", "adapted", "annotation_row", "check_spec", "check_stage", "critique_key",
    "critique_messages", "critique_of", "critique_step", "describe_judge", "describe_protocol", "fine_grained_score",
    "fix_action", "judge_load", "make", "messages", "order", "parse_critique", "parse_rescore", "process",
    "reference_columns", "rescore_messages", "subset", "world_knowledge",
]

log = logging.getLogger("zephyr_recipes")

NAME = "ultrafeedback"


# ----------------------------------------------------------------------------------------- the judge
@dataclass
class _Request:
    item: int
    aspect: str
    shown: list[int]
    messages: list[dict]


class UltraFeedbackJudge(ModelJudge):
    """A chat model asked as UltraFeedback asked GPT-4: listwise, one request per aspect (see the module)."""

    listwise = True

    def __init__(self, backend, judge_type: str, sampling: dict | None = None, attempts: int = PARSE_ATTEMPTS,
                 caller_sampling: dict | None = None):
        super().__init__(backend, judge_type=judge_type, max_retries=attempts - 1,
                         sampling={**(caller_sampling or {}), **(sampling or {})})
        self.overrides = dict(sampling or {})
        self.attempts = attempts

    def _sampling(self, published: dict) -> dict:
        out = {**published, **self.overrides}
        if isinstance(self.backend, EndpointBackend):
            out = {**ENDPOINT_EXTRA, **out}
        return out

    @staticmethod
    def world_knowledge(dataset: DatasetConfig, prompts: Iterable[str]) -> dict[str, object]:
        """prompt id -> the world knowledge of the first dataset row with that prompt (see :func:`world_knowledge`),
        read from the columns ``dataset.columns`` maps source, correct_answers and incorrect_answers to (these
        names by default); a dataset without a source column gets the default sentence for every prompt."""
        found = reference_columns(dataset, prompts)
        return {pid: world_knowledge(row["source"], row.get("correct_answers"), row.get("incorrect_answers"))
                if row.get("source") is not None else DEFAULT_KNOWLEDGE for pid, row in found.items()}

    def rate_many(self, items: list[Item]):
        raise ZephyrError("a judge with protocol ultrafeedback rates the answers of a prompt together, never one by one",
                          "ask it through rate_lists (AI feedback does), or set judge.protocol=single_answer")

    def rate_lists(self, items: list[Item]) -> Iterator[tuple[int, Verdict | JudgeFailure]]:
        requests = []
        for i, it in enumerate(items):
            instruction = it.messages[-1]["content"] if len(it.messages) == 1 else \
                "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in it.messages)
            knowledge = DEFAULT_KNOWLEDGE if it.reference is None else it.reference
            for aspect in ASPECTS:
                shown = order(it.seed or 0, aspect, len(it.answers))
                requests.append(_Request(i, aspect, shown, messages(
                    aspect, instruction, [it.answers[k] for k in shown], knowledge)))
        parsed: dict[tuple, list] = {}
        failed: dict[tuple, JudgeFailure] = {}
        raws: dict[tuple, str] = {}
        left = {i: len(ASPECTS) for i in range(len(items))}
        for j, outcome in self._asked(requests, self._sampling(SAMPLING),
                                      lambda r, reply: process(reply, r.aspect, len(r.shown))):
            req = requests[j]
            key = (req.item, req.aspect)
            if isinstance(outcome, JudgeFailure):
                failed[key] = outcome
            else:
                parsed[key], raws[key] = outcome
            left[req.item] -= 1
            if not left[req.item]:
                yield req.item, self._verdict(req.item, items[req.item], requests, parsed, failed, raws)

    def _verdict(self, i: int, item: Item, requests: list[_Request], parsed: dict, failed: dict,
                 raws: dict) -> Verdict | JudgeFailure:
        shown = {r.aspect: r.shown for r in requests if r.item == i}
        bad = [a for a in ASPECTS if (i, a) in failed]
        first = bad + [a for a in ASPECTS if a not in bad]  # a failure's own reply leads (records keep 2,000 chars)
        text = "\n\n".join(f"### {a}\n{raws.get((i, a), failed[(i, a)].raw if (i, a) in failed else '')}"
                           for a in first)
        if bad:
            reasons = "; ".join(f"{a}: {failed[(i, a)]}" for a in bad)
            if any(str(failed[(i, a)]).startswith("judge request failed") for a in bad):
                return JudgeFailure(f"judge request failed ({reasons})", text)
            return JudgeFailure(f"no parsable reply in {self.attempts} tries ({reasons})", text)
        ratings = [{a: parsed[(i, a)][shown[a].index(k)] for a in ASPECTS} for k in range(len(item.answers))]
        return Verdict(ratings, text, shown=shown)

    def _asked(self, requests: list, sampling: dict, parse) -> Iterator[tuple[int, Any]]:
        """Each request sent, its reply parsed; a reply that does not parse is asked again with the same request
        and sampling, up to ``attempts`` parses. Yields (index, (parsed, reply) | JudgeFailure)."""
        pending = list(range(len(requests)))
        last: dict[int, JudgeFailure] = {}
        for _attempt in range(self.attempts):
            if not pending:
                break
            retry = []
            for j, result in self.backend.generate([requests[k].messages for k in pending], 1, sampling):
                k = pending[j]
                if isinstance(result, Exception):
                    yield k, JudgeFailure(f"judge request failed: {result}")
                    continue
                try:
                    yield k, (parse(requests[k], result[0]), result[0])
                except ParseError as exc:
                    last[k] = JudgeFailure(str(exc), result[0])
                    retry.append(k)
            pending = sorted(retry)
        for k in pending:
            yield k, last[k]

    # ------------------------------------------------------------------------------------- critique
    def critiques(self, items: list[tuple[str, str]]) -> Iterator[tuple[int, Any]]:
        """(instruction, completion) -> (critique, overall_score, reply) | JudgeFailure, per annotate_critique.py."""
        reqs = [_Request(i, "critique", [], critique_messages(p, c)) for i, (p, c) in enumerate(items)]
        for j, out in self._asked(reqs, self._sampling(CRITIQUE_SAMPLING), lambda r, reply: parse_critique(reply)):
            yield j, out if isinstance(out, JudgeFailure) else (*out[0], out[1])

    def rescores(self, items: list[tuple[str, str, str]]) -> Iterator[tuple[int, Any]]:
        """(instruction, completion, critique) -> (score, reply) | JudgeFailure, per fix_overall_score_issue.py."""
        reqs = [_Request(i, "rescore", [], rescore_messages(*it)) for i, it in enumerate(items)]
        yield from self._asked(reqs, self._sampling(RESCORE_SAMPLING), lambda r, reply: parse_rescore(reply))

    def describe(self) -> dict:
        return describe_protocol(self.overrides, self.attempts)


def describe_protocol(overrides: dict, attempts: int = PARSE_ATTEMPTS) -> dict:
    """What the card says of the protocol: its source, the sampling sent, and what the recipe changed."""
    changed = {k: v for k, v in overrides.items() if SAMPLING.get(k) != v}
    sampling = {**SAMPLING, **overrides}
    text = (f"UltraFeedback's annotation protocol ({SOURCE}): one request per aspect, 4 completions side by side in "
            f"a seeded random order, the published templates and system prompt, sampling {sampling}, up to "
            f"{attempts} parses per request")
    if changed:
        text += f"; the recipe overrides the published sampling with {changed}"
    if attempts != PARSE_ATTEMPTS:
        text += f"; the recipe changes the published {PARSE_ATTEMPTS} parses to {attempts}"
    return {"protocol": NAME, "source": SOURCE, "sampling": sampling, "overrides": changed, "parses": attempts,
            "text": text}


def make(spec: dict, hardware: HardwareConfig | dict | None = None, sampling: dict | None = None) -> UltraFeedbackJudge:
    """The judge of a checked spec with ``protocol: ultrafeedback``: a function judge's module plays the chat model
    with its ``chat(messages) -> str`` (a stand-in), any other type is the backend it names."""
    backend = judge_class(spec["type"]).chat_backend(spec, hardware)  # what the type asks as its chat model
    attempts = PARSE_ATTEMPTS if spec.get("max_retries") is None else int(spec["max_retries"]) + 1
    return UltraFeedbackJudge(backend, spec["type"], sampling=spec.get("sampling") or {}, attempts=attempts,
                              caller_sampling=sampling)


def check_spec(where: str, spec: dict) -> None:
    """Refuse keys the protocol does not read (its prompts are the published ones)."""
    for key in ("prompt", "system", "aspects"):
        if spec.get(key):
            raise ZephyrError(f"{where}.{key} is set, and protocol ultrafeedback asks with the published prompts and "
                              "aspects", f"remove {where}.{key}, or set {where}.protocol=single_answer for a rubric "
                                         "of your own")


if NAME not in JUDGE_PROTOCOLS:
    register_protocol(NAME, make, check_spec)


def judge_load(judge: dict, prompts: int, answers: int, score: str) -> tuple[int, int] | None:
    """(requests, new tokens at most per request) of a judge asked with this protocol, for the plan: per prompt, 4
    aspect requests per group of 4 answers (see feedback/listwise.py), and with ``score: overall`` one critique per
    answer; None for a judge asked otherwise."""
    if judge.get("protocol") != NAME or not prompts:
        return None
    per_prompt = answers / prompts
    groups = max(1, -(-int(round(per_prompt)) // 4))
    aspect, critique = prompts * groups * len(ASPECTS), answers if score == "overall" else 0
    over = (judge.get("sampling") or {}).get("max_new_tokens")
    new = int(over or SAMPLING["max_new_tokens"])
    if critique:
        new = int((aspect * new + critique * int(over or CRITIQUE_SAMPLING["max_new_tokens"])) / (aspect + critique))
    return aspect + critique, new


def check_stage(judge: dict | None, score: str) -> None:
    """``binarize.score: overall`` needs the critique's overall_score, which only this protocol's judge writes."""
    if score == "overall" and (judge or {}).get("protocol") != NAME:
        raise ZephyrError("stage.binarize.score is overall (the critique's overall_score, as "
                          "HuggingFaceH4/ultrafeedback_binarized picks), and only a judge with protocol ultrafeedback "
                          "writes critiques", "set stage.judge.protocol=ultrafeedback, or stage.binarize.score=mean")


# ------------------------------------------------------------------------------ the AI-feedback step
def critique_key(answer: str, judge: str) -> str:
    """The key of an answer's critique: the answer and the judge that wrote it (feedback/identity.py)."""
    return f"{answer}:{judge}:critique"


def critique_step(score: str, judge_spec: dict, hardware: HardwareConfig | dict | None, prompts: list[str], critiques: Store,
                  answers: list[dict], rating_of: dict, jid: str) -> dict | None:
    """With ``binarize.score: overall``: annotate_critique.py's critique of every answer, then
    fix_overall_score_issue.py's rule on each overall_score of 10, all written to ``critiques`` as they arrive
    (``{key: <answer>:<judge>:critique, answer, judge, critique, overall_score, raw}``, and
    ``fix: {fine-grained_score, action, before}`` once the fix looked at it); a resumed run asks nothing twice.
    ``answers``: the answers of the config's generators; ``rating_of``: answer key -> its first rating by the judge
    ``jid``. ``score``: the stage's binarize.score; ``judge_spec``, ``hardware``: the stage's judge and the
    hardware section, as the checked mappings a judge is made from. Returns the counts for the summary."""
    if score != "overall":
        return None
    by_pid = {prompt_id(p): p for p in prompts}
    key = {r["key"]: critique_key(r["key"], jid) for r in answers}
    todo = [r for r in answers if _unasked(critiques.get(key[r["key"]]))]
    with serving(judge_spec, critiques.path.parent, "judge") as spec:
        judge = make_judge(spec, hardware, checked=True)  # the stage's judge, checked at validation
        if not isinstance(judge, UltraFeedbackJudge):
            raise ZephyrError("binarize.score overall needs critiques, and the judge does not write them",
                              "set stage.judge.protocol=ultrafeedback, or stage.binarize.score=mean")
        if todo:
            log.info("critique: %d answers", len(todo))
            asked = [(by_pid[r["prompt_id"]], r["response"]) for r in todo]
            for j, out in judge.critiques(asked):
                this = key[todo[j]["key"]]
                about = {"key": this, "answer": todo[j]["key"], "judge": jid}
                if isinstance(out, JudgeFailure):
                    critiques.add({**about, "failure": str(out), "raw": out.raw[:2000]})
                else:
                    critiques.add({**about, "critique": out[0], "overall_score": out[1], "raw": out[2][:4000]})
        fixes = []
        for r in answers:
            rec = critiques.get(key[r["key"]]) or {}
            if "overall_score" not in rec or "fix" in rec:
                continue
            rating = rating_of.get(r["key"]) or {}
            fine = fine_grained_score(rating.get("annotations") or {})
            action = fix_action(rec["overall_score"], fine)
            fix = {"fine-grained_score": fine, "action": action, "before": rec["overall_score"]}
            if action == "reannotate":
                fixes.append((r, rec, fix))
                continue
            critiques.add({**rec, "overall_score": 1 if action == "flip" else rec["overall_score"], "fix": fix})
        if fixes:
            asked3 = [(by_pid[r["prompt_id"]], r["response"], rec["critique"]) for r, rec, _ in fixes]
            for j, out in judge.rescores(asked3):
                r, rec, fix = fixes[j]
                if isinstance(out, JudgeFailure):
                    if str(out).startswith("judge request failed"):
                        continue  # asked again by the next run
                    critiques.add({**rec, "overall_score": None, "fix": {**fix, "failure": str(out), "raw": out.raw}})
                else:
                    critiques.add({**rec, "overall_score": out[0], "fix": {**fix, "raw": out[1]}})
    recs = [critiques.get(critique_key(r["key"], jid)) or {} for r in answers]
    actions = [str((rec.get("fix") or {}).get("action")) for rec in recs if rec.get("fix")]
    return {"critiques": sum(1 for rec in recs if "critique" in rec),
            "critique_failures": sum(1 for rec in recs if "failure" in rec),
            "overall_score_fix": {a: actions.count(a) for a in ("flip", "reannotate", "keep")}}


def _unasked(rec: dict | None) -> bool:
    return rec is None or str(rec.get("failure", "")).startswith("judge request failed")


def critique_of(critiques: Store | None, key: str) -> tuple[str, object]:
    """(critique, overall_score) of an answer for raw/ ("" and None when there is none)."""
    rec = (critiques.get(key) if critiques is not None else None) or {}
    return rec.get("critique", ""), rec.get("overall_score")


def annotation_row(value: dict) -> dict:
    """One aspect's annotation as raw/ stores it: the published fields, Type always a list (a column of one type;
    the published "None" becomes ["None"])."""
    out = {k: v for k, v in value.items()}
    out["Rating"] = str(value.get("Rating"))
    out["Rationale"] = str(value.get("Rationale", ""))
    if "Type" in out and isinstance(out["Type"], str):
        out["Type"] = [out["Type"]]
    return out


def describe_judge(judge: dict | None) -> dict:
    """How the stage's judge is asked, for the summary and the card."""
    judge = judge or {}
    if judge.get("protocol") == NAME:
        attempts = PARSE_ATTEMPTS if judge.get("max_retries") is None else int(judge["max_retries"]) + 1
        return describe_protocol(judge.get("sampling") or {}, attempts)
    if judge.get("type") and not judge_class(judge["type"]).READS_PROMPTS:  # a program or a reward model: its own
        return {"protocol": judge.get("type"), "text": f"a {judge.get('type')} judge "
                f"({judge.get('module') or judge.get('model') or judge.get('type')}), its own ratings"}
    return {"protocol": "single_answer", "text": "this project's own single-answer rubric (one answer per request, "
            "the four aspects in one JSON reply; not UltraFeedback's protocol)"}
