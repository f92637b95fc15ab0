"""Restore after a reinstall: find the guardians a VM is sealed to, import the vault's pair for one of them, and
start the VM to prove it unseals."""

from __future__ import annotations

from typing import Any

from hosts.remoting.catalog.inventory import ReadVmDetails
from hosts.remoting.catalog.vms import GetVM, StartVM
from hosts.remoting.keyprotector import GuardianRef
from hosts.vault.models import EscrowedPair, find_pair
from jobs.kinds import JobFailed

from ..import_guardian.plan import import_pair
from ..transfer import LogFn, _no_log


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
