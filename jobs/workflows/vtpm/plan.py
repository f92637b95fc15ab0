"""Turning a VM's virtual TPM off or on: the checks Hyper-V makes (the VM off, no saved state, a key protector and a
guardian with private keys for enabling), and the changes themselves.

One plan behind the job and Show PowerShell: a TpmChange names every operation it sends for its VM — the looks
(`look`, `security`), the changing `steps(now)` that what the looks found decides, and the `verification` — and
`operations(now)` lists them in the job's order. The job runs them; the page renders the same list for the state
the last inventory shows (`vtpm_script`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import VirtualMachine
from hosts.inventory.vmstates import vm_state_words
from hosts.models import Host
from hosts.remoting.catalog.vms import (
    DisableTpm,
    EnableTpm,
    GetVM,
    GetVmSecurity,
    NewLocalKeyProtector,
    RemoveSavedState,
    StopVM,
)
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.operation import Operation, quote
from hosts.remoting.session import HostSession
from jobs.kinds import JobFailed, JobPartlyFailed, Run

from ..powershell import PowerShellScript, by_hand

log = logging.getLogger(__name__)

ACTIONS = ("disable", "enable")


# Lazy (said in the reader's language where it is shown); typed str for the pages that list it with other texts.
TPM_OFF_WARNING = cast(
    str,
    gettext_lazy(
        "Turning the vTPM off loses everything it holds. A guest with BitLocker goes to recovery at its next "
        "boot unless BitLocker was suspended first (Suspend-BitLocker in the guest); Windows Hello PINs, face and "
        "fingerprint sign-in, and virtual smart card keys are gone for good. Have the BitLocker recovery key at hand."
    ),
)


BROKEN_GUARDIAN = "does not have a private key"  # in Windows' own error message: never translated
LOCAL_GUARDIAN_NAME = "UntrustedGuardian"  # the guardian Hyper-V applies security changes with (domain.md)


@dataclass(frozen=True)
class VmNow:
    """What the host shows of a VM before its TPM changes, which decides the steps: read live by the job, or taken
    from the last inventory by the page. The TPM and the key protector are read only when enabling."""

    state: str
    tpm_enabled: bool = False
    has_key_protector: bool = False

    @classmethod
    def of(cls, vm: VirtualMachine) -> VmNow:
        return cls("Saved" if vm.has_saved_state else vm.state, vm.tpm_enabled, vm.has_key_protector)


@dataclass(frozen=True)
class TpmStep:
    """One changing operation of a TPM change, run as a job step of that title."""

    operation: Operation[None]
    title: str
    destructive: bool = False
    done: str = ""  # the log line once it ran


@dataclass
class TpmChange:
    """One VM's change as the job does it, and the operations it sends for it."""

    vm_name: str
    action: str  # disable | enable
    remove_saved_state: bool = False

    @property
    def enabling(self) -> bool:
        return self.action == "enable"

    def look(self) -> GetVM:
        return GetVM(self.vm_name)

    def security(self) -> GetVmSecurity | None:
        """Enabling reads first whether the TPM is on already and whether the VM has a key protector."""
        return GetVmSecurity(self.vm_name) if self.enabling else None

    def refusal(self, state: str) -> str:
        """Why the job stops at this VM once it saw its state ("" = it goes on): Hyper-V changes a TPM only while
        the VM is Off, and a saved state is discarded only when the user chose that."""
        if state == "Saved" and not self.remove_saved_state:
            return _(
                "'%(vm)s' has a saved state, which cannot be resumed after a TPM change. Tick “remove the saved "
                "state” to discard it, or start the VM and shut it down from the guest first."
            ) % {"vm": self.vm_name}
        if state not in ("Off", "Saved"):
            return _(
                "'%(vm)s' is %(state)s: a TPM change needs it Off. Shut it down from the guest (or %(command)s) and "
                "run this again."
            ) % {"vm": self.vm_name, "state": vm_state_words(state), "command": by_hand(StopVM(self.vm_name))}
        return ""

    def steps(self, now: VmNow, host: Host) -> list[TpmStep]:
        """The changes, in order, for a VM the host shows as `now`; none when its TPM is on already."""
        # Titles in the job's language, fixed for the job: a resumed run finds its steps under the same titles.
        vm = self.vm_name
        if self.enabling and now.tpm_enabled:
            return []
        steps = []
        if now.state == "Saved":
            title = _("Remove the saved state of '%(vm)s' on %(host)s") % {"vm": vm, "host": host}
            done = _("Discarded the saved state of '%(vm)s'") % {"vm": vm}
            steps.append(TpmStep(RemoveSavedState(vm), title, True, done))
        if not self.enabling:
            return [*steps, TpmStep(DisableTpm(vm), tpm_step(vm, False, host), destructive=True)]
        if not now.has_key_protector:
            title = _("%(command)s on %(host)s") % {
                "command": f"Set-VMKeyProtector -NewLocalKeyProtector {quote(vm)}",
                "host": host,
            }
            done = _("'%(vm)s' is now sealed to the UntrustedGuardian of %(host)s") % {"vm": vm, "host": host}
            steps.append(TpmStep(NewLocalKeyProtector(vm), title, done=done))
        return [*steps, TpmStep(EnableTpm(vm), tpm_step(vm, True, host))]

    def verification(self) -> GetVmSecurity:
        """Read back the TPM setting: the change counts only when the host shows it."""
        return GetVmSecurity(self.vm_name)

    def operations(self, now: VmNow | None, host: Host) -> list[Operation[Any]]:
        """Everything the job sends for this VM, in order, when the host shows it as `now` (None: no such VM)."""
        if now is None or self.refusal(now.state):
            return [self.look()]
        security = self.security()
        steps = self.steps(now, host)
        looks: list[Operation[Any]] = [self.look(), *([security] if security else [])]
        return [*looks, *(step.operation for step in steps), self.verification()] if steps else looks


