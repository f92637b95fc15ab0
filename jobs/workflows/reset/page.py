"""The reset and undo pages: impact from the last inventory, the plan's PowerShell, and the job."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN, Inventory
from hosts.models import Host
from jobs.models import Job
from jobs.services import ordered_hosts

from ..pages import host_from, kind_page, start_job
from .plan import (
    certificates_in_inventory,
    plan_from_inventory,
    removed_by,
    reset_job_of,
    reset_script,
    undo_script,
)

RESET_RISKS = [
    "A VM sealed only to this guardian, whose pair is not in the vault, stays unable to start: the reset does not "
    "make that worse (the private keys are already gone), but only a backup of the pair can bring it back.",
    "If any private key the host still holds for those VMs cannot be escrowed first, the job stops before removing "
    "anything.",
    "Enabling a TPM afterwards creates a new UntrustedGuardian; once a VM is sealed to it, the undo will refuse to "
    "replace it.",
]

# The undo page shows the way the last inventory predicts first, then the other one, under this heading.
OTHER_WAY = {
    True: "If the certificates are gone from the store by then, it re-creates the guardian from the kept metadata:",
    False: "If both certificates are back in the store by then, it re-creates the guardian by their thumbprints:",
}


@kind_page("reset_guardian")
def reset_preflight(request: HttpRequest) -> HttpResponse:
    host = host_from(request)
    name = request.POST.get("guardian") or request.GET.get("guardian") or UNTRUSTED_GUARDIAN
    context: dict[str, Any] = {"offers": Inventory().broken_guardians(), "host": host, "guardian_name": name}
    if host is None:
        return render(request, "workflows/reset.html", context)
    if request.method == "POST":
        return start_job(request, "reset_guardian", [host], params={"guardian_name": name})
    plan = plan_from_inventory(host, name)
    context |= {"guardian": plan.guardian, "sealed": plan.sealed, "risks": RESET_RISKS, "undoable": past_resets(host)}
    context["powershell"] = reset_script(plan).lines()
    if plan.guardian is not None and plan.guardian.has_private_signing_key:
        context["problem"] = f"The last inventory shows '{name}' on {host} with its private keys: it is not broken."
    return render(request, "workflows/reset.html", context)


def past_resets(host: Host) -> list[Job]:
    jobs = Job.objects.filter(kind="reset_guardian", hosts=host).order_by("-pk")[:10]
    return [job for job in jobs if removed_by(job) is not None]


@kind_page("undo_guardian_reset")
def undo_preflight(request: HttpRequest) -> HttpResponse:
    job = reset_job_of(request.POST.get("job") or request.GET.get("job"))
    removed = removed_by(job)
    if job is None or removed is None:
        return render(request, "workflows/reset_undo.html", {"problem": "Choose a reset job that removed a guardian."})
    hosts = ordered_hosts(job)
    if not hosts:
        return render(request, "workflows/reset_undo.html", {"problem": "The host of that reset is not registered."})
    if request.method == "POST":
        return start_job(request, "undo_guardian_reset", hosts[:1], params={"reset_job": job.pk})
    by_thumbprints = certificates_in_inventory(hosts[0], removed)
    context = {"job": job, "host": hosts[0], "removed": removed, "other_way": OTHER_WAY[by_thumbprints]}
    context["powershell"] = undo_script(job, removed, by_thumbprints).lines()
    context["other_powershell"] = undo_script(job, removed, not by_thumbprints, looks=False).lines()
    return render(request, "workflows/reset_undo.html", context)
