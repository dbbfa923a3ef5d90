"""Drop training rows that share an n-gram of words with an evaluation prompt (MT-Bench, AlpacaEval ...).

Evaluation prompts are read from the files a recipe names in ``dataset.decontaminate``: JSON or JSONL with
MT-Bench's ``turns`` (a list of strings) or AlpacaEval's ``instruction``, or ``prompt`` / ``question`` /
``text``. Text is lowercased and split into words; a training row is dropped when any n consecutive words of
any of its messages appear in an evaluation prompt. A prompt shorter than n words counts as one n-gram of
its own length (at least ``MIN_WORDS`` words), so short benchmark questions are still caught.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core.errors import ZephyrError
from .cache import file_digest, fingerprint_of

WORD = re.compile(r"\w+", re.UNICODE)
FIELDS = ("turns", "instruction", "prompt", "question", "text")
MIN_WORDS = 5


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def read_prompts(path: str) -> list[str]:
    """Evaluation prompts from one JSON / JSONL file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ZephyrError(f"dataset.decontaminate names {path}, which is not a file",
                          "give paths to evaluation prompt files (MT-Bench question.jsonl, AlpacaEval json)")
    text = p.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ZephyrError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})",
                          "dataset.decontaminate takes JSON or JSONL files of evaluation prompts") from None
    prompts = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        for name in FIELDS:
            value = row.get(name)
            if isinstance(value, str):
                prompts.append(value)
                break
            if isinstance(value, list):
                prompts += [v for v in value if isinstance(v, str)]
                break
    if not prompts:
        raise ZephyrError(f"{path} holds no evaluation prompts",
                          f"each record needs one of the fields {', '.join(FIELDS)}")
    return prompts


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if len(tokens) >= MIN_WORDS else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


class Index:
    """The n-grams of a set of evaluation prompts, each remembering the file it came from."""

    def __init__(self, files: list[str], n: int):
        self.n = n
        self.files = list(files)
        self.grams: dict[tuple[str, ...], str] = {}
        self.short: dict[tuple[str, ...], str] = {}  # prompts shorter than n words, matched as a whole
        self.prompts = 0
        for f in files:
            for prompt in read_prompts(f):
                self.prompts += 1
                tokens = words(prompt)
                target = self.short if len(tokens) < n else self.grams
                for g in ngrams(tokens, n):
                    target.setdefault(g, f)

    def match(self, text: str) -> str:
        """The evaluation file whose prompt overlaps ``text``, or ""."""
        tokens = words(text)
        for i in range(len(tokens) - self.n + 1):
            hit = self.grams.get(tuple(tokens[i:i + self.n]))
            if hit:
                return hit
        if self.short:
            joined = " " + " ".join(tokens) + " "
            for g, f in self.short.items():
                if " " + " ".join(g) + " " in joined:
                    return f
        return ""


def row_text(row: dict) -> list[str]:
    out = []
    for col in ("messages", "prompt", "chosen", "rejected"):
        for m in row.get(col) or []:
            out.append(m["content"])
    return out


def apply(ds, index, rep: dict, decon: dict):
    """``ds`` without the rows that overlap an evaluation prompt; counts and examples go into rep and decon."""
    from datasets.fingerprint import Hasher

    def hit(row):
        for text in row_text(row):
            found = index.match(text)
            if found:
                return {"_hit": found}
        return {"_hit": ""}

    fp = Hasher.hash([fingerprint_of(ds), index.n, decon["files"], [file_digest(f) for f in decon["files"]]])
    marked = ds.map(hit, new_fingerprint=fp, desc="decontaminating")
    hits = [i for i, h in enumerate(marked["_hit"]) if h]
    if hits:
        for i in hits[:5]:
            row = marked[i]
            decon["examples"].append({"file": row["_hit"], "text": row_text(row)[0][:200]})
        marked = marked.filter(lambda h: not h, input_columns="_hit", desc="dropping contaminated rows")
        rep["dropped"]["contaminated"] = len(hits)
        decon["dropped"] += len(hits)
    return marked.remove_columns("_hit")
