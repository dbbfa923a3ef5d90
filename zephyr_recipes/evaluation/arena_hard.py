"""Arena-Hard-Auto: the model answers hard prompts and a judge compares each answer with a baseline's.

Follows the benchmark (lmarena/arena-hard-auto): every answer is judged against the baseline's answer to the
same prompt twice, once with the baseline as assistant A and once with the model as assistant A, under the
benchmark's system prompt and user template. The judge ends with one of ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``,
``[[B>A]]``, ``[[B>>A]]``; a strong verdict counts as ``strong_weight`` (3) battles. Each version is scored the way
its leaderboard was (:data:`PROTOCOLS`):

- v0.1 (2024): 500 prompts, one baseline (gpt-4-0314). A reply is read with the first verdict pattern as it is
  written; a reply with two different labels has no verdict (``gen_judgment.get_score`` of 2024). Each game counts
  on its own. The score is the Bradley-Terry win rate of the model against the baseline (the baseline's rating
  anchored), fitted by logistic regression on the battles, with a 95% interval from ``bootstrap_rounds`` resamples
  of the battles (``show_result.py`` of 2024).
- v2.0 (2025): a baseline and a system prompt per category (o3-mini for hard prompts, gemini-2.0-flash for creative
  writing). A reply is read upper-cased, the last label of the first pattern that matches counting; a prompt with a
  game without a verdict is dropped. Scores are per category: the mean over ``bootstrap_rounds`` resamples of the
  mean battle outcome, with a 90% interval (``show_result.py`` of 2025). The headline is ``hard_prompt``'s.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, TypedDict

from tqdm.auto import tqdm

from ..core.errors import ZephyrError
from ..feedback.judges import Item, JudgeFailure, parse_verdict
from ..feedback.store import Store, answered
from .sources import load_records, local_file, read_text

log = logging.getLogger("zephyr_recipes")

REPO = "https://raw.githubusercontent.com/lmarena/arena-hard-auto/196f6b826783b3da7310e361a805fa36f0be83f3"
PROMPTS = f"{REPO}/utils/judge_utils.py"
VERSIONS = {
    "v0.1": {
        "questions": f"{REPO}/data/arena-hard-v0.1/question.jsonl",
        "baselines": {"arena-hard-v0.1": f"{REPO}/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl"},
        "system_prompts": {"arena-hard-v0.1": f"{PROMPTS}#OG_ARENA_HARD_PROMPT"},
        "judge_settings": f"{REPO}/config/arena-hard-v0.1.yaml",
    },
    "v2.0": {
        "questions": f"{REPO}/data/arena-hard-v2.0/question.jsonl",
        "baselines": {"hard_prompt": f"{REPO}/data/arena-hard-v2.0/model_answer/o3-mini-2025-01-31.jsonl",
                      "coding": f"{REPO}/data/arena-hard-v2.0/model_answer/o3-mini-2025-01-31.jsonl",
                      "math": f"{REPO}/data/arena-hard-v2.0/model_answer/o3-mini-2025-01-31.jsonl",
                      "creative_writing": f"{REPO}/data/arena-hard-v2.0/model_answer/gemini-2.0-flash-001.jsonl"},
        "system_prompts": {"hard_prompt": f"{PROMPTS}#OG_ARENA_HARD_PROMPT",
                           "coding": f"{PROMPTS}#OG_ARENA_HARD_PROMPT",
                           "math": f"{PROMPTS}#OG_ARENA_HARD_PROMPT",
                           "creative_writing": f"{PROMPTS}#JUDGE_SETTINGS.creative_writing.system_prompt"},
        "judge_settings": f"{REPO}/config/arena-hard-v2.0.yaml",
    },
}
class ArenaProtocol(TypedDict):
    """How one version of the benchmark reads replies and scores them."""

    verdict_rule: str  # how a reply is read: parse_verdict's rule (the year of the benchmark's code)
    interval: int  # the width of the bootstrapped interval, in percent
    per_category: bool  # scored per category, as the mean of resampled outcomes (else one Bradley-Terry fit)
    pair_drop: bool  # a prompt with a game without a verdict is dropped


PROTOCOLS: dict[str, ArenaProtocol] = {
    "v0.1": {"verdict_rule": "2024", "interval": 95, "per_category": False, "pair_drop": False},
    "v2.0": {"verdict_rule": "2025", "interval": 90, "per_category": True, "pair_drop": True},
}
HEADLINE_CATEGORY = "hard_prompt"  # v2.0's leaderboard default (show_result.py --category)
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
# the model's share of each verdict, per game: game 1 shows the baseline as A, game 2 the model as A
_A_SCORE = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B=A": 0.5, "B>A": 0.0, "B>>A": 0.0, "A<B": 0.0, "A<<B": 0.0,
            "B<A": 1.0, "B<<A": 1.0}
_STRONG = {"A>>B", "B>>A", "A<<B", "B<<A"}
ANSWER_FORMAT = ('Arena-Hard\'s model_answer/<model>.jsonl: one line per prompt, {"uid": "...", "model": "...", '
                 '"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": {"answer": '
                 '"..."}}]} (or the older {"question_id": "...", "model_id": "...", "choices": [{"turns": '
                 '[{"content": "..."}]}]})')


# ------------------------------------------------------------------------------------------- loading
def read_prompt(spec: str, what: str) -> str:
    """A prompt given as text, a file/URL, or ``FILE#NAME`` / ``FILE#NAME.key.key``: a string constant (or a
    string inside a dict literal) of a Python source file, read without running it."""
    if "\n" in spec or "#" not in spec:
        return read_text(spec, what)
    source, _, name = spec.rpartition("#")
    tree = ast.parse(local_file(source, what).read_text())
    top = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
           for t in node.targets if isinstance(t, ast.Name)}
    head, *keys = name.split(".")
    node = top.get(head)
    for key in keys:
        if isinstance(node, ast.Dict):
            node = next((v for k, v in zip(node.keys, node.values)
                         if isinstance(k, ast.Constant) and k.value == key), None)
        else:
            node = None
    if isinstance(node, ast.Name):  # a dict value that names another constant
        node = top.get(node.id)
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        raise ZephyrError(f"{what}: {source} has no string {name}",
                          "point it at the benchmark's utils/judge_utils.py#OG_ARENA_HARD_PROMPT, a text file or text")
    return node.value


def load_settings(spec: str) -> dict:
    """The benchmark's judge settings file (config/arena-hard-v*.yaml): prompt_template, regex_patterns, ..."""
    import yaml

    data = yaml.safe_load(local_file(spec, "Arena-Hard judge settings").read_text()) or {}
    if not isinstance(data, dict) or "{QUESTION}" not in str(data.get("prompt_template", "")) \
            or not data.get("regex_patterns"):
        raise ZephyrError(f"{spec} is not Arena-Hard judge settings (no prompt_template with {{QUESTION}}, "
                          "{ANSWER_A}, {ANSWER_B}, or no regex_patterns)",
                          "point stage.arena_hard.judge_settings at the benchmark's config/arena-hard-v0.1.yaml")
    return data


