"""Restore after reinstall: a VM will not start because the guardian it is sealed to is gone from its host.

The VM's key protector names its guardians by certificate thumbprints; the vault is searched for any of them (the
owner first), that pair is imported to the host (import_guardian.import_pair), and the VM is started and checked
to be running.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from console.roles import require
from hosts.remoting.catalog.inventory import ReadVmDetails
from hosts.remoting.catalog.vms import GetVM, StartVM
from hosts.remoting.errors import RemotingError
from hosts.remoting.keyprotector import GuardianRef
from hosts.vault.models import EscrowedPair, find_pair
from jobs.kinds import JobContext, JobFailed, job_kind

from .escrow import LogFn, _no_log, chosen_host, holder_links, preflight_page, start_job
from .import_guardian import import_pair
from .powershell import PowerShellScript


def sealed_to(session: Any, host: Any, vm_name: str) -> list[GuardianRef]:
    """The guardians of the VM's key protector, owner first, read live from the host."""
    details = session.run(ReadVmDetails([vm_name])).get(vm_name)
    if details is None or not details.key_protector_read:
        problems = "; ".join(details.problems) if details is not None else ""
        raise JobFailed(f"Could not read the key protector of VM '{vm_name}' on {host}. {problems}".strip())
    kp = details.key_protector
    if not kp.present:
        raise JobFailed(f"VM '{vm_name}' on {host} has no key protector: it needs no guardian to start.")
    ordered = ([kp.owner] if kp.owner else []) + [g for g in kp.guardians if g != kp.owner]
    if not ordered:
        raise JobFailed(f"The key protector of VM '{vm_name}' names no guardian the console can read.")
    return ordered


def pair_for(guardians: list[GuardianRef]) -> EscrowedPair | None:
    for ref in guardians:
        pair = find_pair(ref.signing, ref.encryption)
        if pair is not None:
            return pair
    return None


def vm_state(session: Any, vm_name: str) -> str:
    """The VM's state as Get-VM reports it ('' when the host has no such VM)."""
    vm = session.run(GetVM(vm_name))
    return vm.state if vm is not None else ""


def restore_vm(session: Any, host: Any, vm_name: str, *, log: LogFn | None = None) -> str:
    """Import the pair the VM is sealed to from the vault, start the VM, and check that it runs."""
    log = log or _no_log
    guardians = sealed_to(session, host, vm_name)
    pair = pair_for(guardians)
    if pair is None:
        listed = ", ".join(f"{g.signing[:8]}/{g.encryption[:8]}" for g in guardians)
        raise JobFailed(
            f"VM '{vm_name}' is sealed to guardian(s) {listed}, and none of them is in the vault. Upload the pair "
            "from a backup (UntrustedGuardian-signing.pfx / -encryption.pfx) or escrow it from a host that still "
            "has it, then run the restore again."
        )
    log(f"VM '{vm_name}' is sealed to {pair}, which is in the vault", "info")
    name = import_pair(session, host, pair, log=log)
    if vm_state(session, vm_name) == "Running":
        log(f"VM '{vm_name}' is already running", "info")
        return name
    session.run(StartVM(vm_name))
    state = vm_state(session, vm_name)
    if state != "Running":
        raise JobFailed(
            f"Guardian '{name}' is on {host} with its private keys, but VM '{vm_name}' is {state} after Start-VM. "
            "Look at the VM's event log on the host."
        )
    log(f"VM '{vm_name}' is running on {host}", "info")
    return name


