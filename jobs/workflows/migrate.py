"""Move a VM from one lab host to another, with the right to unseal its vTPM.

Methods: (a) `export` — Export-VM to the lab share, Compare-VM and Import-VM -Copy on the target (new ID optional);
(b) `live` — Move-VM, when both hosts allow live migration; (c) `register` — Import-VM of files already on the
target, registered in place.
How the target may unseal the VM: `carry` the owner's PFX pair through the vault (escrowed first if needed), or
`authorise` the target's own guardian in the VM's key protector (Export-HgsGuardian on the target,
Import-HgsGuardian + Grant-HgsKeyProtectorAccess + Set-VMKeyProtector on the source): no private key leaves the
source. Nothing is needed when the target can unseal already or the VM has no key protector.

Every change is written in a ledger with how to undo it. When a step fails the ledger is unwound as far as the hosts
allow, and the failure says exactly what is left and how to finish by hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from console.models import AuditEvent
from console.roles import require
from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ExportGuardian,
    GetGuardians,
    ImportGuardianMetadata,
    ReadFileBytes,
    RemoveFiles,
    WriteFileBytes,
)
from hosts.remoting.catalog.inventory import HostInventoryFacts, ReadHostInventory, ReadVmDetails, VmFacts
from hosts.remoting.catalog.vms import (
    CompareMove,
    CompareVM,
    ExportVM,
    GenerateLocalGuardian,
    GetVM,
    GetVmHost,
    GetVmSecurity,
    GrantKeyProtectorAccess,
    ImportOptions,
    ImportVM,
    MoveVM,
    RemoveFolder,
    RemoveVM,
    SetKeyProtector,
    StartVM,
    StopVM,
    TestPath,
    exported_config_path,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.keyprotector import KeyProtectorInfo
from hosts.remoting.operation import Operation
from hosts.vault.models import EscrowedPair, find_pair
from jobs.kinds import JobCancelled, JobContext, JobFailed, job_kind

from .powershell import PowerShellScript, sample_token
from .reset import preflight_link

METHODS = {
    "export": "Export to the lab share, import a copy on the target",
    "live": "Live migration (Move-VM)",
    "register": "Register VM files already on the target",
}
UNSEAL = {
    "carry": "Carry the owner guardian's PFX pair through the vault",
    "authorise": "Authorise the target's own guardian in the VM's key protector (no private key leaves the source)",
}
SOURCE_AFTER = {"off": "Leave the source copy off", "remove": "Remove the source copy (its disks stay on the host)"}


def lab_share() -> str:
    return str(getattr(settings, "LAB_SHARE", "\\\\LAB\\share"))


@dataclass
class MigrationOptions:
    vm_name: str
    method: str = "export"
    unseal: str = "carry"
    new_id: bool = False
    start: bool = True
    source_after: str = "off"
    share: str = ""
    files_path: str = ""  # method "register": the .vmcx of the VM on the target

    def __post_init__(self) -> None:
        self.share = self.share or lab_share()

    def problems(self) -> list[str]:
        found = []
        if self.method not in METHODS:
            found.append("Choose a migration method.")
        if self.unseal not in UNSEAL:
            found.append("Choose how the target gets the right to unseal the VM.")
        if self.source_after not in SOURCE_AFTER:
            found.append("Choose what happens to the source copy.")
        if self.method == "register" and not self.files_path.lower().endswith(".vmcx"):
            found.append("Give the path of the VM's .vmcx file on the target (…\\Virtual Machines\\<ID>.vmcx).")
        if self.method == "export" and not self.share.startswith("\\\\"):
            found.append("The lab share must be a UNC path (\\\\server\\share) that both hosts can reach.")
        return found

    @classmethod
    def from_params(cls, vm_name: str, params: dict[str, Any]) -> MigrationOptions:
        known = {k: params[k] for k in ("method", "unseal", "source_after", "share", "files_path") if k in params}
        return cls(vm_name, new_id=bool(params.get("new_id")), start=bool(params.get("start", True)), **known)

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        params.pop("vm_name")
        return params


# -- preflight --------------------------------------------------------------------------------------------------------


@dataclass
class Check:
    level: str  # ok | warn | fail
    text: str


@dataclass
class HostSide:
    """What one host looks like for the migration, read live."""

    inventory: HostInventoryFacts
    computer_name: str
    live_migration: bool
    virtual_machine_path: str = ""

    @property
    def keyed(self) -> set[str]:
        return {c.thumbprint.upper() for c in self.inventory.certificates if c.has_private_key}

    def can_unseal(self, kp: KeyProtectorInfo) -> bool:
        return any({g.signing, g.encryption} <= self.keyed for g in kp.guardians)

    def vm(self, name: str) -> VmFacts | None:
        return next((vm for vm in self.inventory.vms if vm.name.lower() == name.lower()), None)


def read_side(session: Any) -> HostSide:
    inventory = session.run(ReadHostInventory())
    inventory.facts.require_local()
    vm_host = session.run(GetVmHost())
    name = vm_host.computer_name or inventory.facts.computer_name
    return HostSide(inventory, name, vm_host.live_migration, vm_host.virtual_machine_path)


@dataclass
class MigrationPlan:
    checks: list[Check] = field(default_factory=list)
    vm: VmFacts | None = None
    tpm_enabled: bool = False
    key_protector: KeyProtectorInfo = field(default_factory=lambda: KeyProtectorInfo(present=False))
    unseal_needed: bool = False
    vault_pair: EscrowedPair | None = None
    target_guardian: str = ""  # authorise: the target's guardian that will be granted access ("" = generate one)
    import_name: str = ""  # carry: the name the owner's pair gets on the target
    target_name: str = ""  # the target's computer name (Move-VM's destination)
    source_name: str = ""  # the source's computer name (where a live-migrated VM would go back to)
    target_storage: str = ""  # live migration: the folder on the target that receives all the VM's files

    def add(self, level: str, text: str) -> None:
        self.checks.append(Check(level, text))

    @property
    def failures(self) -> list[str]:
        return [c.text for c in self.checks if c.level == "fail"]


def plan_migration(
    source_session: Any, target_session: Any, source: Any, target: Any, opts: MigrationOptions
) -> MigrationPlan:
    """Check both hosts live and decide every step; failures are listed in plan.checks, nothing is changed."""
    plan = MigrationPlan()
    src, tgt = read_side(source_session), read_side(target_session)
    plan.add("ok", f"{source} and {target} answer, both in Local mode")
    plan.target_name, plan.source_name = tgt.computer_name, src.computer_name
    if tgt.virtual_machine_path:
        plan.target_storage = f"{tgt.virtual_machine_path.rstrip(chr(92))}\\{opts.vm_name}"
    plan.vm = src.vm(opts.vm_name)
    if plan.vm is None:
        plan.add("fail", f"{source} has no VM named '{opts.vm_name}'.")
        return plan
    details = source_session.run(ReadVmDetails([plan.vm.name]))[plan.vm.name]
    plan.tpm_enabled, plan.key_protector = details.tpm_enabled, details.key_protector
    check_state(plan, opts, source)
    check_target(plan, tgt, target, opts)
    check_method(plan, src, tgt, source_session, target_session, source, target, opts)
    check_unseal(plan, src, tgt, source, target, opts)
    if opts.method == "live":
        compare_move(plan, source_session, source, target)
    return plan


def check_state(plan: MigrationPlan, opts: MigrationOptions, source: Any) -> None:
    assert plan.vm is not None
    state = plan.vm.state
    if state == "Running" and opts.method != "live":
        plan.add("warn", f"'{plan.vm.name}' is Running on {source}: the job shuts it down before moving it.")
    elif state not in ("Off", "Running", "Saved"):
        plan.add("fail", f"'{plan.vm.name}' is {state} on {source}: turn it Off (or let it run) first.")
    else:
        plan.add("ok", f"'{plan.vm.name}' is {state} on {source}")


def check_target(plan: MigrationPlan, tgt: HostSide, target: Any, opts: MigrationOptions) -> None:
    assert plan.vm is not None
    if tgt.vm(opts.vm_name) is not None:
        plan.add(
            "fail",
            f"{target} already has a VM named '{opts.vm_name}'. Rename or remove one of them first: two VMs of one "
            "name on a host cannot be told apart by name.",
        )
    same_id = any(vm.vm_id == plan.vm.vm_id for vm in tgt.inventory.vms)
    if same_id and opts.method == "live":
        plan.add("fail", f"{target} already has a VM with the ID {plan.vm.vm_id}.")
    elif same_id and opts.method == "export" and not opts.new_id:
        plan.add("fail", f"{target} already has a VM with the ID {plan.vm.vm_id}: tick “new ID” to import a copy.")


def check_method(
    plan: MigrationPlan,
    src: HostSide,
    tgt: HostSide,
    source_session: Any,
    target_session: Any,
    source: Any,
    target: Any,
    opts: MigrationOptions,
) -> None:
    if opts.method == "live":
        for host, side in ((source, src), (target, tgt)):
            if side.live_migration:
                plan.add("ok", f"Live migration is enabled on {host}")
            else:
                plan.add("fail", f"Live migration is not enabled on {host} (Enable-VMMigration): use export/import.")
    elif opts.method == "export":
        for host, session in ((source, source_session), (target, target_session)):
            if session.run(TestPath(opts.share)):
                plan.add("ok", f"{host} sees the lab share {opts.share}")
            else:
                plan.add("fail", f"{host} cannot reach the lab share {opts.share}.")
        plan.add("ok", "Compare-VM runs on the target after the export; the job stops if it reports a problem")
    else:
        if not target_session.run(TestPath(opts.files_path)):
            plan.add("fail", f"{target} has no file {opts.files_path}.")
            return
        report = target_session.run(CompareVM(ImportOptions(opts.files_path, copy=False)))
        for problem in report.incompatibilities:
            plan.add("fail", f"Compare-VM on {target}: {problem}")
        if report.ok:
            plan.add("ok", f"Compare-VM on {target} reports no incompatibility")


def compare_move(plan: MigrationPlan, source_session: Any, source: Any, target: Any) -> None:
    """Ask the source what Move-VM would find wrong (it checks the target itself, as the move will). That the target
    cannot unwrap the key protector yet is expected when the job gives it the right first: the job asks again then,
    just before Move-VM."""
    assert plan.vm is not None
    if plan.failures:
        return  # its findings would repeat the ones above
    report = source_session.run(CompareMove(plan.vm.name, plan.target_name, plan.target_storage))
    for problem in report.incompatibilities:
        if plan.unseal_needed and "key protector" in problem.lower():
            plan.add(
                "ok",
                f"Compare-VM on {source}: {target} cannot unwrap the key protector yet — the job gives it "
                "the right first, then runs Compare-VM again before Move-VM",
            )
        else:
            plan.add("fail", f"Compare-VM on {source} for a move to {target}: {problem}")
    if report.ok:
        plan.add("ok", f"Compare-VM on {source} reports no incompatibility for a move to {target}")


def check_unseal(
    plan: MigrationPlan,
    src: HostSide,
    tgt: HostSide,
    source: Any,
    target: Any,
    opts: MigrationOptions,
) -> None:
    kp = plan.key_protector
    if not kp.present:
        plan.add("ok", "The VM has no key protector: it needs no guardian on the target")
        return
    if tgt.can_unseal(kp):
        plan.add("ok", f"{target} already holds the private keys of a guardian of this VM")
        return
    plan.unseal_needed = True
    if opts.unseal == "carry":
        plan_carry(plan, src, tgt, source, target)
    else:
        plan_authorise(plan, src, tgt, source, target)


def plan_carry(plan: MigrationPlan, src: HostSide, tgt: HostSide, source: Any, target: Any) -> None:
    from .import_guardian import distinct_name

    kp = plan.key_protector
    ordered = ([kp.owner] if kp.owner else []) + [g for g in kp.guardians if g != kp.owner]
    plan.vault_pair = next((p for g in ordered if (p := find_pair(g.signing, g.encryption)) is not None), None)
    if plan.vault_pair is not None:
        plan.add("ok", f"{target} will get {plan.vault_pair} from the vault")
        plan.import_name = distinct_name(plan.vault_pair, tgt.inventory.guardians)
    elif kp.owner is not None and {kp.owner.signing, kp.owner.encryption} <= src.keyed:
        plan.add("ok", f"The owner guardian will be escrowed from {source} first, then imported to {target}")
        escrowed = EscrowedPair(signing_thumbprint=kp.owner.signing, encryption_thumbprint=kp.owner.encryption)
        plan.import_name = distinct_name(escrowed, tgt.inventory.guardians)
    else:
        plan.add("fail", "No guardian of this VM is in the vault, and the source lacks the owner's private keys.")


def plan_authorise(plan: MigrationPlan, src: HostSide, tgt: HostSide, source: Any, target: Any) -> None:
    assert plan.vm is not None
    owner = plan.key_protector.owner
    if owner is None or owner.signing not in src.keyed:
        plan.add("fail", f"{source} lacks the owner's private signing key, which granting access needs: use carry.")
    if plan.vm.state == "Saved":
        plan.add("fail", "A saved state cannot be resumed after its key protector changes: use carry, or discard it.")
    elif plan.vm.state == "Running":
        plan.add("warn", "The VM is shut down before its key protector changes (it cannot change while running).")
    local = next((g for g in tgt.inventory.guardians if g.name == UNTRUSTED_GUARDIAN), None)
    if local is None:
        plan.add("ok", f"{target} has no guardian yet: the job creates its UntrustedGuardian, then authorises it")
    elif not local.has_private_signing_key or local.encryption_thumbprint.upper() not in tgt.keyed:
        plan.add("fail", f"The UntrustedGuardian of {target} has lost its private keys: reset it first.")
    else:
        plan.target_guardian = local.name
        plan.add("ok", f"The UntrustedGuardian of {target} will be authorised in the VM's key protector")


# -- the ledger: what was done, how to undo it ---------------------------------------------------------------------


@dataclass
class Entry:
    done: str
    undo: Callable[[], None] | None = None
    by_hand: str = ""  # what a person runs to undo it when the console cannot


class Ledger:
    def __init__(self, run: Any) -> None:
        self.run = run
        self.entries: list[Entry] = []

    def did(self, done: str, undo: Callable[[], None] | None = None, by_hand: str = "") -> None:
        self.entries.append(Entry(done, undo, by_hand))

    def unwind(self) -> tuple[list[str], list[str]]:
        """Undo what can be undone, newest first; returns (undone, left with how to finish by hand)."""
        undone, left = [], []
        for entry in reversed(self.entries):
            if entry.undo is None:
                left.append(entry.done + (f" — {entry.by_hand}" if entry.by_hand else ""))
                continue
            try:
                entry.undo()
                undone.append(entry.done)
                self.run.log(f"Undone: {entry.done}", "warning")
            except (RemotingError, JobFailed) as exc:
                left.append(f"{entry.done} (could not undo: {exc}) — by hand: {entry.by_hand}")
        return undone, left


def again(session: Any, op: Operation[Any]) -> Any:
    """Run a clean-up operation, reconnecting once if the connection broke (the usual reason we are cleaning up)."""
    try:
        return session.run(op)
    except RemotingError:
        try:
            session.close()
            session.open()
        except RemotingError:
            pass
        return session.run(op)


# -- the migration -------------------------------------------------------------------------------------------------


class Migration:
    """One migration's steps over both sessions, writing what it changes into the ledger."""

    def __init__(self, run: Any, sessions: tuple[Any, Any], hosts: tuple[Any, Any], opts: MigrationOptions) -> None:
        self.run = run
        self.src_s, self.tgt_s = sessions
        self.source, self.target = hosts
        self.opts = opts
        self.ledger = Ledger(run)
        self.plan = MigrationPlan()
        self.granted_key_protector = b""  # authorise: the protector that names the target's guardian too

    @property
    def vm(self) -> VmFacts:
        assert self.plan.vm is not None
        return self.plan.vm

    def execute(self) -> str:
        with self.run.step(f"Preflight on {self.source} and {self.target}"):
            try:
                self.plan = plan_migration(self.src_s, self.tgt_s, self.source, self.target, self.opts)
            except RemotingError as exc:
                raise JobFailed(f"Nothing was changed: the preflight could not read both hosts — {exc}") from None
            for check in self.plan.checks:
                self.run.log(check.text, {"ok": "info", "warn": "warning", "fail": "error"}[check.level])
            if self.plan.failures:
                raise JobFailed("Nothing was changed. " + " ".join(self.plan.failures))
        try:
            self.give_target_the_right_to_unseal()
            self.run.check_cancelled()
            self.move()
            started = self.start_on_target()
            after = self.handle_source_copy()
        except (JobFailed, RemotingError) as exc:
            raise JobFailed(self.failure(exc)) from None
        except JobCancelled as exc:
            # Cancelled between steps: put back what can be put back, say what is left, end as cancelled.
            self.run.log(self.failure(exc), "warning")
            raise
        self.run.record("target_vm", {"host": self.target.name, "name": self.opts.vm_name})
        return f"'{self.opts.vm_name}' moved from {self.source} to {self.target}{started}; {after}"

    def failure(self, exc: Exception) -> str:
        self.run.log(f"Failed: {exc}", "error")
        undone, left = self.ledger.unwind()
        parts = [f"The migration of '{self.opts.vm_name}' failed: {exc}."]
        parts.append("Undone: " + "; ".join(undone) + "." if undone else "Nothing had to be undone.")
        if left:
            parts.append("Left as it is: " + "; ".join(left) + ".")
        parts.append(f"The VM is on {self.where_is_it()}.")
        return " ".join(parts)

    def where_is_it(self) -> str:
        found = []
        for host, session in ((self.source, self.src_s), (self.target, self.tgt_s)):
            try:
                vm = again(session, GetVM(self.opts.vm_name))
            except RemotingError:
                found.append(f"{host} (unreachable: check by hand with Get-VM -Name '{self.opts.vm_name}')")
                continue
            if vm is not None:
                found.append(f"{host} ({vm.state})")
        return " and ".join(found) or "neither host: look at the lab share and Get-VM on both hosts"

    # -- unseal ----------------------------------------------------------------------------------------------------

    def give_target_the_right_to_unseal(self) -> None:
        if not self.plan.unseal_needed:
            return
        if self.opts.unseal == "carry":
            self.carry_owner_pair()
        else:
            self.authorise_target_guardian()

    def carry_owner_pair(self) -> None:
        from .escrow import escrow_pair
        from .import_guardian import import_pair

        pair = self.plan.vault_pair
        if pair is None:
            owner = self.plan.key_protector.owner
            assert owner is not None
            with self.run.step(f"Escrow the owner guardian of '{self.vm.name}' from {self.source}"):
                pair = escrow_pair(
                    self.src_s, self.source, owner.signing, owner.encryption, user=self.run.user, log=self.run.log
                )
        with self.run.step(f"Import {pair} to {self.target}"):
            name = import_pair(self.tgt_s, self.target, pair, log=self.run.log)
        self.ledger.did(
            f"guardian '{name}' with its private keys imported to {self.target} (harmless to keep)",
            by_hand=f"if unwanted: Remove-HgsGuardian -Name '{name}' on {self.target}",
        )

    def authorise_target_guardian(self) -> None:
        self.stop_source_if_running()
        with self.run.step(f"Export the public part of {self.target}'s guardian"):
            guardian = self.plan.target_guardian
            if not guardian:
                self.tgt_s.run(GenerateLocalGuardian(UNTRUSTED_GUARDIAN))
                guardian = UNTRUSTED_GUARDIAN
                self.run.log(f"Created UntrustedGuardian on {self.target} (fresh certificates with private keys)")
                self.ledger.did(
                    f"UntrustedGuardian created on {self.target} (harmless: the first TPM change there makes one)"
                )
            metadata = read_guardian_metadata(self.tgt_s, guardian)
        with self.run.step(f"Import it on {self.source} and grant it access to '{self.vm.name}'", destructive=True):
            name = import_guardian_metadata(self.src_s, self.source, metadata, f"{self.plan.target_name}-{guardian}")
            # Written before the grant: should the grant fail, the imported guardian is still named as left over.
            self.ledger.did(
                f"the public part of {self.target}'s guardian imported on {self.source} as '{name}' (harmless)",
                by_hand=f"if unwanted: Remove-HgsGuardian -Name '{name}' on {self.source}",
            )
            before = self.src_s.run(GetVmSecurity(self.vm.name)).key_protector
            granted = self.src_s.run(GrantKeyProtectorAccess(before, name))
            self.src_s.run(SetKeyProtector(self.vm.name, granted))
        self.granted_key_protector = granted
        self.run.log(
            f"'{self.vm.name}' may now be unsealed by guardian '{name}' of {self.target}; no private key moved"
        )
        self.ledger.did(
            f"guardian '{name}' of {self.target} authorised in the key protector of '{self.vm.name}' (harmless)",
            by_hand=f"to revoke: Revoke-HgsKeyProtectorAccess on {self.source}",
        )

    # -- move ------------------------------------------------------------------------------------------------------

    def stop_source_if_running(self) -> None:
        vm = self.src_s.run(GetVM(self.vm.name))
        if vm is None or vm.state != "Running":
            return
        with self.run.step(f"Shut down '{self.vm.name}' on {self.source}"):
            self.src_s.run(StopVM(self.vm.name))
        self.ledger.did(
            f"'{self.vm.name}' shut down on {self.source}",
            undo=lambda: again(self.src_s, StartVM(self.vm.name)),
            by_hand=f"Start-VM -Name '{self.vm.name}' on {self.source}",
        )

    def move(self) -> None:
        if self.opts.method == "live":
            self.live_migrate()
            return
        self.stop_source_if_running()
        if self.opts.method == "export":
            config = self.export_to_share()
            self.import_on_target(ImportOptions(config, copy=True, generate_new_id=self.opts.new_id))
            self.remove_export()
        else:
            self.import_on_target(ImportOptions(self.opts.files_path, copy=False))

    def live_migrate(self) -> None:
        move = (self.vm.name, self.plan.target_name, self.plan.target_storage)
        with self.run.step(f"Compare-VM on {self.source} for the move to {self.target}"):
            report = self.src_s.run(CompareMove(*move))
            if not report.ok:
                raise JobFailed(f"Compare-VM on {self.source}: " + " ".join(report.incompatibilities))
        with self.run.step(f"Move-VM '{self.vm.name}' to {self.plan.target_name}", destructive=True) as step:
            if step.needed:
                self.src_s.run(MoveVM(*move))
        self.run.log(f"'{self.vm.name}' now lives on {self.target}")
        # Not undone by the console: moving a running VM back is a second migration, for a person to decide.
        self.ledger.did(
            f"'{self.vm.name}' moved to {self.target} by live migration, with its storage",
            by_hand=f"to bring it back: Move-VM -Name '{self.vm.name}' -DestinationHost "
            f"'{self.plan.source_name or self.source}' -IncludeStorage -DestinationStoragePath <its folder> "
            f"on {self.target}",
        )

    def export_to_share(self) -> str:
        folder = f"{self.opts.share.rstrip(chr(92))}\\gc-migrate-{secrets.token_hex(4)}"
        self.export_folder = folder
        self.ledger.did(
            f"export of '{self.vm.name}' in {folder}",
            undo=lambda: again(self.src_s, RemoveFolder(folder)),
            by_hand=f"Remove-Item -LiteralPath '{folder}' -Recurse -Force",
        )
        with self.run.step(f"Export-VM '{self.vm.name}' to {folder}"):
            self.src_s.run(ExportVM(self.vm.name, folder))
        return exported_config_path(f"{folder}\\{self.vm.name}", self.vm.vm_id)

    def import_on_target(self, options: ImportOptions) -> None:
        with self.run.step(f"Compare-VM on {self.target}"):
            report = self.tgt_s.run(CompareVM(options))
            if not report.ok:
                raise JobFailed(f"Compare-VM on {self.target}: " + " ".join(report.incompatibilities))
        # Registered before the import: a dropped connection leaves its outcome unknown, and the undo checks.
        self.ledger.did(
            f"'{self.vm.name}' imported on {self.target} (undoing unregisters it; copied disk files stay there)",
            undo=self.remove_from_target,
            by_hand=f"Remove-VM -Name '{self.vm.name}' -Force on {self.target}",
        )
        with self.run.step(f"Import-VM '{self.vm.name}' on {self.target}"):
            imported = self.tgt_s.run(ImportVM(options))
        self.run.log(f"'{imported.name}' is registered on {self.target} with ID {imported.vm_id}")
        self.run.record("imported_vm_id", imported.vm_id)
        if self.granted_key_protector and not options.copy:
            # Files registered in place were copied before the grant: give them the protector that names the target.
            with self.run.step(f"Set-VMKeyProtector '{self.vm.name}' on {self.target} (the authorised protector)"):
                self.tgt_s.run(SetKeyProtector(self.vm.name, self.granted_key_protector))

    def remove_from_target(self) -> None:
        if again(self.tgt_s, GetVM(self.vm.name)) is not None:
            self.tgt_s.run(StopVM(self.vm.name, turn_off=True))
            self.tgt_s.run(RemoveVM(self.vm.name))

    def remove_export(self) -> None:
        try:
            again(self.src_s, RemoveFolder(self.export_folder))
            self.ledger.entries = [e for e in self.ledger.entries if not e.done.startswith("export of")]
            self.run.log(f"Removed the export {self.export_folder} from the lab share")
        except RemotingError as exc:
            self.run.log(f"Could not remove {self.export_folder}: {exc}. Remove it by hand later.", "warning")

    # -- after the move --------------------------------------------------------------------------------------------

    def start_on_target(self) -> str:
        if not self.opts.start:
            return ""
        with self.run.step(f"Start '{self.vm.name}' on {self.target} and check it runs"):
            vm = self.tgt_s.run(GetVM(self.vm.name))
            if vm is not None and vm.state != "Running":
                self.tgt_s.run(StartVM(self.vm.name))
                vm = self.tgt_s.run(GetVM(self.vm.name))
            if vm is None or vm.state != "Running":
                raise JobFailed(f"'{self.vm.name}' is {vm.state if vm else 'missing'} on {self.target} after Start-VM")
        self.run.log(f"'{self.vm.name}' is running on {self.target}")
        return ", running there"

    def handle_source_copy(self) -> str:
        if self.opts.method == "live":
            return "live migration leaves no source copy"
        if self.opts.source_after == "remove":
            with self.run.step(f"Remove the source copy of '{self.vm.name}' from {self.source}", destructive=True):
                self.src_s.run(RemoveVM(self.vm.name))
            return f"the source copy was removed from {self.source} (its disks stay there)"
        return f"the source copy stays on {self.source}, off"


