"""The rescue of a VM that can start nowhere because no copy of its guardian's private keys exists: the seed's last
resort (domain.md), a new VM without a vTPM on the same disks.

Why the old VM is renamed, not removed nor left as is: a Hyper-V admin expects to find the lost VM in Hyper-V Manager
with its configuration (and its key protector: if a backup of the keys turns up later, a restore can still start
it), and the new VM to carry the name everyone knows. So the old VM becomes "<name> (keys lost)", the new VM takes
the name, and the old settings are also kept in the job's result. Nothing is deleted.

`plan_rescue` does every read that decides through an Ask; `RescuePlan.operations` lists the changes in order. The
job runs them (`rescue_vm`) and Show PowerShell prints them (`rescue_script`), so the two cannot differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hosts.models import Host
from hosts.remoting.catalog.keyprotectors import shown_follow_ups
from hosts.remoting.catalog.vmconfig import (
    AddHardDiskDrive,
    AddNetworkAdapter,
    NewVM,
    ReadVmSettings,
    RenameVM,
    SetProcessorCount,
    SetSecureBoot,
    VmSettings,
)
from hosts.remoting.catalog.vms import GetVM, GetVmSecurity, StartVM
from hosts.remoting.operation import Operation
from hosts.remoting.session import HostSession
from jobs.kinds import JobFailed, Run

from ..powershell import PowerShellScript
from ..preview import Ask
from ..restore.plan import pair_for, sealed_to

log = logging.getLogger(__name__)

KEPT_SUFFIX = " (keys lost)"

BITLOCKER_WARNING = (
    "The new VM has no vTPM: a guest that used BitLocker asks for its recovery key at the first boot (have it at "
    "hand: Active Directory, Entra ID, a Microsoft account or a printout), and Windows Hello PINs, face and "
    "fingerprint sign-in and virtual smart card keys are gone for good. A Windows 11 guest needs a vTPM for "
    "updates: once it runs, add one (Turn vTPM on) and let BitLocker seal to it again."
)


def kept_name(vm_name: str) -> str:
    return f"{vm_name}{KEPT_SUFFIX}"


@dataclass(frozen=True)
class RescuePlan:
    host: Host
    old: VmSettings

    @property
    def vm_name(self) -> str:
        return self.old.name

    @property
    def kept_as(self) -> str:
        return kept_name(self.old.name)

    def operations(self) -> list[Operation[Any]]:
        """Rename the old VM, build the new one from its settings, start it, and read back that it runs."""
        name, old = self.vm_name, self.old
        adapters = old.adapters
        first_switch = adapters[0].switch if adapters else ""
        ops: list[Operation[Any]] = [
            RenameVM(name, self.kept_as),
            NewVM(name, old.generation, old.memory_startup_bytes, first_switch),
        ]
        if old.processor_count != 1:  # New-VM gives one
            ops.append(SetProcessorCount(name, old.processor_count))
        ops.append(SetSecureBoot(name, old.secure_boot, old.secure_boot_template))
        ops += [AddHardDiskDrive(name, path) for path in old.disks]
        ops += [AddNetworkAdapter(name, a.name, a.switch) for a in adapters[1:]]
        return [*ops, StartVM(name), GetVM(name)]

    def steps(self) -> list[str]:
        """What the page lists, in the job's order."""
        old = self.old
        adapters = ", ".join(f"{a.name} → {a.switch or 'not connected'}" for a in old.adapters) or "none"
        secure_boot = f"on ({old.secure_boot_template})" if old.secure_boot else "off"
        return [
            f"Rename '{self.vm_name}' to '{self.kept_as}' (kept, with its key protector, for reference).",
            f"Create '{self.vm_name}': generation {old.generation}, {old.memory_startup_bytes // 2**20} MB, "
            f"{old.processor_count} processor(s), Secure Boot {secure_boot}, no vTPM.",
            f"Attach its {len(old.disks)} disk(s) in their order: {', '.join(old.disks)}.",
            f"Network adapters: {adapters}.",
            f"Start '{self.vm_name}' and check that it is Running.",
        ]


