"""Reset a broken guardian: escrow what can still be escrowed, keep the guardian's public metadata for an undo,
remove the guardian, and prove that TPM changes work again. Also the undo.

One plan behind the job and Show PowerShell. `decide_reset` turns what a host shows into a ResetPlan — read live
by the job (`plan_reset`), or taken from the last inventory by the preflight page (`plan_from_inventory`) — and the
plan names every operation the reset sends (`keep`, `removal`, `confirmation`, `check`). The job runs those
operations; `reset_script` renders the same ones, in the job's order. The undo works the same way through
RemovedGuardian (`looks`, `by_thumbprints`, `from_metadata`) and `undo_script`.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from console.params import parse_id
from hosts.inventory.analysis import UNTRUSTED_GUARDIAN, Pair
from hosts.inventory.models import Guardian, VirtualMachine
from hosts.inventory.vmstates import vm_state_words
from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ExportGuardian,
    GetGuardians,
    ImportGuardianMetadata,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    ReadFileBytes,
    RemoveFiles,
    RemoveGuardian,
    WriteFileBytes,
)
from hosts.remoting.catalog.inventory import CertificateFacts, GuardianFacts, ReadHostInventory, ReadVmDetails
from hosts.remoting.catalog.vms import DisableTpm, EnableTpm, GetVM
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.operation import quote
from hosts.remoting.session import HostSession
from hosts.vault.models import pairs_in_vault
from jobs.kinds import JobFailed, Run
from jobs.models import Job

from ..escrow.plan import escrow_lines, escrow_pair
from ..powershell import PowerShellScript, by_hand, sample_token
from ..preview import InventoryAnswers

log = logging.getLogger(__name__)


def temp_metadata_path(token: str) -> str:
    """The temporary file of a guardian's public metadata on the host (`token`: random in a job, a sample shown)."""
    return f"{TEMP_DIR}\\gc-{token}-guardian.xml"


@dataclass
class SealedVm:
    """A VM of the host whose key protector names the guardian being reset."""

    name: str
    state: str
    escrowed: bool  # one of its guardians' pairs is in the vault
    keys_here: bool  # the host holds the private keys of one of its guardians


@dataclass(frozen=True)
class SeenVm:
    """A VM as the reset sees it, from a live read or from the last inventory: what the plan decides on."""

    name: str
    state: str
    tpm_enabled: bool
    details_read: bool  # its security settings and key protector could be read
    pairs: list[Pair]  # (signing, encryption) of every guardian its key protector is sealed to


@dataclass
class ResetPlan:
    """What a reset of one guardian does, and the operations it sends for it."""

    guardian_name: str
    guardian: GuardianFacts | None = None
    vm_names: list[str] = field(default_factory=list)  # the VMs whose details the reset reads, sorted
    sealed: list[SealedVm] = field(default_factory=list)
    to_escrow: list[tuple[str, str, str]] = field(default_factory=list)  # (signing, encryption, guardian name)
    check_vm: str = ""  # an Off VM whose current TPM setting the verification re-applies
    check_tpm_enabled: bool = False
    problem: str = ""  # why the reset does not apply

    @property
    def name(self) -> str:
        """The guardian's name as the host spells it (the request may differ in case)."""
        return self.guardian.name if self.guardian is not None else self.guardian_name

    def keep(self, temp: str) -> tuple[ExportGuardian, ReadFileBytes, RemoveFiles]:
        """The guardian's public metadata written to `temp`, read back, and the file removed."""
        return ExportGuardian(self.name, temp), ReadFileBytes(temp), RemoveFiles([temp])

    def removal(self) -> RemoveGuardian:
        return RemoveGuardian(self.name)

    def confirmation(self) -> GetGuardians:
        """The guardians left after the removal: the broken one must be gone."""
        return GetGuardians()

    def check(self) -> tuple[GetVM, EnableTpm | DisableTpm] | None:
        """The Off VM looked up, then its current TPM setting re-applied; None when no VM is Off."""
        if not self.check_vm:
            return None
        tpm = EnableTpm(self.check_vm) if self.check_tpm_enabled else DisableTpm(self.check_vm)
        return GetVM(self.check_vm), tpm


def vm_details(vm_names: Iterable[str]) -> ReadVmDetails:
    """The reset's read of each VM's key protector, VMs by name: the host's order and the inventory's differ."""
    return ReadVmDetails(sorted(vm_names))


