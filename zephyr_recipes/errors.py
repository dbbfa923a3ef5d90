"""One error type for everything a user can fix, printed as a short paragraph instead of a traceback."""

from __future__ import annotations


class ZephyrError(Exception):
    """A problem the user can fix: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem}\n  fix: {self.fix}"