def read_guardian_metadata(session: Any, guardian: str) -> bytes:
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        session.run(ExportGuardian(guardian, temp))
        data: bytes = session.run(ReadFileBytes(temp))
        return data
    finally:
        again(session, RemoveFiles([temp]))


def import_guardian_metadata(session: Any, host: Any, metadata: bytes, wanted: str) -> str:
    """Import another host's guardian (public part) under `wanted`, or reuse it when it is there already."""
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        session.run(WriteFileBytes(temp, metadata))
        existing = {g.name.lower() for g in session.run(GetGuardians())}
        name, number = wanted, 2
        while name.lower() in existing:
            name, number = f"{wanted}-{number}", number + 1
        made = session.run(ImportGuardianMetadata(temp, name))
        return made.name if made is not None and made.name else name
    finally:
        again(session, RemoveFiles([temp]))


def migrate_vm(run: Any, sessions: tuple[Any, Any], hosts: tuple[Any, Any], opts: MigrationOptions) -> str:
    return Migration(run, sessions, hosts, opts).execute()


def migrate_again(job: Any) -> str:
    """The wizard with the job's choices; the user checks both hosts again before a second run."""
    from jobs.services import ordered_hosts

    hosts = ordered_hosts(job)
    query: list[tuple[str, Any]] = [
        ("target", hosts[1].pk if len(hosts) > 1 else ""),
        ("vm", job.vms[0] if job.vms else ""),
    ]
    query += [
        ("form", "1"),
        *((key, job.params.get(key)) for key in ("method", "unseal", "source_after", "share", "files_path")),
    ]
    query += [(key, "on") for key in ("new_id", "start") if job.params.get(key)]
    return preflight_link("/jobs/new/migrate/", job, query)