def _keyed(certificates: list[CertificateFacts]) -> set[str]:
    return {c.thumbprint.upper() for c in certificates if c.has_private_key}


def is_broken(guardian: GuardianFacts, keyed: set[str]) -> bool:
    """A guardian that lacks its private signing key, or whose encryption key is not in the store."""
    return not guardian.has_private_signing_key or guardian.encryption_thumbprint.upper() not in keyed


def decide_reset(guardian_name: str, guardian: GuardianFacts | None, vms: list[SeenVm], keyed: set[str]) -> ResetPlan:
    """The plan from what a host shows: its guardian (None: not there), its VMs, the thumbprints it holds private
    keys for. VMs are taken by name, so a live read and the inventory give the same order."""
    vms = sorted(vms, key=lambda vm: vm.name)
    plan = ResetPlan(guardian_name, guardian, vm_names=[vm.name for vm in vms])
    plan.check_vm, plan.check_tpm_enabled = check_candidate(
        [(vm.name, vm.state, vm.tpm_enabled, vm.details_read) for vm in vms]
    )
    if guardian is None:
        return plan
    identity = (guardian.signing_thumbprint.upper(), guardian.encryption_thumbprint.upper())
    sealed = [vm for vm in vms if identity in vm.pairs]
    vaulted = pairs_in_vault([identity, *(pair for vm in sealed for pair in vm.pairs)])  # one query, not one a VM
    for vm in sealed:
        escrowed = any(upper(p) in vaulted for p in vm.pairs)
        plan.sealed.append(SealedVm(vm.name, vm.state, escrowed, any(set(p) <= keyed for p in vm.pairs)))
    plan.to_escrow = pairs_to_escrow(identity, guardian.name, [vm.pairs for vm in sealed], keyed, vaulted)
    return plan


def upper(pair: Pair) -> Pair:
    return (pair[0].upper(), pair[1].upper())


def plan_reset(session: HostSession, host: Host, guardian_name: str = UNTRUSTED_GUARDIAN) -> ResetPlan:
    """Read the host live and say what a reset of `guardian_name` would do."""
    inventory = session.run(ReadHostInventory())
    inventory.facts.require_local()
    guardian = next((g for g in inventory.guardians if g.name.lower() == guardian_name.lower()), None)
    if guardian is None:
        problem = _("%(host)s has no guardian named '%(guardian)s': there is nothing to reset.") % {
            "host": host,
            "guardian": guardian_name,
        }
        return ResetPlan(guardian_name, problem=problem)
    keyed = _keyed(inventory.certificates)
    if not is_broken(guardian, keyed):
        problem = _(
            "Guardian '%(guardian)s' on %(host)s has its private keys: it is not broken, and removing it would only "
            "cut its VMs off. Nothing to reset."
        ) % {"guardian": guardian.name, "host": host}
        return ResetPlan(guardian_name, guardian, problem=problem)
    details = session.run(vm_details(vm.name for vm in inventory.vms))
    seen = []
    for vm in inventory.vms:
        d = details.get(vm.name)
        kp = d.key_protector if d is not None else None
        pairs = [(g.signing, g.encryption) for g in kp.guardians] if kp is not None and kp.present else []
        seen.append(SeenVm(vm.name, vm.state, bool(d and d.tpm_enabled), bool(d and d.security_read), pairs))
    return decide_reset(guardian_name, guardian, seen, keyed)


def plan_from_inventory(host: Host, guardian_name: str) -> ResetPlan:
    """What the reset will do, as far as the host's last inventory tells (the preflight page)."""
    row = Guardian.objects.filter(host=host, name=guardian_name).first()
    guardian = None
    if row is not None:
        guardian = GuardianFacts(
            row.name, row.has_private_signing_key, row.signing_thumbprint, row.encryption_thumbprint
        )
    seen = [
        SeenVm(vm.name, vm.state, vm.tpm_enabled, vm.details_read, vm.guardian_pairs)
        for vm in VirtualMachine.objects.filter(host=host)
    ]
    keyed = set(host.certificates.filter(has_private_key=True).values_list("thumbprint", flat=True))
    return decide_reset(guardian_name, guardian, seen, {t.upper() for t in keyed})


