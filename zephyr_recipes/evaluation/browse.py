"""Per-question records for the browsable report: every benchmark's prompts with each compared model's answers, the
judge's grades or verdicts and its rationale, the reference or baseline answer, and an AI-feedback run's prompts with
each generator's answer, ratings and which became chosen or rejected.

Everything is read from the run folders' own stores (the append-only JSONL files, the frozen config, the AI-feedback
parquet files) through the loaders the benchmarks and stages use, never asking a model or judge again.

An item is a dict::

    {"id": ..., "category": ..., "prompt": [text per turn], "reference": [text per turn] | None,
     "baseline": {"name": ..., "text": ...} | None,
     "answers": {name: [{"label", "text", "verdict", "score", "rationale"}]},   # one entry per turn or game
     "disagree": bool}

``score`` is the number compared across models for the "models disagree" filter (a grade, the model's preference or
battle outcome, a generator's mean rating); ``verdict`` is its text.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

import yaml

from ..core import runfolder
from ..core.recipe import section_of

log = logging.getLogger("zephyr_recipes")

MAX_ITEMS = 1000  # per section: a real AI-feedback run has tens of thousands of prompts; the page stays usable


def records(path: Path) -> dict[str, dict]:
    """A store's records by key, the last one per key (as :class:`feedback.store.Store` reads it), read only."""
    from ..feedback.store import Store  # lazy: only the sections a page shows

    return Store(path).records if Path(path).is_file() else {}


