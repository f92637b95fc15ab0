"""Pages of the inventory: guardian identities across hosts, VMs with "can it start here?", and the refresh buttons
(which start an inventory refresh job)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console.roles import require
from hosts.models import Host
from jobs.inventory import INVENTORY_REFRESH
from jobs.services import create_job

from . import actions
from .analysis import Inventory
from .models import VirtualMachine


@require("run_jobs")
@require_POST
def refresh(request: HttpRequest, pk: int) -> HttpResponse:
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


@require("view_console")
def guardian_list(request: HttpRequest) -> HttpResponse:
    inventory = Inventory()
    identities = sorted(inventory.identities.values(), key=lambda i: (i.display_name.lower(), i.signing))
    rows = [(identity, inventory.identity_actions(identity)) for identity in identities]
    return render(request, "inventory/guardians.html", {"identities": rows})


@require("view_console")
def vm_list(request: HttpRequest) -> HttpResponse:
    inventory = Inventory()
    risks_by_vm: dict[str, list[str]] = {}
    for risk in inventory.risks():
        if risk.url.startswith("/vms/"):
            risks_by_vm.setdefault(risk.url, []).append(risk.title)
    rows = [(vm, risks_by_vm.get(f"/vms/{vm.pk}/", []), inventory.startable_anywhere(vm)) for vm in inventory.vms]
    return render(request, "inventory/vms.html", {"rows": rows})


@require("view_console")
def vm_detail(request: HttpRequest, pk: int) -> HttpResponse:
    inventory = Inventory()
    vm = next((v for v in inventory.vms if v.pk == pk), None)
    if vm is None:
        if not VirtualMachine.objects.filter(pk=pk).exists():
            raise Http404("No such VM in the inventory.")
        vm = get_object_or_404(VirtualMachine.objects.select_related("host"), pk=pk)
    guardians = [(pair, inventory.identity(pair), pair == vm.owner_pair) for pair in vm.guardian_pairs]
    entries = [identity.vault_entry for _pair, identity, _owner in guardians if identity and identity.vault_entry]
    context = {
        "vm": vm,
        "answers": [
            (host, ok, reason, [] if ok or not entries else actions.import_guardian(entries[0], host))
            for host, ok, reason in inventory.start_answers(vm)
        ],
        "guardians": guardians,
        "risks": [r for r in inventory.risks() if r.url == f"/vms/{vm.pk}/"],
        "state": inventory.states.get(vm.host_id),
        "owner_identity": inventory.identity(vm.owner_pair) if vm.owner_pair else None,
        "vault_entry": entries[0] if entries else None,
        "vm_actions": inventory.vm_actions(vm),
    }
    return render(request, "inventory/vm_detail.html", context)
