"""``builtin://tiny-arc``: multiple-choice questions on the embedded tasks in ARC's schema (id, question,
choices {text, label}, answerKey), so that lm-evaluation-harness's arc_challenge task runs on them offline."""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import tasks


def _rows(rng: random.Random, n: int, prefix: str) -> list[dict]:
    rows: list[dict] = []
    while len(rows) < n:
        task = tasks.sample(rng)
        other = tasks.sample(rng).answer
        options = list(dict.fromkeys([task.answer, task.wrong, other]))
        if len(options) < 2:
            continue
        rng.shuffle(options)
        labels = "ABCD"[:len(options)]
        rows.append({"id": f"{prefix}-{len(rows)}", "question": task.instruction,
                     "choices": {"text": options, "label": list(labels)},
                     "answerKey": labels[options.index(task.answer)]})
    return rows


def build_tiny_arc(folder: Path) -> None:
    rng = random.Random(4)
    for split, n in (("train", 50), ("test", 100)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(rng, n, split)))
    (folder / "README.md").write_text("Multiple-choice questions on the embedded tasks in ARC's schema.\n")
