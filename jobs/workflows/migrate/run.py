"""Running a migration: the steps on both hosts, with a ledger of every change made so far, so a failure names
what was done and the command to finish or undo it by hand."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from hosts.remoting.catalog.inventory import VmFacts
from hosts.remoting.catalog.vms import (
    CompareMove,
    CompareVM,
    ExportVM,
    GenerateLocalGuardian,
    GetVM,
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
    exported_config_path,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Operation
from jobs.kinds import JobCancelled, JobFailed

from ..escrow.plan import escrow_pair
from ..import_guardian.plan import import_pair
from .plan import MigrationOptions, MigrationPlan, plan_migration


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
