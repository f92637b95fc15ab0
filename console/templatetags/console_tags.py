"""Template helpers shared by every app's pages."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


def plain(value: Any) -> str:
    """A JSON value as a person reads it: lists joined, nested objects as key=value, booleans as yes/no."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(plain(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}={plain(item)}" for key, item in value.items())
    return str(value)


@register.inclusion_tag("console/_detail.html")
def detail(data: dict[str, Any] | None) -> dict[str, Any]:
    """Render a JSON object (audit detail, job parameters or results) as labelled lines."""
    items = [(key.replace("_", " "), plain(value)) for key, value in (data or {}).items()]
    return {"items": items}