def pairs_to_escrow(
    identity: Pair, name: str, sealed: list[list[Pair]], keyed: set[str], vaulted: set[Pair]
) -> list[tuple[str, str, str]]:
    """(signing, encryption, guardian name) of what a reset escrows first: the guardian's own pair when the host
    holds its keys, and each pair of a VM sealed to it (`sealed`: their pairs) that the host holds keys for —
    but not those the vault has already (`vaulted`, upper case)."""
    wanted: dict[Pair, str] = {identity: name} if set(identity) <= keyed else {}
    for pairs in sealed:
        for pair in pairs:
            if set(pair) <= keyed:
                wanted.setdefault(pair, name if pair == identity else "")
    return [(s, e, n) for (s, e), n in wanted.items() if upper((s, e)) not in vaulted]


def check_candidate(vms: list[tuple[str, str, bool, bool]]) -> tuple[str, bool]:
    """From (name, state, TPM enabled, security read) of each VM: an Off VM whose TPM setting can be re-applied
    as a check, preferring one whose TPM is off (re-applying "off" changes nothing at all). ("", False) when no
    VM is Off."""
    readable = [(name, tpm) for name, state, tpm, read in vms if state == "Off" and read]
    return next(((name, tpm) for name, tpm in readable if not tpm), readable[0] if readable else ("", False))


# -- the job ----------------------------------------------------------------------------------------------------


# The titles of the steps, shared by the job and its outline (what the job page lists before they run). They are
# in the job's language: jobs/runner.py runs the job, and registry.outline_of makes its outline, under
# translation.override(job.language), which never changes for a job; so a run resumed after a worker restart
# records and skips its steps (JobStep.key) under the same titles as the run before it.
def read_step(name: str, host: object) -> str:
    return _("Read what is sealed to '%(guardian)s' on %(host)s") % {"guardian": name, "host": host}


def keep_step(name: str, host: object) -> str:
    return _("Keep guardian '%(guardian)s' of %(host)s for an undo") % {"guardian": name, "host": host}


def remove_step(name: str, host: object) -> str:
    return _("%(command)s on %(host)s") % {"command": f"Remove-HgsGuardian '{name}'", "host": host}


def check_step(host: object) -> str:
    return _("Check that TPM changes work on %(host)s") % {"host": host}


def undo_check_step(name: str, host: object) -> str:
    return _("Check that '%(guardian)s' can come back on %(host)s") % {"guardian": name, "host": host}


def recreate_step(name: str, host: object) -> str:
    return _("Re-create guardian '%(guardian)s' on %(host)s") % {"guardian": name, "host": host}


def escrow_first_step(name: str, signing: str, encryption: str, host: object) -> str:
    if not name:
        return _("Escrow guardian %(signing)s/%(encryption)s from %(host)s before the reset") % {
            "signing": signing[:8],
            "encryption": encryption[:8],
            "host": host,
        }
    return _("Escrow %(guardian)s %(signing)s/%(encryption)s from %(host)s before the reset") % {
        "guardian": name,
        "signing": signing[:8],
        "encryption": encryption[:8],
        "host": host,
    }


def reset_outline(name: str, host: str) -> list[str]:
    """The reset's steps known before it runs; the escrows it needs first show when they run."""
    return [read_step(name, host), keep_step(name, host), remove_step(name, host), check_step(host)]


def undo_outline(name: str, host: str) -> list[str]:
    return [undo_check_step(name, host), recreate_step(name, host)]


def reset_guardian(run: Run, session: HostSession, host: Host, guardian_name: str = UNTRUSTED_GUARDIAN) -> str:
    """The whole reset; returns a one-line summary. Raises JobFailed with what is left when a step fails."""
    with run.step(read_step(guardian_name, host)):
        try:
            plan = plan_reset(session, host, guardian_name)
        except RemotingError as exc:
            raise JobFailed(
                _("Nothing was changed: %(host)s could not be read — %(error)s") % {"host": host, "error": exc}
            ) from None
        if plan.problem:
            raise JobFailed(plan.problem)
        describe_plan(host, plan)
    escrowed = escrow_before_reset(run, session, host, plan)
    run.check_cancelled()
    remove_guardian(run, session, host, plan)
    checked = verify_tpm_changes(run, session, host, plan)
    run.record("sealed_vms", [vm.name for vm in plan.sealed])
    words = {"guardian": plan.name, "host": host, "count": escrowed, "checked": checked}
    if not escrowed:
        return _("Removed '%(guardian)s' from %(host)s (no pair escrowed first); %(checked)s") % words
    return (
        ngettext(
            "Removed '%(guardian)s' from %(host)s (%(count)d pair escrowed first); %(checked)s",
            "Removed '%(guardian)s' from %(host)s (%(count)d pairs escrowed first); %(checked)s",
            escrowed,
        )
        % words
    )


