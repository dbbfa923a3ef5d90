"""AlpacaEval: the model answers the AlpacaEval instructions and a judge compares each answer with the
baseline's (text-davinci-003 in AlpacaEval 1, as in the Zephyr paper).

As alpaca_eval does it, every pair is judged once, in an order drawn from the instruction and a seed
(:func:`switched`: alpaca_eval's ``RandomSwitchTwoColumnsProcessor`` with its annotators' seed 0). Judging both
orders and averaging is an option; it is not the published protocol. The win rate is alpaca_eval's: the mean
preference for the model, ties counting half, times 100, with the standard error of that mean; the average output
length is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import statistics
import time
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import ZephyrError
from ..feedback.judges import Item, JudgeFailure, chat_messages, fill, parse_ranking
from ..feedback.store import Store, answered
from .sources import load_records

log = logging.getLogger("zephyr_recipes")


def instruction_id(instruction: str) -> str:
    return hashlib.sha1(instruction.encode()).hexdigest()[:16]


def switched(instruction: str, seed: int = 0) -> bool:
    """Whether alpaca_eval shows this pair with the model's output first: its ``RandomSwitchTwoColumnsProcessor``
    draws ``random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True])``. With seed 0
    (its annotators' default) this gives the order recorded in the published AlpacaEval 2.0 annotations."""
    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True], k=1)[0]


def load_instructions(spec: str, max_samples: int | None, seed: int) -> list[dict]:
    """Rows in alpaca_eval's format (instruction, output, generator, dataset); a seeded sample of N or all.
    alpaca_eval's annotations format is read too (the baseline is ``output_1``, as its leaderboards judged it).
    Each row keeps its position in the file as ``index`` (alpaca_eval's instruction index)."""
    rows = load_records(spec, "AlpacaEval instructions", split="eval")
    for n, row in enumerate(rows, 1):
        row.setdefault("index", n - 1)
        if "output" not in row and isinstance(row.get("output_1"), str):  # annotations: the baseline is output_1
            row.update(output=row["output_1"], generator=row.get("generator_1", "baseline"))
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise ZephyrError(f"{spec}: row {n} lacks a text instruction and output (the baseline's answer)",
                              "use alpaca_eval's format: "
                              '{"instruction": "...", "output": "...", "generator": "...", "dataset": "..."}')
    if max_samples and max_samples < len(rows):
        keep = sorted(random.Random(seed).sample(range(len(rows)), max_samples))
        rows = [rows[i] for i in keep]
    return rows


def generate(backend, rows: list[dict], store: Store, sampling: dict) -> None:
    todo = [r for r in rows if instruction_id(r["instruction"]) not in store]
    if not todo:
        return
    convs = [[{"role": "user", "content": r["instruction"]}] for r in todo]
    with tqdm(total=len(todo), desc="AlpacaEval answers", unit="instruction") as bar:
        for j, result in backend.generate(convs, 1, dict(sampling)):
            ins = todo[j]["instruction"]
            store.add(answered({"key": instruction_id(ins), "instruction": ins, "tstamp": time.time()}, result,
                               "output"))
            bar.update(1)


def model_outputs(rows: list[dict], store: Store, model_id: str) -> list[dict]:
    """The model's answers in alpaca_eval's model_outputs.json format."""
    out = []
    for r in rows:
        rec = store.get(instruction_id(r["instruction"]))
        if rec and "output" in rec:
            out.append({"instruction": r["instruction"], "output": rec["output"], "generator": model_id,
                        "dataset": r.get("dataset", "")})
    return out


def orders(instruction: str, both_orders: bool, order_seed: int | None) -> tuple[int, ...]:
    """The orders a pair is judged in: both, or alpaca_eval's seeded one (order_seed None: baseline first)."""
    if both_orders:
        return (0, 1)
    return (int(switched(instruction, order_seed)),) if order_seed is not None else (0,)


def pending_pairs(rows: list[dict], outputs: Store, judgments: Store, both_orders: bool,
                  order_seed: int | None = 0) -> list[tuple]:
    """(id, order, instruction, (output_1, output_2)) of every comparison not judged yet. Order 0 shows the
    baseline as output_1 and the model as output_2 (alpaca_eval's own layout); order 1 swaps them."""
    todo = []
    for r in rows:
        iid = instruction_id(r["instruction"])
        rec = outputs.get(iid)
        if not rec or "output" not in rec:
            continue
        for order in orders(r["instruction"], both_orders, order_seed):
            if f"{iid}:o{order}" not in judgments:
                pair = (r["output"], rec["output"]) if order == 0 else (rec["output"], r["output"])
                todo.append((iid, order, r["instruction"], pair))
    return todo


def comparison(instruction: str, first: str, second: str, prompt: str | None, parse, labels=None) -> Item:
    """One comparison of output_1 and output_2 under an alpaca_eval prompt ({instruction}, {output_1},
    {output_2}; null when the judge reads none)."""
    return Item([{"role": "user", "content": instruction}], (first, second), prompt=None if prompt is None else
                chat_messages(fill(prompt, instruction=instruction, output_1=first, output_2=second)),
                parse=parse, labels=labels)


