"""Import a guardian from the vault onto a host, so the host can start the VMs sealed to it.

Steps: create the shielded store if missing, copy both PFX files to the host, import them into the store, create the
guardian by thumbprints (-AllowExpired -AllowUntrustedRoot), remove the files, and verify HasPrivateSigningKey.
Re-running on a host that already has the pair changes nothing. A guardian named `UntrustedGuardian` with other
certificates is kept: the pair is imported under a distinct name."""

from __future__ import annotations

from typing import Any

from hosts import crypto
from hosts.inventory.models import Guardian
from hosts.remoting.catalog.guardians import (
    CreateShieldedStore,
    GetGuardians,
    ImportPfx,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    RemoveFiles,
    StoreListing,
    WriteFileBytes,
    thumbprints_of,
)
from hosts.remoting.operation import Secret
from hosts.vault.models import EscrowedPair
from hosts.vault.pfx import ENCRYPTION_FILE, SIGNING_FILE
from jobs.kinds import JobFailed

from ..powershell import PowerShellScript, sample_pfx_paths, sample_token
from ..transfer import LogFn, _no_log, require_protected_transport, temp_pfx_paths, temporary_files

DEFAULT_NAME = "UntrustedGuardian"


def import_pair(session: Any, host: Any, pair: EscrowedPair, *, log: LogFn | None = None) -> str:
    """Make the host hold `pair` as a guardian with its private keys; return the guardian's name there."""
    log = log or _no_log
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    guardians = session.run(GetGuardians())
    present = next((g for g in guardians if thumbprints_of(g) == key), None)
    if present is not None and present.has_private_signing_key:
        log(f"{host} already has this pair as guardian '{present.name}' with its private keys; nothing changed", "info")
        return str(present.name)
    listing = session.run(ListShieldedCertificates())
    if not listing.exists:
        log(f"The shielded certificate store does not exist on {host} yet; creating it", "info")
        session.run(CreateShieldedStore())
        listing = StoreListing(exists=True)
    if not has_both_keys(listing, key):
        copy_and_import(session, host, pair, log)
    name = present.name if present is not None else distinct_name(pair, guardians)
    if present is None:
        if name != (pair.guardian_name or DEFAULT_NAME):
            log(f"'{pair.guardian_name or DEFAULT_NAME}' exists on {host} with other certificates; kept it", "warning")
        session.run(NewGuardianByThumbprints(name, *key))
        log(f"Created guardian '{name}' on {host} from the imported certificates", "info")
    verify(session, host, key, name)
    return str(name)


def has_both_keys(listing: StoreListing, key: tuple[str, str]) -> bool:
    certs = [listing.find(t) for t in key]
    return all(c is not None and c.has_private_key for c in certs)


def open_pair(pair: EscrowedPair) -> tuple[bytes, bytes, str]:
    try:
        return pair.open()
    except crypto.SecretError as exc:
        raise JobFailed(
            f"The vault entry cannot be used: {exc}. Nothing was sent to the host. Escrow the pair again from a host "
            "that still holds it, or upload it from a backup."
        ) from None


def copy_and_import(session: Any, host: Any, pair: EscrowedPair, log: LogFn) -> None:
    signing, encryption, password = open_pair(pair)
    require_protected_transport(session)
    with temporary_files(session, host, temp_pfx_paths(), log) as paths:
        for path, data in zip(paths, (signing, encryption), strict=True):
            session.run(WriteFileBytes(path, data))
        for path, expected in zip(paths, (pair.signing_thumbprint, pair.encryption_thumbprint), strict=True):
            imported = session.run(ImportPfx(path, Secret(password)))
            if imported and imported != expected:
                raise JobFailed(f"{host} imported certificate {imported} where {expected} was expected; stopped.")
    log(f"Imported both certificates with their private keys into the shielded store of {host}", "info")


def distinct_name(pair: EscrowedPair, guardians: list[Any]) -> str:
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


def verify(session: Any, host: Any, key: tuple[str, str], name: str) -> None:
    found = next((g for g in session.run(GetGuardians()) if thumbprints_of(g) == key), None)
    if found is None:
        raise JobFailed(f"After the import, {host} shows no guardian with these certificates; check Get-HgsGuardian.")
    if not found.has_private_signing_key:
        raise JobFailed(
            f"Guardian '{found.name}' exists on {host} but HasPrivateSigningKey is False: the private keys did not "
            "arrive in 'Shielded VM Local Certificates'. Check the store, then run the import again."
        )


def import_lines(script: PowerShellScript, pair: EscrowedPair, name: str, from_vault: bool = True) -> PowerShellScript:
    """What `import_pair` sends to a host that lacks the pair, for Show PowerShell. The PFX bytes come from the
    vault's download (`from_vault`) or from $signingPfx / $encryptionPfx read by an escrow shown above."""

    paths, secret = sample_pfx_paths(sample_token()), Secret("")
    if from_vault:
        note = f"The vault's download of {pair} ({SIGNING_FILE}, {ENCRYPTION_FILE}) in the current folder:"
        script.bind("file", "$signingPfx", f"[IO.File]::ReadAllBytes((Resolve-Path '{SIGNING_FILE}'))", note)
        script.bind("file", "$encryptionPfx", f"[IO.File]::ReadAllBytes((Resolve-Path '{ENCRYPTION_FILE}'))")
    script.add(GetGuardians(), ListShieldedCertificates(), CreateShieldedStore())
    script.use("file", "$signingPfx").add(WriteFileBytes(paths[0], b""))
    script.use("file", "$encryptionPfx").add(WriteFileBytes(paths[1], b""))
    script.add(ImportPfx(paths[0], secret), ImportPfx(paths[1], secret), RemoveFiles(paths))
    script.add(NewGuardianByThumbprints(name, pair.signing_thumbprint, pair.encryption_thumbprint))
    return script.add(GetGuardians())


def host_situation(host: Any, pair: EscrowedPair) -> tuple[list[str], str]:
    """What the last inventory says about the host, and the guardian name the import would most likely use."""
    rows = list(Guardian.objects.filter(host=host))
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    notes = []
    same = next((g for g in rows if (g.signing_thumbprint, g.encryption_thumbprint) == key), None)
    if same is not None:
        notes.append(f"The last inventory shows {host} already has this pair as '{same.name}': nothing will change.")
    name = same.name if same else distinct_name(pair, rows)
    if same is None and name != (pair.guardian_name or DEFAULT_NAME):
        notes.append(
            f"'{pair.guardian_name or DEFAULT_NAME}' exists on {host} with other certificates: it is kept, and this "
            f"pair is imported as '{name}'."
        )
    if pair.expired():
        notes.append("The pair has expired; it is imported with -AllowExpired and still unlocks the VMs sealed to it.")
    return notes, name
