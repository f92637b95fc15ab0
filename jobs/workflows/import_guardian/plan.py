"""Import a guardian from the vault onto a host, so the host can start the VMs sealed to it.

Steps: create the shielded store if missing, copy both PFX files to the host, import them into the store, remove
the files, create the guardian by thumbprints (-AllowExpired -AllowUntrustedRoot), and verify HasPrivateSigningKey.
Re-running on a host that already has the pair changes nothing. A guardian named `UntrustedGuardian` with other
certificates is kept: the pair is imported under a distinct name.

`plan_import` reads the host through an Ask and decides; `ImportPlan.operations` lists what follows, in order. The
job runs them (`import_pair`) and Show PowerShell prints them (`import_script`), so the two cannot differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from django.utils.translation import gettext as _

from hosts import crypto
from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    CreateShieldedStore,
    GetGuardians,
    ImportPfx,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    StoreListing,
    thumbprints_of,
)
from hosts.remoting.catalog.inventory import GuardianFacts
from hosts.remoting.operation import Operation
from hosts.remoting.session import HostSession
from hosts.vault.models import EscrowedPair
from hosts.vault.pfx import ENCRYPTION_FILE, SIGNING_FILE
from jobs.kinds import JobFailed

from ..powershell import PowerShellScript
from ..preview import Ask, InventoryAnswers, show
from ..transfer import PfxFiles, require_protected_transport, run_in_order

log = logging.getLogger(__name__)

DEFAULT_NAME = "UntrustedGuardian"


@dataclass(frozen=True)
class ImportPlan:
    """What an import does on a host, decided from the host's guardians and shielded store."""

    key: tuple[str, str]  # the pair's signing and encryption thumbprints
    name: str  # the guardian's name on the host: its own, or a distinct one when another guardian has it
    wanted: str  # the name the pair would like (the vault's), for the note when it is taken
    present: bool  # a guardian with these certificates exists on the host (with or without its private keys)
    done: bool  # ... with its private keys: nothing is sent
    store_exists: bool
    keyed: bool  # both certificates are in the store with their private keys: nothing to copy
    exportable: bool = False  # the keys are imported exportable (an admin's choice; by default they are not)

    @property
    def copies(self) -> bool:
        return not self.done and not self.keyed

    def operations(self, files: PfxFiles) -> list[Operation[Any]]:
        """What the import sends after its reads, in order (nothing when it is done already)."""
        if self.done:
            return []
        ops: list[Operation[Any]] = [] if self.store_exists else [CreateShieldedStore()]
        if self.copies:
            ops += files.write() + files.import_into_store(self.exportable) + [files.remove()]
        if not self.present:
            ops.append(NewGuardianByThumbprints(self.name, *self.key))
        return ops + [GetGuardians()]  # the check: the guardian has its private signing key


def plan_import(ask: Ask, pair: EscrowedPair, exportable: bool = False) -> ImportPlan:
    """Read the host's guardians (and, unless the pair is there with its keys, its store) and decide."""
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    wanted = pair.guardian_name or DEFAULT_NAME
    guardians = ask(GetGuardians())
    present = next((g for g in guardians if thumbprints_of(g) == key), None)
    if present is not None and present.has_private_signing_key:
        return ImportPlan(key, present.name, wanted, present=True, done=True, store_exists=True, keyed=True)
    listing = ask(ListShieldedCertificates())
    name = present.name if present is not None else distinct_name(pair, guardians)
    return ImportPlan(
        key,
        name,
        wanted,
        present=present is not None,
        done=False,
        store_exists=listing.exists,
        keyed=has_both_keys(listing, key),
        exportable=exportable,
    )


def import_pair(session: HostSession, host: Host, pair: EscrowedPair, exportable: bool = False) -> str:
    """Make the host hold `pair` as a guardian with its private keys (exportable only when asked); return the
    guardian's name there. Whether this host may receive the keys at all is the job's check (placement.py)."""
    plan = plan_import(session.run, pair, exportable)
    announce(plan, host)
    files = files_for(plan, pair, session)
    run_in_order(session, host, plan.operations(files), ImportChecks(plan, host))
    return plan.name