def judge_all(judge, rows: list[dict], outputs: Store, judgments: Store, prompt: str | None,
              both_orders: bool = False, parse=parse_ranking, labels: tuple | None = None,
              benchmark: str = "AlpacaEval", raw_chars: int = 2000, record_kind: bool = False,
              order_seed: int | None = 0) -> None:
    """Judge every pending comparison (see :func:`pending_pairs`), as it arrives into ``judgments``.

    ``parse`` reads a chat judge's reply; ``labels`` let a judge with token log-probabilities weigh the choice
    (AlpacaEval 2.0), and ``record_kind`` notes whether a preference was weighed or chosen."""
    todo = pending_pairs(rows, outputs, judgments, both_orders, order_seed)
    for iid, order, _, _pair in [t for t in todo if t[3][0] == t[3][1]]:
        # alpaca_eval's pairwise_evaluator._preprocess: two identical outputs are a draw (preference 1.5), not asked
        judgments.add({"key": f"{iid}:o{order}", "instruction_id": iid, "order": order,
                       "output_1": "baseline" if order == 0 else "model", "tstamp": time.time(),
                       "preference_output_1": 0.5, "model_preference": 0.5, "identical": True,
                       "raw": "identical outputs: a draw, the judge not asked (alpaca_eval's rule)"})
    todo = [t for t in todo if t[3][0] != t[3][1]]
    if not todo:
        return
    verdicts = judge.ask("compare", [comparison(ins, a, b, prompt, parse, labels) for _, _, ins, (a, b) in todo],
                         benchmark)
    with tqdm(total=len(todo), desc=f"{benchmark} judging", unit="comparison") as bar:
        for j, verdict in verdicts:
            iid, order, _, _ = todo[j]
            rec = {"key": f"{iid}:o{order}", "instruction_id": iid, "order": order,
                   "output_1": "baseline" if order == 0 else "model", "tstamp": time.time()}
            if isinstance(verdict, JudgeFailure):
                rec.update(failure=str(verdict), raw=verdict.raw[:2000])
            else:
                first = float(verdict.value)  # preference for output_1: 1, 0 or 0.5 (or weighed)
                rec.update(preference_output_1=first, model_preference=1 - first if order == 0 else first)
                if record_kind:
                    rec["kind"] = "logprob" if verdict.weighted else "discrete"
                rec["raw"] = verdict.raw[:raw_chars]
            judgments.add(rec)
            bar.update(1)


# ------------------------------------------------------------------------------------------- scoring
def win_rate(preferences: list[float]) -> dict:
    """alpaca_eval's figures from per-instruction preferences for the model (1 win, 0 loss, 0.5 tie; the
    mean of both orders can also be 0.25 or 0.75): win_rate = 100 * mean, standard_error = 100 * the
    standard error of the mean (sample standard deviation / sqrt(n))."""
    n = len(preferences)
    if n == 0:
        return {"win_rate": None, "standard_error": None, "n_wins": 0, "n_draws": 0, "n_losses": 0, "n_total": 0}
    se = statistics.stdev(preferences) / math.sqrt(n) if n > 1 else 0.0
    return {"win_rate": round(100 * statistics.fmean(preferences), 4), "standard_error": round(100 * se, 4),
            "n_wins": sum(p > 0.5 for p in preferences), "n_draws": sum(p == 0.5 for p in preferences),
            "n_losses": sum(p < 0.5 for p in preferences), "n_total": n}


def scores(rows: list[dict], outputs: list[dict], judgments: list[dict]) -> dict:
    """Win rate over the judged instructions (the mean of an instruction's orders when both were judged)."""
    by_iid: dict[str, list[dict]] = {}
    for j in judgments:
        if "model_preference" in j:
            by_iid.setdefault(j["instruction_id"], []).append(j)
    prefs = [statistics.fmean(x["model_preference"] for x in js) for js in by_iid.values()]
    out = win_rate(prefs)
    both = [js for js in by_iid.values() if len(js) == 2]
    firsts = [j["preference_output_1"] for j in judgments if "preference_output_1" in j]
    out.update({
        "avg_length": round(statistics.fmean(len(o["output"]) for o in outputs), 1) if outputs else None,
        "baseline_avg_length": round(statistics.fmean(len(r["output"]) for r in rows), 1) if rows else None,
        "baseline": sorted({str(r.get("generator", "?")) for r in rows}),
        "instructions": len(rows),
        "failures": sum(1 for j in judgments if "failure" in j),
        "identical": sum(1 for j in judgments if j.get("identical")),  # draws without asking (identical outputs)
        # how often the two orders agree on the winner, and how often output_1 won: position bias in view
        "order_agreement": round(sum(js[0]["model_preference"] == js[1]["model_preference"] for js in both)
                                 / len(both), 4) if both else None,
        "output_1_preferred": round(statistics.fmean(firsts), 4) if firsts else None,
    })
    return out


def write_outputs(path: Path, outputs: list[dict]) -> None:
    path.write_text(json.dumps(outputs, indent=2, ensure_ascii=False) + "\n")