def tpm_step(vm_name: str, enabling: bool, host: object) -> str:
    """The title of the step that turns a VM's TPM on or off: the one step of each VM known before the job runs."""
    command = f"{'Enable' if enabling else 'Disable'}-VMTPM {quote(vm_name)}"
    return _("%(command)s on %(host)s") % {"command": command, "host": host}


def look_at(session: HostSession, host: Host, change: TpmChange) -> VmNow:
    """Read the VM as the change needs it; JobFailed when it is missing or cannot change now."""
    vm = session.run(change.look())
    if vm is None:
        raise JobFailed(
            _("%(host)s has no VM named '%(vm)s'. Refresh the inventory and choose again.")
            % {"host": host, "vm": change.vm_name}
        )
    refusal = change.refusal(vm.state)
    if refusal:
        raise JobFailed(refusal)
    security = change.security()
    if security is None:
        return VmNow(vm.state)
    found = session.run(security)
    return VmNow(vm.state, found.tpm_enabled, found.has_key_protector)


def change_vtpm(run: Run, session: HostSession, host: Host, change: TpmChange) -> str:
    """One VM's change: look, the steps that decides, then check the TPM reads as asked. Returns its outcome."""
    vm = change.vm_name
    steps = change.steps(look_at(session, host, change), host)
    if not steps:
        log.info(_("The TPM of '%(vm)s' is already on; nothing to do"), {"vm": vm})
        return _("%(vm)s: TPM already on") % {"vm": vm}
    for planned in steps:
        with run.step(planned.title, destructive=planned.destructive) as step:
            if step.needed:
                session.run(planned.operation)
                if planned.done:
                    log.info("%s", planned.done)
    if session.run(change.verification()).tpm_enabled != change.enabling:
        if change.enabling:
            still = _("Enable-VMTPM returned, but '%(vm)s' still shows its TPM disabled.")
        else:
            still = _("Disable-VMTPM returned, but '%(vm)s' still shows its TPM enabled.")
        raise JobFailed(still % {"vm": vm})
    if change.enabling:
        log.info(_("The TPM of '%(vm)s' is on"), {"vm": vm})
        return _("%(vm)s: TPM on") % {"vm": vm}
    log.info(_("The TPM of '%(vm)s' is off: it can start on any host, without a guardian"), {"vm": vm})
    return _("%(vm)s: TPM off") % {"vm": vm}