def load_questions(spec: str, max_questions: int | None = None, seed: int = 0) -> list[dict]:
    rows = load_records(spec, "Arena-Hard questions")
    out = []
    for n, row in enumerate(rows, 1):
        uid = row.get("uid", row.get("question_id"))
        prompt = row.get("prompt")
        if prompt is None and isinstance(row.get("turns"), list) and row["turns"]:
            prompt = row["turns"][0].get("content") if isinstance(row["turns"][0], dict) else row["turns"][0]
        if uid is None or not isinstance(prompt, str):
            raise ZephyrError(f"{spec}: question {n} lacks a uid or a prompt",
                              'use Arena-Hard\'s question.jsonl: {"uid": "...", "category": "...", "prompt": "..."}')
        out.append({"uid": str(uid), "category": str(row.get("category", "arena-hard")), "prompt": prompt})
    if not out:
        raise ZephyrError(f"{spec} holds no Arena-Hard questions", "point stage.arena_hard.questions at question.jsonl")
    if max_questions and max_questions < len(out):
        keep = sorted(random.Random(seed).sample(range(len(out)), max_questions))
        out = [out[i] for i in keep]
    return out


def parse_answers(path: Path | str, rows: list[dict] | None = None) -> tuple[str | None, dict[str, str]]:
    """(model name, uid -> answer text) from an answer file in Arena-Hard's format (current or older)."""
    rows = load_records(str(path), "Arena-Hard answers") if rows is None else rows
    model, out = None, {}
    for n, row in enumerate(rows, 1):
        try:
            if "messages" in row:
                uid, content = row["uid"], row["messages"][-1]["content"]
                text = content["answer"] if isinstance(content, dict) else content
                model = model or row.get("model")
            else:
                uid, turn = row["question_id"], row["choices"][0]["turns"][0]
                text = turn["content"] if isinstance(turn, dict) else turn
                model = model or row.get("model_id")
        except (KeyError, IndexError, TypeError):
            raise ZephyrError(f"{path}: line {n} is not an answer in Arena-Hard's format",
                              f"write {ANSWER_FORMAT}") from None
        if not isinstance(text, str):
            raise ZephyrError(f"{path}: line {n} has no answer text", f"write {ANSWER_FORMAT}")
        out[str(uid)] = text
    return model, out


