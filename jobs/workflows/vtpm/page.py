"""The vTPM page: choose a host, an action and the VMs, confirm each by typing its name, start the job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory.models import VirtualMachine
from hosts.inventory.refresh import refresh_host
from hosts.models import Host

from ..pages import host_from, kind_page, start_job
from .plan import ACTIONS, TPM_OFF_WARNING, changes_from, vtpm_script

NOTHING_ELIGIBLE = "None of the chosen VMs can change now: see what each needs below, then check again."


@dataclass
class VmRow:
    """A chosen VM as the last inventory shows it, with what stands in the way of the change ("" = eligible)."""

    vm: VirtualMachine
    saved: bool
    blocker: str = ""


def vm_rows(host: Host, chosen: list[str], action: str) -> list[VmRow]:
    rows = []
    for vm in VirtualMachine.objects.filter(host=host, name__in=chosen).order_by("name"):
        row = VmRow(vm, saved=vm.state == "Saved" or vm.has_saved_state)
        if vm.state not in ("Off", "Saved"):
            row.blocker = (
                f"{vm.state}: shut it down from inside the guest (or Stop-VM -Name '{vm.name}' on {host}), "
                "then check again."
            )
        elif action == "enable" and vm.tpm_enabled:
            row.blocker = "TPM already on: nothing to do."
        elif action == "disable" and not vm.tpm_enabled:
            row.blocker = "TPM already off: nothing to do."
        rows.append(row)
    return rows


def eligible(rows: list[VmRow]) -> list[VmRow]:
    """The rows the job would change: a blocked VM is left out of the form rather than failing in the job."""
    return [row for row in rows if not row.blocker]


def job_params(action: str, ready: list[VmRow]) -> dict[str, Any]:
    """The job's parameters once the user confirmed every ready VM: what the page starts, and what it previews."""
    return {
        "action": action,
        "confirmed": [row.vm.name for row in ready] if action == "disable" else [],
        "remove_saved_state": [row.vm.name for row in ready if row.saved],
    }


def confirmation_errors(request: HttpRequest, action: str, rows: list[VmRow]) -> list[str]:
    """Server-side checks of what the user confirmed: typed names for a disable, ticked saved-state removals."""
    errors = []
    for row in rows:
        name = row.vm.name
        if action == "disable" and request.POST.get(f"confirm-{name}", "").strip() != name:
            errors.append(f"Type the name '{name}' exactly to confirm turning its TPM off.")
        if row.saved and request.POST.get(f"saved-{name}") != "remove":
            errors.append(f"'{name}' has a saved state: tick “remove the saved state” to go on.")
    return errors


def recheck(host: Host) -> str:
    """Read the host again now (the user shut a VM down since the last inventory); "" or why it failed."""
    outcome = refresh_host(host)
    return "" if outcome.ok else f"Could not read {host} again: {outcome.error}"


@kind_page("vtpm")
def vtpm_preflight(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else request.GET
    host = host_from(request)
    action = str(data.get("action")) if data.get("action") in ACTIONS else "disable"
    chosen = data.getlist("vm")
    context: dict[str, Any] = {"hosts": Host.objects.order_by("name"), "host": host, "action": action}
    if host is not None and request.method == "GET" and data.get("recheck"):
        context["recheck_error"] = recheck(host)
    context["all_vms"] = VirtualMachine.objects.filter(host=host).order_by("name") if host else []
    context["chosen"] = chosen
    rows = vm_rows(host, chosen, action) if host else []
    ready = eligible(rows)
    context |= {"rows": rows, "ready": ready, "blocked": [row for row in rows if row.blocker]}
    context["warning"] = TPM_OFF_WARNING if action == "disable" else ""
    if host is not None:
        query = [("host", str(host.pk)), ("action", action), *(("vm", name) for name in chosen), ("recheck", "1")]
        context["recheck_url"] = f"{request.path}?{urlencode(query)}"
    names = [row.vm.name for row in ready]
    if host is not None and ready:
        context["powershell"] = vtpm_script(host, changes_from(job_params(action, ready), names)).lines()
    if request.method == "POST" and host is not None and rows:
        errors = confirmation_errors(request, action, ready) if ready else [NOTHING_ELIGIBLE]
        if not errors:
            return start_job(request, "vtpm", [host], names, job_params(action, ready))
        context["errors"] = errors
        return render(request, "workflows/vtpm.html", context, status=400)
    return render(request, "workflows/vtpm.html", context)
