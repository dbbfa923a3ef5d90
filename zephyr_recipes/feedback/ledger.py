"""The answers and ratings of an AI-feedback run folder, looked up by identity (feedback/identity.py).

``completions.jsonl`` and ``ratings.jsonl`` are append-only and keep every record ever made in the folder, whatever
config made it; a run uses the records whose identity matches its own generators and judge, asks only for the
missing ones, and leaves the others on disk (a generator removed and added back again costs nothing).

Records written before identities were recorded (no ``generator`` / ``judge`` field) are adopted as the answers of
the generator of the same name *in the config that made them* (the config before the folder's first revision,
``revisions.jsonl``, else its config), and as the ratings of that config's judge: they are reused where that
generator's or judge's settings equal the new config's, and asked again otherwise.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ..core import fingerprint
from ..data.binarize import prompt_id
from . import identity
from .judges import FunctionJudge
from .specs import JUDGE_PROTOCOLS, JudgeSpec
from .store import Store

log = logging.getLogger("zephyr_recipes")


@dataclass
class Generator:
    """One generator of the config, with its identity."""

    name: str
    spec: dict
    sampling: dict
    k: int
    id: str
    settings: dict


def function_code(spec: dict) -> Optional[str]:
    """The fingerprint of the code a generator or judge runs by reference: a function type's module, or the module
    of a judge type the recipe names as code (``type: package.module:Class``); None for any other type."""
    kind, ref = str(spec.get("type") or ""), None
    if ":" in kind:  # a judge type of the recipe's own code: its ratings change when that code does
        ref = kind
    elif kind == "function":
        ref = spec.get("function") or spec.get("module")
    else:
        return None
    return fingerprint.of_module(str(ref).partition(":")[0]) if ref else None


def generators(entries: list[tuple[str, dict, dict, int]], seed: int) -> list[Generator]:
    """(name, spec, merged sampling, completions per prompt) of each generator -> Generators with identities."""
    out = []
    for name, spec, sampling, k in entries:
        sett = identity.generator_settings(spec, sampling, seed, function_code(spec))
        out.append(Generator(name, spec, sampling, k, "g" + identity.digest(sett), sett))
    return out


def rates_together(spec: dict) -> bool:
    """Whether a judge rates the answers of one prompt together (a listwise judge): its rating then depends on the
    group, which becomes part of the rating's identity. A judge type says so with ``rates_together = True`` on its
    spec class, a spec with ``listwise: true``, a judge protocol whose judge is listwise (``ultrafeedback``), or a
    function judge whose module has ``rate_list``."""
    cls = JudgeSpec.TYPES.get(str(spec.get("type")))
    if getattr(cls, "rates_together", False) or spec.get("listwise"):
        return True
    if spec.get("protocol") in JUDGE_PROTOCOLS:
        return bool(getattr(JUDGE_PROTOCOLS[spec["protocol"]][0], "listwise", False))
    if spec.get("type") == "function" and (spec.get("module") or spec.get("function")):
        return FunctionJudge(str(spec.get("module") or spec.get("function"))).listwise
    return False


def judge_id(spec: dict) -> str:
    return "j" + identity.digest(identity.judge_settings(spec, function_code(spec)))


class Ledger:
    """The records of a folder indexed by identity, and the counts of what a run reused and asked."""

    def __init__(self, completions: Store, ratings: Store, legacy_generators: Optional[dict[str, str]] = None,
                 legacy_judge: Optional[str] = None):
        self.completions, self.ratings = completions, ratings
        self.work: dict[str, dict] = {}  # what this run reused and asked, per generator and for the judge
        self.answers: dict[tuple[str, str, int], dict] = {}
        self.adopted, self.unadopted = Counter[str](), Counter[str]()
        for rec in completions.records.values():
            gen = rec.get("generator")
            if gen is None:  # written before identities were recorded
                gen = (legacy_generators or {}).get(rec.get("model", ""))
                if gen is None:
                    self.unadopted[rec.get("model", "?")] += 1
                    continue
                self.adopted[rec.get("model", "?")] += 1
            self.answers[(rec["prompt_id"], gen, int(rec.get("index", 0)))] = rec
        self.rated: dict[tuple[str, str, int, str], dict] = {}
        self.adopted_ratings = 0
        for key, rec in ratings.records.items():
            judge = rec.get("judge")
            if judge is None:
                if legacy_judge is None or ":r" not in key:
                    continue
                judge = legacy_judge
                self.adopted_ratings += 1
            group = identity.digest(sorted(rec["rated_with"])) if rec.get("rated_with") else ""
            self.rated[(rec["completion"], judge, int(key.rsplit(":r", 1)[1]), group)] = rec
        if self.adopted or self.unadopted or self.adopted_ratings:
            log.info("aif: records written before identities were recorded: %s answers taken as those of the "
                     "generator of the same name in the config that made them%s, %d ratings as its judge's",
                     sum(self.adopted.values()),
                     f" ({sum(self.unadopted.values())} of generators no longer in it are asked again if needed)"
                     if self.unadopted else "", self.adopted_ratings)

    def answer(self, pid: str, gen: str, index: int) -> Optional[dict]:
        return self.answers.get((pid, gen, index))

    def missing(self, gen: Generator, prompts: list[str]) -> tuple[list[str], int]:
        """The prompts some completion of which ``gen`` has not answered (or whose request failed), and the number of
        completions it has already answered."""
        todo, have = [], 0
        for p in prompts:
            pid = prompt_id(p)
            done = sum(1 for i in range(gen.k) if "response" in (self.answer(pid, gen.id, i) or {}))
            have += done
            if done < gen.k:
                todo.append(p)
        return todo, have

    def add_answer(self, rec: dict) -> None:
        self.completions.add(rec)
        self.answers[(rec["prompt_id"], rec["generator"], int(rec["index"]))] = rec

    def current(self, gens: list[Generator], prompts: list[str]) -> dict[str, list[dict]]:
        """prompt id -> the answers of the config's generators (in their order, then by index) with a response."""
        out: dict[str, list[dict]] = {}
        for p in prompts:
            pid = prompt_id(p)
            out[pid] = [rec for gen in gens for i in range(gen.k)
                        if "response" in (rec := self.answer(pid, gen.id, i) or {})]
        return out

    def rating(self, answer: str, judge: str, round_: int, group: Optional[list[str]] = None) -> Optional[dict]:
        return self.rated.get((answer, judge, round_, identity.digest(sorted(group)) if group else ""))

    def add_rating(self, rec: dict, round_: int) -> None:
        self.ratings.add(rec)
        group = identity.digest(sorted(rec["rated_with"])) if rec.get("rated_with") else ""
        self.rated[(rec["completion"], rec["judge"], round_, group)] = rec
