"""Turn the virtual TPM of one or several VMs off or on.

A TPM change needs the VM Off with no saved state (a saved state from before the change could not be resumed
anyway, so the user may choose to discard it). Turning a TPM off loses what it held — BitLocker goes to recovery
unless suspended first, Windows Hello and virtual smart card keys are gone — so it needs each VM's name typed to
confirm, checked here on the server. Turning it on seals the VM to the host's UntrustedGuardian first when it has
no key protector (`Set-VMKeyProtector -NewLocalKeyProtector`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from console.models import AuditEvent
from console.roles import require
from hosts.remoting.catalog.vms import (
    DisableTpm,
    EnableTpm,
    GetVM,
    GetVmSecurity,
    NewLocalKeyProtector,
    RemoveSavedState,
)
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.operation import Operation
from jobs.kinds import JobContext, JobFailed, job_kind

from .powershell import powershell_of
from .reset import preflight_link, start

ACTIONS = ("disable", "enable")
TPM_OFF_WARNING = (
    "Turning the vTPM off loses everything it holds. A guest with BitLocker goes to recovery at its next boot "
    "unless BitLocker was suspended first (Suspend-BitLocker in the guest); Windows Hello PINs, face and fingerprint "
    "sign-in, and virtual smart card keys are gone for good. Have the BitLocker recovery key at hand."
)
BROKEN_GUARDIAN = "does not have a private key"


@dataclass
class TpmChange:
    """One VM's change as the job does it."""

    vm_name: str
    action: str  # disable | enable
    remove_saved_state: bool = False


def ready_for_change(run: Any, session: Any, host: Any, change: TpmChange) -> None:
    """The VM must be Off; a Saved VM is made Off by discarding its saved state, when the user chose that."""
    vm = session.run(GetVM(change.vm_name))
    if vm is None:
        raise JobFailed(f"{host} has no VM named '{change.vm_name}'. Refresh the inventory and choose again.")
    if vm.state == "Saved":
        if not change.remove_saved_state:
            raise JobFailed(
                f"'{change.vm_name}' has a saved state, which cannot be resumed after a TPM change. Tick “remove "
                "the saved state” to discard it, or start the VM and shut it down from the guest first."
            )
        with run.step(f"Remove the saved state of '{change.vm_name}' on {host}", destructive=True) as step:
            if step.needed:
                session.run(RemoveSavedState(change.vm_name))
                run.log(f"Discarded the saved state of '{change.vm_name}'")
    elif vm.state != "Off":
        raise JobFailed(
            f"'{change.vm_name}' is {vm.state}: a TPM change needs it Off. Shut it down from the guest (or "
            f"Stop-VM -Name '{change.vm_name}') and run this again."
        )


def disable_vtpm(run: Any, session: Any, host: Any, change: TpmChange) -> str:
    ready_for_change(run, session, host, change)
    with run.step(f"Disable-VMTPM '{change.vm_name}' on {host}", destructive=True) as step:
        if step.needed:
            session.run(DisableTpm(change.vm_name))
    if session.run(GetVmSecurity(change.vm_name)).tpm_enabled:
        raise JobFailed(f"Disable-VMTPM returned, but '{change.vm_name}' still shows its TPM enabled.")
    run.log(f"The TPM of '{change.vm_name}' is off: it can start on any host, without a guardian")
    return f"{change.vm_name}: TPM off"


def enable_vtpm(run: Any, session: Any, host: Any, change: TpmChange) -> str:
    ready_for_change(run, session, host, change)
    security = session.run(GetVmSecurity(change.vm_name))
    if security.tpm_enabled:
        run.log(f"The TPM of '{change.vm_name}' is already on; nothing to do")
        return f"{change.vm_name}: TPM already on"
    if not security.has_key_protector:
        with run.step(f"Set-VMKeyProtector -NewLocalKeyProtector '{change.vm_name}' on {host}") as step:
            if step.needed:
                session.run(NewLocalKeyProtector(change.vm_name))
                run.log(f"'{change.vm_name}' is now sealed to the UntrustedGuardian of {host}")
    with run.step(f"Enable-VMTPM '{change.vm_name}' on {host}") as step:
        if step.needed:
            session.run(EnableTpm(change.vm_name))
    if not session.run(GetVmSecurity(change.vm_name)).tpm_enabled:
        raise JobFailed(f"Enable-VMTPM returned, but '{change.vm_name}' still shows its TPM disabled.")
    run.log(f"The TPM of '{change.vm_name}' is on")
    return f"{change.vm_name}: TPM on"