@job_kind(
    "migrate_vm",
    label="Migrate a VM between hosts",
    permission="run_jobs",
    mutating=True,
    preflight_url=migrate_again,
)
def migrate_vm_job(ctx: JobContext) -> str:
    """hosts: [source, target]; vms: [name]; params: MigrationOptions.as_params()."""
    if len(ctx.hosts) != 2 or len(ctx.vms) != 1:
        raise JobFailed("A migration needs a source host, a target host and one VM.")
    opts = MigrationOptions.from_params(ctx.vms[0], ctx.params)
    if opts.problems():
        raise JobFailed(" ".join(opts.problems()))
    source, target = ctx.hosts
    summary = migrate_vm(ctx, (reach(ctx, source), reach(ctx, target)), (source, target), opts)
    detail = {"job": ctx.job.pk, "vm": opts.vm_name, "source": source.name, "method": opts.method}
    AuditEvent.record(ctx.user, "vm.migrated", target, unseal=opts.unseal, source_after=opts.source_after, **detail)
    return summary


def reach(ctx: JobContext, host: Any) -> Any:
    try:
        return ctx.session(host)
    except RemotingError as exc:
        raise JobFailed(f"Nothing was changed: {host} cannot be reached — {exc}") from None


# -- the wizard --------------------------------------------------------------------------------------------------------


