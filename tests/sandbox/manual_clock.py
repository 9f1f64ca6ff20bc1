"""A monotonic clock for the sandbox's gateway that moves only when a test moves it."""

from __future__ import annotations


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