def refusal(ask: Ask, host: Host, old: VmSettings | None, vm_name: str) -> str:
    """Why the rescue does not apply to this VM as the host shows it ("" when it does)."""
    if old is None:
        return f"{host} has no VM named '{vm_name}'. Refresh the inventory and choose again."
    if old.same_name > 1:
        return f"{host} has {old.same_name} VMs named '{vm_name}': rename all but one in Hyper-V Manager first."
    if old.generation != 2:
        return f"'{vm_name}' is a generation {old.generation} VM: only generation 2 VMs have a vTPM to lose."
    if old.state == "Running":
        return f"'{vm_name}' is running on {host}: its keys are not lost, it needs no rescue."
    if not old.disks:
        return f"'{vm_name}' has no virtual hard disk: there is nothing to rescue."
    if ask(GetVM(kept_name(vm_name))) is not None:
        return f"{host} already has a VM named '{kept_name(vm_name)}': rename or remove it first."
    if not ask(GetVmSecurity(vm_name)).tpm_enabled:
        return f"The vTPM of '{vm_name}' is off: it needs no guardian, just start it."
    pair = pair_for(sealed_to(ask, host, vm_name))
    if pair is not None:
        return f"The vault holds {pair}, a guardian '{vm_name}' is sealed to: restore the VM instead (nothing lost)."
    return ""


def plan_rescue(ask: Ask, host: Host, vm_name: str, resumed: bool = False) -> RescuePlan:
    """Read the VM's settings and check the rescue applies; JobFailed with the reason when it does not. A resumed
    job whose earlier delivery renamed the old VM already reads the settings from that kept VM and carries on."""
    if resumed:
        kept = ask(ReadVmSettings(kept_name(vm_name)))
        if kept is not None and kept.same_name == 1:
            kept.name = vm_name
            return RescuePlan(host, kept)
    old = ask(ReadVmSettings(vm_name))
    reason = refusal(ask, host, old, vm_name)
    if reason:
        raise JobFailed(reason)
    assert old is not None
    return RescuePlan(host, old)


def rescue_vm(run: Run, session: HostSession, host: Host, vm_name: str) -> RescuePlan:
    """Run the plan step by step; the last Get-VM proves the new VM runs."""
    plan = plan_rescue(session.run, host, vm_name, resumed=bool(getattr(run, "resumed", False)))
    run.record("old_vm", plan.old.as_record())
    run.record("kept_as", plan.kept_as)
    log.warning("%s", BITLOCKER_WARNING)
    for op in plan.operations()[:-1]:
        # A step cut off by a worker's restart is run again only if running it twice is harmless.
        unsafe_twice = not isinstance(op, SetProcessorCount | SetSecureBoot | StartVM)
        with run.step(step_title(op, plan, host), destructive=unsafe_twice) as step:
            if step.needed:
                session.run(op)
    running = session.run(GetVM(plan.vm_name))
    if running is None or running.state != "Running":
        state = running.state if running is not None else "missing"
        raise JobFailed(f"The new VM '{plan.vm_name}' is {state} after Start-VM. Look at its event log on {host}.")
    log.info("'%s' runs on %s without a vTPM; the old VM is kept as '%s'", plan.vm_name, host, plan.kept_as)
    return plan


def step_title(op: Operation[Any], plan: RescuePlan, host: Host) -> str:
    """One title per operation, unique within the job (a resumed job finds its steps by title)."""
    detail = ""
    if isinstance(op, AddHardDiskDrive):
        detail = f" {op.path}"
    elif isinstance(op, AddNetworkAdapter):
        detail = f" {op.adapter_name}"
    return f"{op.describe()} '{plan.vm_name}'{detail} on {host}"


def rescue_script(session: HostSession, host: Host, vm_name: str) -> tuple[RescuePlan, PowerShellScript]:
    """Show PowerShell of the rescue: its reads as the page sent them to the host just now, then the changes."""
    script = PowerShellScript()
    script.on(host)

    def ask(op: Operation[Any]) -> Any:
        answer = session.run(op)
        script.add(op, *shown_follow_ups(op, answer))  # the key protectors the session had the host read
        return answer

    plan = plan_rescue(ask, host, vm_name)
    script.add(*plan.operations())
    return plan, script