def describe_plan(host: Host, plan: ResetPlan) -> None:
    if not plan.sealed:
        log.info(_("No VM on %(host)s is sealed to this guardian"), {"host": host})
    for vm in plan.sealed:
        where = _("escrowed in the vault") if vm.escrowed else _("NOT escrowed anywhere")
        keys = _("its keys are on this host") if vm.keys_here else _("no private key for it on this host")
        level = logging.INFO if vm.escrowed or vm.keys_here else logging.WARNING
        log.log(
            level,
            _("VM '%(vm)s' (%(state)s) is sealed to it: %(where)s; %(keys)s"),
            {"vm": vm.name, "state": vm_state_words(vm.state), "where": where, "keys": keys},
        )
    count = len(plan.to_escrow)
    if not count:
        log.info(_("No pair to escrow before removing the guardian"))
    else:
        many = ngettext(
            "%(count)d pair to escrow before removing the guardian",
            "%(count)d pairs to escrow before removing the guardian",
            count,
        )
        log.info(many, {"count": count})


def escrow_before_reset(run: Run, session: HostSession, host: Host, plan: ResetPlan) -> int:
    """Escrow every pair the host still holds keys for and the vault lacks; stop the reset if one fails."""
    for signing, encryption, name in plan.to_escrow:
        with run.step(escrow_first_step(name, signing, encryption, host)):
            try:
                escrow_pair(session, host, signing, encryption, guardian_name=name, user=run.user)
            except (JobFailed, RemotingError) as exc:
                raise JobFailed(
                    _(
                        "Could not escrow %(signing)s/%(encryption)s first, so the guardian was NOT removed and "
                        "nothing changed on %(host)s: %(error)s"
                    )
                    % {"signing": signing[:8], "encryption": encryption[:8], "host": host, "error": exc}
                ) from None
    return len(plan.to_escrow)


def keep_metadata(session: HostSession, plan: ResetPlan) -> str:
    """The guardian's public metadata (Export-HgsGuardian XML, no private key), base64, for the undo."""
    export, read, remove = plan.keep(temp_metadata_path(secrets.token_hex(8)))
    try:
        session.run(export)
        return base64.b64encode(session.run(read)).decode()
    finally:
        session.run(remove)


def remove_guardian(run: Run, session: HostSession, host: Host, plan: ResetPlan) -> None:
    assert plan.guardian is not None
    name = plan.name
    with run.step(keep_step(name, host)):
        kept = RemovedGuardian(
            host.name,
            name,
            plan.guardian.signing_thumbprint.upper(),
            plan.guardian.encryption_thumbprint.upper(),
            keep_metadata(session, plan),
        )
        run.record("removed_guardian", kept.record())
        log.info(
            _("Recorded for the undo: '%(guardian)s' signing %(signing)s, encryption %(encryption)s"),
            {"guardian": name, "signing": kept.signing_thumbprint, "encryption": kept.encryption_thumbprint},
        )
    with run.step(remove_step(name, host), destructive=True) as step:
        if step.needed:
            session.run(plan.removal())
            log.info(
                _("Removed guardian '%(guardian)s' from %(host)s; its certificates, if any, stay in the store"),
                {"guardian": name, "host": host},
            )


