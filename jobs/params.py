"""What a job may carry in its parameters and results: every viewer reads them, so never a secret or raw bytes."""

from __future__ import annotations

import json
from typing import Any

from console.models import SECRET_WORDS


def check_no_secrets(params: dict[str, Any], path: str = "") -> None:
    """Job parameters and results are shown to every viewer: refuse anything that looks like a secret."""
    for key, value in params.items():
        where = f"{path}{key}"
        if any(word in str(key).lower() for word in SECRET_WORDS):
            raise ValueError(f"job data must not carry secrets (key {where!r})")
        if isinstance(value, dict):
            check_no_secrets(value, f"{where}.")
        elif isinstance(value, bytes | bytearray):
            raise ValueError(f"job data must not carry binary data (key {where!r})")
    json.dumps(params)  # raises TypeError for anything that would not survive the JSON column
