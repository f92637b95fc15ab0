"""Template helpers shared by every app's pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django import template
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from console import roles
from console.audit import detail_words
from console.roles import can
from hosts.templatetags.hosts_tags import humane_ago, is_a_date
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
        return _("yes") if value else _("no")
    if isinstance(value, list | tuple):
        return _(", ").join(plain(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}={plain(item)}" for key, item in value.items())
    return str(value)


@register.filter
def role_title(role: str) -> str:
    """`{{ role|role_title }}`: a role code ("admin") in the reader's language."""
    return roles.role_title(str(role))


@register.inclusion_tag("console/_detail.html")
def detail(data: dict[str, Any] | None) -> dict[str, Any]:
    """Render a JSON object (audit detail, job parameters or results) as labelled lines."""
    items = [(detail_words(key), plain(value)) for key, value in (data or {}).items()]
    return {"items": items}


@register.filter
def when(moment: datetime | None, style: str = "") -> SafeString | str:
    """`{{ at|when }}`: a time in the reader's time zone (console/preferences.py) with how long ago, and UTC on hover.
    `{{ at|when:"date" }}` the date only; `{{ at|when:"exact" }}` without "… ago"."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    utc = moment.astimezone(UTC)
    if style == "date":
        return format_html(
            '<time datetime="{}" title="{} UTC">{}</time>',
            utc.isoformat(),
            date_format(utc, "SHORT_DATETIME_FORMAT"),
            date_format(local, "DATE_FORMAT"),
        )
    shown = f"{date_format(local, 'DATETIME_FORMAT')} {local.tzname()}"
    exact = format_html(
        '<time datetime="{}" title="{} UTC">{}</time>', utc.isoformat(), date_format(utc, "DATETIME_FORMAT"), shown
    )
    if style == "exact":
        return exact
    if is_a_date(moment):  # a week or more ago: the date is already there (asked, not read from the words)
        return exact
    return format_html('{} <span class="muted ago">{}</span>', exact, _("(%(ago)s)") % {"ago": humane_ago(moment)})


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, href: str, label: str) -> SafeString:
    """A link of the top bar, marked as the current page (aria-current, highlighted) for its section's pages."""
    request = context.get("request")
    path = getattr(request, "path", "")
    current = path == href if href == "/" else path.startswith(href)
    if current:
        return format_html('<a href="{}" aria-current="page" class="current">{}</a>', href, label)
    return format_html('<a href="{}">{}</a>', href, label)