def verify_tpm_changes(run: Run, session: HostSession, host: Host, plan: ResetPlan) -> str:
    """Re-apply an Off VM's current TPM setting: it changes nothing, and fails while a broken guardian is there."""
    with run.step(check_step(host)):
        remaining = [g for g in session.run(plan.confirmation()) if g.name == plan.name]
        if remaining:
            raise JobFailed(
                _("Guardian '%(guardian)s' is still on %(host)s after Remove-HgsGuardian.")
                % {"guardian": remaining[0].name, "host": host}
            )
        check = plan.check()
        if check is None:
            log.warning(
                _(
                    "No VM on %(host)s is Off, so no TPM setting could be re-applied as a check. The broken guardian "
                    "is gone; the next TPM change will create a fresh UntrustedGuardian with private keys."
                ),
                {"host": host},
            )
            return _("guardian removed (no Off VM to check a TPM change with)")
        look, reapply = check
        vm = session.run(look)
        if vm is None or vm.state != "Off":
            return _("guardian removed; VM '%(vm)s' is no longer Off, so the check was skipped") % {"vm": plan.check_vm}
        try:
            session.run(reapply)
        except RemoteCommandError as exc:
            raise JobFailed(
                _(
                    "The guardian was removed, but re-applying the TPM setting of '%(vm)s' still fails: %(error)s. "
                    "Look at Get-HgsGuardian on %(host)s for another guardian without private keys."
                )
                % {"vm": plan.check_vm, "error": exc.message, "host": host}
            ) from None
        if plan.check_tpm_enabled:
            reapplied = _("TPM changes work again on %(host)s: re-applied “TPM on” to '%(vm)s' (no change)")
        else:
            reapplied = _("TPM changes work again on %(host)s: re-applied “TPM off” to '%(vm)s' (no change)")
        log.info(reapplied, {"host": host, "vm": plan.check_vm})
        return _("TPM changes work again (checked on '%(vm)s')") % {"vm": plan.check_vm}


def reset_script(plan: ResetPlan, host: Host) -> PowerShellScript:
    """What the reset sends, in the job's order, for a plan (from `host`'s last inventory, on the preflight page)."""
    script = PowerShellScript().add(ReadHostInventory())
    InventoryAnswers(host, script)(vm_details(plan.vm_names))  # with the host's reading of each key protector
    for signing, encryption, name in plan.to_escrow:
        script.comment(f"Escrowed first (the vault lacks it): {name or 'pair'} {signing[:8]}/{encryption[:8]}")
        escrow_lines(script, signing, encryption)
    script.add(*plan.keep(temp_metadata_path(sample_token())), plan.removal(), plan.confirmation())
    check = plan.check()
    if check is None:
        return script.comment("No VM is Off: no TPM setting is re-applied as a check.")
    script.comment(
        f"The check: re-apply “TPM {'on' if plan.check_tpm_enabled else 'off'}” to '{plan.check_vm}' (no change)"
    )
    return script.add(*check)


# -- the undo ---------------------------------------------------------------------------------------------------


RECORD_FIELDS = ("host", "guardian_name", "signing_thumbprint", "encryption_thumbprint", "metadata_xml")


@dataclass(frozen=True)
class RemovedGuardian:
    """What a reset kept of the guardian it removed (its job's `removed_guardian` result): enough to re-create it,
    and the operations that do."""

    host: str
    guardian_name: str
    signing_thumbprint: str
    encryption_thumbprint: str
    metadata_xml: str = ""  # base64 of Export-HgsGuardian's XML: its public certificates, no private key

    @classmethod
    def from_record(cls, record: dict[str, str]) -> RemovedGuardian:
        """A job's stored record; a field an older console did not keep reads as empty (that way of undoing is then
        not open), never as a crash of the undo page."""
        return cls(*(str(record.get(name) or "") for name in RECORD_FIELDS))

    def record(self) -> dict[str, str]:
        return asdict(self)

    @property
    def identity(self) -> Pair:
        return self.signing_thumbprint, self.encryption_thumbprint

    def looks(self) -> tuple[GetGuardians, ListShieldedCertificates]:
        """What the undo reads first: whether a guardian of that name is back, and whether its certificates are."""
        return GetGuardians(), ListShieldedCertificates()

    def by_thumbprints(self) -> NewGuardianByThumbprints:
        return NewGuardianByThumbprints(self.guardian_name, *self.identity)

    def from_metadata(self, temp: str) -> tuple[WriteFileBytes, ImportGuardianMetadata, RemoveFiles]:
        """The kept metadata written to `temp`, imported as the guardian, and the file removed."""
        data = base64.b64decode(self.metadata_xml)
        return WriteFileBytes(temp, data), ImportGuardianMetadata(temp, self.guardian_name), RemoveFiles([temp])


def reset_job_of(job_id: object) -> Job | None:
    """The reset job a page or job parameter names (a string or a number), or None."""
    pk = parse_id(str(job_id))
    return Job.objects.filter(pk=pk, kind="reset_guardian").first() if pk is not None else None