def announce(plan: ImportPlan, host: Host) -> None:
    """The job log's word on what the reads found, before anything is sent."""
    if plan.done:
        log.info(
            _("%(host)s already has this pair as guardian '%(guardian)s' with its private keys; nothing changed"),
            {"host": host, "guardian": plan.name},
        )
        return
    if not plan.store_exists:
        log.info(_("The shielded certificate store does not exist on %(host)s yet; creating it"), {"host": host})
    if not plan.present and plan.name != plan.wanted:
        log.warning(
            _("'%(guardian)s' exists on %(host)s with other certificates; kept it"),
            {"guardian": plan.wanted, "host": host},
        )


def files_for(plan: ImportPlan, pair: EscrowedPair, session: HostSession) -> PfxFiles:
    """The PFX files the import writes to the host: the vault's pair, opened (and checked) before anything is sent,
    and only to a host whose session keeps the password safe."""
    if not plan.copies:
        return PfxFiles.fresh()
    signing, encryption, password = open_pair(pair)
    require_protected_transport(session)
    return PfxFiles.fresh((signing, encryption), password)


def has_both_keys(listing: StoreListing, key: tuple[str, str]) -> bool:
    certs = [listing.find(t) for t in key]
    return all(c is not None and c.has_private_key for c in certs)


def open_pair(pair: EscrowedPair) -> tuple[bytes, bytes, str]:
    try:
        return pair.open()
    except crypto.SecretError as exc:
        raise JobFailed(
            _(
                "The vault entry cannot be used: %(error)s. Nothing was sent to the host. Escrow the pair again from "
                "a host that still holds it, or upload it from a backup."
            )
            % {"error": exc}
        ) from None


class ImportChecks:
    """What an import checks as the answers arrive: each imported certificate is the one expected, and the guardian
    has its private signing key at the end."""

    def __init__(self, plan: ImportPlan, host: Host) -> None:
        self.plan, self.host, self.imported = plan, host, 0

    def __call__(self, op: Operation[Any], answer: object) -> None:
        if isinstance(op, ImportPfx):
            self.imported_certificate(str(answer))
        elif isinstance(op, NewGuardianByThumbprints):
            log.info(
                _("Created guardian '%(guardian)s' on %(host)s from the imported certificates"),
                {"guardian": self.plan.name, "host": self.host},
            )
        elif isinstance(op, GetGuardians):
            verify(cast(list[GuardianFacts], answer), self.host, self.plan.key)

    def imported_certificate(self, thumbprint: str) -> None:
        expected = self.plan.key[self.imported]
        if thumbprint and thumbprint != expected:
            raise JobFailed(
                _("%(host)s imported certificate %(thumbprint)s where %(expected)s was expected; stopped.")
                % {"host": self.host, "thumbprint": thumbprint, "expected": expected}
            )
        self.imported += 1
        if self.imported == len(self.plan.key):
            log.info(
                _("Imported both certificates with their private keys into the shielded store of %(host)s"),
                {"host": self.host},
            )


def distinct_name(pair: EscrowedPair, guardians: list[GuardianFacts]) -> str:
    """The pair's own name, or — when another guardian already uses it — that name with the thumbprint's start."""
    taken = {g.name.lower() for g in guardians}
    wanted = pair.guardian_name or DEFAULT_NAME
    if wanted.lower() not in taken:
        return wanted
    candidate = f"{wanted}-{pair.signing_thumbprint[:8]}"
    number = 2
    while candidate.lower() in taken:
        candidate = f"{wanted}-{pair.signing_thumbprint[:8]}-{number}"
        number += 1
    return candidate


