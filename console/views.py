"""Pages of the console app: the dashboard and the audit trail."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import AuditEvent
from .roles import require


@require("view_console")
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "console/dashboard.html", {})


@require("view_console")
def audit_trail(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.select_related("user")
    action = request.GET.get("action", "")
    if action:
        events = events.filter(action=action)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "console/audit.html", {"page": page, "action": action})
