"""Turning a VM's virtual TPM off or on: the checks Hyper-V makes (the VM off, no saved state, a key protector and a
guardian with private keys for enabling), and the changes themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from jobs.kinds import JobFailed

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
