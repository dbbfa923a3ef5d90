"""Rebuild the benchmark slices in this folder from full copies of the published files.

    python tests/data/slice_benchmarks.py /path/to/data

/path/to/data holds the files as published (mt_bench/, alpaca_eval/, arena_hard_v0.1/; their origins are in
SOURCES.md here). Small files are copied whole; large ones keep their first rows, unchanged, in the published order.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
WHOLE = [
    "mt_bench/question.jsonl",
    "mt_bench/judge_prompts.jsonl",
    "mt_bench/reference_answer_gpt-4.jsonl",
    "alpaca_eval/alpaca_eval_gpt4_judge_prompt.txt",
    "alpaca_eval/alpaca_eval_gpt4_configs.yaml",
    "arena_hard_v0.1/arena-hard-v0.1.yaml",
    "arena_hard_v0.1/judge_system_prompt.txt",
]
FIRST = {  # JSON lists: the first N entries
    "alpaca_eval/text_davinci_003_outputs.json": 100,
    "alpaca_eval/alpaca_eval_1_baseline_text_davinci_003.json": 100,
    "alpaca_eval/alpaca_eval_2_baseline_gpt4_1106_preview.json": 40,
    "alpaca_eval/falcon-7b-instruct_outputs.json": 40,
}
ARENA_QUESTIONS = 100  # the first 100 Arena-Hard v0.1 prompts, and the baseline's answers to exactly those


def main(source: Path) -> None:
    for name in WHOLE:
        shutil.copyfile(source / name, HERE / name)
    for name, n in FIRST.items():
        rows = json.loads((source / name).read_text())[:n]
        (HERE / name).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    lines = (source / "arena_hard_v0.1/question.jsonl").read_text().splitlines(keepends=True)[:ARENA_QUESTIONS]
    (HERE / "arena_hard_v0.1/question.jsonl").write_text("".join(lines))
    uids = {json.loads(line)["uid"] for line in lines}
    answers = (source / "arena_hard_v0.1/gpt-4-0314.jsonl").read_text().splitlines(keepends=True)
    kept = [line for line in answers if json.loads(line)["uid"] in uids]
    assert len(kept) == ARENA_QUESTIONS, len(kept)
    (HERE / "arena_hard_v0.1/gpt-4-0314.jsonl").write_text("".join(kept))


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
