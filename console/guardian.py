"""The page of one guardian identity: its names on each host, where its private keys are, its escrow, the VMs sealed
to it, and the jobs that touched it. Here, not in the inventory, because it lists jobs (hosts never import jobs).
A constant number of queries whatever the guardian's reach (tests/console/test_page_queries.py)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory import marks, reading
from hosts.inventory.models import KeyHolding, VirtualMachine
from jobs.models import Job

from .params import page_of
from .roles import require

VMS_PER_PAGE = 50
JOBS_SHOWN = 20
# The job kinds that change a guardian or what a VM sealed to one needs: what "touched it" means on its page.
GUARDIAN_KINDS = (
    "escrow_guardian",
    "escrow_host",
    "import_guardian",
    "reset_guardian",
    "undo_guardian_reset",
    "restore_vm",
    "rescue_vm",
    "migrate_vm",
    "vtpm",
)


@require("view_console")
def guardian_detail(request: HttpRequest, key: str) -> HttpResponse:
    guardian = reading.guardian_by_key(key)
    if guardian is None:
        raise Http404("No guardian with this pair of thumbprints.")
    holdings = list(KeyHolding.objects.filter(guardian=guardian).select_related("host").order_by("host__name"))
    sealed = reading.vms_matching(guardian=guardian)
    vm_hosts = VirtualMachine.objects.filter(key_protector_entries__guardian=guardian).values("host")
    touched = Job.objects.filter(kind__in=GUARDIAN_KINDS).filter(
        hosts__in=[h.host_id for h in holdings]
    ) | Job.objects.filter(kind__in=GUARDIAN_KINDS, hosts__in=vm_hosts)
    (row,) = reading.guardian_rows([guardian], first_vms=0)
    context = {
        "guardian": guardian,
        "row": row,
        "holdings": holdings,
        "vms": page_of(request, sealed, VMS_PER_PAGE, param="vms"),
        "jobs": list(touched.distinct().order_by("-created_at")[:JOBS_SHOWN]),
        "mark": marks.mark_of_guardian(guardian),
    }
    return render(request, "console/guardian.html", context)
