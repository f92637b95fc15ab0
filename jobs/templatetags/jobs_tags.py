"""Template tags of the jobs app: `{% load jobs_tags %}{% recent_jobs 8 %}` puts live recent jobs on any page."""

from __future__ import annotations

from typing import Any

from django import template

from jobs.models import Job

register = template.Library()


@register.inclusion_tag("jobs/_recent.html")
def recent_jobs(limit: int = 8) -> dict[str, Any]:
    return {"jobs": Job.objects.order_by("-created_at", "-id")[:limit]}