def removed_by(job: Job | None) -> RemovedGuardian | None:
    """What that reset job removed, if it removed anything. A record without the guardian's name and both
    thumbprints cannot re-create it: nothing to undo (the undo page says so rather than failing)."""
    removed = job.results.get("removed_guardian") if job is not None else None
    needed = {"guardian_name", "signing_thumbprint", "encryption_thumbprint"}
    if not isinstance(removed, dict) or not needed <= removed.keys():
        return None
    return RemovedGuardian.from_record(removed)


def undo_reset(run: Run, session: HostSession, host: Host, removed: RemovedGuardian) -> str:
    """Re-create the removed guardian: by thumbprints when its certificates are in the store, else from the
    metadata kept before the reset (its public certificates, as it was)."""
    name = removed.guardian_name
    guardians, listing = removed.looks()
    with run.step(undo_check_step(name, host)):
        existing = next((g for g in session.run(guardians) if g.name.lower() == name.lower()), None)
        if existing is not None:
            if (existing.signing_thumbprint.upper(), existing.encryption_thumbprint.upper()) == removed.identity:
                return _("'%(guardian)s' is already on %(host)s with the same certificates; nothing to undo") % {
                    "guardian": name,
                    "host": host,
                }
            raise JobFailed(
                _(
                    "%(host)s has a new guardian named '%(guardian)s' now (signing %(signing)s), made after the reset "
                    "— enabling a TPM creates one. The undo would have to remove it, and VMs sealed since then would "
                    "lose their owner, so nothing was changed. If you are sure, on the host: %(command)s, then run "
                    "the undo again."
                )
                % {
                    "host": host,
                    "guardian": name,
                    "signing": existing.signing_thumbprint,
                    "command": by_hand(RemoveGuardian(name)),
                }
            )
        store = session.run(listing)
    with run.step(recreate_step(name, host), destructive=True) as step:
        words = {"guardian": name, "host": host}
        if not step.needed:
            return _("'%(guardian)s' re-created on %(host)s") % words
        if store.exists and all(store.find(t) for t in removed.identity):
            session.run(removed.by_thumbprints())
            log.info(_("Re-created '%(guardian)s' on %(host)s by thumbprints"), words)
            return _("'%(guardian)s' re-created on %(host)s by thumbprints") % words
        restore_from_metadata(session, removed)
        log.info(
            _(
                "Re-created '%(guardian)s' on %(host)s from its metadata kept before the reset (its certificates are "
                "no longer in the store)"
            ),
            words,
        )
    return _("'%(guardian)s' re-created on %(host)s from its metadata kept before the reset") % words


def restore_from_metadata(session: HostSession, removed: RemovedGuardian) -> None:
    if not removed.metadata_xml:
        raise JobFailed(
            _(
                "The certificates of '%(guardian)s' are no longer in the store and the reset kept no metadata: it "
                "cannot be re-created. (It had already lost its private keys, so no VM lost access through the "
                "reset.)"
            )
            % {"guardian": removed.guardian_name}
        )
    write, import_, remove = removed.from_metadata(temp_metadata_path(secrets.token_hex(8)))
    try:
        session.run(write)
        session.run(import_)
    finally:
        session.run(remove)


def certificates_in_inventory(host: Host, removed: RemovedGuardian) -> bool:
    """Whether the host's last inventory lists both certificates of the removed guardian: the undo's branch."""
    found = set(host.certificates.filter(thumbprint__in=removed.identity).values_list("thumbprint", flat=True))
    return found >= set(removed.identity)


def undo_script(job: Job, removed: RemovedGuardian, by_thumbprints: bool, looks: bool = True) -> PowerShellScript:
    """What the undo sends when it re-creates the guardian `by_thumbprints` (else from the kept metadata, inline so
    the lines run as shown); `looks=False` leaves out the reads, for showing the other way on its own."""
    script = PowerShellScript()
    if looks:
        script.add(*removed.looks())
    if by_thumbprints:
        return script.add(removed.by_thumbprints())
    if not removed.metadata_xml:  # the job stops here, sending nothing more
        return script.comment(f"Job #{job.pk} kept no metadata of '{removed.guardian_name}': this way back is closed.")
    kept = f"[Convert]::FromBase64String({quote(removed.metadata_xml)})"
    script.bind(
        "file", "$guardianXml", kept, f"The public metadata of '{removed.guardian_name}' that job #{job.pk} kept:"
    )
    return script.add(*removed.from_metadata(temp_metadata_path(sample_token())))
