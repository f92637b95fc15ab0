"""Reading values people type or send in URLs: one place, so every page refuses the same bad input the same way."""

from __future__ import annotations

from typing import Any


def parse_id(raw: Any) -> int | None:
    """A database id from a query string or form: ASCII digits only ("²" and "٣" are digits to str.isdigit but not
    to int()), else None."""
    if not isinstance(raw, str) or not raw or len(raw) > 18 or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)
