"""The answers and ratings of the AI feedback stage: the generators answer, the judge rates, and the rated
answers become rows in openbmb/UltraFeedback's schema (what :mod:`.aif` binarizes into pairs).

Every answer and rating is written as it arrives and keyed by the identity of the generator or judge that made it
(:mod:`zephyr_recipes.feedback.ledger`), so a run started again asks only for what is missing.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter, defaultdict
from dataclasses import asdict

from tqdm.auto import tqdm

from ..core.errors import ZephyrError
from ..core.recipe import Recipe
from ..data import load_split
from ..data.binarize import ASPECTS, completion_score, prompt_id
from ..feedback import audit as judge_audit
from ..feedback import identity, ledger, listwise, ultrafeedback
from ..feedback.backends import make_backend
from ..feedback.judge_registry import make_judge
from ..feedback.judges import Item, JudgeFailure
from ..feedback.serve import serving
from ..feedback.specs import GeneratorSpec, JudgeSpec
from ..feedback.store import Store
from .aif_config import AIFStageConfig

log = logging.getLogger("zephyr_recipes")

AIFRecipe = Recipe[AIFStageConfig]


def judge_of(stage: AIFStageConfig) -> JudgeSpec:
    if stage.judge is None:
        raise ZephyrError("the aif stage has no judge", "set stage.judge (type: function, transformers, openai or "
                          "reward_model)")
    return stage.judge


def generator_name(gen: GeneratorSpec, i: int) -> str:
    return gen.name or f"generator{i}"


def identities(recipe: AIFRecipe) -> tuple[list[ledger.Generator], dict, str]:
    """The config's generators with their identities, its judge spec and the judge's identity."""
    stage = recipe.stage
    entries = [(generator_name(gen, i), asdict(gen), {**stage.sampling, **gen.sampling},
                int(gen.num_completions or stage.num_completions)) for i, gen in enumerate(stage.generators)]
    judge = asdict(judge_of(stage))
    return ledger.generators(entries, recipe.run.seed), judge, ledger.judge_id(judge)


def generate_all(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger) -> Counter:
    """Ask each generator for the answers it has not given yet; returns the failures per generator, and logs what
    is reused and what is asked."""
    failures = Counter[str]()
    gens, _, _ = identities(recipe)
    for gen in gens:
        # A prompt is done when every completion of it was answered by this generator (same identity); a failed
        # request (its record says error) and a completion never asked (a stopped run) are asked again.
        todo, have = book.missing(gen, prompts)
        asked = sum(gen.k - sum(1 for i in range(gen.k) if "response" in
                                (book.answer(prompt_id(p), gen.id, i) or {})) for p in todo)
        book.work[gen.name] = {"reused": have, "asked": asked}
        if not todo:
            log.info("generator %s: reusing all %d answers (%d prompts x %d)", gen.name, have, len(prompts), gen.k)
            continue
        log.info("generator %s: reusing %d answers, asking %d (%d prompts x %d completions)", gen.name, have, asked,
                 len(todo), gen.k)
        with serving(gen.spec, book.completions.path.parent, gen.name) as served:
            _generate_one(recipe, served, gen, todo, book, failures)
    return failures


def _generate_one(recipe: AIFRecipe, spec: dict, gen: ledger.Generator, todo: list[str], book: ledger.Ledger,
                  failures: Counter) -> None:
    index = [generator_name(g, i) for i, g in enumerate(recipe.stage.generators)].index(gen.name)
    backend = make_backend(spec, recipe.hardware, f"stage.generators.{index}.model_config")
    convs = [[{"role": "user", "content": p}] for p in todo]
    with tqdm(total=len(todo), desc=f"generating ({gen.name})", unit="prompt") as bar:
        for j, result in backend.generate(convs, gen.k, gen.sampling):
            pid = prompt_id(todo[j])
            base = {"prompt_id": pid, "model": gen.name, "generator": gen.id}
            if isinstance(result, Exception):
                failures[gen.name] += 1
                book.add_answer({"key": identity.answer_key(pid, gen.id, 0), **base, "index": 0,
                                 "error": str(result)[:500]})
            else:
                for idx, text in enumerate(result):
                    book.add_answer({"key": identity.answer_key(pid, gen.id, idx), **base, "index": idx,
                                     "response": text})
            bar.update(1)
    del backend
    gc.collect()


def audited(recipe: AIFRecipe, prompts: list[str]) -> set[str]:
    """The prompt ids stage.audit covers (none when it is off)."""
    stage = recipe.stage
    seed = recipe.run.seed if stage.audit.seed is None else stage.audit.seed
    return judge_audit.sampled(stage.audit, asdict(judge_of(stage)), prompts, seed)


def input_rows(recipe: AIFRecipe) -> list[dict] | None:
    """The input rows when they are in openbmb/UltraFeedback's schema (for the audit's overall-score check)."""
    ds = load_split(recipe.dataset, recipe.dataset.train_split)
    return ds.to_list() if "completions" in ds.column_names else None


def _needs_second_rating(key: str, share: float) -> bool:
    return share > 0 and int(prompt_id(key)[:8], 16) / 0xFFFFFFFF < share


def judge_all(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger) -> None:
    """Rate every answer of the config's generators that this judge (same identity) has not rated yet."""
    stage = recipe.stage
    gens, judge, jid = identities(recipe)
    by_pid = {prompt_id(p): p for p in prompts}
    # a second round of the audited prompts: test-retest, and for a listwise judge another seeded order
    retest = audited(recipe, prompts) if stage.audit.retest or stage.audit.order else set()
    together = ledger.rates_together(judge)
    todo, reused = [], 0
    for pid, recs in book.current(gens, prompts).items():
        group = sorted(r["key"] for r in recs) if together else None
        for rec in recs:
            rounds = 2 if _needs_second_rating(rec["key"], stage.self_agreement) or pid in retest else 1
            for r in range(rounds):
                if _not_rated(book.rating(rec["key"], jid, r, group)):
                    todo.append((rec, r, group))
                else:
                    reused += 1
    todo.sort(key=lambda t: t[1])  # first ratings before second ones: a second rating never changes a first
    book.work["judge"] = {"reused": reused, "asked": len(todo)}
    if not todo:
        log.info("judge: reusing all %d ratings", reused)
        return
    log.info("judge: reusing %d ratings, asking %d", reused, len(todo))
    with serving(judge, book.ratings.path.parent, "judge") as spec:
        _judge_items(recipe, spec, jid, by_pid, todo, book)


