"""Template helpers shared by every app's pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django import template
from django.urls import Resolver404, resolve

from console.roles import can
from jobs.kinds import get_kind

register = template.Library()


def declared_permission(view: Callable[..., Any]) -> str | None:
    """The permission a view declares: console.roles.require's codename, or the permission of the job kind of a
    workflow page (jobs.workflows.pages.kind_page), found along its __wrapped__ chain; None if it declares none."""
    current: Any = view
    while current is not None:
        if hasattr(current, "required_permission"):
            return str(current.required_permission)
        if hasattr(current, "required_kind"):
            return get_kind(current.required_kind).permission
        current = getattr(current, "__wrapped__", None)
    return None


@register.filter
def may_open(path: str, user: Any) -> bool:
    """Would this page of the console let `user` in? For buttons: one the user cannot use is not shown. A path that
    is no page of ours is left to answer for itself (404)."""
    try:
        match = resolve(urlsplit(str(path)).path)
    except Resolver404:
        return True
    codename = declared_permission(match.func)
    return codename is None or can(user, codename)


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
