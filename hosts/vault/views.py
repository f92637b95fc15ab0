"""Pages of the vault: list, detail, upload of an existing pair, audited download.

The detail page shows who depends on a pair through the inventory's `pair_dependents` template tag: the inventory
reads the vault, so the vault imports nothing of the inventory."""

from __future__ import annotations

import hashlib
import io
import secrets
import time
import zipfile
from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console.models import AuditEvent
from console.params import page_of, search_text
from console.roles import can, require
from hosts import crypto
from hosts.remoting.catalog.guardians import CreateShieldedStore, ImportPfx, NewGuardianByThumbprints
from hosts.remoting.operation import Operation, Secret, render_powershell

from .forms import UploadPairForm
from .models import EscrowedPair
from .pfx import ENCRYPTION_FILE, SIGNING_FILE, PfxError
from .services import store_pair

# A download link works once, for this long after the admin confirmed it.
DOWNLOAD_TTL_SECONDS = 300
PAIRS_PER_PAGE = 50


@require("view_console")
def vault_list(request: HttpRequest) -> HttpResponse:
    """A page of the vault, searched by guardian name, thumbprint or source host in the database; each entry on
    the page checked quickly (decrypted, SHA-256)."""
    query = search_text(request, "q")
    pairs = EscrowedPair.objects.select_related("created_by").prefetch_related("placements")
    if query:
        pairs = pairs.filter(
            Q(guardian_name__icontains=query)
            | Q(source_host_name__icontains=query)
            | Q(signing_thumbprint__startswith=query.upper())
            | Q(encryption_thumbprint__startswith=query.upper())
        )
    listing = page_of(request, pairs, PAIRS_PER_PAGE)
    context = {
        "listing": listing,
        "q": query,
        "damaged": {pair.pk for pair in listing if not unseals(pair)},
        "can_upload": can(request.user, "run_jobs"),
        "can_download": can(request.user, "download_vault"),
    }
    return render(request, "vault/list.html", context)


def unseals(pair: EscrowedPair) -> bool:
    """The list's quick check (decryption and SHA-256); the entry's page checks the password too."""
    try:
        pair.unseal()
    except crypto.SecretError:
        return False
    return True


@require("view_console")
def vault_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pair = get_object_or_404(EscrowedPair, pk=pk)
    integrity = ""
    try:
        pair.confirm_intact()
    except crypto.SecretError as exc:
        integrity = str(exc)
    context = {
        "pair": pair,
        "placements": pair.placements.select_related("host"),
        "integrity_error": integrity,
        "can_download": can(request.user, "download_vault"),
        "can_run": can(request.user, "run_jobs"),
    }
    return render(request, "vault/detail.html", context)


def safe_next(request: HttpRequest) -> str:
    """Where to go back to after an upload (the restore page that sent the user here), if it is a page of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    ours = url_has_allowed_host_and_scheme(target, allowed_hosts=None) and target.startswith("/")
    return target if ours and not target.startswith("//") else ""


@require("run_jobs")
@require_http_methods(["GET", "POST"])
def vault_upload(request: HttpRequest) -> HttpResponse:
    form = UploadPairForm(request.POST or None, request.FILES or None)
    back = safe_next(request)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            outcome = store_pair(
                data["signing_pfx"],
                data["encryption_pfx"],
                data["password"],
                user=request.user,
                origin=EscrowedPair.ORIGIN_UPLOAD,
                allow_expired=data["allow_expired"],
                guardian_name=data["guardian_name"],
            )
        except PfxError as exc:
            form.add_error(None, _("Not stored: %(reason)s.") % {"reason": exc})
        else:
            if outcome.created:
                messages.success(request, _("Stored %(pair)s in the vault.") % {"pair": outcome.pair})
            else:
                messages.info(
                    request,
                    _("This pair is already in the vault as %(pair)s; nothing changed.") % {"pair": outcome.pair},
                )
            return redirect(back) if back else redirect("vault_detail", pk=outcome.pair.pk)
    return render(request, "vault/upload.html", {"form": form, "next": back})


@never_cache
@require("download_vault")
@require_http_methods(["GET", "POST"])
def vault_download(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what the admin is about to take out. POST: audited; shows the password once and a one-time link."""
    pair = get_object_or_404(EscrowedPair, pk=pk)
    if request.method == "GET":
        return render(request, "vault/download_confirm.html", {"pair": pair})
    try:
        _signing, _encryption, password = pair.open()
    except crypto.SecretError as exc:
        AuditEvent.record(request.user, "vault.download_refused", pair, reason=str(exc))
        messages.error(
            request, _("Not downloaded: %(reason)s. The entry is not used; restore it from a backup.") % {"reason": exc}
        )
        return redirect("vault_detail", pk=pair.pk)
    token = secrets.token_urlsafe(24)
    request.session[f"vault-download-{token}"] = {"pk": pair.pk, "until": time.time() + DOWNLOAD_TTL_SECONDS}
    AuditEvent.record(request.user, "vault.download", pair, signing_thumbprint=pair.signing_thumbprint)
    return render(request, "vault/download_ready.html", {"pair": pair, "token": token, "secret_once": password})