def _not_rated(rating: dict | None) -> bool:
    """Never rated, or the request failed (the judge was not reached: asked again); a reply that did not parse stays
    recorded as the judge's failure."""
    return rating is None or str(rating.get("failure", "")).startswith("judge request failed")


def _judge_items(recipe: AIFRecipe, spec: dict, jid: str, by_pid: dict, todo: list, book: ledger.Ledger) -> None:
    judge = make_judge(spec, recipe.hardware, checked=True)  # checked at validation (check_config)
    if judge.listwise:
        return _judge_groups(recipe, judge, jid, by_pid, todo, book)
    items = [Item([{"role": "user", "content": by_pid[rec["prompt_id"]]}], (rec["response"],)) for rec, _, _ in todo]
    with tqdm(total=len(todo), desc="judging", unit="answer") as bar:
        for j, verdict in judge.ask("rate", items, "AI feedback"):
            rec, r, group = todo[j]
            out = {"key": identity.rating_key(rec["key"], jid, r, group), "completion": rec["key"], "judge": jid,
                   **({"rated_with": group} if group else {})}
            if isinstance(verdict, JudgeFailure):
                out.update(failure=str(verdict), raw=verdict.raw[:2000])
            else:
                out.update(annotations=verdict.value, raw=verdict.raw[:2000])
            book.add_rating(out, r)
            bar.update(1)


def _judge_groups(recipe: AIFRecipe, judge, jid: str, by_pid: dict, todo: list, book: ledger.Ledger) -> None:
    """A listwise judge: a prompt's answers rated together, in groups (feedback/listwise.py), one record each. A
    rating's identity names the answers of the prompt it was rated among (``rated_with``); ``group`` records the
    request it came from (the answers recorded, the fillers, the order shown)."""
    gens, _, _ = identities(recipe)
    answers = {pid: [r["key"] for r in recs] for pid, recs in book.current(gens, list(by_pid.values())).items()}
    todo_of: dict[tuple, list[str]] = defaultdict(list)
    among: dict[str, list[str]] = {}
    for rec, r, group in todo:
        todo_of[(rec["prompt_id"], r)].append(rec["key"])
        among[rec["prompt_id"]] = group
    seed = recipe.run.seed
    groups = [g for (pid, r), keys in todo_of.items()
              for g in listwise.groups(pid, keys, answers[pid], seed, r)]
    context = getattr(judge, "world_knowledge", None)  # a judge that reads the dataset's reference columns
    knowledge = context(recipe.dataset, list(by_pid.values())) if context else {}
    records = book.completions.records
    items = [Item([{"role": "user", "content": by_pid[g.prompt_id]}],
                  tuple(records[k]["response"] for k in g.shown), knowledge.get(g.prompt_id),
                  seed=g.seed(seed)) for g in groups]
    with tqdm(total=sum(len(g.keys) for g in groups), desc="judging (listwise)", unit="answer") as bar:
        for j, verdict in judge.rate_lists(items):
            g = groups[j]
            shown = getattr(verdict, "shown", None) or {"all": list(range(len(g.shown)))}
            about = {"answers": g.keys, "fillers": g.fillers,
                     "shown": {name: [g.shown[i] for i in order] for name, order in shown.items()}}
            rated_with = among.get(g.prompt_id)
            for i, key in enumerate(g.shown):
                if key not in g.keys:
                    continue
                rec = {"key": identity.rating_key(key, jid, g.round, rated_with), "completion": key, "judge": jid,
                       "raw": verdict.raw[:2000], "group": about, **({"rated_with": rated_with} if rated_with else {})}
                if isinstance(verdict, JudgeFailure):
                    book.add_rating({**rec, "failure": str(verdict)}, g.round)
                else:
                    book.add_rating({**rec, "annotations": verdict.value[i]}, g.round)
                bar.update(1)