def remedy_of(exc: RemotingError, host: Any) -> str:
    if isinstance(exc, RemoteCommandError) and BROKEN_GUARDIAN in exc.message:
        return (
            f"{exc.message.strip()} — the guardian of {host} has lost its private keys. Reset it first "
            f"(Jobs → Reset a broken guardian: /jobs/new/reset/?host={host.pk}), then run this again."
        )
    return str(exc)


def change_vtpms(run: Any, session: Any, host: Any, changes: list[TpmChange]) -> str:
    """Each VM on its own: one failing does not stop the others; the job fails if any did, naming which."""
    done: list[str] = []
    failed: list[str] = []
    for change in changes:
        run.check_cancelled()
        act = disable_vtpm if change.action == "disable" else enable_vtpm
        try:
            done.append(act(run, session, host, change))
        except (JobFailed, RemotingError) as exc:
            message = remedy_of(exc, host) if isinstance(exc, RemotingError) else str(exc)
            run.log(f"'{change.vm_name}': {message}", "error")
            failed.append(f"{change.vm_name}: {message}")
    run.record("changed", done)
    if failed:
        raise JobFailed(f"{len(done)} done ({'; '.join(done) or 'none'}); {len(failed)} failed — " + " | ".join(failed))
    return "; ".join(done)


def changes_from(params: dict[str, Any], vms: list[str]) -> list[TpmChange]:
    """The job's changes, re-checking on the worker what the page checked: a disable needs every name confirmed."""
    action = params.get("action")
    if action not in ACTIONS or not vms:
        raise JobFailed("Choose the VMs and whether to turn their TPM off or on.")
    if action == "disable":
        unconfirmed = [vm for vm in vms if vm not in (params.get("confirmed") or [])]
        if unconfirmed:
            raise JobFailed(f"Turning the TPM off was not confirmed by typing the name of: {', '.join(unconfirmed)}.")
    saved = set(params.get("remove_saved_state") or [])
    return [TpmChange(vm, action, vm in saved) for vm in vms]


def vtpm_again(job: Any) -> str:
    return preflight_link(
        "/jobs/new/vtpm/", job, [("action", job.params.get("action")), *(("vm", vm) for vm in job.vms)]
    )


@job_kind(
    "vtpm",
    label="Turn vTPM off or on",
    permission="run_destructive_jobs",
    mutating=True,
    preflight_url=vtpm_again,
)
def vtpm_job(ctx: JobContext) -> str:
    """params: action (disable|enable), confirmed (VM names typed), remove_saved_state (VM names)."""
    host = ctx.host
    if host is None:
        raise JobFailed("No host given.")
    try:
        return change_vtpms(ctx, ctx.session(host), host, changes_from(ctx.params, ctx.vms))
    finally:
        changed = ctx.job.results.get("changed") or []
        if changed:
            AuditEvent.record(ctx.user, f"vm.tpm_{ctx.params.get('action')}", host, job=ctx.job.pk, vms=changed)


# -- preflight page ---------------------------------------------------------------------------------------------


def vm_rows(host: Any, chosen: list[str], action: str) -> list[dict[str, Any]]:
    """The chosen VMs as the last inventory shows them, with what stands in the way of the change ("" = eligible)."""
    from hosts.inventory.models import VirtualMachine

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


def operations_for(action: str, rows: list[dict[str, Any]]) -> list[Operation[Any]]:
    ops: list[Operation[Any]] = []
    for row in rows:
        name = row["vm"].name
        ops.append(GetVM(name))
        if row["saved"]:
            ops.append(RemoveSavedState(name))
        if action == "disable":
            ops += [DisableTpm(name), GetVmSecurity(name)]
        else:
            ops.append(GetVmSecurity(name))
            if not row["vm"].has_key_protector:
                ops.append(NewLocalKeyProtector(name))
            ops += [EnableTpm(name), GetVmSecurity(name)]
    return ops


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
    from hosts.inventory.refresh import refresh_host

    outcome = refresh_host(host)
    return "" if outcome.ok else f"Could not read {host} again: {outcome.error}"


@require("run_destructive_jobs")
def vtpm_preflight(request: HttpRequest) -> HttpResponse:
    from hosts.inventory.models import VirtualMachine
    from hosts.models import Host

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
            return start(request, "vtpm", host, params, vms=names)
        context["errors"] = errors
        return render(request, "workflows/vtpm.html", context, status=400)
    return render(request, "workflows/vtpm.html", context)


NOTHING_ELIGIBLE = "None of the chosen VMs can change now: see what each needs below, then check again."


urlpatterns = [path("jobs/new/vtpm/", vtpm_preflight, name="vtpm_preflight")]
