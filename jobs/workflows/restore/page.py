"""The restore page: choose a host and a VM that cannot start, see where its keys can come from, start the job."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse

from hosts.inventory.analysis import Inventory
from hosts.inventory.models import VirtualMachine
from hosts.models import Host
from hosts.remoting.keyprotector import GuardianRef
from hosts.vault.services import thumbprint_pairs
from jobs.kinds import JobFailed

from ..import_guardian.plan import import_notes
from ..pages import holder_links, host_from, kind_page, preflight_page, start_job
from .plan import pair_for, restore_script


def vm_choices(host: Host | None) -> list[tuple[str, str]]:
    """The host's VMs with a key protector, those that cannot start there marked (they are the ones to restore)."""
    if host is None:
        return []
    rows = list(VirtualMachine.objects.filter(host=host, has_key_protector=True).order_by("name"))
    inventory = Inventory() if rows else None
    choices = []
    for vm in rows:
        starts = inventory.can_start(vm, host)[0] if inventory else True
        note = "starts here" if starts else "does not start here"
        choices.append((vm.name, f"{vm.name} ({vm.state or 'state unknown'}, {note})"))
    return choices


def where_to_get(host: Host, vm_name: str, guardians: list[GuardianRef]) -> list[tuple[str, str]]:
    """Buttons for a VM whose guardian is not in the vault: upload a backup (then come back), or escrow it from a
    registered host whose last inventory shows the private keys."""

    back = "/jobs/new/restore/?" + urlencode({"host": host.pk, "vm": vm_name})
    links = [("Upload the PFX pair from a backup…", "/vault/upload/?" + urlencode({"next": back}))]
    for g in guardians:
        links += holder_links(g.signing, g.encryption)
    return links


def inventoried_guardians(host: Host, vm_name: str) -> list[GuardianRef]:
    vm = VirtualMachine.objects.filter(host=host, name=vm_name).first()
    if vm is None:
        return []
    pairs = thumbprint_pairs(vm.kp_owner_thumbprints) + thumbprint_pairs(vm.kp_guardian_thumbprints)
    return [GuardianRef(sign, enc) for sign, enc in dict.fromkeys(pairs)]


RESTORE_RISKS = [
    "If none of the VM's guardians is in the vault, nothing is changed: the job says which thumbprints to look for.",
    "A vault entry that fails its integrity check is not used.",
    "If the VM still does not start, the guardian stays installed (harmless) and the job says so.",
]


@kind_page("restore_vm")
def restore_preflight(request: HttpRequest) -> HttpResponse:
    host = host_from(request)
    vm_name = request.POST.get("vm") or request.GET.get("vm") or ""
    base: dict[str, Any] = {"title": "Restore a VM after reinstall", "host": host, "chosen": vm_name}
    base["intro"] = (
        'For a VM that will not start ("the key protector could not be unwrapped") because the guardian it is '
        "sealed to is gone from its host, typically after a reinstall: brings that guardian back from the vault and "
        "starts the VM."
    )
    base |= {"choices": vm_choices(host), "choices_label": "VM", "choices_name": "vm", "submit_label": "Restore"}
    base["keep"] = []
    if host is None or not vm_name:
        return preflight_page(request, **base, problem="Choose the host and the VM that does not start.")
    if request.method == "POST":
        return start_job(request, "restore_vm", [host], [vm_name])
    guardians = inventoried_guardians(host, vm_name)
    pair = pair_for(guardians)
    if pair is None:
        listed = ", ".join(f"{g.signing} / {g.encryption}" for g in guardians) or "(not inventoried yet)"
        problem = (
            f"The last inventory shows VM '{vm_name}' sealed to {listed}; none of these is in the vault. Upload the "
            "pair from a backup or escrow it from a host that has it (the job would stop without changing anything)."
        )
        return preflight_page(request, **base, problem=problem, problem_links=where_to_get(host, vm_name, guardians))
    try:
        plan, script = restore_script(host, vm_name)
    except JobFailed as exc:
        return preflight_page(request, **base, problem=f"The last inventory says the job would stop: {exc}")
    steps = [
        f"Read the key protector of '{vm_name}' on {host} and find its guardian in the vault ({pair}).",
        f"Import that pair to {host} (as the import job does; nothing changes if it is there already).",
        f"Start '{vm_name}' and check that it is Running.",
    ]
    impact = [f"{host}: one guardian with its two certificates added; VM '{vm_name}' started."]
    return preflight_page(
        request,
        **base,
        ready=True,
        steps=steps,
        impact=impact,
        risks=RESTORE_RISKS,
        warnings=import_notes(host, pair, plan.guardian),
        powershell=script.lines(),
        post=[("host", host.pk), ("vm", vm_name)],
    )