def answer_records(questions: list[dict], answers: Store, model_id: str) -> list[dict]:
    """The model's answers in Arena-Hard's model_answer format (readable by the benchmark's own scripts)."""
    rows = []
    for q in questions:
        rec = answers.get(q["uid"])
        if rec and "answer" in rec:
            digest = hashlib.sha1(f"{model_id}\0{q['uid']}\0{rec['answer']}".encode()).hexdigest()[:22]
            rows.append({"uid": q["uid"], "ans_id": digest, "model": model_id,
                         "messages": [{"role": "user", "content": q["prompt"]},
                                      {"role": "assistant", "content": {"answer": rec["answer"]}}],
                         "tstamp": rec.get("tstamp")})
    return rows


# ---------------------------------------------------------------------------------------- generation
def generate(backend, questions: list[dict], store: Store, sampling: dict) -> None:
    todo = [q for q in questions if q["uid"] not in store]
    if not todo:
        return
    with tqdm(total=len(todo), desc="Arena-Hard answers", unit="prompt") as bar:
        for j, result in backend.generate([[{"role": "user", "content": q["prompt"]}] for q in todo], 1,
                                          dict(sampling)):
            rec = {"key": todo[j]["uid"], "uid": todo[j]["uid"], "tstamp": time.time()}
            store.add(answered(rec, result, "answer"))
            bar.update(1)


# ------------------------------------------------------------------------------------------- judging
def judge_messages(system: str, template: str, question: str, answer_a: str, answer_b: str) -> list[dict]:
    user = template.replace("{QUESTION}", question).replace("{ANSWER_A}", answer_a).replace("{ANSWER_B}", answer_b)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def judge_all(judge, questions: list[dict], answers: Store, baselines: dict[str, dict[str, str]],
              judgments: Store, settings: dict, system_prompts: dict[str, str], rule: str = "2025") -> None:
    """Both games of every answered prompt whose baseline answer exists. ``system_prompts`` (per category) is
    empty when the judge reads no prompts."""
    patterns = settings.get("regex_patterns") or (r"\[\[([AB<>=]+)\]\]",)
    todo = []
    for q in questions:
        rec, base = answers.get(q["uid"]), baselines.get(q["uid"])
        if not rec or "answer" not in rec or base is None:
            continue
        for game in (1, 2):
            if f"{q['uid']}:g{game}" not in judgments:
                a, b = (base["answer"], rec["answer"]) if game == 1 else (rec["answer"], base["answer"])
                todo.append((q, game, base["model"], a, b))
    if not todo:
        return

    def read(text: str) -> str:
        return parse_verdict(text, patterns, rule)

    items = [Item([{"role": "user", "content": q["prompt"]}], (a, b), parse=read,
                  prompt=judge_messages(system_prompts[q["category"]], settings["prompt_template"], q["prompt"], a, b)
                  if system_prompts else None) for q, _, _, a, b in todo]
    verdicts = judge.ask("verdict", items, "Arena-Hard")
    with tqdm(total=len(todo), desc="Arena-Hard judging", unit="game") as bar:
        for j, verdict in verdicts:
            q, game, baseline, _, _ = todo[j]
            rec = {"key": f"{q['uid']}:g{game}", "uid": q["uid"], "game": game, "category": q["category"],
                   "baseline": baseline, "tstamp": time.time()}
            if isinstance(verdict, JudgeFailure):
                rec.update(failure=str(verdict), judgment=verdict.raw[:4000])
            else:
                rec.update(verdict=verdict.value, judgment=verdict.raw[:4000])
            judgments.add(rec)
            bar.update(1)


# ------------------------------------------------------------------------------------------- scoring
def battles(judgments: list[dict], strong_weight: int = 3) -> list[float]:
    """The model's outcome in every battle against the baseline (1 win, 0.5 tie, 0 loss); a strong verdict
    counts ``strong_weight`` times."""
    out = []
    for j in judgments:
        label = j.get("verdict")
        if label is None:
            continue
        a = _A_SCORE[label]
        model = 1.0 - a if j["game"] == 1 else a
        out.extend([model] * (strong_weight if label in _STRONG else 1))
    return out


def bradley_terry(games: list[tuple[int, int, float]], players: int, anchor: int = 0) -> list[float]:
    """Bradley-Terry ratings (natural log-odds scale, ``anchor`` fixed at 0) by logistic regression: maximise
    sum w log s(r_a - r_b) + (1 - w) log s(r_b - r_a) over the games (a, b, outcome of a), by Newton's method."""
    import numpy as np

    free = [p for p in range(players) if p != anchor]
    col = {p: i for i, p in enumerate(free)}
    x = np.zeros((len(games), len(free)))
    y = np.array([w for _, _, w in games], dtype=float)
    for n, (a, b, _) in enumerate(games):
        if a in col:
            x[n, col[a]] += 1.0
        if b in col:
            x[n, col[b]] -= 1.0
    theta = np.zeros(len(free))
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ theta)))
        grad = x.T @ (y - p)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(len(free))
        step = np.linalg.solve(hess, grad)
        theta += np.clip(step, -5, 5)  # all-wins or all-losses run off to infinity: bounded steps, capped below
        theta = np.clip(theta, -20, 20)
        if np.max(np.abs(step)) < 1e-10:
            break
    ratings = [0.0] * players
    for player, i in col.items():
        ratings[player] = float(theta[i])
    return ratings


