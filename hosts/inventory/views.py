"""Pages of the inventory: guardian identities across hosts, and VMs with "can it start here?".

Its refresh buttons start jobs, so their views are console's (console/views.py): hosts never import jobs."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from console.roles import require

from . import actions
from .analysis import Inventory
from .models import VirtualMachine


@require("view_console")
def guardian_list(request: HttpRequest) -> HttpResponse:
    inventory = Inventory()
    identities = sorted(inventory.identities.values(), key=lambda i: (i.display_name.lower(), i.signing))
    rows = [(identity, inventory.identity_actions(identity)) for identity in identities]
    return render(request, "inventory/guardians.html", {"identities": rows})


@require("view_console")
def vm_list(request: HttpRequest) -> HttpResponse:
    inventory = Inventory()
    risks_by_vm: dict[int, list[str]] = {}
    for risk in inventory.risks():
        if risk.vm is not None:
            risks_by_vm.setdefault(risk.vm.pk, []).append(risk.title)
    rows = [(vm, risks_by_vm.get(vm.pk, []), inventory.startable_anywhere(vm)) for vm in inventory.vms]
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
        "risks": [r for r in inventory.risks() if r.vm is not None and r.vm.pk == vm.pk],
        "state": inventory.states.get(vm.host_id),
        "owner_identity": inventory.identity(vm.owner_pair) if vm.owner_pair else None,
        "vault_entry": entries[0] if entries else None,
        "vm_actions": inventory.vm_actions(vm),
    }
    return render(request, "inventory/vm_detail.html", context)
