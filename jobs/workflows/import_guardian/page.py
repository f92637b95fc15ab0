"""The import page: choose a vault entry and a host, see what the host already holds, start the job."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from hosts.remoting.catalog.guardians import TEMP_DIR
from hosts.vault.models import EscrowedPair

from ..pages import host_from, kind_page, preflight_page, start_job
from ..transfer import transport_warnings
from .plan import import_notes, import_script


def chosen_pair(request: HttpRequest) -> EscrowedPair | None:
    raw = request.POST.get("pair") or request.GET.get("pair") or ""
    return EscrowedPair.objects.filter(pk=int(raw)).first() if raw.isdigit() else None


IMPORT_RISKS = [
    "A vault entry that fails its integrity check is not used: nothing is sent to the host.",
    "If the connection drops during the import, the console reconnects to delete the temporary PFX files; running "
    "the import again continues where it stopped (certificates already in the store are not imported twice).",
    "If the guardian shows HasPrivateSigningKey False afterwards, the job fails and says so.",
    "A host registered without certificate checking (HTTPS, check off) is refused: the password would not be safe.",
]


@kind_page("import_guardian")
def import_preflight(request: HttpRequest) -> HttpResponse:
    host, pair = host_from(request), chosen_pair(request)
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
        return start_job(request, "import_guardian", [host], params={"vault_entry": pair.pk})
    plan, script = import_script(host, pair)
    notes = transport_warnings(host) + import_notes(host, pair, plan)
    steps = [
        f"Read the guardians and the shielded certificate store of {host}; stop here if the pair is already there.",
        "Create 'Shielded VM Local Certificates' if this host never had a vTPM.",
        f"Copy both PFX files to {TEMP_DIR} over the encrypted session and import them into the store (exportable).",
        "Delete the temporary files (also when something fails).",
        f"Create guardian '{plan.name}' by thumbprints with -AllowExpired -AllowUntrustedRoot.",
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
        powershell=script.lines(),
        post=[("host", host.pk), ("pair", pair.pk)],
    )