def verify(guardians: list[GuardianFacts], host: Host, key: tuple[str, str]) -> None:
    found = next((g for g in guardians if thumbprints_of(g) == key), None)
    if found is None:
        raise JobFailed(
            _("After the import, %(host)s shows no guardian with these certificates; check Get-HgsGuardian.")
            % {"host": host}
        )
    if not found.has_private_signing_key:
        raise JobFailed(
            _(
                "Guardian '%(guardian)s' exists on %(host)s but HasPrivateSigningKey is False: the private keys did "
                "not arrive in 'Shielded VM Local Certificates'. Check the store, then run the import again."
            )
            % {"guardian": found.name, "host": host}
        )


def bind_vault_download(script: PowerShellScript, pair: EscrowedPair) -> None:
    """Show PowerShell takes the PFX bytes from the vault's download of the pair, in the current folder."""
    note = f"The vault's download of {pair} ({SIGNING_FILE}, {ENCRYPTION_FILE}) in the current folder:"
    script.bind("file", "$signingPfx", f"[IO.File]::ReadAllBytes((Resolve-Path '{SIGNING_FILE}'))", note)
    script.bind("file", "$encryptionPfx", f"[IO.File]::ReadAllBytes((Resolve-Path '{ENCRYPTION_FILE}'))")


def introduce(script: PowerShellScript, plan: ImportPlan, pair: EscrowedPair, host: Host) -> None:
    """What Show PowerShell says between an import's reads and its operations: where the PFX bytes come from when
    they are copied (the vault's download), or that the host has the pair already."""
    if plan.done:
        script.comment(f"{host} holds this pair as guardian '{plan.name}' with its private keys: it is not imported.")
    elif plan.copies:
        bind_vault_download(script, pair)


def import_script(host: Host, pair: EscrowedPair, exportable: bool = False) -> tuple[ImportPlan, PowerShellScript]:
    """Show PowerShell of `import_pair` on `host`: its reads answered by the last inventory, then what follows."""
    script = PowerShellScript()
    plan = plan_import(InventoryAnswers(host, script), pair, exportable)
    introduce(script, plan, pair, host)
    files = PfxFiles.sample()
    return plan, show(script, plan.operations(files), files.variables())


def import_lines(
    script: PowerShellScript, pair: EscrowedPair, name: str, from_vault: bool = True, store_exists: bool = False
) -> PowerShellScript:
    """Show PowerShell of `import_pair` on a host that holds nothing of the pair yet, whose shielded store exists or
    not (`store_exists`, as its last inventory says). The PFX bytes come from the vault's download (`from_vault`) or
    from $signingPfx / $encryptionPfx read by an escrow shown above."""
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    plan = ImportPlan(key, name, name, present=False, done=False, store_exists=store_exists, keyed=False)
    if from_vault:
        bind_vault_download(script, pair)
    script.add(GetGuardians(), ListShieldedCertificates())
    files = PfxFiles.sample()
    return show(script, plan.operations(files), files.variables())


def import_notes(host: Host, pair: EscrowedPair, plan: ImportPlan) -> list[str]:
    """What the last inventory says about the host, for the preflight page."""
    notes = []
    if plan.done:
        notes.append(
            _("The last inventory shows %(host)s already has this pair as '%(guardian)s': nothing will change.")
            % {"host": host, "guardian": plan.name}
        )
    elif plan.present:
        notes.append(
            _(
                "The last inventory shows %(host)s has this pair as '%(guardian)s' without its private keys: the "
                "import brings them back."
            )
            % {"host": host, "guardian": plan.name}
        )
    elif plan.name != plan.wanted:
        notes.append(
            _(
                "'%(wanted)s' exists on %(host)s with other certificates: it is kept, and this pair is imported as "
                "'%(guardian)s'."
            )
            % {"wanted": plan.wanted, "host": host, "guardian": plan.name}
        )
    if pair.expired():
        notes.append(
            _("The pair has expired; it is imported with -AllowExpired and still unlocks the VMs sealed to it.")
        )
    return notes