def migration_script(plan: MigrationPlan, opts: MigrationOptions, source: Any, target: Any) -> PowerShellScript:
    """What the job will send, in order and host by host, as far as the preflight can know it; runnable by hand."""
    vm, token = opts.vm_name, sample_token()
    script = PowerShellScript().on(source, "source").add(ReadHostInventory(), GetVmHost(), ReadVmDetails([vm]))
    script.on(target, "target").add(ReadHostInventory(), GetVmHost())
    if plan.unseal_needed and opts.unseal == "carry":
        carry_lines(script, plan, source, target)
    if plan.unseal_needed and opts.unseal == "authorise":
        authorise_lines(script, plan, opts, source, target, token)
    if opts.method == "live":
        destination = plan.target_name or str(target)
        script.on(source, "source").add(CompareMove(vm, destination, plan.target_storage))
        script.add(MoveVM(vm, destination, plan.target_storage))
        return finish_lines(script, opts, source, target)
    running = plan.vm is not None and plan.vm.state == "Running"
    if running and not (plan.unseal_needed and opts.unseal == "authorise"):  # authorising stopped it already
        script.on(source, "source").add(StopVM(vm))
    if opts.method == "export":
        folder = f"{opts.share}\\gc-migrate-{token}"
        config = exported_config_path(f"{folder}\\{vm}", plan.vm.vm_id if plan.vm else "<ID>")
        options = ImportOptions(config, copy=True, generate_new_id=opts.new_id)
        script.on(source, "source").add(ExportVM(vm, folder))
        script.on(target, "target").add(CompareVM(options), ImportVM(options))
        script.on(source, "source").add(RemoveFolder(folder))
    else:
        options = ImportOptions(opts.files_path, copy=False)
        script.on(target, "target").add(CompareVM(options), ImportVM(options))
        if plan.unseal_needed and opts.unseal == "authorise":
            script.add(SetKeyProtector(vm, b""))  # the protector granted on the source, for the files copied before
    return finish_lines(script, opts, source, target)