@never_cache
@require("download_vault")
def vault_download_file(request: HttpRequest, pk: int, token: str) -> HttpResponse:
    ticket = request.session.pop(f"vault-download-{token}", None)
    if not ticket or ticket.get("pk") != pk or ticket.get("until", 0) < time.time():
        messages.error(request, _("That download link was used already or has expired; confirm the download again."))
        return redirect("vault_detail", pk=pk)
    pair = get_object_or_404(EscrowedPair, pk=pk)
    try:
        signing, encryption, _password = pair.open()
    except crypto.SecretError as exc:
        messages.error(request, _("Not downloaded: %(reason)s.") % {"reason": exc})
        return redirect("vault_detail", pk=pk)
    response = HttpResponse(pair_zip(pair, signing, encryption), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="guardian-{pair.signing_thumbprint[:8]}.zip"'
    return response


def pair_zip(pair: EscrowedPair, signing: bytes, encryption: bytes) -> bytes:
    """The two files exactly as the export script writes them, and a README (without the password)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SIGNING_FILE, signing)
        archive.writestr(ENCRYPTION_FILE, encryption)
        archive.writestr("README.txt", readme(pair, signing, encryption))
    return buffer.getvalue()


def readme(pair: EscrowedPair, signing: bytes, encryption: bytes) -> str:
    name = pair.guardian_name or "UntrustedGuardian"
    commands = "".join(f"  {line}\r\n" for line in import_commands(pair, name))
    return (
        f"Guardian {name}, escrowed by Guardian Console\r\n"
        f"Signing certificate    {pair.signing_thumbprint}  {pair.signing_subject}\r\n"
        f"Encryption certificate {pair.encryption_thumbprint}  {pair.encryption_subject}\r\n"
        f"Valid {pair.not_before:%Y-%m-%d} to {pair.not_after:%Y-%m-%d}\r\n\r\n"
        f"SHA-256 {SIGNING_FILE}    {hashlib.sha256(signing).hexdigest().upper()}\r\n"
        f"SHA-256 {ENCRYPTION_FILE} {hashlib.sha256(encryption).hexdigest().upper()}\r\n\r\n"
        "The password was shown once when this archive was made; it is not in this archive.\r\n"
        "Import on a host (elevated Windows PowerShell, in this folder), as the console's import job does; the\r\n"
        "first line only on a host that never had a vTPM. The keys are not exportable from that host afterwards.\r\n"
        f"{commands}"
    )


def import_commands(pair: EscrowedPair, name: str) -> list[str]:
    """The console's own import operations, rendered by the one renderer of PowerShell (names from a host or an
    upload are quoted there, never pasted into a string here); the password is a Read-Host prompt."""
    prompt = Secret("")
    operations: list[Operation[Any]] = [
        CreateShieldedStore(),
        ImportPfx(f".\\{SIGNING_FILE}", prompt),
        ImportPfx(f".\\{ENCRYPTION_FILE}", prompt),
        NewGuardianByThumbprints(name, pair.signing_thumbprint, pair.encryption_thumbprint),
    ]
    return [line for op in operations for line in render_powershell(op)]


@require_POST
@require("view_console")
def vault_verify(request: HttpRequest, pk: int) -> HttpResponse:
    """Open one entry's files on demand (the detail page checks without opening them); audited when it fails."""
    pair = get_object_or_404(EscrowedPair, pk=pk)
    try:
        pair.open()
    except crypto.SecretError as exc:
        AuditEvent.record(request.user, "vault.tampered", pair, reason=str(exc))
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Both files open with the stored password and match the recorded thumbprints."))
    return redirect("vault_detail", pk=pk)
