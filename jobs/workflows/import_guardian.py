"""Import a guardian from the vault onto a host, so the host can start the VMs sealed to it.

Steps: create the shielded store if missing, copy both PFX files to the host, import them into the store, create the
guardian by thumbprints (-AllowExpired -AllowUntrustedRoot), remove the files, and verify HasPrivateSigningKey.
Re-running on a host that already has the pair changes nothing. A guardian named `UntrustedGuardian` with other
certificates is kept: the pair is imported under a distinct name.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from console.roles import require
from hosts import crypto
from hosts.remoting.catalog.guardians import (
    CreateShieldedStore,
    GetGuardians,
    ImportPfx,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    StoreListing,
    WriteFileBytes,
    thumbprints_of,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Secret
from hosts.vault.models import EscrowedPair
from hosts.vault.pfx import ENCRYPTION_FILE, SIGNING_FILE
from jobs.kinds import JobContext, JobFailed, job_kind

from .escrow import (
    TEMP_DIR,
    LogFn,
    _no_log,
    chosen_host,
    preflight_page,
    require_protected_transport,
    start_job,
    temp_pfx_paths,
    temporary_files,
    transport_warnings,
)
from .powershell import PowerShellScript, sample_pfx_paths, sample_token

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


@job_kind("import_guardian", label="Import a guardian to a host", permission="run_jobs", mutating=True)
def import_guardian_job(ctx: JobContext) -> str:
    """params: vault_entry (EscrowedPair id)."""
    host = ctx.host
    if host is None:
        raise JobFailed("No host given: choose the host to import the guardian to.")
    pair = EscrowedPair.objects.filter(pk=int(ctx.params.get("vault_entry") or 0)).first()
    if pair is None:
        raise JobFailed("The vault entry no longer exists.")
    with ctx.step(f"Import {pair} to {host}"):
        try:
            name = import_pair(ctx.session(host), host, pair, log=ctx.log)
        except RemotingError as exc:
            if ctx.cancel_requested:
                raise
            raise JobFailed(
                f"{exc} The vault entry is unchanged. Run the import again once {host} answers: it skips what is "
                "already done (certificates already in the store are not imported twice)."
            ) from None
    ctx.record("guardian_name", name)
    return f"{host} holds {pair} as guardian '{name}' with its private keys"


# -- preflight page -----------------------------------------------------------------------------------------------


def import_lines(script: PowerShellScript, pair: EscrowedPair, name: str, from_vault: bool = True) -> PowerShellScript:
    """What `import_pair` sends to a host that lacks the pair, for Show PowerShell. The PFX bytes come from the
    vault's download (`from_vault`) or from $signingPfx / $encryptionPfx read by an escrow shown above."""
    from hosts.remoting.catalog.guardians import RemoveFiles

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


def chosen_pair(request: HttpRequest) -> EscrowedPair | None:
    raw = request.POST.get("pair") or request.GET.get("pair") or ""
    return EscrowedPair.objects.filter(pk=int(raw)).first() if raw.isdigit() else None


def host_situation(host: Any, pair: EscrowedPair) -> tuple[list[str], str]:
    """What the last inventory says about the host, and the guardian name the import would most likely use."""
    from django.apps import apps

    guardian_model = apps.get_model("inventory", "Guardian")
    rows = list(guardian_model.objects.filter(host=host))
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


IMPORT_RISKS = [
    "A vault entry that fails its integrity check is not used: nothing is sent to the host.",
    "If the connection drops during the import, the console reconnects to delete the temporary PFX files; running "
    "the import again continues where it stopped (certificates already in the store are not imported twice).",
    "If the guardian shows HasPrivateSigningKey False afterwards, the job fails and says so.",
    "A host registered without certificate checking (HTTPS, check off) is refused: the password would not be safe.",
]


@require("run_jobs")
def import_preflight(request: HttpRequest) -> HttpResponse:
    host, pair = chosen_host(request), chosen_pair(request)
    choices = [
        (str(p.pk), f"{p.guardian_name or 'guardian'} {p.signing_thumbprint[:8]}") for p in EscrowedPair.objects.all()
    ]
    base: dict[str, Any] = {
        "title": "Import a guardian to a host",
        "host": host,
        "chosen": str(pair.pk) if pair else "",
        "intro": "Installs a guardian from the vault on a host, with its private keys, so that the VMs sealed to it "
        "can start there (after a reinstall, or before moving a VM to that host).",
    }
    base |= {"choices": choices, "choices_label": "Vault entry", "choices_name": "pair", "submit_label": "Import"}
    if pair is not None:
        base["cancel_url"] = f"/vault/{pair.pk}/"
    if host is None or pair is None:
        missing = "the host to import it to" if pair else ("the vault entry to import" if host else "")
        problem = f"Choose {missing}." if missing else "Choose the vault entry and the host to import it to."
        return preflight_page(request, **base, problem=problem)
    if request.method == "POST":
        return start_job(request, "import_guardian", host, [], {"vault_entry": pair.pk})
    notes, name = host_situation(host, pair)
    notes = transport_warnings(host) + notes
    steps = [
        f"Read the guardians and the shielded certificate store of {host}; stop here if the pair is already there.",
        "Create 'Shielded VM Local Certificates' if this host never had a vTPM.",
        f"Copy both PFX files to {TEMP_DIR} over the encrypted session and import them into the store (exportable).",
        "Delete the temporary files (also when something fails).",
        f"Create guardian '{name}' by thumbprints with -AllowExpired -AllowUntrustedRoot.",
        "Check that the guardian has its private signing key (HasPrivateSigningKey).",
    ]
    impact = [
        f"{host}: two certificates with private keys added to its shielded store, and one guardian; existing "
        "guardians and VMs are not changed.",
        "VMs sealed to this guardian can then start on this host.",
    ]
    return preflight_page(
        request,
        **base,
        ready=True,
        steps=steps,
        impact=impact,
        risks=IMPORT_RISKS,
        warnings=notes,
        powershell=import_lines(PowerShellScript(), pair, name).lines(),
        post=[("host", host.pk), ("pair", pair.pk)],
    )


urlpatterns = [path("jobs/new/import/", import_preflight, name="import_guardian_preflight")]
