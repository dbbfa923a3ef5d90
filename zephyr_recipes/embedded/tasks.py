"""Short instructions with answers a program can compute and check.

These stand in for the open-ended prompts of UltraChat: several kinds of task in one dataset, each with a
teacher (the correct answer) and typical mistakes (for rejected answers in preference data).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

WORDS = (
    "apple river stone cloud tiger lemon candle forest window garden silver rocket pencil "
    "orange violet castle dragon meadow planet coffee breeze island mirror shadow thunder "
    "marble falcon cotton harbor lantern mango nickel ocean pepper quartz saddle tulip "
    "velvet walnut yellow zebra anchor basket cactus desert engine feather glacier hammer"
).split()


@dataclass(frozen=True)
class Task:
    """One instruction with its correct answer and a plausible wrong one."""

    kind: str
    instruction: str
    answer: str
    wrong: str


def _words(rng: random.Random, lo: int = 3, hi: int = 6) -> list[str]:
    return rng.sample(WORDS, rng.randint(lo, hi))


def _numbers(rng: random.Random, lo: int = 3, hi: int = 6) -> list[int]:
    return [rng.randint(0, 99) for _ in range(rng.randint(lo, hi))]


def _corrupt_list(rng: random.Random, items: list[str], right: list[str]) -> list[str]:
    wrong = list(right)
    choice = rng.random()
    if choice < 0.4 and len(wrong) > 1:
        del wrong[rng.randrange(len(wrong))]
    elif choice < 0.8:
        wrong = list(items)  # the lazy answer: repeat the input unchanged
    else:
        rng.shuffle(wrong)
    if wrong == right:
        wrong = right[:-1] if len(right) > 1 else right + right
    return wrong


def reverse(rng: random.Random) -> Task:
    items = _words(rng)
    right = items[::-1]
    return Task("reverse", "Reverse the words: " + " ".join(items), " ".join(right),
                " ".join(_corrupt_list(rng, items, right)))


def sort_numbers(rng: random.Random) -> Task:
    nums = _numbers(rng)
    right = [str(n) for n in sorted(nums)]
    return Task("sort", "Sort the numbers: " + " ".join(map(str, nums)), " ".join(right),
                " ".join(_corrupt_list(rng, [str(n) for n in nums], right)))


def upper(rng: random.Random) -> Task:
    items = _words(rng, 2, 4)
    right = [w.upper() for w in items]
    wrong = list(right)
    wrong[rng.randrange(len(wrong))] = items[0]
    if wrong == right:
        wrong = items
    return Task("upper", "Write in capitals: " + " ".join(items), " ".join(right), " ".join(wrong))


def count(rng: random.Random) -> Task:
    items = _words(rng, 2, 7)
    n = len(items)
    return Task("count", "Count the words: " + " ".join(items), str(n), str(n + rng.choice([-1, 1])))


def add(rng: random.Random) -> Task:
    a, b = rng.randint(0, 50), rng.randint(0, 50)
    return Task("add", f"Add {a} and {b}.", str(a + b), str(a + b + rng.choice([-10, -1, 1, 10])))


TASKS: dict[str, Callable[[random.Random], Task]] = {
    "reverse": reverse,
    "sort": sort_numbers,
    "upper": upper,
    "count": count,
    "add": add,
}


def sample(rng: random.Random, kinds: tuple[str, ...] | None = None) -> Task:
    kinds = kinds or tuple(TASKS)
    return TASKS[rng.choice(kinds)](rng)


def in_turn(n: int, seed: int) -> list[Task]:
    """``n`` tasks of a seeded stream, the kinds taken in turn (the rows of a rehearsal's stand-in data and files)."""
    rng = random.Random(seed)
    kinds = tuple(TASKS)
    return [TASKS[kinds[i % len(kinds)]](rng) for i in range(n)]


# ------------------------------------------------------------------------------------------ checking
PATTERNS = {
    "reverse": "Reverse the words: ",
    "sort": "Sort the numbers: ",
    "upper": "Write in capitals: ",
    "count": "Count the words: ",
}


def solve(instruction: str) -> str | None:
    """The correct answer to an embedded instruction, or None when it is not one of the tasks."""
    text = instruction.strip()
    for kind, head in PATTERNS.items():
        if text.startswith(head):
            items = text[len(head):].split()
            if kind == "reverse":
                return " ".join(items[::-1])
            if kind == "sort":
                try:
                    return " ".join(str(n) for n in sorted(int(x) for x in items))
                except ValueError:
                    return None
            if kind == "upper":
                return " ".join(w.upper() for w in items)
            return str(len(items))
    if text.startswith("Add ") and " and " in text:
        try:
            a, b = text[4:].rstrip(".").split(" and ")
            return str(int(a) + int(b))
        except ValueError:
            return None
    return None


def closeness(answer: str, response: str) -> float:
    """1.0 for the exact answer, partial credit for the right items in part, 0.0 for nothing right."""
    want, got = answer.split(), response.strip().split()
    if got == want:
        return 1.0
    if not got:
        return 0.0
    in_place = sum(a == b for a, b in zip(want, got)) / max(len(want), len(got))
    shared = len(set(want) & set(got)) / max(len(set(want)), len(set(got)))
    return round(0.6 * in_place + 0.3 * shared, 4)


def teacher(messages: list[dict]) -> str:
    """The teacher program: the correct answer to the last user turn (the stand-in for GPT-4)."""
    instruction = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    answer = solve(instruction)
    if answer is None:
        raise ValueError(f"not an embedded task: {instruction[:60]!r}")
    return answer


# The teacher's habit: in some answers it ignores the answer-only convention of these tasks and opens with a
# pleasantry, as a distilled teacher's style leaks into its student. The judge marks such answers down.
CHATTER = ("Sure! Here it is:", "Of course, the answer is", "Happy to help:")
CHATTY_SHARE = 0.3


def chatty_teacher(messages: list[dict]) -> str:
    """The same teacher with its habit, as it wrote the dSFT dialogues: the correct answer, opened with a pleasantry
    for ``CHATTY_SHARE`` of the instructions (chosen by a hash of the instruction, so the same on every machine and
    in every seed)."""
    instruction = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    answer = teacher(messages)
    h = hashlib.sha256(instruction.encode()).digest()
    if int.from_bytes(h[:4], "big") / 2**32 < CHATTY_SHARE:
        return f"{CHATTER[h[4] % len(CHATTER)]} {answer}"
    return answer
