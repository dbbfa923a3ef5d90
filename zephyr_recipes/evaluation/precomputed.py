"""Answers another tool produced, scored without generating: alpaca_eval's ``model_outputs.json``, FastChat's
``model_answer/<model>.jsonl`` (MT-Bench) and Arena-Hard's ``model_answer/<model>.jsonl``.

Each is read into the benchmark's answer store exactly as generated answers would be (marked with the file they
came from), so judging, resuming and scoring are the same. A file in another format, or one that answers none of
the benchmark's prompts, is refused with the format that was expected (and the one the file looks like); prompts
the file has no answer for are logged, skipped and counted.
"""

from __future__ import annotations

import logging
import time

from ..core.errors import ZephyrError
from ..feedback.store import Store
from .alpaca import instruction_id
from .arena_hard import ANSWER_FORMAT, parse_answers
from .mt_bench import _key
from .sources import load_records

log = logging.getLogger("zephyr_recipes")

ALPACA_FORMAT = ("alpaca_eval's model_outputs.json: a JSON list of "
                 '{"instruction": "...", "output": "...", "generator": "<model>"}')
FASTCHAT_FORMAT = ("FastChat's model_answer/<model>.jsonl: one line per question, "
                   '{"question_id": 81, "model_id": "<model>", "choices": [{"index": 0, "turns": ["...", "..."]}]}')


def looks_like(path: str) -> str | None:
    """Which benchmark's answer format a file looks like, in words (None when unknown or unreadable)."""
    try:
        records = load_records(str(path), "answers")
    except ZephyrError:
        return None
    rec = records[0] if records else {}
    if "instruction" in rec and "output" in rec:
        return "alpaca_eval's model_outputs (AlpacaEval)"
    if "uid" in rec and "messages" in rec:
        return "Arena-Hard's model_answer"
    turns = ((rec.get("choices") or [{}])[0] or {}).get("turns") if isinstance(rec.get("choices"), list) else None
    if "question_id" in rec and isinstance(turns, list):
        if isinstance(rec["question_id"], int) and len(turns) >= 2:
            return "FastChat's MT-Bench model_answer (two turns per question)"
        return "Arena-Hard's older model_answer (question_id, choices)"
    return None


def _missing(what: str, path: str, missing: list, total: int = 0, expected: str | None = None) -> None:
    """Log the prompts without an answer; refuse a file that answers none of them."""
    if total and len(missing) >= total:
        seen = looks_like(path)
        raise ZephyrError(f"{what}: {path} answers none of the {total} prompt(s)"
                          + (f"; it looks like {seen}" if seen else ""),
                          f"give {expected or 'answers to these prompts'}, for the same prompts")
    if missing:
        log.warning("%s: %s has no answer for %d prompt(s) (%s%s); they are skipped", what, path, len(missing),
                    ", ".join(map(str, missing[:5])), " ..." if len(missing) > 5 else "")


def read_alpaca(path: str) -> tuple[str | None, dict[str, str]]:
    """(generator, instruction id -> output) from alpaca_eval's model_outputs.json."""
    records = load_records(path, "AlpacaEval model outputs")
    by_iid, generator = {}, None
    for n, rec in enumerate(records, 1):
        if not isinstance(rec.get("instruction"), str) or not isinstance(rec.get("output"), str):
            raise ZephyrError(f"{path}: entry {n} is not in alpaca_eval's model_outputs format "
                              f"(it has {', '.join(sorted(rec)) or 'no keys'})", f"give {ALPACA_FORMAT}")
        by_iid[instruction_id(rec["instruction"])] = rec["output"]
        generator = generator or rec.get("generator")
    return generator, by_iid


def alpaca_outputs(path: str, rows: list[dict], store: Store, expected: str = ALPACA_FORMAT) -> dict:
    """alpaca_eval's model_outputs.json into an AlpacaEval answer store, matched by instruction text."""
    generator, by_iid = read_alpaca(path)
    missing = []
    for r in rows:
        iid = instruction_id(r["instruction"])
        if iid not in by_iid:
            missing.append(iid)
        elif iid not in store:
            store.add({"key": iid, "instruction": r["instruction"], "output": by_iid[iid], "source": str(path),
                       "tstamp": time.time()})
    _missing("AlpacaEval", path, missing, len(rows), expected)
    return {"model": generator, "file": str(path), "missing": len(missing)}


def read_fastchat(path: str) -> tuple[str | None, dict[str, list[str]]]:
    """(model id, question id -> turns) from FastChat's model_answer jsonl."""
    records = load_records(path, "MT-Bench model answers")
    by_id, model = {}, None
    for n, rec in enumerate(records, 1):
        try:
            turns = rec["choices"][0]["turns"]
            qid = rec["question_id"]
        except (KeyError, IndexError, TypeError):
            raise ZephyrError(f"{path}: line {n} is not in FastChat's model_answer format "
                              f"(it has {', '.join(sorted(rec)) or 'no keys'})", f"give {FASTCHAT_FORMAT}") from None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise ZephyrError(f"{path}: line {n} has turns that are not a list of texts", f"give {FASTCHAT_FORMAT}")
        by_id[str(qid)] = turns
        model = model or rec.get("model_id")
    return model, by_id


def fastchat_answers(path: str, questions: list, store: Store, expected: str = FASTCHAT_FORMAT) -> dict:
    """FastChat's model_answer jsonl into the MT-Bench answer store (both turns of each question)."""
    model, by_id = read_fastchat(path)
    missing = []
    for q in questions:
        turns = by_id.get(str(q.id))
        if not turns or len(turns) < len(q.turns):
            missing.append(q.id)
            continue
        for t in range(1, len(q.turns) + 1):
            if _key(q, t) not in store:
                store.add({"key": _key(q, t), "question_id": q.id, "turn": t, "answer": turns[t - 1],
                           "source": str(path), "tstamp": time.time()})
    _missing("MT-Bench", path, missing, len(questions), expected)
    return {"model": model, "file": str(path), "missing": len(missing)}


def arena_hard_answers(path: str, questions: list[dict], store: Store, expected: str | None = None) -> dict:
    model, answers = parse_answers(path)
    missing = []
    for q in questions:
        if q["uid"] not in answers:
            missing.append(q["uid"])
        elif q["uid"] not in store:
            store.add({"key": q["uid"], "uid": q["uid"], "answer": answers[q["uid"]], "source": str(path),
                       "tstamp": time.time()})
    _missing("Arena-Hard", path, missing, len(questions), expected or ANSWER_FORMAT)
    return {"model": model, "file": str(path), "missing": len(missing)}
