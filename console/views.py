"""Pages of the console app: the dashboard, the audit trail, and the inventory's refresh buttons.

The refresh buttons start jobs, and hosts never import jobs: their views live here, where the two meet
(console/urls.py routes them under the inventory's URLs and names).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hosts.inventory import reading
from hosts.inventory.models import KnownGuardian, Mark, VirtualMachine
from hosts.models import Host
from jobs.inventory import INVENTORY_REFRESH
from jobs.services import create_job

from .audit import AuditFilterForm, csv_rows, describe, unsaid_detail
from .models import AuditEvent
from .params import page_of
from .roles import Forbidden, SecondFactorRequired, lowest_role_with, require
from .two_factor import send_to_verify

DASHBOARD_HOSTS = 25  # hosts that need attention first; the host list has them all
RISKS_PER_TILE = 5  # the first risks of each kind; its page has them all
AUDIT_PER_PAGE = 100


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
    """Counts of each risk with the first few, linking to all of them; the hosts that need attention first, with
    their last refresh, health and number of risks. The same queries whatever the size of the lab."""
    groups = reading.risk_groups(first=RISKS_PER_TILE)
    grid = reading.risk_grid()
    per_host = {host_id: sum(kinds.values()) for host_id, kinds in grid.items()}
    hosts = list(Host.objects.select_related("inventory").order_by("name"))
    shown = attention_first(hosts, per_host)
    context = {
        "risk_groups": groups,
        "risk_total": sum(group.count for group in groups),
        "hosts": [(host, getattr(host, "inventory", None), per_host.get(host.pk, 0)) for host in shown],
        "grid": [(host, [grid.get(host.pk, {}).get(kind.code, 0) for kind in reading.RISK_KINDS]) for host in shown],
        "risk_kinds": reading.RISK_KINDS,
        "map_hosts": shown,
        "hidden_hosts": len(hosts) - len(shown),
        "marked_count": Mark.objects.count(),
        "host_count": len(hosts),
        "vm_count": VirtualMachine.objects.count(),
        "guardian_count": KnownGuardian.objects.count(),
        "coverage": reading.escrow_coverage(),
        "escrow_policy": settings.ESCROW_POLICY,
        "escrow_policy_seconds": int(settings.ESCROW_POLICY_SECONDS),
    }
    return render(request, "console/dashboard.html", context)


def attention_first(hosts: list[Host], risks: dict[int, int]) -> list[Host]:
    """The dashboard's hosts: unhealthy ones first, then those with the most risks, then by name; a screenful."""

    def order(host: Host) -> tuple[int, int, str]:
        state = getattr(host, "inventory", None)
        health = state.health if state is not None else "never"
        return (0 if health != "ok" else 1, -risks.get(host.pk, 0), host.name.lower())

    return sorted(hosts, key=order)[:DASHBOARD_HOSTS]


@require("view_console")
def audit_trail(request: HttpRequest) -> HttpResponse:
    """The audit trail, newest first, as sentences: filtered, searched and paged by the database."""
    filters = AuditFilterForm(request.GET or None)
    listing = page_of(request, filters.apply(AuditEvent.objects.all()), AUDIT_PER_PAGE)
    events = [(event, describe(event), unsaid_detail(event)) for event in listing]
    context = {"listing": listing, "events": events, "filters": filters, "query": listing.query}
    return render(request, "console/audit.html", context)


@require_POST
@require("manage_users")
def audit_csv(request: HttpRequest) -> HttpResponse:
    """The audit trail filtered as the query string says, as CSV, for admins; the export itself is audited (with its
    filters), so it is a POST."""
    filters = AuditFilterForm(request.GET or None)
    shown = {key: value for key, value in request.GET.items() if value and key in filters.fields}
    exported = AuditEvent.record(request.user, "audit.export", None, filters=shown)
    events = filters.apply(AuditEvent.objects.exclude(pk=exported.pk)).iterator(chunk_size=2000)
    response = StreamingHttpResponse(csv_rows(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit-trail.csv"'
    return response  # type: ignore[return-value]  # streamed: HttpResponseBase, served the same way


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
        messages.info(request, _("No host is registered yet: nothing to refresh."))
        return redirect("dashboard")
    return _refresh_job(request, hosts)


def _refresh_job(request: HttpRequest, hosts: list[Host]) -> HttpResponse:
    job = create_job(request.user, kind=INVENTORY_REFRESH, hosts=hosts, vms=[], params={})
    return redirect("jobs:detail", pk=job.pk)
