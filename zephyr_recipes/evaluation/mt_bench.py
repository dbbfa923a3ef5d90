"""MT-Bench: 80 two-turn questions in eight categories, answered by the model and graded 1-10 by a judge.

Follows FastChat's llm_judge: per-category temperatures, the model's chat template, single-answer grading with
``single-v1`` (turn 1) and ``single-v1-multi-turn`` (turn 2), and the ``-math-`` variants with the reference
answer for math, reasoning and coding. Grades are read from ``[[N]]``. Answers and grades go to append-only
stores as they arrive, so a killed run resumes without asking the model or judge again.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import random
import re
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..core.errors import ZephyrError
from ..feedback.judges import Item, JudgeFailure, fill
from ..feedback.store import Store, answered
from .sources import load_records

log = logging.getLogger("zephyr_recipes")

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}  # FastChat; the rest 0.0
NEED_REFERENCE = ("math", "reasoning", "coding")
PROMPT_NAMES = ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")


@dataclass
class Question:
    id: int | str
    category: str
    turns: list[str]
    reference: list[str] | None = None


# ------------------------------------------------------------------------------------------- loading
def sample_across_categories(questions: list[Question], n: int, seed: int) -> list[Question]:
    """A seeded sample of ``n`` questions spread over the categories as evenly as they allow (each category's
    questions in a seeded order, taken in turn), kept in file order."""
    if not n or n >= len(questions):
        return questions
    rng = random.Random(seed)
    by_cat: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_cat.setdefault(q.category, []).append(i)
    for idx in by_cat.values():
        rng.shuffle(idx)
    cats = list(by_cat)
    rng.shuffle(cats)
    keep: list[int] = []
    while len(keep) < n:
        for c in cats:
            if by_cat[c] and len(keep) < n:
                keep.append(by_cat[c].pop())
    return [questions[i] for i in sorted(keep)]


def load_questions(spec: str, max_questions: int | None = None, seed: int = 0) -> list[Question]:
    """FastChat's question.jsonl (question_id, category, turns), or HuggingFaceH4/mt_bench_prompts
    (prompt_id, category, prompt, reference). A reference carried by the question is used only when the
    reference answer file has none for it (FastChat grades with the GPT-4 reference answers). ``max_questions``
    takes a seeded sample spread over the categories."""
    out = []
    for n, row in enumerate(load_records(spec, "MT-Bench questions"), 1):
        qid = row.get("question_id", row.get("prompt_id"))
        turns = row.get("turns", row.get("prompt"))
        if qid is None or not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns) \
                or not isinstance(row.get("category"), str):
            raise ZephyrError(f"{spec}: question {n} lacks question_id, category or a list of turns",
                              "use FastChat's question.jsonl format: "
                              '{"question_id": 81, "category": "writing", "turns": ["...", "..."]}')
        ref = row.get("reference")
        out.append(Question(qid, row["category"], list(turns)[:2], list(ref) if ref else None))
    if not out:
        raise ZephyrError(f"{spec} holds no MT-Bench questions", "point stage.mt_bench.questions at question.jsonl")
    return sample_across_categories(out, max_questions, seed) if max_questions else out


def load_references(spec: str | None) -> dict:
    """FastChat's reference_answer/gpt-4.jsonl: question_id -> the reference turns."""
    if not spec:
        return {}
    refs = {}
    for n, row in enumerate(load_records(spec, "MT-Bench reference answers"), 1):
        try:
            refs[row["question_id"]] = list(row["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise ZephyrError(f"{spec}: reference answer {n} is not in FastChat's answer format",
                              '{"question_id": 101, "choices": [{"index": 0, "turns": ["...", "..."]}]}') from None
    return refs


def load_judge_prompts(spec: str) -> dict:
    prompts = {}
    for n, row in enumerate(load_records(spec, "MT-Bench judge prompts"), 1):
        if not {"name", "prompt_template"} <= set(row):
            raise ZephyrError(f"{spec}: judge prompt {n} has no name or prompt_template",
                              "use FastChat's judge_prompts.jsonl format")
        prompts[row["name"]] = row
    missing = [p for p in PROMPT_NAMES if p not in prompts]
    if missing:
        raise ZephyrError(f"{spec} lacks the judge prompt(s) {', '.join(missing)}",
                          "point stage.mt_bench.judge_prompts at FastChat's judge_prompts.jsonl")
    return prompts


# ---------------------------------------------------------------------------------------- generation
def _key(q: Question, turn: int) -> str:
    return f"q{q.id}:t{turn}"


def answer_of(store: Store, q: Question, turn: int) -> str | None:
    rec = store.get(_key(q, turn))
    return rec.get("answer") if rec else None


def conversation(q: Question, answers: list[str], turn: int) -> list[dict]:
    """The chat up to the user's message of ``turn`` (1-based)."""
    messages = []
    for t in range(turn):
        messages.append({"role": "user", "content": q.turns[t]})
        if t < turn - 1:
            messages.append({"role": "assistant", "content": answers[t]})
    return messages


def temperature(category: str, table: dict) -> float:
    return float(table.get(category, 0.0))


def generate(backend, questions: list[Question], store: Store, max_new_tokens: int, temperatures: dict) -> None:
    """Both turns of every question, batched per temperature (a turn-2 prompt needs the turn-1 answer)."""
    for turn in (1, 2):
        todo = [q for q in questions if len(q.turns) >= turn and _key(q, turn) not in store
                and (turn == 1 or answer_of(store, q, 1) is not None)]
        if not todo:
            continue
        groups = defaultdict(list)
        for q in todo:
            groups[temperature(q.category, temperatures)].append(q)
        with tqdm(total=len(todo), desc=f"MT-Bench turn {turn}", unit="question") as bar:
            for temp, group in sorted(groups.items()):
                convs = [conversation(q, [answer_of(store, q, 1) or ""], turn) for q in group]
                sampling = {"temperature": temp, "max_new_tokens": max_new_tokens}
                for j, result in backend.generate(convs, 1, sampling):
                    q = group[j]
                    rec = {"key": _key(q, turn), "question_id": q.id, "turn": turn, "tstamp": time.time()}
                    store.add(answered(rec, result, "answer"))
                    bar.update(1)


def answer_records(questions: list[Question], store: Store, model_id: str) -> list[dict]:
    """FastChat's model_answer format: one line per question with both turns."""
    rows = []
    for q in questions:
        turns = [answer_of(store, q, t) for t in range(1, len(q.turns) + 1)]
        if any(t is None for t in turns):
            continue
        stamp = max(store.records[_key(q, t)]["tstamp"] for t in range(1, len(turns) + 1))
        digest = hashlib.sha1(f"{model_id}\0{q.id}\0{turns}".encode()).hexdigest()[:22]
        rows.append({"question_id": q.id, "answer_id": digest, "model_id": model_id,
                     "choices": [{"index": 0, "turns": turns}], "tstamp": stamp})
    return rows


# ------------------------------------------------------------------------------------------- judging
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat's one_score_pattern
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")  # and its one_score_pattern_backup
NO_GRADE = -1  # FastChat's rating of a reply without a grade: recorded, left out of every mean (show_result.py)


def parse_grade(text: str) -> float:
    """A judge reply's grade as FastChat's ``run_judge_single`` reads it: the first ``[[N]]``, else the first
    ``[N]``, taken as written (a grade outside 1-10 is kept: FastChat averages it). Raises JudgeFailure."""
    match = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    if not match:
        raise JudgeFailure("no [[rating]] in the reply", text)
    return float(ast.literal_eval(match.group(1)))


def judge_prompt(prompts: dict, q: Question, answers: list[str], turn: int, reference: list[str] | None):
    """(prompt name, chat messages for the judge) as FastChat builds them."""
    math = q.category in NEED_REFERENCE and reference is not None
    name = ("single-math-v1" if math else "single-v1") + ("-multi-turn" if turn == 2 else "")
    spec = prompts[name]
    if turn == 1:
        values = {"question": q.turns[0], "answer": answers[0]}
    else:
        values = {"question_1": q.turns[0], "question_2": q.turns[1], "answer_1": answers[0], "answer_2": answers[1]}
    if math and reference is not None:
        values.update({f"ref_answer_{i + 1}": r for i, r in enumerate(reference[:2])})
    messages = [{"role": "system", "content": spec["system_prompt"]}] if spec.get("system_prompt") else []
    messages.append({"role": "user", "content": fill(spec["prompt_template"], **values)})
    return name, messages


def judge_all(judge, questions: list[Question], answers: Store, judgments: Store, prompts: dict | None,
              references: dict) -> None:
    todo: list[tuple[Question, int, list[str]]] = []  # (question, turn, the answers up to that turn)
    for q in questions:
        got = [answer_of(answers, q, t) for t in range(1, len(q.turns) + 1)]
        for turn in range(1, len(q.turns) + 1):
            so_far = [a for a in got[:turn] if a is not None]
            if len(so_far) == turn and _key(q, turn) not in judgments:
                todo.append((q, turn, so_far))
    if not todo:
        return
    missing_refs = sorted({q.id for q, _, _ in todo if q.category in NEED_REFERENCE
                           and not (references.get(q.id) or q.reference)}, key=str)
    if missing_refs:
        log.warning("MT-Bench: no reference answer for %d math/reasoning/coding question(s) (%s); they are "
                    "graded without one", len(missing_refs), ", ".join(map(str, missing_refs[:5])))
    names, items = [], []
    for q, turn, shown in todo:
        ref = references.get(q.id) or q.reference
        name, prompt = judge.type, None  # the judge prompts are loaded only for judges that read them
        if prompts is not None:
            name, prompt = judge_prompt(prompts, q, shown, turn, ref if q.category in NEED_REFERENCE else None)
        names.append(name)
        items.append(Item(conversation(q, shown, turn), (shown[turn - 1],),
                          reference=ref[turn - 1] if ref and len(ref) >= turn else None, prompt=prompt,
                          parse=parse_grade))
    verdicts = judge.ask("grade", items, "MT-Bench")
    with tqdm(total=len(todo), desc="MT-Bench judging", unit="answer") as bar:
        for j, verdict in verdicts:
            q, turn, _ = todo[j]
            rec = {"key": _key(q, turn), "question_id": q.id, "turn": turn, "category": q.category,
                   "judge_prompt": names[j], "tstamp": time.time()}
            if isinstance(verdict, JudgeFailure):  # FastChat's rating -1: kept on file, never averaged
                rec.update(score=NO_GRADE, failure=str(verdict), judgment=verdict.raw[:4000])
            else:
                rec.update(score=float(verdict.value), judgment=verdict.raw[:4000])
            judgments.add(rec)
            bar.update(1)


# ------------------------------------------------------------------------------------------- scoring
def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def scores(judgments: list[dict]) -> dict:
    """Overall, per-turn and per-category means of the grades (failures are counted, never scored: FastChat's
    show_result drops score -1; a grade outside 1-10 is averaged as FastChat averages it)."""
    ok = [j for j in judgments if "score" in j and "failure" not in j and j["score"] != NO_GRADE]
    by_cat = defaultdict(list)
    for j in ok:
        by_cat[j["category"]].append(j["score"])
    order = [c for c in CATEGORIES if c in by_cat] + sorted(c for c in by_cat if c not in CATEGORIES)
    return {
        "score": _mean([j["score"] for j in ok]),
        "turn_1": _mean([j["score"] for j in ok if j["turn"] == 1]),
        "turn_2": _mean([j["score"] for j in ok if j["turn"] == 2]),
        "categories": {c: _mean(by_cat[c]) for c in order},
        "judged": len(ok),
        "failures": sum(1 for j in judgments if "failure" in j),
    }
