"""Template filters of the host pages: humane relative times ("just now", "3 minutes ago", "yesterday"), and values
quoted as PowerShell literals in the commands the Prepare-a-host page suggests."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hosts.remoting.operation import quote

register = template.Library()

# Under this, a moment is "just now": a page seen seconds after a test or refresh must not say "0 minutes ago".
JUST_NOW = timedelta(seconds=45)
# From this age on, humane_ago gives the date instead of a distance ("on 2026-11-21").
AS_A_DATE = timedelta(days=7)


def is_a_date(moment: datetime | None, now: datetime | None = None) -> bool:
    """Whether humane_ago(moment) says a date rather than how long ago (in any language: callers that show the date
    themselves then leave it out)."""
    return moment is not None and (now or timezone.now()) - moment >= AS_A_DATE


def humane_ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, as a person would say it, in the active language; a week or more becomes the date."""
    if moment is None:
        return _("never")
    now = now or timezone.now()
    if is_a_date(moment, now):
        return _("on %(date)s") % {"date": date_format(timezone.localtime(moment), "DATE_FORMAT")}
    elapsed = now - moment
    if elapsed < JUST_NOW:  # a clock slightly ahead (negative elapsed) is "just now" too
        return _("just now")
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 60:
        count = max(minutes, 1)
        return ngettext("a minute ago", "%(count)d minutes ago", count) % {"count": count}
    hours = minutes // 60
    if hours < 24:
        return ngettext("an hour ago", "%(count)d hours ago", hours) % {"count": hours}
    days = hours // 24
    if days == 1:
        return _("yesterday")
    return ngettext("a day ago", "%(count)d days ago", days) % {"count": days}


@register.filter
def ago(moment: datetime | None) -> str:
    """`{{ when|ago }}`: humane_ago for templates."""
    return humane_ago(moment)


@register.filter
def ps_literal(value: object) -> str:
    """A value as a PowerShell literal, quoted as Show PowerShell quotes (for the commands a page suggests)."""
    return quote(str(value))
