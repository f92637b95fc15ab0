"""Escrow: copy a guardian's private keys from a host into the vault, as the well-known export script would.

`escrow_pair` and `escrow_host` are plain functions over an open HostSession (other workflows call them before any
step that could make a private key unreachable). The PFX password is generated here, sent only as a SecureString
over an encrypted, authenticated session, stored only sealed in the vault, and never logged.

What an escrow sends is built once, by `escrow_operations` (and, for a whole host, `pairs_on` for its reads): the
job runs those operations and Show PowerShell prints them (`escrow_lines`, `escrow_pair_script`,
`escrow_host_script`), so the two cannot differ.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    GetGuardians,
    ListShieldedCertificates,
    ReadFileBytes,
    StoreCertificate,
    StoreListing,
    thumbprints_of,
)
from hosts.remoting.catalog.inventory import GuardianFacts
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Operation
from hosts.remoting.session import HostSession
from hosts.vault.models import EscrowedPair, find_pair, pairs_in_vault
from hosts.vault.pfx import SAME_GENERATION, PfxError, windows_subject
from hosts.vault.services import store_pair
from jobs.kinds import JobFailed

from ..powershell import PowerShellScript
from ..preview import Ask, InventoryAnswers, show
from ..transfer import PfxFiles, require_protected_transport, run_in_order

log = logging.getLogger(__name__)

Pair = tuple[str, str, str]  # signing thumbprint, encryption thumbprint, guardian name


def escrow_operations(signing: str, encryption: str, files: PfxFiles, listed: bool = False) -> list[Operation[Any]]:
    """What an escrow of one pair sends, in order: the store listing (unless the caller has it: `listed`), both
    certificates exported with their private keys to temporary PFX files, the files read back, and removed."""
    check: list[Operation[Any]] = [] if listed else [ListShieldedCertificates()]
    return check + files.export(signing, encryption) + files.read_back() + [files.remove()]


def escrow_pair(
    session: HostSession,
    host: Host,
    signing_thumbprint: str,
    encryption_thumbprint: str,
    *,
    guardian_name: str = "",
    user: AbstractBaseUser | None = None,
    listing: StoreListing | None = None,
) -> EscrowedPair:
    """Export a certificate pair from the host's shielded store into the vault; an escrowed pair is returned as is."""
    signing_thumbprint, encryption_thumbprint = signing_thumbprint.upper(), encryption_thumbprint.upper()
    existing = find_pair(signing_thumbprint, encryption_thumbprint)
    if existing is not None:
        log.info(_("%(pair)s is already in the vault; nothing to do"), {"pair": existing})
        return existing
    require_protected_transport(session)
    if listing is not None:
        check_private_keys(listing, host, signing_thumbprint, encryption_thumbprint)
    files = PfxFiles.fresh()
    exported = EscrowChecks(host, signing_thumbprint, encryption_thumbprint)
    operations = escrow_operations(signing_thumbprint, encryption_thumbprint, files, listed=listing is not None)
    run_in_order(session, host, operations, exported)
    try:
        outcome = store_pair(
            exported.read[files.paths[0]],
            exported.read[files.paths[1]],
            str(files.password),
            user=user,
            origin=EscrowedPair.ORIGIN_ESCROW,
            source_host=host,
            allow_expired=True,  # an expired pair still unlocks the VMs sealed to it: keep it safe all the same
            expect_thumbprints=(signing_thumbprint, encryption_thumbprint),
            guardian_name=guardian_name,
        )
    except PfxError as exc:
        raise JobFailed(
            _("The files exported from %(host)s failed the pair check, so nothing was stored: %(error)s.")
            % {"host": host, "error": exc}
        ) from None
    log.info(_("Escrowed %(pair)s from %(host)s into the vault"), {"pair": outcome.pair, "host": host})
    return outcome.pair


class EscrowChecks:
    """What an escrow checks as the answers arrive — both private keys in the store before anything is exported, no
    exported file that comes back empty — and the bytes of the files read back, by path."""

    def __init__(self, host: Host, signing: str, encryption: str) -> None:
        self.host, self.thumbprints = host, (signing, encryption)
        self.read: dict[str, bytes] = {}

    def __call__(self, op: Operation[Any], answer: object) -> None:
        if isinstance(op, ListShieldedCertificates):
            check_private_keys(cast(StoreListing, answer), self.host, *self.thumbprints)
        elif isinstance(op, ReadFileBytes):
            if not isinstance(answer, bytes) or not answer:
                raise JobFailed(
                    _("The exported file %(path)s came back empty; nothing was stored.") % {"path": op.path}
                )
            self.read[op.path] = answer


def check_private_keys(listing: StoreListing, host: Host, *thumbprints: str) -> None:
    for role, thumbprint in zip((_("signing"), _("encryption")), thumbprints, strict=True):
        cert = listing.find(thumbprint)
        words = {"role": role, "thumbprint": thumbprint, "host": host}
        if cert is None:
            raise JobFailed(
                _(
                    "The %(role)s certificate %(thumbprint)s is not in the shielded store of %(host)s, so it cannot "
                    "be escrowed from there. If another host or an old backup has it, escrow or upload it from there."
                )
                % words
            )
        if not cert.has_private_key:
            raise JobFailed(
                _(
                    "The %(role)s certificate %(thumbprint)s on %(host)s has no private key (deleted or never "
                    "there); it cannot be escrowed from this host. Upload the pair from a backup if one exists."
                )
                % words
            )