def finish_lines(script: PowerShellScript, opts: MigrationOptions, source: Any, target: Any) -> PowerShellScript:
    vm = opts.vm_name
    if opts.start:
        script.on(target, "target").add(StartVM(vm), GetVM(vm))
    if opts.method != "live" and opts.source_after == "remove":
        script.on(source, "source").add(RemoveVM(vm))
    return script


def carry_lines(script: PowerShellScript, plan: MigrationPlan, source: Any, target: Any) -> None:
    """The owner's pair to the target: from the vault's download, or escrowed from the source first and its bytes
    carried over."""
    from .escrow import escrow_lines
    from .import_guardian import import_lines

    if plan.vault_pair is not None:
        import_lines(script.on(target, "target"), plan.vault_pair, plan.import_name)
        return
    owner = plan.key_protector.owner
    if owner is None:
        return  # the preflight fails: nothing to show
    escrow_lines(script.on(source, "source"), owner.signing, owner.encryption)
    pair = EscrowedPair(signing_thumbprint=owner.signing, encryption_thumbprint=owner.encryption)
    import_lines(script.on(target, "target"), pair, plan.import_name, from_vault=False)


def authorise_lines(
    script: PowerShellScript, plan: MigrationPlan, opts: MigrationOptions, source: Any, target: Any, token: str
) -> None:
    """Authorise the target's guardian: its public metadata goes to the source, which grants it access."""
    vm, guardian = opts.vm_name, plan.target_guardian or UNTRUSTED_GUARDIAN
    temp, granted_as = f"{TEMP_DIR}\\gc-{token}-guardian.xml", f"{plan.target_name or target}-{guardian}"
    if plan.vm is not None and plan.vm.state == "Running":
        script.on(source, "source").add(StopVM(vm))
    script.on(target, "target")
    if not plan.target_guardian:
        script.add(GenerateLocalGuardian())
    script.add(ExportGuardian(guardian, temp)).add(ReadFileBytes(temp), into="$guardianXml").add(RemoveFiles([temp]))
    script.on(source, "source").add(WriteFileBytes(temp, b""), GetGuardians(), ImportGuardianMetadata(temp, granted_as))
    script.add(RemoveFiles([temp]), GetVmSecurity(vm), GrantKeyProtectorAccess(b"", granted_as))
    script.add(SetKeyProtector(vm, b""))


