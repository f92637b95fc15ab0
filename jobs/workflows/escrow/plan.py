"""Escrow: copy a guardian's private keys from a host into the vault, as the well-known export script would.

`escrow_pair` and `escrow_host` are plain functions over an open HostSession (other workflows call them before any
step that could make a private key unreachable). The PFX password is generated here, sent only as a SecureString
over an encrypted, authenticated session, stored only sealed in the vault, and never logged. `escrow_lines` and
`all_pairs_lines` are what Show PowerShell prints for them."""

from __future__ import annotations

from typing import Any

from hosts.remoting.catalog.guardians import (
    ExportPfx,
    GetGuardians,
    ListShieldedCertificates,
    ReadFileBytes,
    RemoveFiles,
    StoreCertificate,
    StoreListing,
    thumbprints_of,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Secret
from hosts.vault.models import EscrowedPair, find_pair
from hosts.vault.pfx import SAME_GENERATION, PfxError, windows_subject
from hosts.vault.services import store_pair
from jobs.kinds import JobFailed

from ..powershell import PowerShellScript, sample_pfx_paths, sample_token
from ..transfer import (
    LogFn,
    _no_log,
    read_bytes,
    require_protected_transport,
    strong_password,
    temp_pfx_paths,
    temporary_files,
)


def escrow_pair(
    session: Any,
    host: Any,
    signing_thumbprint: str,
    encryption_thumbprint: str,
    *,
    guardian_name: str = "",
    user: Any = None,
    log: LogFn | None = None,
    listing: StoreListing | None = None,
) -> EscrowedPair:
    """Export a certificate pair from the host's shielded store into the vault; an escrowed pair is returned as is."""
    log = log or _no_log
    signing_thumbprint, encryption_thumbprint = signing_thumbprint.upper(), encryption_thumbprint.upper()
    existing = find_pair(signing_thumbprint, encryption_thumbprint)
    if existing is not None:
        log(f"{existing} is already in the vault; nothing to do", "info")
        return existing
    require_protected_transport(session)
    listing = listing or session.run(ListShieldedCertificates())
    check_private_keys(listing, host, signing_thumbprint, encryption_thumbprint)
    password = strong_password()
    with temporary_files(session, host, temp_pfx_paths(), log) as (signing_path, encryption_path):
        session.run(ExportPfx(signing_thumbprint, signing_path, Secret(password)))
        session.run(ExportPfx(encryption_thumbprint, encryption_path, Secret(password)))
        signing_pfx = read_bytes(session, signing_path)
        encryption_pfx = read_bytes(session, encryption_path)
    try:
        outcome = store_pair(
            signing_pfx,
            encryption_pfx,
            password,
            user=user,
            origin=EscrowedPair.ORIGIN_ESCROW,
            source_host=host,
            allow_expired=True,  # an expired pair still unlocks the VMs sealed to it: keep it safe all the same
            expect_thumbprints=(signing_thumbprint, encryption_thumbprint),
            guardian_name=guardian_name,
        )
    except PfxError as exc:
        raise JobFailed(
            f"The files exported from {host} failed the pair check, so nothing was stored: {exc}."
        ) from None
    log(f"Escrowed {outcome.pair} from {host} into the vault", "info")
    return outcome.pair


def check_private_keys(listing: StoreListing, host: Any, *thumbprints: str) -> None:
    for role, thumbprint in zip(("signing", "encryption"), thumbprints, strict=True):
        cert = listing.find(thumbprint)
        if cert is None:
            raise JobFailed(
                f"The {role} certificate {thumbprint} is not in the shielded store of {host}, so it cannot be "
                "escrowed from there. If another host or an old backup has it, escrow or upload it from there."
            )
        if not cert.has_private_key:
            raise JobFailed(
                f"The {role} certificate {thumbprint} on {host} has no private key (deleted or never there); "
                "it cannot be escrowed from this host. Upload the pair from a backup if one exists."
            )


def historical_pairs(listing: StoreListing, guardians: list[Any]) -> list[tuple[str, str, str]]:
    """(signing, encryption, guardian name) of every pair on the host that has private keys: the guardians' own,
    then older pairs left in the store, matched as Windows generates them (same names in the subjects, the
    closest NotBefore). A certificate belongs to one pair only, so pairs are never crossed."""
    found: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for guardian in guardians:
        key = thumbprints_of(guardian)
        certs = [listing.find(t) for t in key if t]
        if len(certs) == 2 and all(c is not None and c.has_private_key for c in certs):
            found[key] = guardian.name
        used.update(t for t in key if t)
    loose = [c for c in listing.certificates if c.has_private_key and c.thumbprint not in used]
    for sign, enc, name in pair_loose_certificates(loose):
        found.setdefault((sign, enc), name)
    return [(sign, enc, name) for (sign, enc), name in found.items()]


def pair_loose_certificates(certs: list[Any]) -> list[tuple[str, str, str]]:
    """Pair signing with encryption certificates of the same guardian and host, closest generation time first."""
    candidates = []
    for sign in certs:
        s = windows_subject(sign.subject)
        for enc in certs:
            e = windows_subject(enc.subject)
            if not (s and e and s["role"] == "Signing" and e["role"] == "Encryption"):
                continue
            if (s["guardian"], s["host"]) != (e["guardian"], e["host"]) or not (sign.not_before and enc.not_before):
                continue
            gap = abs(sign.not_before - enc.not_before)
            if gap <= SAME_GENERATION:
                candidates.append((gap, sign.thumbprint, enc.thumbprint, s["guardian"]))
    pairs: list[tuple[str, str, str]] = []
    taken: set[str] = set()
    for _gap, sign_tp, enc_tp, name in sorted(candidates):
        if sign_tp not in taken and enc_tp not in taken:
            pairs.append((sign_tp, enc_tp, name))
            taken.update((sign_tp, enc_tp))
    return pairs


def escrow_host(session: Any, host: Any, *, user: Any = None, log: LogFn | None = None) -> tuple[int, int, list[str]]:
    """Escrow every pair with private keys on the host. Returns (newly stored, already there, failures)."""
    log = log or _no_log
    listing = session.run(ListShieldedCertificates())
    if not listing.exists:
        log(f"{host} has no shielded certificate store: nothing to escrow", "info")
        return 0, 0, []
    pairs = historical_pairs(listing, session.run(GetGuardians()))
    log(f"{len(pairs)} pair(s) with private keys found on {host}", "info")
    stored = already = 0
    failures: list[str] = []
    for sign, enc, name in pairs:
        if find_pair(sign, enc) is not None:
            already += 1
            continue
        try:
            escrow_pair(session, host, sign, enc, guardian_name=name, user=user, log=log, listing=listing)
            stored += 1
        except (JobFailed, RemotingError) as exc:
            failures.append(f"{name} {sign[:8]}/{enc[:8]}: {exc}")
            log(f"Could not escrow {name} {sign[:8]}/{enc[:8]}: {exc}", "error")
    return stored, already, failures


def escrow_lines(script: PowerShellScript, signing: str, encryption: str, listed: bool = False) -> PowerShellScript:
    """What `escrow_pair` sends, for Show PowerShell (`listed`: the store was listed already): the PFX bytes are
    read into $signingPfx and $encryptionPfx, which a later import on another host writes there."""
    paths, secret = sample_pfx_paths(sample_token()), Secret("")
    if not listed:
        script.add(ListShieldedCertificates())
    script.add(ExportPfx(signing, paths[0], secret), ExportPfx(encryption, paths[1], secret))
    script.add(ReadFileBytes(paths[0]), into="$signingPfx").add(ReadFileBytes(paths[1]), into="$encryptionPfx")
    return script.add(RemoveFiles(paths))


def all_pairs_lines(host: Any) -> PowerShellScript:
    """What `escrow_host` sends, for the pairs the last inventory shows with private keys and the vault lacks."""
    listing = StoreListing(exists=True, certificates=[as_store_certificate(c) for c in host.certificates.all()])
    pairs = [p for p in historical_pairs(listing, list(host.guardians.all())) if find_pair(p[0], p[1]) is None]
    script = PowerShellScript().add(ListShieldedCertificates(), GetGuardians())
    if not pairs:
        script.comment("The last inventory shows no pair with private keys that the vault lacks: nothing more runs.")
    for sign, enc, name in pairs:
        script.comment(f"{name or 'An older pair'}: signing {sign[:8]}…, encryption {enc[:8]}…")
        escrow_lines(script, sign, enc, listed=True)
    return script


def as_store_certificate(cert: Any) -> StoreCertificate:
    """An inventory row as the live store listing would show it."""
    return StoreCertificate(
        cert.thumbprint.upper(), cert.subject, cert.not_before, cert.not_after, cert.has_private_key
    )
