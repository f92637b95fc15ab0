"""The escrow page: choose a host and a guardian (or every pair), see the preflight, start the job."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from hosts.inventory.models import Guardian
from hosts.models import Host
from hosts.remoting.catalog.guardians import TEMP_DIR
from hosts.vault.models import find_pair

from ..pages import holder_links, host_from, kind_page, preflight_page, start_job
from ..transfer import is_thumbprint, transport_warnings
from .plan import escrow_host_script, escrow_pair_script


def guardian_choices(host: Host | None) -> list[tuple[str, str]]:
    rows = Guardian.objects.filter(host=host).order_by("name") if host else []
    choices = [("all", "Every pair with private keys on this host")]
    for g in rows:
        if g.signing_thumbprint and g.encryption_thumbprint:
            key = "private keys" if g.has_private_signing_key else "NO private signing key"
            choices.append((f"{g.signing_thumbprint}:{g.encryption_thumbprint}", f"{g.name} ({key})"))
    return choices


def escrow_warnings(signing: str, encryption: str) -> list[str]:
    existing = find_pair(signing, encryption)
    if existing is not None:
        return [f"This pair is already in the vault as {existing}: the job will change nothing."]
    return []


def keyless_problem(host: Host, signing: str, encryption: str) -> tuple[str, list[tuple[str, str]]]:
    """When the last inventory shows the guardian on this host without its private key, the job cannot work: say so
    before it runs, and point to where the pair may still be (another host's store, a backup)."""
    row = Guardian.objects.filter(host=host, signing_thumbprint=signing, encryption_thumbprint=encryption).first()
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


ESCROW_RISKS = [
    "A certificate without its private key (deleted from the store) cannot be escrowed: the job stops, nothing is "
    "stored, and the log says where else the pair might be found.",
    "If the connection drops, the console reconnects to delete the temporary PFX files; if it cannot, the log names "
    "them with the command to delete them by hand.",
    "A host registered without certificate checking (HTTPS, check off) is refused: the password would not be safe.",
]


@kind_page("escrow_guardian")
def escrow_preflight(request: HttpRequest) -> HttpResponse:
    host = host_from(request)
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
            return start_job(request, "escrow_host", [host])
        script = escrow_host_script(host)
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
            return start_job(request, "escrow_guardian", [host], params=params)
        script = escrow_pair_script(sign, enc)
        warnings += escrow_warnings(sign, enc)
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
