"""AIF: several models answer each prompt, a judge rates every answer, the ratings become preference pairs.

Step 2 of the Zephyr method, after UltraFeedback. Everything is written to the run folder as it arrives
(``completions.jsonl``, ``ratings.jsonl``), so a killed run started again asks no model or judge twice. The
result is two datasets in the run folder:

- ``raw/``  the rated completions in openbmb/UltraFeedback's schema (instruction, models, completions with
            per-aspect annotations);
- ``data/`` preference pairs in HuggingFaceH4/ultrafeedback_binarized's schema, splits ``train_prefs`` and
            ``test_prefs``: point a DPO recipe's ``dataset.path`` at the run folder.
"""

from __future__ import annotations

import copy
import gc
import logging
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from ..core import revisions
from ..core.errors import ZephyrError
from ..core.records import dataset_card
from ..core.schema import StageSection, option, typed
from ..data import kinds, load_split
from ..data.binarize import ASPECTS, BinarizeRule, Tally, binarize, binarize_tally, completion_score, prompt_id
from ..data.sizes import DATASETS, PROMPT_TOKENS
from ..feedback import audit as judge_audit
from ..feedback import identity, ledger, listwise, ultrafeedback
from ..feedback.backends import make_backend
from ..feedback.judge_registry import check_judge, check_protocol, judge_load, make_judge
from ..feedback.judges import Item, JudgeFailure
from ..feedback.serve import serving
from ..feedback.specs import GeneratorSpec, JudgeSpec, load_of
from ..feedback.store import Store
from .base import TaskStage

log = logging.getLogger("zephyr_recipes")


