"""Escrow: copy a guardian's private keys from a host into the vault, as the well-known export script would.

`escrow_pair` and `escrow_host` are plain functions over an open HostSession (other workflows call them before any
step that could make a private key unreachable); the job kinds at the end wrap them. The PFX password is generated
here, sent only as a SecureString over an encrypted, authenticated session, stored only sealed in the vault, and
never logged. The temporary PFX files on the host are removed on every path, failure included.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from console.roles import require
from hosts.remoting.catalog.guardians import (
    TEMP_DIR,
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
from jobs.kinds import JobContext, JobFailed, job_kind

from .powershell import PowerShellScript, sample_pfx_paths, sample_token

LogFn = Callable[[str, str], None]


def _no_log(text: str, level: str = "info") -> None:
    return None


# -- shared by the guardian workflows (import and restore use these too) -------------------------------------------


def require_protected_transport(session: Any) -> None:
    """PFX passwords and private keys travel only over an encrypted session whose server is authenticated.

    The remoting layer already refuses Basic over HTTP; what is left to refuse is HTTPS without any check of the
    host's certificate, where anyone in the middle could read the password.
    """
    spec = getattr(session, "spec", None)
    if spec is None:
        return
    if spec.https and spec.cert_check == "none":
        raise JobFailed(
            f"{spec.display} is registered with certificate checking off, so the console cannot be sure it is "
            "talking to the host; it will not send a PFX password there. Edit the host to check its certificate "
            "(CA bundle or pinned fingerprint), or use HTTP with Negotiate (message-encrypted)."
        )


def strong_password() -> str:
    return secrets.token_urlsafe(32)


def temp_pfx_paths() -> list[str]:
    tag = secrets.token_hex(8)
    return [f"{TEMP_DIR}\\gc-{tag}-signing.pfx", f"{TEMP_DIR}\\gc-{tag}-encryption.pfx"]


@contextmanager
def temporary_files(session: Any, host: Any, paths: list[str], log: LogFn) -> Iterator[list[str]]:
    """Yield the paths; afterwards remove those files from the host whatever happened, reconnecting once if the
    connection broke. Files that cannot be removed are named, with the command to remove them by hand."""
    try:
        yield paths
    finally:
        remove_temporary_files(session, host, paths, log)


def remove_temporary_files(session: Any, host: Any, paths: list[str], log: LogFn) -> None:
    for attempt in (1, 2):
        try:
            left = session.run(RemoveFiles(paths))
        except RemotingError as exc:
            if attempt == 1:
                log(f"Removing the temporary PFX files failed ({exc}); reconnecting to try again", "warning")
                reopen(session)
                continue
            left = paths
        if not left:
            log(f"Temporary PFX files removed from {host}", "info")
            return
        break
    names = ", ".join(f"'{p}'" for p in paths)
    log(
        f"Could not remove the temporary PFX files from {host}. Remove them by hand now, they hold private keys: "
        f"Remove-Item -LiteralPath {names} -Force",
        "error",
    )


def reopen(session: Any) -> None:
    try:
        session.close()
        session.open()
    except RemotingError:
        pass  # the next run() reports the failure


# -- escrow -------------------------------------------------------------------------------------------------------


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


def read_bytes(session: Any, path: str) -> bytes:
    data: bytes = session.run(ReadFileBytes(path))
    if not data:
        raise JobFailed(f"The exported file {path} came back empty; nothing was stored.")
    return data


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


# -- job kinds ------------------------------------------------------------------------------------------------------


@job_kind("escrow_guardian", label="Escrow a guardian", permission="run_jobs", mutating=True)
def escrow_guardian_job(ctx: JobContext) -> str:
    """params: signing_thumbprint, encryption_thumbprint, guardian_name."""
    host = ctx.host
    if host is None:
        raise JobFailed("No host given: choose the host that holds the guardian.")
    sign, enc = ctx.params.get("signing_thumbprint", ""), ctx.params.get("encryption_thumbprint", "")
    with ctx.step(f"Escrow {ctx.params.get('guardian_name') or 'guardian'} from {host}"):
        try:
            pair = escrow_pair(
                ctx.session(host),
                host,
                sign,
                enc,
                guardian_name=ctx.params.get("guardian_name", ""),
                user=ctx.user,
                log=ctx.log,
            )
        except RemotingError as exc:
            if ctx.cancel_requested:
                raise
            raise JobFailed(
                f"{exc} Nothing was stored in the vault; run the escrow again once {host} answers."
            ) from None
    ctx.record("vault_entry", pair.pk)
    return f"{pair} is in the vault"


@job_kind("escrow_host", label="Escrow every pair on a host", permission="run_jobs", mutating=True)
def escrow_host_job(ctx: JobContext) -> str:
    host = ctx.host
    if host is None:
        raise JobFailed("No host given.")
    with ctx.step(f"Escrow every pair with private keys on {host}"):
        stored, already, failures = escrow_host(ctx.session(host), host, user=ctx.user, log=ctx.log)
    ctx.record("stored", stored)
    ctx.record("already_escrowed", already)
    if failures:
        raise JobFailed(
            f"Escrowed {stored}, {already} already in the vault, {len(failures)} failed: " + "; ".join(failures)
        )
    return f"Escrowed {stored} new pair(s); {already} already in the vault"


# -- preflight pages (shared helpers first; import and restore use them too) ------------------------------------------


def chosen_host(request: HttpRequest) -> Any:
    from hosts.models import Host

    raw = request.POST.get("host") or request.GET.get("host") or ""
    return Host.objects.filter(pk=int(raw)).first() if raw.isdigit() else None


def preflight_page(request: HttpRequest, **context: Any) -> HttpResponse:
    from hosts.models import Host

    context.setdefault("hosts", Host.objects.order_by("name"))
    context.setdefault("keep", [])
    context.setdefault("warnings", [])
    context.setdefault("cancel_url", "/vault/")
    return render(request, "workflows/guardian_preflight.html", context)


def start_job(request: HttpRequest, kind: str, host: Any, vms: list[str], params: dict[str, Any]) -> HttpResponse:
    from jobs.services import create_job

    job = create_job(request.user, kind, hosts=[host], vms=vms, params=params)
    return redirect(f"/jobs/{job.pk}/")


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


def guardian_choices(host: Any) -> list[tuple[str, str]]:
    from django.apps import apps

    guardian_model = apps.get_model("inventory", "Guardian")
    rows = guardian_model.objects.filter(host=host).order_by("name") if host else []
    choices = [("all", "Every pair with private keys on this host")]
    for g in rows:
        if g.signing_thumbprint and g.encryption_thumbprint:
            key = "private keys" if g.has_private_signing_key else "NO private signing key"
            choices.append((f"{g.signing_thumbprint}:{g.encryption_thumbprint}", f"{g.name} ({key})"))
    return choices


def is_thumbprint(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789ABCDEF" for c in value)


def transport_warnings(host: Any) -> list[str]:
    if host.transport == "https" and host.cert_check == "none":
        return [
            f"{host} is registered with certificate checking off: the job will refuse to send a PFX password there. "
            "Edit the host to check its certificate first."
        ]
    return []


def escrow_warnings(host: Any, signing: str, encryption: str) -> list[str]:
    existing = find_pair(signing, encryption)
    if existing is not None:
        return [f"This pair is already in the vault as {existing}: the job will change nothing."]
    return []


def keyless_problem(host: Any, signing: str, encryption: str) -> tuple[str, list[tuple[str, str]]]:
    """When the last inventory shows the guardian on this host without its private key, the job cannot work: say so
    before it runs, and point to where the pair may still be (another host's store, a backup)."""
    from django.apps import apps

    guardian_model = apps.get_model("inventory", "Guardian")
    row = guardian_model.objects.filter(host=host, signing_thumbprint=signing, encryption_thumbprint=encryption).first()
    if row is None or row.has_private_signing_key or find_pair(signing, encryption) is not None:
        return "", []
    problem = (
        f"The last inventory shows guardian '{row.name}' on {host} without its private signing key: there is nothing "
        f"to escrow from {host} (the job would stop without storing anything). Upload a backup of the pair, or escrow "
        f"it from a host that still has it. If the inventory is out of date, refresh {host} first."
    )
    links = [("Upload the PFX pair from a backup…", "/vault/upload/")]
    links += holder_links(signing, encryption, exclude=host)
    links.append((f"{host}: refresh…", f"/hosts/{host.pk}/"))
    return problem, links


def holder_links(signing: str, encryption: str, exclude: Any = None) -> list[tuple[str, str]]:
    """ "Escrow it from HVxx…" for every registered host whose last inventory holds the pair with its private key."""
    from urllib.parse import urlencode

    from django.apps import apps

    guardian_model = apps.get_model("inventory", "Guardian")
    holders = guardian_model.objects.filter(
        signing_thumbprint=signing, encryption_thumbprint=encryption, has_private_signing_key=True
    ).select_related("host")
    links = []
    for row in holders:
        if exclude is not None and row.host_id == exclude.pk:
            continue
        query = urlencode({"host": row.host_id, "guardian": f"{signing}:{encryption}"})
        links.append((f"Escrow it from {row.host}…", f"/jobs/new/escrow/?{query}"))
    return links


ESCROW_RISKS = [
    "A certificate without its private key (deleted from the store) cannot be escrowed: the job stops, nothing is "
    "stored, and the log says where else the pair might be found.",
    "If the connection drops, the console reconnects to delete the temporary PFX files; if it cannot, the log names "
    "them with the command to delete them by hand.",
    "A host registered without certificate checking (HTTPS, check off) is refused: the password would not be safe.",
]


@require("run_jobs")
def escrow_preflight(request: HttpRequest) -> HttpResponse:
    host = chosen_host(request)
    chosen = request.POST.get("guardian") or request.GET.get("guardian") or ""
    base: dict[str, Any] = {"title": "Escrow a guardian into the vault", "host": host, "chosen": chosen}
    base["intro"] = (
        "Copies a guardian's two certificates with their private keys from a host into the console's encrypted "
        "vault, so that the VMs sealed to it survive a reinstall of that host and can move to other hosts."
    )
    base |= {"choices": guardian_choices(host), "choices_label": "Guardian", "choices_name": "guardian"}
    base["submit_label"] = "Escrow"
    if host is None or not chosen:
        return preflight_page(request, **base, problem="" if host else "Choose the host that holds the guardian.")
    warnings = transport_warnings(host)
    if chosen == "all":
        if request.method == "POST":
            return start_job(request, "escrow_host", host, [], {})
        script = all_pairs_lines(host)
        steps = [
            f"List the guardians and the shielded certificate store of {host}.",
            "Pair the certificates with private keys: each guardian's, and older pairs left in the store (same "
            "names in the subjects, generated together).",
            "Escrow each pair not yet in the vault, as below (one generated password per pair).",
        ]
    else:
        sign, _, enc = chosen.upper().partition(":")
        if not (is_thumbprint(sign) and is_thumbprint(enc)):
            return preflight_page(request, **base, problem="Choose a guardian from the list.")
        problem, links = keyless_problem(host, sign, enc)
        if problem:
            return preflight_page(request, **base, problem=problem, problem_links=links)
        if request.method == "POST":
            name = dict(guardian_choices(host)).get(chosen, "").split(" (")[0]
            params = {"signing_thumbprint": sign, "encryption_thumbprint": enc, "guardian_name": name}
            return start_job(request, "escrow_guardian", host, [], params)
        script = escrow_lines(PowerShellScript(), sign, enc)
        warnings += escrow_warnings(host, sign, enc)
        steps = [
            "Check that both certificates are in the store with their private keys.",
            "Export each as PFX with a strong password the console generates (it is never shown or logged).",
            "Read both files back over the encrypted session, then delete them from the host (also on failure).",
            "Check the two files open with the password, match the guardian's thumbprints and belong together.",
            "Store them in the vault, encrypted; a pair already there is not stored twice.",
        ]
    impact = [
        f"{host}: two files under {TEMP_DIR} for a few seconds; no guardian, certificate or VM changes.",
        "The vault: a new entry (audited) that can restore every VM sealed to this guardian.",
    ]
    post = [("host", host.pk), ("guardian", chosen)]
    return preflight_page(
        request,
        **base,
        ready=True,
        steps=steps,
        impact=impact,
        risks=ESCROW_RISKS,
        warnings=warnings,
        powershell=script.lines(),
        post=post,
        keep=[],
    )


urlpatterns = [path("jobs/new/escrow/", escrow_preflight, name="escrow_preflight")]
