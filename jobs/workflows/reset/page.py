"""The reset and undo pages: impact from the last inventory, typed confirmation, and the job."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN, Inventory
from hosts.inventory.models import Guardian, VirtualMachine
from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    GetGuardians,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
)
from hosts.remoting.operation import Operation
from hosts.vault.models import find_pair
from jobs.models import Job
from jobs.services import ordered_hosts

from ..pages import kind_page, start_job
from ..powershell import powershell_of
from .plan import fallback_script, removed_guardian_of, reset_script


def sealed_from_inventory(guardian: Any) -> list[dict[str, Any]]:

    rows = []
    for vm in VirtualMachine.objects.filter(host=guardian.host):
        if guardian.identity not in vm.guardian_pairs:
            continue
        escrowed = [p for p in vm.guardian_pairs if find_pair(*p) is not None]
        rows.append({"name": vm.name, "state": vm.state, "escrowed": bool(escrowed)})
    return rows


RESET_RISKS = [
    "A VM sealed only to this guardian, whose pair is not in the vault, stays unable to start: the reset does not "
    "make that worse (the private keys are already gone), but only a backup of the pair can bring it back.",
    "If any private key the host still holds for those VMs cannot be escrowed first, the job stops before removing "
    "anything.",
    "Enabling a TPM afterwards creates a new UntrustedGuardian; once a VM is sealed to it, the undo will refuse to "
    "replace it.",
]


@kind_page("reset_guardian")
def reset_preflight(request: HttpRequest) -> HttpResponse:

    host_id = request.POST.get("host") or request.GET.get("host") or ""
    name = request.POST.get("guardian") or request.GET.get("guardian") or UNTRUSTED_GUARDIAN
    host = Host.objects.filter(pk=int(host_id)).first() if host_id.isdigit() else None
    context: dict[str, Any] = {"offers": Inventory().broken_guardians(), "host": host, "guardian_name": name}
    if host is None:
        return render(request, "workflows/reset.html", context)
    if request.method == "POST":
        return start_job(request, "reset_guardian", [host], params={"guardian_name": name})
    guardian = Guardian.objects.filter(host=host, name=name).first()
    context["guardian"] = guardian
    context["sealed"] = sealed_from_inventory(guardian) if guardian else []
    context["powershell"] = reset_script(host, name, guardian).lines()
    context["risks"] = RESET_RISKS
    context["undoable"] = past_resets(host)
    if guardian is not None and guardian.has_private_signing_key:
        context["problem"] = f"The last inventory shows '{name}' on {host} with its private keys: it is not broken."
    return render(request, "workflows/reset.html", context)


def past_resets(host: Any) -> list[Any]:

    jobs = Job.objects.filter(kind="reset_guardian", hosts=host).order_by("-pk")[:10]
    return [job for job in jobs if isinstance(job.results.get("removed_guardian"), dict)]


@kind_page("undo_guardian_reset")
def undo_preflight(request: HttpRequest) -> HttpResponse:

    job_id = request.POST.get("job") or request.GET.get("job") or ""
    removed = removed_guardian_of(job_id)
    if removed is None:
        return render(request, "workflows/reset_undo.html", {"problem": "Choose a reset job that removed a guardian."})
    job = Job.objects.get(pk=int(job_id))
    hosts = ordered_hosts(job)
    if not hosts:
        return render(request, "workflows/reset_undo.html", {"problem": "The host of that reset is not registered."})
    if request.method == "POST":
        return start_job(request, "undo_guardian_reset", hosts[:1], params={"reset_job": job.pk})
    ops: list[Operation[Any]] = [
        GetGuardians(),
        ListShieldedCertificates(),
        NewGuardianByThumbprints(
            removed["guardian_name"], removed["signing_thumbprint"], removed["encryption_thumbprint"]
        ),
    ]
    context = {"job": job, "host": hosts[0], "removed": removed, "powershell": powershell_of(ops)}
    context["fallback_powershell"] = fallback_script(job, removed).lines()
    return render(request, "workflows/reset_undo.html", context)