def wizard_choices(data: Any) -> tuple[Any, Any, MigrationOptions]:
    from hosts.models import Host

    def host(key: str) -> Any:
        raw = data.get(key, "")
        return Host.objects.filter(pk=int(raw)).first() if raw.isdigit() else None

    opts = MigrationOptions(
        data.get("vm", ""),
        method=data.get("method", "export"),
        unseal=data.get("unseal", "carry"),
        new_id=data.get("new_id") == "on",
        start=data.get("start") == "on" if "form" in data else True,  # an unticked box sends nothing
        source_after=data.get("source_after", "off"),
        share=data.get("share", ""),
        files_path=data.get("files_path", ""),
    )
    return host("host"), host("target"), opts


def live_preview(source: Any, target: Any, opts: MigrationOptions) -> tuple[MigrationPlan | None, str]:
    """The preflight run live against both hosts for the page; (None, reason) when a host cannot be read."""
    from hosts.remoting import open_session

    try:
        with open_session(source.connection_spec()) as s, open_session(target.connection_spec()) as t:
            return plan_migration(s, t, source, target, opts), ""
    except RemotingError as exc:
        return None, f"Preflight could not read both hosts: {exc}"


def names_taken(source: Any, names: list[str]) -> dict[str, list[Any]]:
    """Per VM name (lower case): the other hosts whose last inventory has a VM of that name."""
    from hosts.inventory.models import VirtualMachine

    taken: dict[str, list[Any]] = {}
    others = VirtualMachine.objects.exclude(host=source).select_related("host").order_by("host__name")
    wanted = {name.lower() for name in names}
    for vm in others:
        if vm.name.lower() in wanted and vm.host not in taken.setdefault(vm.name.lower(), []):
            taken[vm.name.lower()].append(vm.host)
    return taken