def win_rate(outcomes: list[float]) -> float | None:
    """The model's Bradley-Terry win rate (%) against the baseline from its battle outcomes."""
    if not outcomes:
        return None
    return _fitted_win_rate(outcomes)


def _fitted_win_rate(outcomes: list[float]) -> float:
    """The Bradley-Terry win rate (%) of a non-empty list of outcomes."""
    baseline, model = bradley_terry([(1, 0, w) for w in outcomes], 2, anchor=0)
    return 100.0 / (1.0 + math.exp(-(model - baseline)))


def score(outcomes: list[float], rounds: int = 100, seed: int = 0, interval: int = 95, mean: bool = False) -> dict:
    """Win rate with its bootstrapped interval (battles resampled with replacement, ``rounds`` times): the
    Bradley-Terry win rate and a 95% interval (v0.1), or (``mean``) the mean of the resamples' mean outcomes and a
    90% interval (v2.0). The interval is under ``ci_<interval>``."""
    key = f"ci_{interval}"
    point = win_rate(outcomes)
    if point is None:
        return {"score": None, key: None, "battles": 0}
    rng = random.Random(seed)
    n = len(outcomes)
    fit: Callable[[list[float]], float] = (lambda xs: 100.0 * sum(xs) / len(xs)) if mean else _fitted_win_rate
    samples = sorted(fit([outcomes[rng.randrange(n)] for _ in range(n)]) for _ in range(rounds))
    if mean:
        point = sum(samples) / len(samples)
    tail = (1 - interval / 100) / 2

    def quantile(q: float) -> float:  # linear interpolation, as numpy's default
        pos = q * (len(samples) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(samples) - 1)
        return samples[lo] + (samples[hi] - samples[lo]) * (pos - lo)

    return {"score": round(point, 2), key: [round(quantile(tail), 2), round(quantile(1 - tail), 2)],
            "battles": n}


def complete_pairs(judgments: list[dict]) -> list[dict]:
    """The judgments of prompts whose both games have a verdict (v2.0 drops a prompt with a null game)."""
    games: dict[str, int] = {}
    for j in judgments:
        if j.get("verdict") is not None:
            games[j["uid"]] = games.get(j["uid"], 0) + 1
    return [j for j in judgments if games.get(j["uid"]) == 2]


def scores(questions: list[dict], judgments: list[dict], missing_baseline: list[str], strong_weight: int = 3,
           rounds: int = 100, seed: int = 0, version: str = "v0.1") -> dict:
    protocol = PROTOCOLS.get(version, PROTOCOLS["v0.1"])
    interval, mean = protocol["interval"], protocol["per_category"]
    scored = complete_pairs(judgments) if protocol["pair_drop"] else judgments
    by_cat: dict[str, list[dict]] = {}
    for j in scored:
        by_cat.setdefault(j["category"], []).append(j)
    out = score(battles(scored, strong_weight), rounds, seed, interval, mean)
    counts = {label: sum(1 for j in judgments if j.get("verdict") == label) for label in VERDICTS}
    out.update({
        "questions": len(questions),
        "judged": sum(1 for j in judgments if "verdict" in j),
        "failures": sum(1 for j in judgments if "failure" in j),
        "verdicts": counts,
        "missing_baseline": len(missing_baseline),
        "missing_baseline_uids": missing_baseline[:50],
        "baselines": sorted({j["baseline"] for j in judgments if j.get("baseline")}),
    })
    out["interval"], out["ci"] = interval, out[f"ci_{interval}"]
    out["verdict_rule"] = protocol["verdict_rule"]
    if protocol["pair_drop"]:
        out["dropped_prompts"] = len({j["uid"] for j in judgments} - {j["uid"] for j in scored})
    if len(by_cat) > 1 or protocol["per_category"]:
        out["categories"] = {c: score(battles(js, strong_weight), rounds, seed, interval, mean)
                             for c, js in sorted(by_cat.items())}
    if protocol["per_category"]:  # the published figures are per category: the pooled one is kept aside
        out["pooled"] = {k: out[k] for k in ("score", f"ci_{interval}")}
        head = (out.get("categories") or {}).get(HEADLINE_CATEGORY) or {}
        out.update(score=head.get("score"), ci=head.get(f"ci_{interval}"), score_category=HEADLINE_CATEGORY,
                   **{f"ci_{interval}": head.get(f"ci_{interval}")})
    return out
