"""Running a migration: the steps on both hosts, with a ledger of every change made so far, so a failure names
what was done and the command to finish or undo it by hand.

The steps talk to the hosts only through Sides (sides.py): the job drives them live, the preflight page drives the
same steps shown (`migration_script`), so Show PowerShell is the job's own sequence of operations."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
    ExportGuardian,
    ImportGuardianMetadata,
    ReadFileBytes,
    RemoveFiles,
    RemoveGuardian,
    WriteFileBytes,
)
from hosts.remoting.catalog.inventory import VmFacts
from hosts.remoting.catalog.shares import CopyFolder, MapShare, UnmapShare
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
    RevokeKeyProtectorAccess,
    SetKeyProtector,
    StartVM,
    StopVM,
    exported_config_path,
)
from hosts.remoting.errors import RemoteCommandError, RemotingError
from hosts.remoting.operation import Credential, quote
from hosts.remoting.session import HostSession
from jobs.kinds import JobCancelled, JobFailed, Run

from ..powershell import PowerShellScript, by_hand
from .plan import MigrationOptions, MigrationPlan, check_carry_placement, plan_migration, share_credential
from .sides import LiveSide, ShownLab, ShownRun, Side

log = logging.getLogger(__name__)

CHECK_LEVELS = {"ok": logging.INFO, "warn": logging.WARNING, "fail": logging.ERROR}


class Unsaid(logging.LoggerAdapter[logging.Logger]):
    """The logger of a migration that is only shown: nothing happens, so nothing is said (not even to the
    server's log, where "'Win11-B' now lives on HV02" from a preview would mislead)."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Entry:
    done: str
    undo: Callable[[], None] | None = None
    by_hand: str = ""  # what a person runs to undo it when the console cannot


class Ledger:
    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def did(self, done: str, undo: Callable[[], None] | None = None, by_hand: str = "") -> Entry:
        entry = Entry(done, undo, by_hand)
        self.entries.append(entry)
        return entry

    def forget(self, entry: Entry) -> None:
        """The change was put back by the steps themselves: nothing is left to undo."""
        self.entries = [e for e in self.entries if e is not entry]

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
                log.warning(f"Undone: {entry.done}")
            except (RemotingError, JobFailed) as exc:
                left.append(f"{entry.done} (could not undo: {exc}) — by hand: {entry.by_hand}")
        return undone, left


class Migration:
    """One migration's steps over both sides, writing what it changes into the ledger."""

    def __init__(self, run: Run, sides: tuple[Side, Side], opts: MigrationOptions) -> None:
        self.run = run
        self.src, self.tgt = sides
        self.source, self.target = self.src.host, self.tgt.host
        self.opts = opts
        self.log: logging.Logger | logging.LoggerAdapter[logging.Logger] = log
        self.ledger = Ledger()
        self.plan = MigrationPlan()
        self.granted_key_protector: bytes | None = None  # authorise: the protector that names the target's guardian
        self.share_account: Credential | None = None  # pull: the share's account, opened only for the job

    @property
    def vm(self) -> VmFacts:
        assert self.plan.vm is not None
        return self.plan.vm

    def execute(self) -> str:
        self.preflight()
        try:
            started, after = self.carry_out()
        except (JobFailed, RemotingError) as exc:
            raise JobFailed(self.failure(exc)) from None
        except JobCancelled as exc:
            # Cancelled between steps: put back what can be put back, say what is left, end as cancelled.
            self.log.warning(self.failure(exc))
            raise
        self.run.record("target_vm", {"host": self.target.name, "name": self.opts.vm_name})
        return f"'{self.opts.vm_name}' moved from {self.source} to {self.target}{started}; {after}"

    def preflight(self) -> None:
        with self.run.step(f"Preflight on {self.source} and {self.target}"):
            try:
                self.plan = plan_migration(self.src, self.tgt, self.source, self.target, self.opts)
            except RemotingError as exc:
                raise JobFailed(f"Nothing was changed: the preflight could not read both hosts — {exc}") from None
            check_carry_placement(self.plan, self.target, self.run.user)
            if self.opts.method == "pull" and not self.plan.failures:
                self.share_account = share_credential(self.opts.share)
            for check in self.plan.checks:
                self.log.log(CHECK_LEVELS[check.level], check.text)
            if self.plan.failures:
                raise JobFailed("Nothing was changed. " + " ".join(self.plan.failures))

    def carry_out(self) -> tuple[str, str]:
        """The steps after the preflight, as planned; returns what the summary says of the start and the source."""
        self.give_target_the_right_to_unseal()
        self.run.check_cancelled()
        self.move()
        return self.start_on_target(), self.handle_source_copy()

    def failure(self, exc: Exception) -> str:
        self.log.error(f"Failed: {exc}")
        undone, left = self.ledger.unwind()
        parts = [f"The migration of '{self.opts.vm_name}' failed: {exc}."]
        parts.append("Undone: " + "; ".join(undone) + "." if undone else "Nothing had to be undone.")
        if left:
            parts.append("Left as it is: " + "; ".join(left) + ".")
        parts.append(f"The VM is on {self.where_is_it()}.")
        return " ".join(parts)

    def where_is_it(self) -> str:
        found = []
        for side in (self.src, self.tgt):
            try:
                vm = side.again(GetVM(self.opts.vm_name))
            except RemotingError:
                found.append(f"{side} (unreachable: check by hand with {by_hand(GetVM(self.opts.vm_name))})")
                continue
            if vm is not None:
                found.append(f"{side} ({vm.state})")
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
                pair = self.src.escrow(owner.signing, owner.encryption, self.run.user)
        with self.run.step(f"Import {pair} to {self.target}"):
            name = self.tgt.import_pair(pair, self.plan.import_name)
        self.run.record("carried_pair", pair.pk)  # the kind audits the placement
        self.ledger.did(
            f"guardian '{name}' with its private keys imported to {self.target} (harmless to keep)",
            by_hand=f"if unwanted, on {self.target}: {by_hand(RemoveGuardian(name))}",
        )

    def authorise_target_guardian(self) -> None:
        self.stop_source_if_running()
        with self.run.step(f"Export the public part of {self.target}'s guardian"):
            guardian = self.plan.target_guardian
            if not guardian:
                self.tgt.run(GenerateLocalGuardian(UNTRUSTED_GUARDIAN))
                guardian = UNTRUSTED_GUARDIAN
                self.log.info(f"Created UntrustedGuardian on {self.target} (fresh certificates with private keys)")
                self.ledger.did(
                    f"UntrustedGuardian created on {self.target} (harmless: the first TPM change there makes one)"
                )
            metadata = read_guardian_metadata(self.tgt, guardian)
        with self.run.step(f"Import it on {self.source} and grant it access to '{self.vm.name}'", destructive=True):
            name = import_guardian_metadata(self.src, metadata, self.plan.granted_name)
            # Written before the grant: should the grant fail, the imported guardian is still named as left over.
            self.ledger.did(
                f"the public part of {self.target}'s guardian imported on {self.source} as '{name}' (harmless)",
                by_hand=f"if unwanted, on {self.source}: {by_hand(RemoveGuardian(name))}",
            )
            before = self.src.run(GetVmSecurity(self.vm.name)).key_protector
            granted = self.src.run(GrantKeyProtectorAccess(before, name))
            self.src.run(SetKeyProtector(self.vm.name, granted))
        self.granted_key_protector = granted
        self.log.info(
            f"'{self.vm.name}' may now be unsealed by guardian '{name}' of {self.target}; no private key moved"
        )
        self.ledger.did(
            f"guardian '{name}' of {self.target} authorised in the key protector of '{self.vm.name}' (harmless)",
            by_hand=f"to revoke it, on {self.source}: {revoke_by_hand(self.vm.name, name)}",
        )

    # -- move ------------------------------------------------------------------------------------------------------

    def stop_source_if_running(self) -> None:
        vm = self.src.run(GetVM(self.vm.name))
        if vm is None or vm.state != "Running":
            return
        with self.run.step(f"Shut down '{self.vm.name}' on {self.source}"):
            self.src.run(StopVM(self.vm.name))
        self.ledger.did(
            f"'{self.vm.name}' shut down on {self.source}",
            undo=lambda: self.src.again(StartVM(self.vm.name)),
            by_hand=f"on {self.source}: {by_hand(StartVM(self.vm.name))}",
        )

    def move(self) -> None:
        if self.opts.method == "live":
            self.live_migrate()
            return
        self.stop_source_if_running()
        if self.opts.method == "export":
            folder = self.export_to_share()
            config = exported_config_path(f"{folder}\\{self.vm.name}", self.vm.vm_id)
            self.import_on_target(ImportOptions(config, copy=True, generate_new_id=self.opts.new_id))
            self.remove_export(folder)
        elif self.opts.method == "pull":
            self.pull_through_source_share()
        else:
            self.import_on_target(ImportOptions(self.opts.files_path, copy=False))

    def live_migrate(self) -> None:
        move = (self.vm.name, self.plan.target_name, self.plan.target_storage)
        with self.run.step(f"Compare-VM on {self.source} for the move to {self.target}"):
            report = self.src.run(CompareMove(*move))
            if not report.ok:
                raise JobFailed(f"Compare-VM on {self.source}: " + " ".join(report.incompatibilities))
        with self.run.step(f"Move-VM {quote(self.vm.name)} to {self.plan.target_name}", destructive=True) as step:
            if step.needed:
                self.src.run(MoveVM(*move))
        self.log.info(f"'{self.vm.name}' now lives on {self.target}")
        # Not undone by the console: moving a running VM back is a second migration, for a person to decide.
        self.ledger.did(
            f"'{self.vm.name}' moved to {self.target} by live migration, with its storage",
            by_hand=f"to bring it back, on {self.target} (with the folder it had): "
            + by_hand(MoveVM(self.vm.name, self.plan.source_name or str(self.source), "<its folder>")),
        )

    def export_to_share(self) -> str:
        """Export the VM to a folder of its own on the lab share (named like the console's temporary files)."""
        folder = f"{self.opts.share.rstrip(chr(92))}\\gc-{secrets.token_hex(4)}-migrate"
        self.ledger.did(
            f"export of '{self.vm.name}' in {folder}",
            undo=lambda: self.src.again(RemoveFolder(folder)),
            by_hand=by_hand(RemoveFolder(folder)),
        )
        with self.run.step(f"Export-VM {quote(self.vm.name)} to {folder}"):
            self.src.run(ExportVM(self.vm.name, folder))
        return folder

    def pull_through_source_share(self) -> None:
        """The workgroup method: export on the source to the folder it shares, copy it to the target through a drive
        mapped with the share's account, import the local copy, then remove the export and the copy."""
        name = f"gc-{secrets.token_hex(4)}-migrate"
        local = f"{self.plan.share_folder.rstrip(chr(92))}\\{name}"
        self.ledger.did(
            f"export of '{self.vm.name}' in {local} on {self.source}",
            undo=lambda: self.src.again(RemoveFolder(local)),
            by_hand=f"on {self.source}: {by_hand(RemoveFolder(local))}",
        )
        with self.run.step(f"Export-VM {quote(self.vm.name)} to {local} on {self.source} (behind {self.opts.share})"):
            self.src.run(ExportVM(self.vm.name, local))
        staging = f"{self.plan.target_vm_path}\\{name}"
        self.copy_from_share(f"{name}\\{self.vm.name}", staging)
        config = exported_config_path(staging, self.vm.vm_id)
        home = f"{self.plan.target_vm_path}\\{self.vm.name}"
        self.import_on_target(ImportOptions(config, True, self.opts.new_id, home, f"{home}\\Virtual Hard Disks"))
        self.remove_folder(self.tgt, staging, "the copy of the export")
        self.remove_folder(self.src, local, "the export")

    def copy_from_share(self, exported: str, staging: str) -> None:
        """Map the source's share on the target with the share's account, copy the export to `staging`, and remove
        the mapping whatever happened (a failed removal stays in the ledger with the command to run)."""
        if self.share_account is None:
            raise JobFailed(f"No account is stored for {self.opts.share} (Hosts › Lab shares).")
        drive = f"gc-{secrets.token_hex(4)}-share"  # a drive of this session alone, named like the temporary files
        root = self.opts.share.rstrip("\\")
        mapped = self.ledger.did(
            f"{root} mapped on {self.target} as drive {drive}:",
            undo=lambda: self.tgt.again(UnmapShare(drive)),
            by_hand=f"on {self.target}: {by_hand(UnmapShare(drive))} (or end the console's WinRM session)",
        )
        self.ledger.did(
            f"copy of the export in {staging} on {self.target}",
            undo=lambda: self.tgt.again(RemoveFolder(staging)),
            by_hand=f"on {self.target}: {by_hand(RemoveFolder(staging))}",
        )
        account = self.share_account
        wrong_account = (
            f"check the account {account.user} and its password stored for {root} (Hosts › Lab shares), "
            f"and that {self.source} shares {root} with File and Printer Sharing open"
        )
        share_lost = f"check that {self.source} is on the network and still shares {root}, then migrate again"
        try:
            mapping = self.run.step(f"Map {root} on {self.target} with the share's account {account.user}")
            with mapping, remedied(wrong_account):
                self.tgt.run(MapShare(drive, root, account))
            with self.run.step(f"Copy the export from {root} to {staging} on {self.target}"), remedied(share_lost):
                self.tgt.run(CopyFolder(f"{drive}:\\{exported}", staging))
        finally:
            self.unmap(drive, mapped)

    def unmap(self, drive: str, mapped: Entry) -> None:
        try:
            with self.run.step(f"Remove the mapping {drive}: on {self.target}"):
                self.tgt.again(UnmapShare(drive))
        except (RemotingError, JobFailed) as exc:
            self.log.warning(f"Could not remove the mapping {drive}: on {self.target}: {exc}")
            return  # stays in the ledger, with the command to run
        self.ledger.forget(mapped)

    def remove_folder(self, side: Side, folder: str, what: str) -> None:
        try:
            side.again(RemoveFolder(folder))
            self.ledger.entries = [e for e in self.ledger.entries if folder not in e.done]
            self.log.info(f"Removed {what} {folder} from {side}")
        except RemotingError as exc:
            self.log.warning(f"Could not remove {what} {folder} from {side}: {exc}. Remove it by hand later.")

    def import_on_target(self, options: ImportOptions) -> None:
        with self.run.step(f"Compare-VM on {self.target}"):
            report = self.tgt.run(CompareVM(options))
            if not report.ok:
                raise JobFailed(f"Compare-VM on {self.target}: " + " ".join(report.incompatibilities))
        # Registered before the import: a dropped connection leaves its outcome unknown, and the undo checks.
        self.ledger.did(
            f"'{self.vm.name}' imported on {self.target} (undoing unregisters it; copied disk files stay there)",
            undo=self.remove_from_target,
            by_hand=f"on {self.target}: {by_hand(RemoveVM(self.vm.name))}",
        )
        with self.run.step(f"Import-VM {quote(self.vm.name)} on {self.target}"):
            imported = self.tgt.run(ImportVM(options))
        self.log.info(f"'{imported.name}' is registered on {self.target} with ID {imported.vm_id}")
        self.run.record("imported_vm_id", imported.vm_id)
        if self.granted_key_protector is not None and not options.copy:
            # Files registered in place were copied before the grant: give them the protector that names the target.
            with self.run.step(f"Set-VMKeyProtector {quote(self.vm.name)} on {self.target} (the authorised protector)"):
                self.tgt.run(SetKeyProtector(self.vm.name, self.granted_key_protector))

    def remove_from_target(self) -> None:
        if self.tgt.again(GetVM(self.vm.name)) is not None:
            self.tgt.run(StopVM(self.vm.name, turn_off=True))
            self.tgt.run(RemoveVM(self.vm.name))

    def remove_export(self, folder: str) -> None:
        try:
            self.src.again(RemoveFolder(folder))
            self.ledger.entries = [e for e in self.ledger.entries if not e.done.startswith("export of")]
            self.log.info(f"Removed the export {folder} from the lab share")
        except RemotingError as exc:
            self.log.warning(f"Could not remove {folder}: {exc}. Remove it by hand later.")

    # -- after the move --------------------------------------------------------------------------------------------

    def start_on_target(self) -> str:
        if not self.opts.start:
            return ""
        with self.run.step(f"Start '{self.vm.name}' on {self.target} and check it runs"):
            vm = self.tgt.run(GetVM(self.vm.name))
            if vm is not None and vm.state != "Running":
                self.tgt.run(StartVM(self.vm.name))
                vm = self.tgt.run(GetVM(self.vm.name))
            if vm is None or vm.state != "Running":
                raise JobFailed(f"'{self.vm.name}' is {vm.state if vm else 'missing'} on {self.target} after Start-VM")
        self.log.info(f"'{self.vm.name}' is running on {self.target}")
        return ", running there"

    def handle_source_copy(self) -> str:
        if self.opts.method == "live":
            return "live migration leaves no source copy"
        if self.opts.source_after == "remove":
            with self.run.step(f"Remove the source copy of '{self.vm.name}' from {self.source}", destructive=True):
                self.src.run(RemoveVM(self.vm.name))
            return f"the source copy was removed from {self.source} (its disks stay there)"
        return f"the source copy stays on {self.source}, off"


@contextmanager
def remedied(remedy: str) -> Iterator[None]:
    """What the host refused, followed by what to do about it."""
    try:
        yield
    except RemoteCommandError as exc:
        raise JobFailed(f"{exc} — {remedy}") from None


def read_guardian_metadata(side: Side, guardian: str) -> bytes:
    """The public part of a guardian of this host (Export-HgsGuardian's XML), read through a temporary file."""
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        side.run(ExportGuardian(guardian, temp))
        return side.run(ReadFileBytes(temp), shown_as="$guardianXml")
    finally:
        side.again(RemoveFiles([temp]))


def import_guardian_metadata(side: Side, metadata: bytes, name: str) -> str:
    """Import another host's guardian (public part) here as `name` (free on this host at the preflight)."""
    temp = f"{TEMP_DIR}\\gc-{secrets.token_hex(8)}-guardian.xml"
    try:
        side.run(WriteFileBytes(temp, metadata))
        made = side.run(ImportGuardianMetadata(temp, name))
        return made.name if made is not None and made.name else name
    finally:
        side.again(RemoveFiles([temp]))


def migrate_vm(
    run: Run, sessions: tuple[HostSession, HostSession], hosts: tuple[Host, Host], opts: MigrationOptions
) -> str:
    """Migrate the VM over the hosts' open sessions (the job)."""
    source, target = hosts
    sides = (LiveSide(sessions[0], source, "source"), LiveSide(sessions[1], target, "target"))
    return Migration(run, sides, opts).execute()


def migration_script(
    plan: MigrationPlan, opts: MigrationOptions, hosts: tuple[Host, Host], script: PowerShellScript
) -> PowerShellScript:
    """Show PowerShell: the preflight's reads (already in `script`), then the job's steps driven without sending
    anything, down the branches the preflight predicts."""
    if plan.vm is None or plan.failures:
        return script.comment("The preflight fails: the job stops here, nothing more runs.")
    lab = ShownLab(script, plan.vm, plan.target_store_exists)
    migration = Migration(ShownRun(script), (lab.side(hosts[0], "source"), lab.side(hosts[1], "target")), opts)
    migration.plan, migration.log = plan, Unsaid(log)
    migration.share_account = share_credential(opts.share, shown=True)  # the password is prompted for, never shown
    migration.carry_out()
    return script


def revoke_by_hand(vm_name: str, guardian_name: str) -> str:
    """Take a granted guardian back out of a VM's key protector: read it, revoke, set it."""
    return by_hand(GetVmSecurity(vm_name), RevokeKeyProtectorAccess(b"", guardian_name), SetKeyProtector(vm_name, b""))
