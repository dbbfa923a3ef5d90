"""One error type for everything a user can fix, printed as a short paragraph instead of a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class ZephyrError(Exception):
    """A problem the user can fix: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem}\n  fix: {self.fix}"


def did_you_mean(word: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """'did you mean a or b?' for the names close to ``word``, or '' when none is."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=3, cutoff=cutoff)
    return f"did you mean {' or '.join(close)}?" if close else ""


def unknown_key(where: str, key: str, known: Iterable[str]) -> ZephyrError:
    """The error for a key that ``where`` does not have: a did-you-mean, else the keys it has."""
    known = list(known)
    return ZephyrError(f"unknown key `{where}.{key}`", did_you_mean(key, known) or f"known keys: {', '.join(known)}")