def vm_choices(vms: list[Any], source: Any, target: Any) -> list[dict[str, Any]]:
    """The source's VMs for the list, each with the hosts where its name is taken (it cannot go there)."""
    taken = names_taken(source, [vm.name for vm in vms])
    rows = []
    for vm in vms:
        hosts = taken.get(vm.name.lower(), [])
        rows.append({"vm": vm, "taken_on": hosts, "taken_pks": " ".join(str(h.pk) for h in hosts)})
        rows[-1]["blocked"] = target is not None and any(h.pk == target.pk for h in hosts)
    return rows


def target_choices(hosts: Any, source: Any, vm_name: str) -> list[dict[str, Any]]:
    """The hosts a VM may go to; one that already has a VM of the chosen name is marked."""
    if source is None:
        return []
    taken = {h.pk for h in names_taken(source, [vm_name]).get(vm_name.lower(), [])} if vm_name else set()
    return [{"host": h, "taken": h.pk in taken} for h in hosts if h.pk != source.pk]


@require("run_jobs")
def migrate_wizard(request: HttpRequest) -> HttpResponse:
    from hosts.inventory.models import VirtualMachine
    from hosts.models import Host

    data = request.POST if request.method == "POST" else request.GET
    source, target, opts = wizard_choices(data)
    context: dict[str, Any] = {"hosts": Host.objects.order_by("name"), "source": source, "target": target}
    context |= {"opts": opts, "methods": METHODS, "unseals": UNSEAL, "afters": SOURCE_AFTER}
    context["method_label"] = METHODS.get(opts.method, "")
    vms = list(VirtualMachine.objects.filter(host=source).order_by("name")) if source else []
    context["vms"] = vm_choices(vms, source, target)
    context["targets"] = target_choices(context["hosts"], source, opts.vm_name)
    ready = source is not None and target is not None and opts.vm_name and data.get("preview")
    if source is not None and target is not None and source.pk == target.pk:
        context["problems"] = ["Choose a target host other than the source."]
    elif ready:
        context["problems"] = opts.problems()
        if not context["problems"]:
            plan, error = live_preview(source, target, opts)
            context |= {"plan": plan, "error": error}
            if plan is not None:
                context["powershell"] = migration_script(plan, opts, source, target).lines()
                if request.method == "POST" and not plan.failures:
                    return start_migration(request, source, target, opts)
    status = 400 if request.method == "POST" else 200
    return render(request, "workflows/migrate.html", context, status=status)


def start_migration(request: HttpRequest, source: Any, target: Any, opts: MigrationOptions) -> HttpResponse:

    from jobs.services import create_job

    job = create_job(request.user, "migrate_vm", [source, target], [opts.vm_name], opts.as_params())
    return redirect(f"/jobs/{job.pk}/")


urlpatterns = [path("jobs/new/migrate/", migrate_wizard, name="migrate_wizard")]
