"""Restore after a reinstall: find the guardians a VM is sealed to, import the vault's pair for one of them, and
start the VM to prove it unseals.

`plan_restore` does every read that decides (the VM's key protector, the import's reads, the VM's state) through an
Ask; `RestorePlan.operations` lists what follows, in order. The job runs them (`restore_vm`) and Show PowerShell
prints them (`restore_script`), so the two cannot differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.utils.translation import gettext as _

from hosts.models import Host
from hosts.remoting.catalog.inventory import ReadVmDetails, VmFacts
from hosts.remoting.catalog.vms import GetVM, StartVM
from hosts.remoting.keyprotector import GuardianRef
from hosts.remoting.operation import Operation
from hosts.remoting.session import HostSession
from hosts.vault.models import EscrowedPair
from jobs.kinds import JobFailed

from ..import_guardian.plan import ImportChecks, ImportPlan, announce, files_for, introduce, plan_import
from ..powershell import PowerShellScript
from ..preview import Ask, InventoryAnswers, show
from ..transfer import PfxFiles, run_in_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestorePlan:
    """What a restore does: import the pair the VM is sealed to (as the import job would), then start the VM unless
    it runs already."""

    vm_name: str
    pair: EscrowedPair
    guardian: ImportPlan
    running: bool

    def operations(self, files: PfxFiles) -> list[Operation[Any]]:
        start: list[Operation[Any]] = [] if self.running else [StartVM(self.vm_name), GetVM(self.vm_name)]
        return self.guardian.operations(files) + start  # the last Get-VM is the check: the VM runs


def sealed_to(ask: Ask, host: Host, vm_name: str) -> list[GuardianRef]:
    """The guardians of the VM's key protector, owner first, as the host says."""
    details = ask(ReadVmDetails([vm_name])).get(vm_name)
    if details is None or not details.key_protector_read:
        problems = "; ".join(details.problems) if details is not None else ""
        raise JobFailed(
            (
                _("Could not read the key protector of VM '%(vm)s' on %(host)s.") % {"vm": vm_name, "host": host}
                + f" {problems}"
            ).strip()
        )
    kp = details.key_protector
    if not kp.present:
        raise JobFailed(
            _("VM '%(vm)s' on %(host)s has no key protector: it needs no guardian to start.")
            % {"vm": vm_name, "host": host}
        )
    ordered = ([kp.owner] if kp.owner else []) + [g for g in kp.guardians if g != kp.owner]
    if not ordered:
        raise JobFailed(_("The key protector of VM '%(vm)s' names no guardian the console can read.") % {"vm": vm_name})
    return ordered


def pair_for(guardians: list[GuardianRef]) -> EscrowedPair | None:
    """The vault's pair of the first of these guardians it holds (one query for them all)."""
    wanted = [(ref.signing.upper(), ref.encryption.upper()) for ref in guardians]
    found = EscrowedPair.objects.filter(signing_thumbprint__in={signing for signing, _encryption in wanted})
    held = {(pair.signing_thumbprint, pair.encryption_thumbprint): pair for pair in found}
    return next((held[key] for key in wanted if key in held), None)


def vm_state(ask: Ask, vm_name: str) -> str:
    """The VM's state as Get-VM reports it ('' when the host has no such VM)."""
    vm = ask(GetVM(vm_name))
    return vm.state if vm is not None else ""


def plan_restore(ask: Ask, host: Host, vm_name: str) -> RestorePlan:
    """Read which guardians the VM is sealed to, find one in the vault, and read what its import and the start
    need to know."""
    guardians = sealed_to(ask, host, vm_name)
    pair = pair_for(guardians)
    if pair is None:
        listed = ", ".join(f"{g.signing[:8]}/{g.encryption[:8]}" for g in guardians)
        back = "/jobs/new/restore/?" + urlencode({"host": host.pk, "vm": vm_name})
        upload = "/vault/upload/?" + urlencode({"next": back})
        log.info(_("Upload the pair from a backup, then run the restore again"), extra={"job_link": upload})
        raise JobFailed(
            _(
                "VM '%(vm)s' is sealed to guardian(s) %(guardians)s, and none of them is in the vault. Upload the "
                "pair from a backup (UntrustedGuardian-signing.pfx / -encryption.pfx) or escrow it from a host that "
                "still has it, then run the restore again."
            )
            % {"vm": vm_name, "guardians": listed}
        )
    guardian = plan_import(ask, pair)
    return RestorePlan(vm_name, pair, guardian, running=vm_state(ask, vm_name) == "Running")


def restore_vm(
    session: HostSession, host: Host, vm_name: str, placing: Callable[[EscrowedPair], None] | None = None
) -> str:
    """Import the pair the VM is sealed to from the vault, start the VM, and check that it runs. `placing` sees the
    pair before its keys are copied to the host, and may refuse (JobFailed): the job's placement check."""
    plan = plan_restore(session.run, host, vm_name)
    log.info(_("VM '%(vm)s' is sealed to %(pair)s, which is in the vault"), {"vm": vm_name, "pair": plan.pair})
    if plan.guardian.copies and placing is not None:
        placing(plan.pair)
    announce(plan.guardian, host)
    if plan.running:
        log.info(_("VM '%(vm)s' is already running"), {"vm": vm_name})
    files = files_for(plan.guardian, plan.pair, session)
    run_in_order(session, host, plan.operations(files), RestoreChecks(plan, host))
    return plan.guardian.name


class RestoreChecks(ImportChecks):
    """The import's checks, then the VM's state after Start-VM."""

    def __init__(self, plan: RestorePlan, host: Host) -> None:
        super().__init__(plan.guardian, host)
        self.vm_name = plan.vm_name

    def __call__(self, op: Operation[Any], answer: object) -> None:
        super().__call__(op, answer)
        if not isinstance(op, GetVM):
            return
        state = answer.state if isinstance(answer, VmFacts) else ""
        if state != "Running":
            raise JobFailed(
                _(
                    "Guardian '%(guardian)s' is on %(host)s with its private keys, but VM '%(vm)s' is %(state)s "
                    "after Start-VM. Look at the VM's event log on the host."
                )
                % {"guardian": self.plan.name, "host": self.host, "vm": self.vm_name, "state": state}
            )
        log.info(_("VM '%(vm)s' is running on %(host)s"), {"vm": self.vm_name, "host": self.host})


def restore_script(host: Host, vm_name: str) -> tuple[RestorePlan, PowerShellScript]:
    """Show PowerShell of `restore_vm`: its reads answered by the last inventory, then what follows. Raises JobFailed
    when the inventory says the job would stop."""
    script = PowerShellScript()
    plan = plan_restore(InventoryAnswers(host, script), host, vm_name)
    introduce(script, plan.guardian, plan.pair, host)
    files = PfxFiles.sample()
    return plan, show(script, plan.operations(files), files.variables())