def remedy_of(exc: RemotingError, host: Host) -> tuple[str, str]:
    """What went wrong, and the page that fixes it ("" when none does): a link on the job's log line and page."""
    if isinstance(exc, RemoteCommandError) and BROKEN_GUARDIAN in exc.message:
        remedy = _(
            "the guardian of %(host)s has lost its private keys. Reset it first (Jobs → Reset a broken guardian), "
            "then run this again."
        ) % {"host": host}
        return f"{exc.message.strip()} — {remedy}", reset_url(host)
    return str(exc), ""


def reset_url(host: Host) -> str:
    return f"/jobs/new/reset/?{urlencode({'host': host.pk, 'guardian': LOCAL_GUARDIAN_NAME})}"


def change_vtpms(run: Run, session: HostSession, host: Host, changes: list[TpmChange]) -> str:
    """Each VM on its own: one failing does not stop the others; the job fails if any did, naming which. A failure
    with a remedy page logs it as the line's link and records it as the job page's next-action button."""
    done: list[str] = []
    failed: list[str] = []
    for change in changes:
        run.check_cancelled()
        try:
            done.append(change_vtpm(run, session, host, change))
        except (JobFailed, RemotingError) as exc:
            message, link = remedy_of(exc, host) if isinstance(exc, RemotingError) else (str(exc), "")
            log.error("'%s': %s", change.vm_name, message, extra={"job_link": link} if link else None)
            if link:
                run.record("next_url", link)  # the job page's button (jobs.views.NEXT_URL)
                run.record("next_label", _("Reset the broken guardian…"))
            failed.append(f"{change.vm_name}: {message}")
    run.record("changed", done)
    if failed and done:
        summary = _("%(done)s of %(count)s done: %(changed)s") % {
            "done": len(done),
            "count": len(changes),
            "changed": "; ".join(done),
        }
        raise JobPartlyFailed(summary, " | ".join(failed))
    if failed:
        none = _("None of %(count)s done; %(failed)s failed") % {"count": len(changes), "failed": len(failed)}
        raise JobFailed(f"{none} — " + " | ".join(failed))
    return "; ".join(done)


def changes_from(params: dict[str, Any], vms: list[str]) -> list[TpmChange]:
    """The job's changes, re-checking on the worker what the page checked: a disable needs every name confirmed."""
    action = params.get("action")
    if action not in ACTIONS or not vms:
        raise JobFailed(_("Choose the VMs and whether to turn their TPM off or on."))
    if action == "disable":
        unconfirmed = [vm for vm in vms if vm not in (params.get("confirmed") or [])]
        if unconfirmed:
            raise JobFailed(
                _("Turning the TPM off was not confirmed by typing the name of: %(vms)s.")
                % {"vms": ", ".join(unconfirmed)}
            )
    saved = set(params.get("remove_saved_state") or [])
    return [TpmChange(vm, str(action), vm in saved) for vm in vms]


def vtpm_script(host: Host, changes: list[TpmChange]) -> PowerShellScript:
    """What the job sends for `changes`, each VM as the host's last inventory shows it (the preflight page)."""
    rows = VirtualMachine.objects.filter(host=host, name__in=[change.vm_name for change in changes])
    now = {vm.name: VmNow.of(vm) for vm in rows}
    script = PowerShellScript()
    for change in changes:
        script.add(*change.operations(now.get(change.vm_name), host))
    return script
