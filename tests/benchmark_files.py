"""Where the tests find the published benchmark files.

DATA is tests/data: small real slices of MT-Bench, AlpacaEval and Arena-Hard v0.1 kept in the repository
(tests/data/SOURCES.md gives each file's origin and licence), so every checkout runs the same tests. FULL is the
full-size copy in ../shared/data when the checkout has one beside it, else the same slices: the few replays that
read FULL check the published figures on the full files and their own arithmetic on the slices.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FULL = SHARED if (SHARED / "arena_hard_v0.1" / "question.jsonl").is_file() else DATA
IS_FULL = FULL == SHARED

# What the slices hold (tests/data/slice_benchmarks.py): the counts tests assert on.
ARENA_QUESTIONS = 500 if IS_FULL else 100
ALPACA_INSTRUCTIONS = 100  # text_davinci_003_outputs.json in tests/data (805 in the full file)
