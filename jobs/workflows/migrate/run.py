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

from django.utils.translation import gettext as _

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.inventory.vmstates import vm_state_words
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


# -- the steps' titles: the job's outline (kind.py) and the steps it records are made by the same functions, so the job
# page shows every planned step done or to come. Translated in the job's language (the runner's, the outline's).


def preflight_step(source: object, target: object) -> str:
    return _("Preflight on %(source)s and %(target)s") % {"source": source, "target": target}


def compare_move_step(source: object, target: object) -> str:
    return _("Compare-VM on %(source)s for the move to %(target)s") % {"source": source, "target": target}


def move_step(vm: str, target: object) -> str:
    return _("Move-VM %(vm)s to %(target)s") % {"vm": quote(vm), "target": target}


def export_step(vm: str, share: str) -> str:
    return _("Export-VM %(vm)s to the lab share %(share)s") % {"vm": quote(vm), "share": share}


def pull_export_step(vm: str, source: object, share: str) -> str:
    return _("Export-VM %(vm)s on %(source)s to the folder behind %(share)s") % {
        "vm": quote(vm),
        "source": source,
        "share": share,
    }


def map_step(share: str, target: object) -> str:
    return _("Map %(share)s on %(target)s with the share's account") % {"share": share, "target": target}


def copy_step(share: str, target: object) -> str:
    return _("Copy the export from %(share)s to %(target)s") % {"share": share, "target": target}


def unmap_step(share: str, target: object) -> str:
    return _("Remove the mapping of %(share)s on %(target)s") % {"share": share, "target": target}


def compare_import_step(target: object) -> str:
    return _("Compare-VM on %(target)s") % {"target": target}


def import_step(vm: str, target: object) -> str:
    return _("Import-VM %(vm)s on %(target)s") % {"vm": quote(vm), "target": target}


def start_step(vm: str, target: object) -> str:
    return _("Start '%(vm)s' on %(target)s and check it runs") % {"vm": vm, "target": target}


def remove_source_step(vm: str, source: object) -> str:
    return _("Remove the source copy of '%(vm)s' from %(source)s") % {"vm": vm, "source": source}


def migration_outline(opts: MigrationOptions, source: object, target: object) -> list[str]:
    """The steps the options decide, in order; those the hosts' answers decide (shutting the VM down, escrowing and
    importing its owner's pair, authorising the target's guardian, setting the key protector of files registered in
    place) show when they run."""
    vm = opts.vm_name
    steps = [preflight_step(source, target)]
    if opts.method == "live":
        steps += [compare_move_step(source, target), move_step(vm, target)]
    else:
        if opts.method == "export":
            steps.append(export_step(vm, opts.share))
        elif opts.method == "pull":
            root = share_root(opts.share)
            steps += [pull_export_step(vm, source, root), map_step(root, target), copy_step(root, target)]
            steps.append(unmap_step(root, target))
        steps += [compare_import_step(target), import_step(vm, target)]
    if opts.start:
        steps.append(start_step(vm, target))
    if opts.method != "live" and opts.source_after == "remove":
        steps.append(remove_source_step(vm, source))
    return steps