def historical_pairs(listing: StoreListing, guardians: list[GuardianFacts]) -> list[Pair]:
    """(signing, encryption, guardian name) of every pair on the host that has private keys: the guardians' own (by
    name, so the job and its preview take them in the same order), then older pairs left in the store, matched as
    Windows generates them (same names in the subjects, the closest NotBefore). A certificate belongs to one pair
    only, so pairs are never crossed."""
    found: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for guardian in sorted(guardians, key=lambda g: (g.name.lower(), thumbprints_of(g))):
        key = thumbprints_of(guardian)
        certs = [listing.find(t) for t in key if t]
        if len(certs) == 2 and all(c is not None and c.has_private_key for c in certs):
            found[key] = guardian.name
        used.update(t for t in key if t)
    loose = [c for c in listing.certificates if c.has_private_key and c.thumbprint not in used]
    for sign, enc, name in pair_loose_certificates(loose):
        found.setdefault((sign, enc), name)
    return [(sign, enc, name) for (sign, enc), name in found.items()]


def pair_loose_certificates(certs: list[StoreCertificate]) -> list[Pair]:
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
    pairs: list[Pair] = []
    taken: set[str] = set()
    for _gap, sign_tp, enc_tp, name in sorted(candidates):
        if sign_tp not in taken and enc_tp not in taken:
            pairs.append((sign_tp, enc_tp, name))
            taken.update((sign_tp, enc_tp))
    return pairs


def pairs_on(ask: Ask) -> tuple[StoreListing, list[Pair]]:
    """What an escrow of a whole host reads first: the store listing and, when there is a store, the guardians;
    and every pair with private keys they show."""
    listing = ask(ListShieldedCertificates())
    if not listing.exists:
        return listing, []
    return listing, historical_pairs(listing, ask(GetGuardians()))


def not_in_vault(pairs: list[Pair]) -> list[Pair]:
    """The pairs the vault lacks: one query, however many pairs the host holds."""
    vaulted = pairs_in_vault((sign, enc) for sign, enc, _name in pairs)
    return [pair for pair in pairs if (pair[0].upper(), pair[1].upper()) not in vaulted]


def escrow_host(
    session: HostSession, host: Host, *, user: AbstractBaseUser | None = None
) -> tuple[int, int, list[str]]:
    """Escrow every pair with private keys on the host. Returns (newly stored, already there, failures)."""
    listing, pairs = pairs_on(session.run)
    if not listing.exists:
        log.info(_("%(host)s has no shielded certificate store: nothing to escrow"), {"host": host})
        return 0, 0, []
    if pairs:
        found = ngettext(
            "%(count)d pair with private keys found on %(host)s",
            "%(count)d pairs with private keys found on %(host)s",
            len(pairs),
        )
        log.info(found, {"count": len(pairs), "host": host})
    else:
        log.info(_("No pair with private keys found on %(host)s"), {"host": host})
    missing = not_in_vault(pairs)
    failures: list[str] = []
    for sign, enc, name in missing:
        try:
            escrow_pair(session, host, sign, enc, guardian_name=name, user=user, listing=listing)
        except (JobFailed, RemotingError) as exc:
            failures.append(f"{name} {sign[:8]}/{enc[:8]}: {exc}")
            log.error(
                _("Could not escrow %(guardian)s %(signing)s/%(encryption)s: %(error)s"),
                {"guardian": name, "signing": sign[:8], "encryption": enc[:8], "error": exc},
            )
    return len(missing) - len(failures), len(pairs) - len(missing), failures


def escrow_lines(script: PowerShellScript, signing: str, encryption: str, listed: bool = False) -> PowerShellScript:
    """Show PowerShell of `escrow_pair` for a pair the vault lacks (`listed`: the store was listed already): the PFX
    bytes are read into $signingPfx and $encryptionPfx, which a later import on another host writes there."""
    files = PfxFiles.sample()
    return show(script, escrow_operations(signing, encryption, files, listed), files.variables())


def escrow_pair_script(signing: str, encryption: str) -> PowerShellScript:
    """Show PowerShell of the escrow of one pair: nothing is sent when the vault has it already."""
    script = PowerShellScript()
    existing = find_pair(signing, encryption)
    if existing is not None:
        return script.comment(f"The vault has this pair already ({existing}): the job sends nothing.")
    return escrow_lines(script, signing, encryption)


def escrow_host_script(host: Host) -> PowerShellScript:
    """Show PowerShell of `escrow_host`: its reads answered by the last inventory, then each pair it shows with
    private keys that the vault lacks."""
    script = PowerShellScript()
    listing, pairs = pairs_on(InventoryAnswers(host, script))
    missing = not_in_vault(pairs)
    if not missing:
        script.comment("The last inventory shows no pair with private keys that the vault lacks: nothing more runs.")
    for sign, enc, name in missing:
        script.comment(f"{name or 'An older pair'}: signing {sign[:8]}…, encryption {enc[:8]}…")
        escrow_lines(script, sign, enc, listed=True)
    return script
