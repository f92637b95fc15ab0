"""Template tags of the jobs app: `{% load jobs_tags %}{% recent_jobs 8 %}` puts live recent jobs on any page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from jobs.models import Job, spoken_duration

register = template.Library()


@register.inclusion_tag("jobs/_recent.html")
def recent_jobs(limit: int = 8) -> dict[str, Any]:
    return {"jobs": Job.objects.order_by("-created_at", "-id")[:limit]}


@register.filter
def spoken(duration: timedelta | None) -> str:
    """`{{ step.duration|spoken }}`: "45 s", "2 min 5 s"."""
    return spoken_duration(duration) if duration is not None else ""
