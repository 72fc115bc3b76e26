"""Test functions that fail on purpose."""

from __future__ import annotations


class Flaky:
    """A function that fails ``failures`` times, then echoes upper-cased."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, data: bytes) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"boom {self.calls}")
        return data.upper()
