"""Template filters of the host pages: humane relative times ("just now", "3 minutes ago", "yesterday"), and values
quoted as PowerShell literals in the commands the Prepare-a-host page suggests."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from hosts.remoting.operation import quote

register = template.Library()

# Under this, a moment is "just now": a page seen seconds after a test or refresh must not say "0 minutes ago".
JUST_NOW = timedelta(seconds=45)


def _count(number: int, unit: str, one: str) -> str:
    return f"{one} {unit} ago" if number == 1 else f"{number} {unit}s ago"


def humane_ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, as a person would say it; a week or more becomes the date."""
    if moment is None:
        return "never"
    now = now or timezone.now()
    elapsed = now - moment
    if elapsed < JUST_NOW:  # a clock slightly ahead (negative elapsed) is "just now" too
        return "just now"
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 60:
        return _count(max(minutes, 1), "minute", "a")
    hours = minutes // 60
    if hours < 24:
        return _count(hours, "hour", "an")
    days = hours // 24
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    return "on " + timezone.localtime(moment).strftime("%Y-%m-%d")


@register.filter
def ago(moment: datetime | None) -> str:
    """`{{ when|ago }}`: humane_ago for templates."""
    return humane_ago(moment)


@register.filter
def ps_literal(value: object) -> str:
    """A value as a PowerShell literal, quoted as Show PowerShell quotes (for the commands a page suggests)."""
    return quote(str(value))