@job_kind("restore_vm", label="Restore a VM after reinstall", permission="run_jobs", mutating=True)
def restore_vm_job(ctx: JobContext) -> str:
    host = ctx.host
    if host is None or not ctx.vms:
        raise JobFailed("Choose the host and the VM to restore.")
    restored = []
    for vm_name in ctx.vms:
        with ctx.step(f"Restore VM '{vm_name}' on {host}"):
            try:
                name = restore_vm(ctx.session(host), host, vm_name, log=ctx.log)
            except RemotingError as exc:
                if ctx.cancel_requested:
                    raise
                raise JobFailed(
                    f"{exc} Nothing was taken out of the vault. Run the restore again once {host} answers: it "
                    "continues where it stopped."
                ) from None
        restored.append(vm_name)
        ctx.record("guardian_name", name)
    ctx.record("restored_vms", restored)
    return f"{', '.join(restored)} running on {host}"


# -- preflight page -----------------------------------------------------------------------------------------------


def vm_choices(host: Any) -> list[tuple[str, str]]:
    """The host's VMs with a key protector, those that cannot start there marked (they are the ones to restore)."""
    from django.apps import apps

    from hosts.inventory.analysis import Inventory

    vm_model = apps.get_model("inventory", "VirtualMachine")
    rows = list(vm_model.objects.filter(host=host, has_key_protector=True).order_by("name")) if host else []
    inventory = Inventory() if rows else None
    choices = []
    for vm in rows:
        starts = inventory.can_start(vm, host)[0] if inventory else True
        note = "starts here" if starts else "does not start here"
        choices.append((vm.name, f"{vm.name} ({vm.state or 'state unknown'}, {note})"))
    return choices


def where_to_get(host: Any, vm_name: str, guardians: list[GuardianRef]) -> list[tuple[str, str]]:
    """Buttons for a VM whose guardian is not in the vault: upload a backup (then come back), or escrow it from a
    registered host whose last inventory shows the private keys."""
    from urllib.parse import urlencode

    back = "/jobs/new/restore/?" + urlencode({"host": host.pk, "vm": vm_name})
    links = [("Upload the PFX pair from a backup…", "/vault/upload/?" + urlencode({"next": back}))]
    for g in guardians:
        links += holder_links(g.signing, g.encryption)
    return links


def inventoried_guardians(host: Any, vm_name: str) -> list[GuardianRef]:
    from django.apps import apps

    from hosts.vault.services import thumbprint_pairs

    vm = apps.get_model("inventory", "VirtualMachine").objects.filter(host=host, name=vm_name).first()
    if vm is None:
        return []
    pairs = thumbprint_pairs(vm.kp_owner_thumbprints) + thumbprint_pairs(vm.kp_guardian_thumbprints)
    return [GuardianRef(sign, enc) for sign, enc in dict.fromkeys(pairs)]


RESTORE_RISKS = [
    "If none of the VM's guardians is in the vault, nothing is changed: the job says which thumbprints to look for.",
    "A vault entry that fails its integrity check is not used.",
    "If the VM still does not start, the guardian stays installed (harmless) and the job says so.",
]


@require("run_jobs")
def restore_preflight(request: HttpRequest) -> HttpResponse:
    from .import_guardian import host_situation, import_lines

    host = chosen_host(request)
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
        return start_job(request, "restore_vm", host, [vm_name], {})
    guardians = inventoried_guardians(host, vm_name)
    pair = pair_for(guardians)
    if pair is None:
        listed = ", ".join(f"{g.signing} / {g.encryption}" for g in guardians) or "(not inventoried yet)"
        problem = (
            f"The last inventory shows VM '{vm_name}' sealed to {listed}; none of these is in the vault. Upload the "
            "pair from a backup or escrow it from a host that has it (the job would stop without changing anything)."
        )
        return preflight_page(request, **base, problem=problem, problem_links=where_to_get(host, vm_name, guardians))
    notes, name = host_situation(host, pair)
    script = import_lines(PowerShellScript().add(ReadVmDetails([vm_name])), pair, name)
    lines = script.add(GetVM(vm_name), StartVM(vm_name), GetVM(vm_name)).lines()
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
        warnings=notes,
        powershell=lines,
        post=[("host", host.pk), ("vm", vm_name)],
    )


urlpatterns = [path("jobs/new/restore/", restore_preflight, name="restore_preflight")]