def share_root(share: str) -> str:
    return share.rstrip("\\")


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
                log.warning(_("Undone: %(change)s"), {"change": entry.done})
            except (RemotingError, JobFailed) as exc:
                left.append(
                    _("%(change)s (could not undo: %(error)s) — by hand: %(command)s")
                    % {"change": entry.done, "error": exc, "command": entry.by_hand}
                )
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
        return _("'%(vm)s' moved from %(source)s to %(target)s%(started)s; %(after)s") % {
            "vm": self.opts.vm_name,
            "source": self.source,
            "target": self.target,
            "started": started,
            "after": after,
        }

    def preflight(self) -> None:
        with self.run.step(preflight_step(self.source, self.target)):
            try:
                self.plan = plan_migration(self.src, self.tgt, self.source, self.target, self.opts)
            except RemotingError as exc:
                raise JobFailed(
                    _("Nothing was changed: the preflight could not read both hosts — %(error)s") % {"error": exc}
                ) from None
            check_carry_placement(self.plan, self.target, self.run.user)
            if self.opts.method == "pull" and not self.plan.failures:
                self.share_account = share_credential(self.opts.share)
            for check in self.plan.checks:
                self.log.log(CHECK_LEVELS[check.level], "%(check)s", {"check": check.text})
            if self.plan.failures:
                raise JobFailed(_("Nothing was changed.") + " " + " ".join(self.plan.failures))

    def carry_out(self) -> tuple[str, str]:
        """The steps after the preflight, as planned; returns what the summary says of the start and the source."""
        self.give_target_the_right_to_unseal()
        self.run.check_cancelled()
        self.move()
        return self.start_on_target(), self.handle_source_copy()

    def failure(self, exc: Exception) -> str:
        self.log.error(_("Failed: %(error)s"), {"error": exc})
        undone, left = self.ledger.unwind()
        parts = [_("The migration of '%(vm)s' failed: %(error)s.") % {"vm": self.opts.vm_name, "error": exc}]
        if undone:
            parts.append(_("Undone: %(changes)s.") % {"changes": "; ".join(undone)})
        else:
            parts.append(_("Nothing had to be undone."))
        if left:
            parts.append(_("Left as it is: %(changes)s.") % {"changes": "; ".join(left)})
        parts.append(_("The VM is on %(where)s.") % {"where": self.where_is_it()})
        return " ".join(parts)

    def where_is_it(self) -> str:
        found = []
        for side in (self.src, self.tgt):
            try:
                vm = side.again(GetVM(self.opts.vm_name))
            except RemotingError:
                command = by_hand(GetVM(self.opts.vm_name))
                found.append(
                    _("%(host)s (unreachable: check by hand with %(command)s)") % {"host": side, "command": command}
                )
                continue
            if vm is not None:
                found.append(f"{side} ({vm_state_words(vm.state)})")
        if len(found) == 2:
            return _("%(first)s and %(second)s") % {"first": found[0], "second": found[1]}
        return found[0] if found else _("neither host: look at the lab share and Get-VM on both hosts")

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
            title = _("Escrow the owner guardian of '%(vm)s' from %(source)s")
            with self.run.step(title % {"vm": self.vm.name, "source": self.source}):
                pair = self.src.escrow(owner.signing, owner.encryption, self.run.user)
        with self.run.step(_("Import %(pair)s to %(target)s") % {"pair": pair, "target": self.target}):
            name = self.tgt.import_pair(pair, self.plan.import_name)
        self.run.record("carried_pair", pair.pk)  # the kind audits the placement
        self.ledger.did(
            _("guardian '%(name)s' with its private keys imported to %(target)s (harmless to keep)")
            % {"name": name, "target": self.target},
            by_hand=if_unwanted(self.target, by_hand(RemoveGuardian(name))),
        )

    def authorise_target_guardian(self) -> None:
        self.stop_source_if_running()
        with self.run.step(_("Export the public part of %(target)s's guardian") % {"target": self.target}):
            guardian = self.plan.target_guardian
            if not guardian:
                self.tgt.run(GenerateLocalGuardian(UNTRUSTED_GUARDIAN))
                guardian = UNTRUSTED_GUARDIAN
                self.log.info(
                    _("Created UntrustedGuardian on %(target)s (fresh certificates with private keys)"),
                    {"target": self.target},
                )
                self.ledger.did(
                    _("UntrustedGuardian created on %(target)s (harmless: the first TPM change there makes one)")
                    % {"target": self.target}
                )
            metadata = read_guardian_metadata(self.tgt, guardian)
        title = _("Import it on %(source)s and grant it access to '%(vm)s'") % {
            "source": self.source,
            "vm": self.vm.name,
        }
        with self.run.step(title, destructive=True):
            name = import_guardian_metadata(self.src, metadata, self.plan.granted_name)
            # Written before the grant: should the grant fail, the imported guardian is still named as left over.
            self.ledger.did(
                _("the public part of %(target)s's guardian imported on %(source)s as '%(name)s' (harmless)")
                % {"target": self.target, "source": self.source, "name": name},
                by_hand=if_unwanted(self.source, by_hand(RemoveGuardian(name))),
            )
            before = self.src.run(GetVmSecurity(self.vm.name)).key_protector
            granted = self.src.run(GrantKeyProtectorAccess(before, name))
            self.src.run(SetKeyProtector(self.vm.name, granted))
        self.granted_key_protector = granted
        self.log.info(
            _("'%(vm)s' may now be unsealed by guardian '%(name)s' of %(target)s; no private key moved"),
            {"vm": self.vm.name, "name": name, "target": self.target},
        )
        self.ledger.did(
            _("guardian '%(name)s' of %(target)s authorised in the key protector of '%(vm)s' (harmless)")
            % {"name": name, "target": self.target, "vm": self.vm.name},
            by_hand=_("to revoke it, on %(host)s: %(command)s")
            % {"host": self.source, "command": revoke_by_hand(self.vm.name, name)},
        )

    # -- move ------------------------------------------------------------------------------------------------------

    def stop_source_if_running(self) -> None:
        vm = self.src.run(GetVM(self.vm.name))
        if vm is None or vm.state != "Running":
            return
        with self.run.step(_("Shut down '%(vm)s' on %(source)s") % {"vm": self.vm.name, "source": self.source}):
            self.src.run(StopVM(self.vm.name))
        self.ledger.did(
            _("'%(vm)s' shut down on %(source)s") % {"vm": self.vm.name, "source": self.source},
            undo=lambda: self.src.again(StartVM(self.vm.name)),
            by_hand=on_host(self.source, by_hand(StartVM(self.vm.name))),
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
        with self.run.step(compare_move_step(self.source, self.target)):
            report = self.src.run(CompareMove(*move))
            if not report.ok:
                raise JobFailed(compare_failed(self.source, report.incompatibilities))
        with self.run.step(move_step(self.opts.vm_name, self.target), destructive=True) as step:
            if step.needed:
                self.src.run(MoveVM(*move))
        self.log.info(_("'%(vm)s' now lives on %(target)s"), {"vm": self.vm.name, "target": self.target})
        # Not undone by the console: moving a running VM back is a second migration, for a person to decide.
        back = by_hand(MoveVM(self.vm.name, self.plan.source_name or str(self.source), "<its folder>"))
        self.ledger.did(
            _("'%(vm)s' moved to %(target)s by live migration, with its storage")
            % {"vm": self.vm.name, "target": self.target},
            by_hand=_("to bring it back, on %(target)s (with the folder it had): %(command)s")
            % {"target": self.target, "command": back},
        )

    def export_to_share(self) -> str:
        """Export the VM to a folder of its own on the lab share (named like the console's temporary files)."""
        folder = f"{share_root(self.opts.share)}\\gc-{secrets.token_hex(4)}-migrate"
        self.ledger.did(
            _("export of '%(vm)s' in %(folder)s") % {"vm": self.vm.name, "folder": folder},
            undo=lambda: self.src.again(RemoveFolder(folder)),
            by_hand=by_hand(RemoveFolder(folder)),
        )
        with self.run.step(export_step(self.opts.vm_name, self.opts.share)):
            self.log.info(_("The export goes to %(folder)s"), {"folder": folder})
            self.src.run(ExportVM(self.vm.name, folder))
        return folder

    def pull_through_source_share(self) -> None:
        """The workgroup method: export on the source to the folder it shares, copy it to the target through a drive
        mapped with the share's account, import the local copy, then remove the export and the copy."""
        name = f"gc-{secrets.token_hex(4)}-migrate"
        local = f"{share_root(self.plan.share_folder)}\\{name}"
        self.ledger.did(
            _("export of '%(vm)s' in %(folder)s on %(source)s")
            % {"vm": self.vm.name, "folder": local, "source": self.source},
            undo=lambda: self.src.again(RemoveFolder(local)),
            by_hand=on_host(self.source, by_hand(RemoveFolder(local))),
        )
        with self.run.step(pull_export_step(self.opts.vm_name, self.source, share_root(self.opts.share))):
            self.log.info(_("The export goes to %(folder)s on %(host)s"), {"folder": local, "host": self.source})
            self.src.run(ExportVM(self.vm.name, local))
        staging = f"{self.plan.target_vm_path}\\{name}"
        self.copy_from_share(f"{name}\\{self.vm.name}", staging)
        config = exported_config_path(staging, self.vm.vm_id)
        home = f"{self.plan.target_vm_path}\\{self.vm.name}"
        self.import_on_target(ImportOptions(config, True, self.opts.new_id, home, f"{home}\\Virtual Hard Disks"))
        self.remove_folder(self.tgt, staging, _("Removed the copy of the export %(folder)s from %(host)s"))
        self.remove_folder(self.src, local, _("Removed the export %(folder)s from %(host)s"))

    def copy_from_share(self, exported: str, staging: str) -> None:
        """Map the source's share on the target with the share's account, copy the export to `staging`, and remove
        the mapping whatever happened (a failed removal stays in the ledger with the command to run)."""
        if self.share_account is None:
            raise JobFailed(_("No account is stored for %(share)s (Hosts › Lab shares).") % {"share": self.opts.share})
        drive = f"gc-{secrets.token_hex(4)}-share"  # a drive of this session alone, named like the temporary files
        root = share_root(self.opts.share)
        mapped = self.ledger.did(
            _("%(share)s mapped on %(target)s as drive %(drive)s:")
            % {"share": root, "target": self.target, "drive": drive},
            undo=lambda: self.tgt.again(UnmapShare(drive)),
            by_hand=_("on %(host)s: %(command)s (or end the console's WinRM session)")
            % {"host": self.target, "command": by_hand(UnmapShare(drive))},
        )
        self.ledger.did(
            _("copy of the export in %(folder)s on %(target)s") % {"folder": staging, "target": self.target},
            undo=lambda: self.tgt.again(RemoveFolder(staging)),
            by_hand=on_host(self.target, by_hand(RemoveFolder(staging))),
        )
        account = self.share_account
        wrong_account = _(
            "check the account %(account)s and its password stored for %(share)s (Hosts › Lab shares), "
            "and that %(source)s shares %(share)s with File and Printer Sharing open"
        ) % {"account": account.user, "share": root, "source": self.source}
        share_lost = _("check that %(source)s is on the network and still shares %(share)s, then migrate again") % {
            "source": self.source,
            "share": root,
        }
        try:
            with self.run.step(map_step(root, self.target)), remedied(wrong_account):
                self.log.info(_("The share's account: %(account)s"), {"account": account.user})
                self.tgt.run(MapShare(drive, root, account))
            with self.run.step(copy_step(root, self.target)), remedied(share_lost):
                self.log.info(_("The copy goes to %(folder)s on %(host)s"), {"folder": staging, "host": self.target})
                self.tgt.run(CopyFolder(f"{drive}:\\{exported}", staging))
        finally:
            self.unmap(root, drive, mapped)

    def unmap(self, root: str, drive: str, mapped: Entry) -> None:
        try:
            with self.run.step(unmap_step(root, self.target)):
                self.tgt.again(UnmapShare(drive))
        except (RemotingError, JobFailed) as exc:
            self.log.warning(
                _("Could not remove the mapping %(drive)s: on %(target)s: %(error)s"),
                {"drive": drive, "target": self.target, "error": exc},
            )
            return  # stays in the ledger, with the command to run
        self.ledger.forget(mapped)

    def remove_folder(self, side: Side, folder: str, removed: str) -> None:
        """Remove a temporary folder; `removed` says so (its placeholders: folder, host)."""
        try:
            side.again(RemoveFolder(folder))
            self.ledger.entries = [e for e in self.ledger.entries if folder not in e.done]
            self.log.info(removed, {"folder": folder, "host": side})
        except RemotingError as exc:
            self.log.warning(
                _("Could not remove %(folder)s from %(host)s: %(error)s. Remove it by hand later."),
                {"folder": folder, "host": side, "error": exc},
            )

    def import_on_target(self, options: ImportOptions) -> None:
        with self.run.step(compare_import_step(self.target)):
            report = self.tgt.run(CompareVM(options))
            if not report.ok:
                raise JobFailed(compare_failed(self.target, report.incompatibilities))
        # Registered before the import: a dropped connection leaves its outcome unknown, and the undo checks.
        self.ledger.did(
            _("'%(vm)s' imported on %(target)s (undoing unregisters it; copied disk files stay there)")
            % {"vm": self.vm.name, "target": self.target},
            undo=self.remove_from_target,
            by_hand=on_host(self.target, by_hand(RemoveVM(self.vm.name))),
        )
        with self.run.step(import_step(self.opts.vm_name, self.target)):
            imported = self.tgt.run(ImportVM(options))
        self.log.info(
            _("'%(vm)s' is registered on %(target)s with ID %(id)s"),
            {"vm": imported.name, "target": self.target, "id": imported.vm_id},
        )
        self.run.record("imported_vm_id", imported.vm_id)
        if self.granted_key_protector is not None and not options.copy:
            # Files registered in place were copied before the grant: give them the protector that names the target.
            title = _("Set-VMKeyProtector %(vm)s on %(target)s (the authorised protector)")
            with self.run.step(title % {"vm": quote(self.vm.name), "target": self.target}):
                self.tgt.run(SetKeyProtector(self.vm.name, self.granted_key_protector))

    def remove_from_target(self) -> None:
        if self.tgt.again(GetVM(self.vm.name)) is not None:
            self.tgt.run(StopVM(self.vm.name, turn_off=True))
            self.tgt.run(RemoveVM(self.vm.name))

    def remove_export(self, folder: str) -> None:
        try:
            self.src.again(RemoveFolder(folder))
            self.ledger.entries = [e for e in self.ledger.entries if folder not in e.done]
            self.log.info(_("Removed the export %(folder)s from the lab share"), {"folder": folder})
        except RemotingError as exc:
            self.log.warning(
                _("Could not remove %(folder)s: %(error)s. Remove it by hand later."), {"folder": folder, "error": exc}
            )

    # -- after the move --------------------------------------------------------------------------------------------

    def start_on_target(self) -> str:
        if not self.opts.start:
            return ""
        with self.run.step(start_step(self.opts.vm_name, self.target)):
            vm = self.tgt.run(GetVM(self.vm.name))
            if vm is not None and vm.state != "Running":
                self.tgt.run(StartVM(self.vm.name))
                vm = self.tgt.run(GetVM(self.vm.name))
            if vm is None:
                raise JobFailed(
                    _("'%(vm)s' is missing on %(target)s after Start-VM") % {"vm": self.vm.name, "target": self.target}
                )
            if vm.state != "Running":
                raise JobFailed(
                    _("'%(vm)s' is %(state)s on %(target)s after Start-VM")
                    % {"vm": self.vm.name, "state": vm_state_words(vm.state), "target": self.target}
                )
        self.log.info(_("'%(vm)s' is running on %(target)s"), {"vm": self.vm.name, "target": self.target})
        return _(", running there")

    def handle_source_copy(self) -> str:
        if self.opts.method == "live":
            return _("live migration leaves no source copy")
        if self.opts.source_after == "remove":
            with self.run.step(remove_source_step(self.opts.vm_name, self.source), destructive=True):
                self.src.run(RemoveVM(self.vm.name))
            return _("the source copy was removed from %(source)s (its disks stay there)") % {"source": self.source}
        return _("the source copy stays on %(source)s, off") % {"source": self.source}


def on_host(host: object, command: str) -> str:
    """What to run by hand, and where."""
    return _("on %(host)s: %(command)s") % {"host": host, "command": command}


def if_unwanted(host: object, command: str) -> str:
    return _("if unwanted, on %(host)s: %(command)s") % {"host": host, "command": command}


def compare_failed(host: object, incompatibilities: list[str]) -> str:
    return _("Compare-VM on %(host)s: %(problems)s") % {"host": host, "problems": " ".join(incompatibilities)}


@contextmanager
def remedied(remedy: str) -> Iterator[None]:
    """What the host refused, followed by what to do about it."""
    try:
        yield
    except RemoteCommandError as exc:
        raise JobFailed(_("%(error)s — %(remedy)s") % {"error": exc, "remedy": remedy}) from None


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
        return script.comment(_("The preflight fails: the job stops here, nothing more runs."))
    lab = ShownLab(script, plan.vm, plan.target_store_exists)
    migration = Migration(ShownRun(script), (lab.side(hosts[0], "source"), lab.side(hosts[1], "target")), opts)
    migration.plan, migration.log = plan, Unsaid(log)
    migration.share_account = share_credential(opts.share, shown=True)  # the password is prompted for, never shown
    migration.carry_out()
    return script


def revoke_by_hand(vm_name: str, guardian_name: str) -> str:
    """Take a granted guardian back out of a VM's key protector: read it, revoke, set it."""
    return by_hand(GetVmSecurity(vm_name), RevokeKeyProtectorAccess(b"", guardian_name), SetKeyProtector(vm_name, b""))