def audit_views(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger) -> tuple[dict[str, dict], dict[str, dict]]:
    """What the audit reads: the answers of the config's generators by key, and their ratings by this judge keyed
    ``<answer key>:r<round>`` (the first rating and the audit's second round)."""
    gens, judge, jid = identities(recipe)
    together = ledger.rates_together(judge)
    answers, rated = {}, {}
    for recs in book.current(gens, prompts).values():
        group = sorted(r["key"] for r in recs) if together else None
        for rec in recs:
            answers[rec["key"]] = rec
            for r in (0, 1):
                rating = book.rating(rec["key"], jid, r, group)
                if rating is not None:
                    rated[f"{rec['key']}:r{r}"] = rating
    return answers, rated


def current_ratings(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger) -> tuple[list[dict], dict, str]:
    """The answers of the config's generators, each one's first rating by the config's judge, and the judge's id
    (what the critique step reads)."""
    gens, judge, jid = identities(recipe)
    together = ledger.rates_together(judge)
    answers, rating = [], {}
    for recs in book.current(gens, prompts).values():
        group = sorted(r["key"] for r in recs) if together else None
        for rec in recs:
            answers.append(rec)
            rating[rec["key"]] = book.rating(rec["key"], jid, 0, group) or {}
    return answers, rating, jid


def _annotations(rating: dict | None) -> dict:
    if rating is None or "annotations" not in rating:
        why = rating["failure"] if rating else "not rated"
        return {a: {"Rating": "N/A", "Rationale": f"judge failure: {why}"} for a in ASPECTS}
    return {a: ultrafeedback.annotation_row(v) for a, v in rating["annotations"].items()}


def assemble(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger,
             critiques: Store | None = None) -> tuple[list[dict], dict, list[dict]]:
    """Rows in openbmb/UltraFeedback's schema (its ``source`` and, where the dataset has them, ``correct_answers``
    and ``incorrect_answers``; ``source`` is the dataset's path when it has no such column), per-generator score
    lists, and the ratings used."""
    gens, judge, jid = identities(recipe)
    together = ledger.rates_together(judge)
    current = book.current(gens, prompts)
    reference = ultrafeedback.reference_columns(recipe.dataset, prompts)  # source, correct/incorrect answers
    rows, scores, used = [], defaultdict(list), []
    for p in prompts:
        recs = current[prompt_id(p)]
        group = sorted(r["key"] for r in recs) if together else None
        comps = []
        for rec in recs:
            rating = book.rating(rec["key"], jid, 0, group)
            if rating is not None:
                used.append(rating)
            critique, overall = ultrafeedback.critique_of(critiques, ultrafeedback.critique_key(rec["key"], jid))
            comp = {"model": rec["model"], "response": rec["response"], "annotations": _annotations(rating),
                    "critique": critique, "fine-grained_score": None, "overall_score": overall}
            value = completion_score(comp)
            comp["fine-grained_score"] = value
            if value is not None:
                scores[rec["model"]].append(value)
            comps.append(comp)
        about = reference.get(prompt_id(p)) or {}
        rows.append({"source": str(about["source"]) if about.get("source") is not None else recipe.dataset.path,
                     "instruction": p, "models": [c["model"] for c in comps], "completions": comps,
                     **{c: about[c] for c in ultrafeedback.COLUMNS[1:] if c in about}})
    return rows, scores, used


def self_agreement(recipe: AIFRecipe, prompts: list[str], book: ledger.Ledger) -> dict | None:
    gens, judge, jid = identities(recipe)
    together = ledger.rates_together(judge)
    pairs = []
    for recs in book.current(gens, prompts).values():
        group = sorted(r["key"] for r in recs) if together else None
        for rec in recs:
            first, second = book.rating(rec["key"], jid, 0, group), book.rating(rec["key"], jid, 1, group)
            if first and second and "annotations" in first and "annotations" in second:
                a = completion_score({"annotations": first["annotations"]})
                b = completion_score({"annotations": second["annotations"]})
                if a is not None and b is not None:
                    pairs.append((a, b))
    if not pairs:
        return None
    return {"pairs": len(pairs), "exact": sum(a == b for a, b in pairs) / len(pairs),
            "mean_abs_diff": sum(abs(a - b) for a, b in pairs) / len(pairs)}
