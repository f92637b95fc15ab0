"""The vTPM page: choose a host, an action and the VMs, confirm each by typing its name, start the job."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.inventory.models import VirtualMachine
from hosts.inventory.refresh import refresh_host
from hosts.models import Host

from ..pages import kind_page, start_job
from ..powershell import powershell_of
from .plan import ACTIONS, TPM_OFF_WARNING, operations_for


def vm_rows(host: Any, chosen: list[str], action: str) -> list[dict[str, Any]]:
    """The chosen VMs as the last inventory shows them, with what stands in the way of the change ("" = eligible)."""

    rows = []
    for vm in VirtualMachine.objects.filter(host=host, name__in=chosen).order_by("name"):
        row: dict[str, Any] = {"vm": vm, "saved": vm.state == "Saved" or vm.has_saved_state, "blocker": ""}
        if vm.state not in ("Off", "Saved"):
            row["blocker"] = (
                f"{vm.state}: shut it down from inside the guest (or Stop-VM -Name '{vm.name}' on {host}), "
                "then check again."
            )
        elif action == "enable" and vm.tpm_enabled:
            row["blocker"] = "TPM already on: nothing to do."
        elif action == "disable" and not vm.tpm_enabled:
            row["blocker"] = "TPM already off: nothing to do."
        rows.append(row)
    return rows


def eligible(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the job would change: a blocked VM is left out of the form rather than failing in the job."""
    return [row for row in rows if not row["blocker"]]


def confirmation_errors(request: HttpRequest, action: str, rows: list[dict[str, Any]]) -> list[str]:
    """Server-side checks of what the user confirmed: typed names for a disable, ticked saved-state removals."""
    errors = []
    for row in rows:
        name = row["vm"].name
        if action == "disable" and request.POST.get(f"confirm-{name}", "").strip() != name:
            errors.append(f"Type the name '{name}' exactly to confirm turning its TPM off.")
        if row["saved"] and request.POST.get(f"saved-{name}") != "remove":
            errors.append(f"'{name}' has a saved state: tick “remove the saved state” to go on.")
    return errors


def recheck(host: Any) -> str:
    """Read the host again now (the user shut a VM down since the last inventory); "" or why it failed."""

    outcome = refresh_host(host)
    return "" if outcome.ok else f"Could not read {host} again: {outcome.error}"


@kind_page("vtpm")
def vtpm_preflight(request: HttpRequest) -> HttpResponse:

    data = request.POST if request.method == "POST" else request.GET
    host_id = data.get("host", "")
    host = Host.objects.filter(pk=int(host_id)).first() if host_id.isdigit() else None
    action = str(data.get("action")) if data.get("action") in ACTIONS else "disable"
    chosen = data.getlist("vm")
    context: dict[str, Any] = {"hosts": Host.objects.order_by("name"), "host": host, "action": action}
    if host is not None and request.method == "GET" and data.get("recheck"):
        context["recheck_error"] = recheck(host)
    context["all_vms"] = VirtualMachine.objects.filter(host=host).order_by("name") if host else []
    context["chosen"] = chosen
    rows = vm_rows(host, chosen, action) if host else []
    ready = eligible(rows)
    context |= {"rows": rows, "ready": ready, "blocked": [row for row in rows if row["blocker"]]}
    context["warning"] = TPM_OFF_WARNING if action == "disable" else ""
    if host is not None:
        query = [("host", str(host.pk)), ("action", action), *(("vm", name) for name in chosen), ("recheck", "1")]
        context["recheck_url"] = f"{request.path}?{urlencode(query)}"
    if ready:
        context["powershell"] = powershell_of(operations_for(action, ready))
    if request.method == "POST" and host is not None and rows:
        errors = confirmation_errors(request, action, ready) if ready else [NOTHING_ELIGIBLE]
        if not errors:
            names = [row["vm"].name for row in ready]
            params = {
                "action": action,
                "confirmed": names if action == "disable" else [],
                "remove_saved_state": [row["vm"].name for row in ready if row["saved"]],
            }
            return start_job(request, "vtpm", [host], names, params)
        context["errors"] = errors
        return render(request, "workflows/vtpm.html", context, status=400)
    return render(request, "workflows/vtpm.html", context)


NOTHING_ELIGIBLE = "None of the chosen VMs can change now: see what each needs below, then check again."
