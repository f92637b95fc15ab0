"""Counts as sentences say them: "no pair", "1 pair", "3 pairs" (never "0 pair(s)")."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str = "") -> str:
    if count == 0:
        return f"no {noun}"
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
