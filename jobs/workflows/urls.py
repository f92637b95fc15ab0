"""URLs of the workflows' preflight pages: every workflow module may define `urlpatterns`; they are gathered here."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from . import __path__ as package_path


def gather() -> list[Any]:
    patterns: list[Any] = []
    for info in pkgutil.iter_modules(package_path):
        if info.name.startswith("_") or info.name == "urls":
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        patterns += getattr(module, "urlpatterns", [])
    return patterns


urlpatterns = gather()