def stage_section(folder: Path, bench):
    """The frozen config's section of benchmark ``bench`` in a run folder, as an instance of the benchmark's schema
    (keys an older run's config lacks, or an unreadable one, at their defaults)."""
    try:
        cfg = yaml.safe_load((Path(folder) / runfolder.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        cfg = None
    stage = cfg.get("stage") if isinstance(cfg, dict) else None
    sec = stage.get(bench.name) if isinstance(stage, dict) else None
    return section_of(bench.schema, sec if isinstance(sec, dict) else {})


def _try(what: str, fn, *args):
    """A loader's result, or None with a warning when its source cannot be read here (a hub id offline)."""
    try:
        return fn(*args)
    except Exception as exc:  # the page is still useful without the prompt texts
        log.warning("report: %s not read (%s); the page shows what the run folder holds", what, exc)
        return None


def _disagree(answers: dict[str, list[dict]]) -> bool:
    """Whether the compared models' figures differ on this item (any turn or game); False with one model."""
    if len(answers) < 2:
        return False
    labels = {e["label"] for entries in answers.values() for e in entries}
    for label in labels:
        got = {next((e["score"] for e in entries if e["label"] == label), None) for entries in answers.values()}
        if len(got) > 1:
            return True
    return False


def _finish(items: dict[str, dict], order: list[str]) -> list[dict]:
    out = [items[k] for k in order if k in items]
    for item in out:
        item["disagree"] = _disagree(item["answers"])
    return out


# ---------------------------------------------------------------------------------------------------- MT-Bench
def _judged_runs(runs: list[tuple[str, Path]], bench, answers_file: str):
    """(model, folder, its answers by key, its judgments by key, its typed benchmark section) of each run that
    answered or judged benchmark ``bench``."""
    for model, folder in runs:
        sub = Path(folder) / bench.name
        answers, judgments = records(sub / answers_file), records(sub / "judgments.jsonl")
        if answers or judgments:
            yield model, folder, answers, judgments, stage_section(folder, bench)


def mt_bench(runs: list[tuple[str, Path]], bench) -> list[dict]:
    """Both turns of every question: the question, each model's answers with its grade and the judge's text, and the
    reference answer (math, reasoning, coding) where the run had one."""
    from . import mt_bench as mt  # lazy: only the sections a page shows

    items: dict[str, dict] = {}
    order: list[str] = []
    for model, folder, answers, judgments, sec in _judged_runs(runs, bench, "answers.jsonl"):
        questions = _try(f"{folder}: MT-Bench questions", mt.load_questions, sec.questions, sec.max_questions,
                         sec.seed) or []
        refs = _try(f"{folder}: MT-Bench reference answers", mt.load_references, sec.reference_answers) or {}
        for q in questions:
            key = str(q.id)
            if key not in items:
                # the reference answers file's (FastChat grades math, reasoning and coding with them), else the
                # one the question carries (the embedded held-out tasks carry the right answer)
                ref = (refs.get(q.id) if q.category in mt.NEED_REFERENCE else None) or q.reference
                items[key] = {"id": key, "category": q.category, "prompt": list(q.turns),
                              "reference": list(ref) if ref else None,
                              "baseline": None, "answers": {}}
                order.append(key)
        for rec in sorted(list(answers.values()) + list(judgments.values()), key=lambda r: int(r.get("turn", 0))):
            key = str(rec.get("question_id"))
            if key not in items:  # the questions could not be read: what the stores say
                items[key] = {"id": key, "category": rec.get("category") or "?", "prompt": [], "reference": None,
                              "baseline": None, "answers": {}}
                order.append(key)
            elif rec.get("category") and items[key]["category"] == "?":
                items[key]["category"] = rec["category"]
        by_turn = {(str(r.get("question_id")), int(r.get("turn", 0))): r for r in answers.values()}
        judged = {(str(r.get("question_id")), int(r.get("turn", 0))): r for r in judgments.values()}
        for key in order:
            entries = []
            for turn in (1, 2):
                a, j = by_turn.get((key, turn)), judged.get((key, turn))
                if a is None and j is None:
                    continue
                score = None if j and "failure" in j else (j or {}).get("score")  # -1: FastChat's "no grade"
                verdict = f"grade {score:g}/10" if score is not None else \
                    f"no grade: {j['failure']}" if j and "failure" in j else "not judged"
                entries.append({"label": f"turn {turn}",
                                "text": (a or {}).get("answer", (a or {}).get("error", "(no answer)")),
                                "verdict": verdict, "score": score, "rationale": (j or {}).get("judgment") or ""})
            if entries:
                items[key]["answers"][model] = entries
    return _finish(items, order)


# ------------------------------------------------------------------------------------------------- AlpacaEval
def _preference_text(p) -> str:
    if p is None:
        return "not judged"
    return "win" if p > 0.5 else "tie" if p == 0.5 else "loss" if p < 0.5 else "?"


def alpaca(runs: list[tuple[str, Path]], bench) -> list[dict]:
    """Every instruction: the baseline's answer, each model's with the judge's preference per judging order and its
    raw reply. ``bench`` is the AlpacaEval 1 or 2.0 benchmark (same stores)."""
    from .alpaca import instruction_id  # lazy: only the sections a page shows

    items: dict[str, dict] = {}
    order: list[str] = []
    for model, folder, outputs, judgments, sec in _judged_runs(runs, bench, "outputs.jsonl"):
        rows = _try(f"{folder}: {bench.title} instructions", bench.load, sec) if sec.instructions else None
        for r in rows or []:
            iid = instruction_id(r["instruction"])
            if iid not in items:
                items[iid] = {"id": iid, "category": str(r.get("dataset") or bench.title), "prompt": [r["instruction"]],
                              "reference": None, "baseline": {"name": str(r.get("generator") or "baseline"),
                                                              "text": r["output"]}, "answers": {}}
                order.append(iid)
        for iid, rec in outputs.items():
            if iid not in items:
                items[iid] = {"id": iid, "category": bench.title, "prompt": [rec.get("instruction", "")],
                              "reference": None, "baseline": None, "answers": {}}
                order.append(iid)
        by_iid: dict[str, list[dict]] = {}
        for j in judgments.values():
            by_iid.setdefault(str(j.get("instruction_id")), []).append(j)
        for iid in order:
            out, js = outputs.get(iid), sorted(by_iid.get(iid, []), key=lambda j: j.get("order", 0))
            if out is None and not js:
                continue
            prefs = [j["model_preference"] for j in js if "model_preference" in j]
            mean = statistics.fmean(prefs) if prefs else None
            parts = []
            for j in js:
                where = "model's answer shown first" if j.get("output_1") == "model" else "baseline shown first"
                what = f"failure: {j['failure']}" if "failure" in j else \
                    f"{_preference_text(j.get('model_preference'))} ({j.get('model_preference'):g})"
                parts.append(f"{where}: {what}" + (f", {j['kind']}" if j.get("kind") else ""))
            rationale = "\n\n".join(f"[{'model first' if j.get('output_1') == 'model' else 'baseline first'}] "
                                    f"{j.get('raw') or ''}".rstrip() for j in js if j.get("raw"))
            items[iid]["answers"][model] = [{
                "label": "answer", "text": (out or {}).get("output", (out or {}).get("error", "(no answer)")),
                "verdict": f"{_preference_text(mean)} against the baseline"
                           + (f" (preference {mean:.2f})" if mean is not None else "")
                           + ("; " + "; ".join(parts) if parts else ""),
                "score": mean, "rationale": rationale}]
    return _finish(items, order)


# ------------------------------------------------------------------------------------------------- Arena-Hard
def arena_hard(runs: list[tuple[str, Path]], bench) -> list[dict]:
    """Every prompt: the baseline's answer, each model's with the judge's verdict in both games (game 1: the
    baseline is assistant A; game 2: the model is) and the judge's text."""
    from . import arena_hard as ah  # lazy: only the sections a page shows

    items: dict[str, dict] = {}
    order: list[str] = []
    for model, folder, answers, judgments, sec in _judged_runs(runs, bench, "answers.jsonl"):
        questions = _try(f"{folder}: Arena-Hard questions", ah.load_questions, sec.questions, sec.max_questions,
                         sec.seed) or []
        baselines: dict[str, tuple[str, str]] = {}
        specs = sec.baselines
        for spec in sorted(set(specs.values() if isinstance(specs, dict) else [specs] if specs else [])):
            got = _try(f"{folder}: Arena-Hard baseline answers {spec}", ah.parse_answers, spec)
            if got:
                base_name, texts = got
                baselines.update({uid: (base_name or Path(str(spec)).stem, t) for uid, t in texts.items()})
        for q in questions:
            if q["uid"] not in items:
                base = baselines.get(q["uid"])
                items[q["uid"]] = {"id": q["uid"], "category": q["category"], "prompt": [q["prompt"]],
                                   "reference": None, "answers": {},
                                   "baseline": {"name": base[0], "text": base[1]} if base else None}
                order.append(q["uid"])
        for rec in list(answers.values()) + list(judgments.values()):
            uid = str(rec.get("uid"))
            if uid not in items:
                items[uid] = {"id": uid, "category": rec.get("category") or "arena-hard", "prompt": [],
                              "reference": None, "baseline": None, "answers": {}}
                order.append(uid)
        for uid in order:
            a = answers.get(uid)
            games = [judgments.get(f"{uid}:g{g}") for g in (1, 2)]
            if a is None and not any(games):
                continue
            outcomes, parts, texts = [], [], []
            for g, j in zip((1, 2), games):
                if j is None:
                    continue
                who = "baseline is A, model is B" if g == 1 else "model is A, baseline is B"
                if "verdict" in j:
                    a_score = ah._A_SCORE[j["verdict"]]
                    mine = 1.0 - a_score if g == 1 else a_score
                    outcomes.append(mine)
                    parts.append(f"game {g} ({who}): [[{j['verdict']}]]")
                else:
                    parts.append(f"game {g} ({who}): failure: {j.get('failure')}")
                texts.append(f"[game {g}] {j.get('judgment') or ''}".rstrip())
            mean = statistics.fmean(outcomes) if outcomes else None
            items[uid]["answers"][model] = [{
                "label": "answer", "text": (a or {}).get("answer", (a or {}).get("error", "(no answer)")),
                "verdict": (f"{_preference_text(mean)} against the baseline (outcome {mean:.2f}); " if mean is not None
                            else "") + "; ".join(parts),
                "score": mean, "rationale": "\n\n".join(texts)}]
    return _finish(items, order)


# ----------------------------------------------------------------------------------------------- AI feedback
def is_aif_folder(folder: Path) -> bool:
    """An AI-feedback run folder: its stores and summary (the stage writes summary.json when it has finished)."""
    folder = Path(folder)
    return (folder / "completions.jsonl").is_file() and (folder / "summary.json").is_file() \
        and not (folder / "scores.json").is_file()


def _parquet_rows(pattern_dir: Path, prefix: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in sorted(Path(pattern_dir).glob(f"{prefix}-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def aif(folder: Path) -> list[dict]:
    """Every prompt of an AI-feedback run: each generator's answer with the judge's ratings and rationales per aspect
    (the UltraFeedback rubric) and its mean, and which answers became the chosen and rejected ones (and in which
    split), or why the prompt gave no pair."""
    from ..data.binarize import prompt_id  # lazy: only the sections a page shows

    folder = Path(folder)
    rows = _parquet_rows(folder / "raw" / "data", "train")
    pairs: dict[str, tuple[str | None, dict | None]] = {}
    for part in ("train_prefs", "test_prefs"):
        for p in _parquet_rows(folder / "data", part):
            pairs[p["prompt_id"]] = (part, p)
    ratings = records(folder / "ratings.jsonl")
    completions = records(folder / "completions.jsonl")
    audited = {}  # prompt id -> the audit's record of its pair (the checks that flagged it, what was done)
    if (folder / "audit.json").is_file():
        audited = {p["prompt_id"]: p for p in json.loads((folder / "audit.json").read_text()).get("pairs") or []}
    raw_by = {}  # (prompt_id, model, response) -> the judge's raw reply, when it kept one
    try:
        judge = json.loads((folder / "summary.json").read_text())["identities"]["judge"]
    except (OSError, ValueError, KeyError, TypeError):
        judge = None  # a folder written before identities were recorded: its ratings are keyed <answer>:r0
    first = {r["completion"]: r for r in ratings.values() if str(r.get("key", "")).endswith(":r0")
             and r.get("completion") and (judge is None or r.get("judge") in (judge, None))}
    for c in completions.values():
        r = first.get(c["key"])
        if r and r.get("raw") and "response" in c:
            raw_by[(c["prompt_id"], c["model"], c["response"])] = r["raw"]
    items = []
    for row in rows:
        pid = prompt_id(row["instruction"])
        split, pair = pairs.get(pid, (None, None))
        chosen = (pair["chosen"][-1]["content"] if pair else None)
        rejected = (pair["rejected"][-1]["content"] if pair else None)
        answers: dict[str, list[dict]] = {}
        taken = set()
        for comp in row.get("completions") or []:
            name = comp["model"]
            while name in answers:  # several samples of one generator
                name += "'"
            ann = comp.get("annotations") or {}
            score = comp.get("fine-grained_score")
            role = ""
            if pair and comp["response"] == chosen and "chosen" not in taken:
                role = "chosen"
            elif pair and comp["response"] == rejected and "rejected" not in taken:
                role = "rejected"
            taken.add(role)
            ratings_text = ", ".join(f"{a.replace('_', ' ')} {v.get('Rating')}" for a, v in ann.items())
            rationale = "\n".join(f"{a.replace('_', ' ')}: {v.get('Rationale')}" for a, v in ann.items()
                                  if v.get("Rationale"))
            raw = raw_by.get((pid, comp["model"], comp["response"]))
            if raw:
                rationale += ("\n\n" if rationale else "") + f"[judge's reply] {raw}"
            answers[name] = [{"label": "answer", "text": comp["response"],
                              "verdict": (f"{role} ({(split or '').replace('_prefs', '')}); " if role else "")
                              + (f"mean rating {score:g}" if score is not None else "not rated")
                              + (f" ({ratings_text})" if ratings_text else ""),
                              "score": score, "rationale": rationale, "role": role}]
        category = f"{split.replace('_prefs', '')} pair" if split else "no pair"
        audit = audited.get(pid) or {}
        if audit.get("action") == "dropped":
            category = "pair dropped by the audit"
        items.append({"id": pid[:12], "category": category, "prompt": [row["instruction"]], "reference": None,
                      "baseline": None, "answers": answers,
                      "disagree": len({e[0]["score"] for e in answers.values()}) > 1,
                      "flags": audit.get("flags") or [], "audit_action": audit.get("action")})
    return items


def aif_summary(folder: Path) -> dict:
    return json.loads((Path(folder) / "summary.json").read_text())


def aif_markdown(folders: list[Path]) -> str:
    """The report's section on AI-feedback runs: per run, its prompts, answers, ratings and pairs, and the judge's
    mean rating of each generator (from summary.json)."""
    text = ["## AI feedback", "",
            "| run | prompts | answers | ratings | judge failures | train pairs | test pairs | no pair (all tied, "
            "other) | pairs chosen among tied best |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    gens: dict[str, dict] = {}
    for folder in folders:
        s = aif_summary(folder)
        skipped = {k: v for k, v in ((s.get("binarize") or {}).get("skipped") or {}).items()
                   if k in ("too_few_completions", "all_tied", "empty_prompt", "tied_best")}
        # tied_best: pairs whose chosen answer was among several tied for best (older summaries held it in skipped)
        tied = skipped.pop("all_tied", 0)
        best = skipped.pop("tied_best", 0) or (s.get("binarize") or {}).get("chosen_among_tied_best", 0)
        pairs = s.get("pairs") or {}
        text.append(f"| {folder} | {s.get('prompts', '–')} | {s.get('completions', '–')} | {s.get('ratings', '–')} | "
                    f"{s.get('judge_failures', '–')} | {pairs.get('train_prefs', 0)} | {pairs.get('test_prefs', 0)} | "
                    f"{tied}, {sum(skipped.values())} | {best} |")
        gens[str(folder)] = s.get("mean_score_by_generator") or {}
    names = sorted({g for v in gens.values() for g in v})
    if names:
        text += ["", "The judge's mean rating (1-5, the mean of the four UltraFeedback aspects) of each generator:", "",
                 "| run | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
        for run, v in gens.items():
            text.append(f"| {run} | " + " | ".join("–" if v.get(g) is None else f"{v[g]:.2f}" for g in names) + " |")
    return "\n".join(text) + "\n"
