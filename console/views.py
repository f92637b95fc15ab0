"""Pages of the console app: the dashboard, the audit trail, and the inventory's refresh buttons.

The refresh buttons start jobs, and hosts never import jobs: their views live here, where the two meet
(console/urls.py routes them under the inventory's URLs and names).
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hosts.inventory.analysis import Inventory, risk_counts
from hosts.models import Host
from jobs.inventory import INVENTORY_REFRESH
from jobs.services import create_job

from .models import AuditEvent
from .roles import Forbidden, SecondFactorRequired, lowest_role_with, require
from .two_factor import send_to_verify


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The one 403 page (handler403): every PermissionDenied ends here, and a Forbidden names what is missing. Admin
    work that needs the second factor first sends the user to pass it, then back."""
    if isinstance(exception, SecondFactorRequired):
        return send_to_verify(request, exception.enrolled)
    codename = exception.codename if isinstance(exception, Forbidden) else ""
    context = {"needed": codename, "needed_role": lowest_role_with(codename) if codename else ""}
    return render(request, "403.html", context, status=403)


@require("view_console")
def dashboard(request: HttpRequest) -> HttpResponse:
    """Counts of each risk, linking to the affected objects; every host with its last refresh and health."""
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


@require("run_jobs")
@require_POST
def refresh_host(request: HttpRequest, pk: int) -> HttpResponse:
    """Refresh one host's inventory in a job (a slow host never holds up a web request); its log shows the outcome."""
    host = get_object_or_404(Host, pk=pk)
    return _refresh_job(request, [host])


@require("run_jobs")
@require_POST
def refresh_all(request: HttpRequest) -> HttpResponse:
    """Refresh every registered host's inventory, in one job."""
    hosts = list(Host.objects.order_by("name"))
    if not hosts:
        messages.info(request, "No host is registered yet: nothing to refresh.")
        return redirect("dashboard")
    return _refresh_job(request, hosts)


def _refresh_job(request: HttpRequest, hosts: list[Host]) -> HttpResponse:
    job = create_job(request.user, kind=INVENTORY_REFRESH, hosts=hosts, vms=[], params={})
    return redirect("jobs:detail", pk=job.pk)
