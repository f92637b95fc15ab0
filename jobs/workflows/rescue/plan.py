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
from typing import Any, cast

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

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

KEPT_SUFFIX = " (keys lost)"  # part of a VM name on the host: never translated

# Lazy (said in the reader's language where it is shown); typed str for the pages that list it with other texts.
BITLOCKER_WARNING = cast(
    str,
    gettext_lazy(
        "The new VM has no vTPM: a guest that used BitLocker asks for its recovery key at the first boot (have it at "
        "hand: Active Directory, Entra ID, a Microsoft account or a printout), and Windows Hello PINs, face and "
        "fingerprint sign-in and virtual smart card keys are gone for good. A Windows 11 guest needs a vTPM for "
        "updates: once it runs, add one (Turn vTPM on) and let BitLocker seal to it again."
    ),
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
        adapters = ", ".join(f"{a.name} → {a.switch or _('not connected')}" for a in old.adapters) or _("none")
        secure_boot = _("on (%(template)s)") % {"template": old.secure_boot_template} if old.secure_boot else _("off")
        processors = ngettext("%(count)d processor", "%(count)d processors", old.processor_count) % {
            "count": old.processor_count
        }
        disks = ngettext(
            "Attach its %(count)d disk in their order: %(disks)s.",
            "Attach its %(count)d disks in their order: %(disks)s.",
            len(old.disks),
        ) % {"count": len(old.disks), "disks": ", ".join(old.disks)}
        return [
            _("Rename '%(vm)s' to '%(kept)s' (kept, with its key protector, for reference).")
            % {"vm": self.vm_name, "kept": self.kept_as},
            _(
                "Create '%(vm)s': generation %(generation)s, %(memory)s MB, %(processors)s, Secure Boot "
                "%(secure_boot)s, no vTPM."
            )
            % {
                "vm": self.vm_name,
                "generation": old.generation,
                "memory": old.memory_startup_bytes // 2**20,
                "processors": processors,
                "secure_boot": secure_boot,
            },
            disks,
            _("Network adapters: %(adapters)s.") % {"adapters": adapters},
            _("Start '%(vm)s' and check that it is Running.") % {"vm": self.vm_name},
        ]


def refusal(ask: Ask, host: Host, old: VmSettings | None, vm_name: str) -> str:
    """Why the rescue does not apply to this VM as the host shows it ("" when it does)."""
    if old is None:
        return _("%(host)s has no VM named '%(vm)s'. Refresh the inventory and choose again.") % {
            "host": host,
            "vm": vm_name,
        }
    words = {"host": host, "vm": vm_name, "count": old.same_name, "generation": old.generation}
    if old.same_name > 1:
        return _("%(host)s has %(count)s VMs named '%(vm)s': rename all but one in Hyper-V Manager first.") % words
    if old.generation != 2:
        return _("'%(vm)s' is a generation %(generation)s VM: only generation 2 VMs have a vTPM to lose.") % words
    if old.state == "Running":
        return _("'%(vm)s' is running on %(host)s: its keys are not lost, it needs no rescue.") % words
    if not old.disks:
        return _("'%(vm)s' has no virtual hard disk: there is nothing to rescue.") % words
    if ask(GetVM(kept_name(vm_name))) is not None:
        return _("%(host)s already has a VM named '%(kept)s': rename or remove it first.") % {
            "host": host,
            "kept": kept_name(vm_name),
        }
    if not ask(GetVmSecurity(vm_name)).tpm_enabled:
        return _("The vTPM of '%(vm)s' is off: it needs no guardian, just start it.") % words
    pair = pair_for(sealed_to(ask, host, vm_name))
    if pair is not None:
        return _(
            "The vault holds %(pair)s, a guardian '%(vm)s' is sealed to: restore the VM instead (nothing lost)."
        ) % {"pair": pair, "vm": vm_name}
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
    log.warning("%s", str(BITLOCKER_WARNING))
    for op in plan.operations()[:-1]:
        # A step cut off by a worker's restart is run again only if running it twice is harmless.
        unsafe_twice = not isinstance(op, SetProcessorCount | SetSecureBoot | StartVM)
        with run.step(step_title(op, plan, host), destructive=unsafe_twice) as step:
            if step.needed:
                session.run(op)
    running = session.run(GetVM(plan.vm_name))
    if running is None or running.state != "Running":
        state = running.state if running is not None else _("missing")
        raise JobFailed(
            _("The new VM '%(vm)s' is %(state)s after Start-VM. Look at its event log on %(host)s.")
            % {"vm": plan.vm_name, "state": state, "host": host}
        )
    log.info(
        _("'%(vm)s' runs on %(host)s without a vTPM; the old VM is kept as '%(kept)s'"),
        {"vm": plan.vm_name, "host": host, "kept": plan.kept_as},
    )
    return plan


def step_title(op: Operation[Any], plan: RescuePlan, host: Host) -> str:
    """One title per operation, unique within the job (a resumed job finds its steps by title)."""
    detail = ""
    if isinstance(op, AddHardDiskDrive):
        detail = f" {op.path}"
    elif isinstance(op, AddNetworkAdapter):
        detail = f" {op.adapter_name}"
    # In the job's language, fixed for the job: a resumed run finds its steps under the same titles.
    return _("%(cmdlets)s '%(vm)s'%(detail)s on %(host)s") % {
        "cmdlets": op.describe(),
        "vm": plan.vm_name,
        "detail": detail,
        "host": host,
    }


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
