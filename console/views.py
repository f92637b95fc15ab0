"""Pages of the console app: the dashboard and the audit trail."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import AuditEvent
from .roles import Forbidden, lowest_role_with, require


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The one 403 page (handler403): every PermissionDenied ends here, and a Forbidden names what is missing."""
    codename = exception.codename if isinstance(exception, Forbidden) else ""
    context = {"needed": codename, "needed_role": lowest_role_with(codename) if codename else ""}
    return render(request, "403.html", context, status=403)


@require("view_console")
def dashboard(request: HttpRequest) -> HttpResponse:
    """Counts of each risk, linking to the affected objects; every host with its last refresh and health."""
    from hosts.inventory.analysis import Inventory, risk_counts

    inventory = Inventory()
    risks = inventory.risks()
    hosts = [(host, inventory.states.get(host.pk)) for host in inventory.hosts]
    context = {
        "risk_groups": risk_counts(risks),
        "risk_total": len(risks),
        "hosts": hosts,
        "vm_count": len(inventory.vms),
        "guardian_count": len(inventory.identities),
    }
    return render(request, "console/dashboard.html", context)


@require("view_console")
def audit_trail(request: HttpRequest) -> HttpResponse:
    events = AuditEvent.objects.select_related("user")
    action = request.GET.get("action", "")
    if action:
        events = events.filter(action=action)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "console/audit.html", {"page": page, "action": action})
