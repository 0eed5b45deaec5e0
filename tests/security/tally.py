"""Counts the security battery reports at the end of the run (tests/conftest.py prints them):
cases run, denials, 5xx answers. Tests add to them; the totals are per pytest process."""

from __future__ import annotations

from collections import Counter

counts: Counter[str] = Counter()


def add(name: str, n: int = 1) -> None:
    counts[name] += n