@dataclass
class AIFStageConfig(StageSection):
    """The AI feedback stage: generators answer the dataset's prompts, a judge rates, pairs are binarized."""

    generators: list[GeneratorSpec] = option([], "Models that answer, each {type: transformers | openai | function, "
                                             "name, ...}; see `zephyr-recipes show` for every key of each type.")
    num_completions: int = option(1, "Completions per prompt from each generator, unless the generator says otherwise.")
    sampling: dict = option({"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 256},
                        "Default sampling settings of every generator (temperature, top_p, max_new_tokens); keys "
                        "given here replace these one by one.", merge=True)
    judge: Optional[JudgeSpec] = option(None, "The judge that rates every answer: {type: function, module} | "
                                          "{type: transformers, model} | {type: openai, base_url | serve, model} | "
                                          "{type: reward_model, model}.")
    self_agreement: float = option(0.0, "Share of completions the judge rates a second time to measure its consistency "
                                        "(stage.audit's test-retest measures it with an interval, on its sample).")
    audit: judge_audit.AuditConfig = option(judge_audit.AuditConfig, "The audit of the judge: order consistency, "
                                            "test-retest, second judges, length bias, self-preference, with 95% "
                                            "intervals in audit.json; flagged pairs kept, dropped or flipped; bars "
                                            "that end the stage (docs/audit.md).")
    binarize: BinarizeRule = option(BinarizeRule, "How ratings become pairs (the rule of ultrafeedback_binarized).")
    test_fraction: float = option(0.05, "Share of prompts written to test_prefs instead of train_prefs (by prompt id).")
    prompt_offset: Optional[int] = option(
        None, "Take dataset.max_train_samples distinct prompts starting at this position of the seeded shuffle, "
              "so the rounds of an iterative pipeline answer disjoint slices (null: the usual seeded sample).")


# The typed sections made in this process, newest last: (a copy of the stage mapping, its typed section).
_TYPED: list[tuple[dict, AIFStageConfig]] = []


def section(cfg: dict) -> AIFStageConfig:
    """The validated config's `stage` section, typed: made once per stage contents in this process (the same
    contents read again, as a worker reads the frozen config, get the same object); read it, never change it."""
    stage = cfg["stage"]
    for seen, out in reversed(_TYPED):
        if seen == stage:
            return out
    out = typed(AIFStageConfig, stage)
    _TYPED.append((copy.deepcopy(stage), out))
    del _TYPED[:-16]  # a process runs a few configs (a sweep, the tests): the latest are kept
    return out


def _judge(stage: AIFStageConfig) -> JudgeSpec:
    if stage.judge is None:
        raise ZephyrError("the aif stage has no judge", "set stage.judge (type: function, transformers, openai or "
                          "reward_model)")
    return stage.judge


def check_config(cfg: dict) -> None:
    stage = section(cfg)
    if not stage.generators:
        raise ZephyrError("the aif stage has no generators", "list at least one under stage.generators")
    names = set()
    for i, gen in enumerate(stage.generators):
        name = _generator_name(gen, i)
        if name in names:
            raise ZephyrError(f"two generators are named {name!r}", "give every generator its own name")
        names.add(name)
    judge = _judge(stage)
    check_judge(judge.type, "rate", "AI feedback")
    check_protocol("stage.judge", cfg["stage"]["judge"])
    ultrafeedback.check_stage(cfg["stage"]["judge"], stage.binarize.score)
    if not 0 <= stage.test_fraction < 1 or not 0 <= stage.self_agreement <= 1:
        raise ZephyrError("stage.test_fraction must be in [0, 1) and stage.self_agreement in [0, 1]",
                          "for example stage.test_fraction=0.1")
    judge_audit.check(stage.audit)
    for i, spec in enumerate(stage.audit.judges):
        check_judge(spec.type, "rate", f"stage.audit.judges[{i}]")
    if (stage.prompt_offset or 0) < 0:
        raise ZephyrError(f"stage.prompt_offset is {stage.prompt_offset} but must be 0 or more",
                          "null (or 0) starts at the first prompt of the seeded shuffle")


# ---------------------------------------------------------------------------------------------- prompts
def load_prompts(cfg: dict) -> list[str]:
    ds_cfg = cfg["dataset"]
    ds = load_split(ds_cfg, ds_cfg["train_split"])
    col = ds_cfg["columns"].get("prompt", "prompt")
    if col not in ds.column_names:
        col = next((c for c in ("prompt", "instruction", "messages") if c in ds.column_names), None)
        if col is None:
            raise ZephyrError(f"dataset {ds_cfg['path']} has no prompt column (it has: {', '.join(ds.column_names)})",
                              "map one with dataset.columns.prompt=<column>")
    offset = section(cfg).prompt_offset
    if offset is not None:  # a slice of the distinct prompts in seeded order: slices never share a prompt
        ds = ds.shuffle(seed=cfg["run"]["seed"])
    elif ds_cfg["max_train_samples"] and ds_cfg["max_train_samples"] < len(ds):
        ds = ds.shuffle(seed=cfg["run"]["seed"]).select(range(ds_cfg["max_train_samples"]))
    prompts, seen = [], set()
    for value in ds[col]:
        if isinstance(value, list):  # a conversation: its first user turn
            value = next((m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"), None)
        if isinstance(value, str) and value.strip() and value not in seen:
            seen.add(value)
            prompts.append(value)
    if offset is not None:
        n = ds_cfg["max_train_samples"]
        if not n or offset + n > len(prompts):
            raise ZephyrError(f"stage.prompt_offset={offset} with dataset.max_train_samples={n} needs "
                              f"{offset + (n or 0)} distinct prompts, {ds_cfg['path']}[{ds_cfg['train_split']}] "
                              f"has {len(prompts)}", "set dataset.max_train_samples and keep offset + samples within "
                              "the prompt set (fewer rounds or fewer prompts per round)")
        prompts = prompts[offset:offset + n]
    if not prompts:
        raise ZephyrError(f"no usable prompts in {ds_cfg['path']}[{ds_cfg['train_split']}]",
                          "check dataset.columns.prompt")
    return prompts


# ------------------------------------------------------------------------------------------------- run
def _generator_name(gen: GeneratorSpec, i: int) -> str:
    return gen.name or f"generator{i}"


def identities(cfg: dict) -> tuple[list[ledger.Generator], dict, str]:
    """The config's generators with their identities, its judge spec and the judge's identity."""
    stage = section(cfg)
    entries = [(_generator_name(gen, i), asdict(gen), {**stage.sampling, **gen.sampling},
                int(gen.num_completions or stage.num_completions)) for i, gen in enumerate(stage.generators)]
    judge = asdict(_judge(stage))
    return ledger.generators(entries, cfg["run"]["seed"]), judge, ledger.judge_id(judge)


def generate_all(cfg: dict, prompts: list[str], book: ledger.Ledger) -> Counter:
    """Ask each generator for the answers it has not given yet; returns the failures per generator, and logs what
    is reused and what is asked."""
    failures = Counter[str]()
    gens, _, _ = identities(cfg)
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
            _generate_one(cfg, served, gen, todo, book, failures)
    return failures


def _generate_one(cfg: dict, spec: dict, gen: ledger.Generator, todo: list[str], book: ledger.Ledger,
                  failures: Counter) -> None:
    index = [_generator_name(g, i) for i, g in enumerate(section(cfg).generators)].index(gen.name)
    backend = make_backend(spec, cfg["hardware"], f"stage.generators.{index}.model_config")
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


def audited(cfg: dict, prompts: list[str]) -> set[str]:
    """The prompt ids stage.audit covers (none when it is off)."""
    stage = section(cfg)
    seed = cfg["run"]["seed"] if stage.audit.seed is None else stage.audit.seed
    return judge_audit.sampled(stage.audit, asdict(_judge(stage)), prompts, seed)


def _input_rows(cfg: dict) -> list[dict] | None:
    """The input rows when they are in openbmb/UltraFeedback's schema (for the audit's overall-score check)."""
    ds = load_split(cfg["dataset"], cfg["dataset"]["train_split"])
    return ds.to_list() if "completions" in ds.column_names else None


def _needs_second_rating(key: str, share: float) -> bool:
    return share > 0 and int(prompt_id(key)[:8], 16) / 0xFFFFFFFF < share


def judge_all(cfg: dict, prompts: list[str], book: ledger.Ledger) -> None:
    """Rate every answer of the config's generators that this judge (same identity) has not rated yet."""
    stage = section(cfg)
    gens, judge, jid = identities(cfg)
    by_pid = {prompt_id(p): p for p in prompts}
    # a second round of the audited prompts: test-retest, and for a listwise judge another seeded order
    retest = audited(cfg, prompts) if stage.audit.retest or stage.audit.order else set()
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
        _judge_items(cfg, spec, jid, by_pid, todo, book)


def _not_rated(rating: dict | None) -> bool:
    """Never rated, or the request failed (the judge was not reached: asked again); a reply that did not parse stays
    recorded as the judge's failure."""
    return rating is None or str(rating.get("failure", "")).startswith("judge request failed")


def _judge_items(cfg: dict, spec: dict, jid: str, by_pid: dict, todo: list, book: ledger.Ledger) -> None:
    judge = make_judge(spec, cfg["hardware"], checked=True)  # checked at validation (check_config)
    if judge.listwise:
        return _judge_groups(cfg, judge, jid, by_pid, todo, book)
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


def _judge_groups(cfg: dict, judge, jid: str, by_pid: dict, todo: list, book: ledger.Ledger) -> None:
    """A listwise judge: a prompt's answers rated together, in groups (feedback/listwise.py), one record each. A
    rating's identity names the answers of the prompt it was rated among (``rated_with``); ``group`` records the
    request it came from (the answers recorded, the fillers, the order shown)."""
    gens, _, _ = identities(cfg)
    answers = {pid: [r["key"] for r in recs] for pid, recs in book.current(gens, list(by_pid.values())).items()}
    todo_of: dict[tuple, list[str]] = defaultdict(list)
    among: dict[str, list[str]] = {}
    for rec, r, group in todo:
        todo_of[(rec["prompt_id"], r)].append(rec["key"])
        among[rec["prompt_id"]] = group
    seed = cfg["run"]["seed"]
    groups = [g for (pid, r), keys in todo_of.items()
              for g in listwise.groups(pid, keys, answers[pid], seed, r)]
    context = getattr(judge, "world_knowledge", None)  # a judge that reads the dataset's reference columns
    knowledge = context(cfg["dataset"], list(by_pid.values())) if context else {}
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


def _audit_views(cfg: dict, prompts: list[str], book: ledger.Ledger) -> tuple[dict[str, dict], dict[str, dict]]:
    """What the audit reads: the answers of the config's generators by key, and their ratings by this judge keyed
    ``<answer key>:r<round>`` (the first rating and the audit's second round)."""
    gens, judge, jid = identities(cfg)
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


def _current_ratings(cfg: dict, prompts: list[str], book: ledger.Ledger) -> tuple[list[dict], dict, str]:
    """The answers of the config's generators, each one's first rating by the config's judge, and the judge's id
    (what the critique step reads)."""
    gens, judge, jid = identities(cfg)
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


def assemble(cfg: dict, prompts: list[str], book: ledger.Ledger,
             critiques: Store | None = None) -> tuple[list[dict], dict, list[dict]]:
    """Rows in openbmb/UltraFeedback's schema (its ``source`` and, where the dataset has them, ``correct_answers``
    and ``incorrect_answers``; ``source`` is the dataset's path when it has no such column), per-generator score
    lists, and the ratings used."""
    gens, judge, jid = identities(cfg)
    together = ledger.rates_together(judge)
    current = book.current(gens, prompts)
    reference = ultrafeedback.reference_columns(cfg["dataset"], prompts)  # source, correct/incorrect answers
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
        rows.append({"source": str(about["source"]) if about.get("source") is not None else cfg["dataset"]["path"],
                     "instruction": p, "models": [c["model"] for c in comps], "completions": comps,
                     **{c: about[c] for c in ultrafeedback.COLUMNS[1:] if c in about}})
    return rows, scores, used


def self_agreement(cfg: dict, prompts: list[str], book: ledger.Ledger) -> dict | None:
    gens, judge, jid = identities(cfg)
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


def _legacy(cfg: dict, folder: Path) -> tuple[dict[str, str], str | None]:
    """The identities of the generators (by name) and of the judge of the config that made the folder's records
    written before identities were recorded: its first config (before any revision), else its config."""
    old = revisions.original_config(folder) or cfg
    try:
        gens, _, jid = identities(old)
    except (ZephyrError, KeyError, TypeError):
        return {}, None
    return {g.name: g.id for g in gens}, jid


def _write_parquet(rows: list[dict], path: Path) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))


def run(cfg: dict, folder: Path) -> dict:
    """Generate, judge, binarize. Returns the summary (also written to summary.json)."""
    stage = section(cfg)
    prompts = load_prompts(cfg)
    log.info("aif: %d prompts from %s[%s]", len(prompts), cfg["dataset"]["path"], cfg["dataset"]["train_split"])
    completions, ratings = Store(folder / "completions.jsonl"), Store(folder / "ratings.jsonl")
    book = ledger.Ledger(completions, ratings, *_legacy(cfg, folder))
    critiques = Store(folder / "critiques.jsonl")
    try:
        generate_all(cfg, prompts, book)
        judge_all(cfg, prompts, book)
        critiqued = ultrafeedback.critique_step(cfg, prompts, critiques, *_current_ratings(cfg, prompts, book))
    finally:
        completions.close()
        ratings.close()
        critiques.close()
    rows, scores, used = assemble(cfg, prompts, book, critiques)
    tally = Tally()
    pairs: dict[str, list] = {"train_prefs": [], "test_prefs": []}
    rule = asdict(stage.binarize)
    for row in rows:
        pair = binarize(row["instruction"], row["completions"], seed=cfg["run"]["seed"], tally=tally, **rule)
        if pair is None:
            continue
        test = int(pair["prompt_id"][:8], 16) / 0xFFFFFFFF < stage.test_fraction
        pairs["test_prefs" if test else "train_prefs"].append(pair)
    if stage.test_fraction > 0 and not pairs["test_prefs"] and len(pairs["train_prefs"]) >= 2:
        # So few pairs that the share rounds to none: one still goes to test_prefs, which a DPO recipe reading
        # this folder names as its test split (the pair whose id hashes lowest, as the share would pick first).
        first = min(pairs["train_prefs"], key=lambda p: int(p["prompt_id"][:8], 16))
        pairs["train_prefs"].remove(first)
        pairs["test_prefs"].append(first)
        log.warning("aif: stage.test_fraction=%s of %d pairs rounds to none; 1 pair goes to test_prefs",
                    stage.test_fraction, len(pairs["train_prefs"]) + 1)
    audit = None
    if stage.audit.enabled:
        seed = cfg["run"]["seed"] if stage.audit.seed is None else stage.audit.seed
        answers, rated = _audit_views(cfg, prompts, book)
        pairs, audit = judge_audit.run_audit(
            stage.audit, asdict(_judge(stage)), [_generator_name(g, i) for i, g in enumerate(stage.generators)],
            pairs, answers, rated, prompts, audited(cfg, prompts), folder, cfg["hardware"], seed, _input_rows(cfg))
    if not pairs["train_prefs"]:
        raise ZephyrError("AI feedback produced no preference pairs (every prompt was skipped: "
                          f"{tally.as_dict()})", "check the judge's failures in ratings.jsonl and the generators")
    _write_parquet(rows, folder / "raw" / "data" / "train-00000-of-00001.parquet")
    for split, items in pairs.items():
        if items:
            _write_parquet(items, folder / "data" / f"{split}-00000-of-00001.parquet")
    judge_failures = sum(1 for r in used if "failure" in r)
    all_scores = [s for v in scores.values() for s in v]
    gens, _, jid = identities(cfg)
    current = {gen.id for gen in gens}
    summary = {
        "prompts": len(prompts),
        "completions": sum(len(r["completions"]) for r in rows),
        "generation_failures": dict(Counter(r["model"] for r in completions.records.values()
                                            if "error" in r and r.get("generator") in current)),
        "ratings": len(used),
        "judge_failures": judge_failures,
        "mean_score_by_generator": {m: round(statistics.fmean(v), 4) for m, v in scores.items() if v},
        "score_distribution": dict(sorted(Counter(round(s * 4) / 4 for s in all_scores).items())),
        "pairs": {k: len(v) for k, v in pairs.items()},
        "binarize": {**rule, **binarize_tally(tally)},
        "self_agreement": self_agreement(cfg, prompts, book),
        "judge_protocol": ultrafeedback.describe_judge(cfg["stage"]["judge"]),
        **({"critique": critiqued} if critiqued else {}),
        # What this invocation reused and asked, per generator and for the judge; the identities of the config's
        # generators and judge (the keys of their records in completions.jsonl and ratings.jsonl).
        "work": book.work,
        "identities": {"generators": {gen.name: gen.id for gen in gens}, "judge": jid},
        "records_on_disk": {"completions": len(completions), "ratings": len(ratings)},
        "audit": audit,
    }
    log.info("aif: %d completions, %d judge failures, %d train / %d test pairs", summary["completions"],
             judge_failures, len(pairs["train_prefs"]), len(pairs["test_prefs"]))
    return summary


class AIF(TaskStage):
    """AI feedback: generators answer prompts, a judge rates, ratings become preference pairs."""

    name = "aif"
    schema = AIFStageConfig
    rows = kinds.PROMPTS
    finished_hint = "point a dpo recipe's dataset.path at it"
    revisable = True  # a changed config redoes only the answers, ratings and pairs whose identity changed

    def check(self, cfg: dict) -> None:
        check_config(cfg)

    def judge_probes(self, cfg: dict) -> list[tuple[str, dict, str, str]]:
        return [("stage.judge", asdict(_judge(section(cfg))), "rate", "AI feedback")]

    def inputs(self, cfg: dict) -> dict:
        return {"prompts": {"path": cfg["dataset"]["path"], "split": cfg["dataset"]["train_split"]}}

    def execute(self, cfg: dict, folder: Path) -> dict:
        return run(cfg, folder)

    def loads(self, cfg: dict) -> list[dict]:
        stage, ds = section(cfg), cfg["dataset"]
        prompts = ds["max_train_samples"] or DATASETS.get(ds["path"], ({}, 0))[0].get(ds["train_split"])
        if not prompts:
            try:
                prompts = len(load_prompts(cfg))
            except ZephyrError:
                prompts = 0
        out, answers = [], 0
        for i, gen in enumerate(stage.generators):
            k = int(gen.num_completions or stage.num_completions)
            answers += prompts * k
            new = int({**stage.sampling, **gen.sampling}.get("max_new_tokens") or 256)
            out.append(load_of(f"generator {_generator_name(gen, i)}", asdict(gen), prompts * k, new))
        judge = _judge(stage)
        new = int(judge.sampling.get("max_new_tokens") or 1024)
        requests, spec = answers, cfg["stage"]["judge"]
        listed = ultrafeedback.judge_load(spec, prompts, answers, stage.binarize.score)
        if listed:  # asked per aspect for groups of answers, and critiques
            requests, new = listed
        requests = int(requests * (1 + stage.self_agreement))
        out.append(judge_load("judge", spec, requests, new))
        return out + judge_audit.loads(stage.audit, spec, prompts, answers / max(prompts, 1), requests, new)

    def writes_rows(self, cfg: dict, loads: list[dict]) -> tuple[int, float] | None:
        """One pair per prompt at most (train_prefs), each a prompt and two answers of about half their budget."""
        gens = [load for load in loads if load["role"].startswith("generator")]
        if not gens or not gens[0]["requests"]:
            return None
        prompts = gens[0]["requests"]
        answer = sum(g["new_tokens"] for g in gens) / len(gens) / 2
        return int(prompts * (1 - section(cfg).test_fraction)), 2 * (PROMPT_TOKENS + answer)

    def card(self, cfg: dict, prov: dict, result: dict) -> str:
        return dataset_card(cfg, prov, result) + "\n".join(judge_audit.card_lines(result.get("audit"))) + "\n"

    def headline(self, result: dict) -> dict:
        return result["pairs"]


STAGE = AIF()
