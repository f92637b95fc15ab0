"""The escrow page: choose a host and a guardian (or every pair), see the preflight, start the job."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import Guardian
from hosts.models import Host
from hosts.remoting.catalog.guardians import TEMP_DIR
from hosts.vault.models import find_pair

from ..pages import GuardianPage, HostForm, ListedChoiceField, NewJob, Preflight, kind_page, preflight_page
from ..transfer import is_thumbprint, transport_warnings
from .plan import escrow_host_script, escrow_pair_script

EVERY_PAIR = "all"


def guardian_choices(host: Host | None) -> list[tuple[str, str]]:
    rows = Guardian.objects.filter(host=host).order_by("name") if host else []
    choices = [(EVERY_PAIR, _("Every pair with private keys on this host"))]
    for g in rows:
        if g.signing_thumbprint and g.encryption_thumbprint:
            label = (
                _("%(guardian)s (private keys)")
                if g.has_private_signing_key
                else _("%(guardian)s (NO private signing key)")
            )
            choices.append((f"{g.signing_thumbprint}:{g.encryption_thumbprint}", label % {"guardian": g.name}))
    return choices


def guardian_name(host: Host, guardian: str) -> str:
    """The name of the guardian listed as `guardian` ("signing:encryption") on the host ("" when not listed)."""
    rows = Guardian.objects.filter(host=host).order_by("name")
    return next((g.name for g in rows if f"{g.signing_thumbprint}:{g.encryption_thumbprint}" == guardian), "")


def is_pair(value: str) -> bool:
    """ "signing:encryption" thumbprints: a pair the last inventory may not list yet (a link from another page)."""
    signing, _, encryption = value.upper().partition(":")
    return is_thumbprint(signing) and is_thumbprint(encryption)


class EscrowForm(HostForm):
    guardian = ListedChoiceField(
        guardian_choices,
        unlisted=is_pair,
        error_messages={"invalid_choice": gettext_lazy("Choose a guardian from the list.")},
    )


def holder_links(signing: str, encryption: str, exclude: Host | None = None) -> list[tuple[str, str]]:
    """ "Escrow it from HVxx…" for every registered host whose last inventory holds the pair with its private key."""
    holders = Guardian.objects.filter(
        signing_thumbprint=signing, encryption_thumbprint=encryption, has_private_signing_key=True
    ).select_related("host")
    links = []
    for row in holders:
        if exclude is not None and row.host_id == exclude.pk:
            continue
        query = urlencode({"host": row.host_id, "guardian": f"{signing}:{encryption}"})
        links.append((_("Escrow it from %(host)s…") % {"host": row.host}, f"/jobs/new/escrow/?{query}"))
    return links


def escrow_warnings(signing: str, encryption: str) -> list[str]:
    existing = find_pair(signing, encryption)
    if existing is not None:
        return [_("This pair is already in the vault as %(pair)s: the job will change nothing.") % {"pair": existing}]
    return []


def keyless_problem(host: Host, signing: str, encryption: str) -> tuple[str, list[tuple[str, str]]]:
    """When the last inventory shows the guardian on this host without its private key, the job cannot work: say so
    before it runs, and point to where the pair may still be (another host's store, a backup)."""
    row = Guardian.objects.filter(host=host, signing_thumbprint=signing, encryption_thumbprint=encryption).first()
    if row is None or row.has_private_signing_key or find_pair(signing, encryption) is not None:
        return "", []
    problem = _(
        "The last inventory shows guardian '%(guardian)s' on %(host)s without its private signing key: there is "
        "nothing to escrow from %(host)s (the job would stop without storing anything). Upload a backup of the pair, "
        "or escrow it from a host that still has it. If the inventory is out of date, refresh %(host)s first."
    ) % {"guardian": row.name, "host": host}
    links = [(_("Upload the PFX pair from a backup…"), "/vault/upload/")]
    links += holder_links(signing, encryption, exclude=host)
    links.append((_("%(host)s: refresh…") % {"host": host}, f"/hosts/{host.pk}/"))
    return problem, links


ESCROW_PAGE = GuardianPage(
    title=gettext_lazy("Escrow a guardian into the vault"),
    intro=gettext_lazy(
        "Copies a guardian's two certificates with their private keys from a host into the console's encrypted "
        "vault, so that the VMs sealed to it survive a reinstall of that host and can move to other hosts."
    ),
    choice="guardian",
    choice_label=gettext_lazy("Guardian"),
    submit_label=gettext_lazy("Escrow"),
    risks=[
        gettext_lazy(
            "A certificate without its private key (deleted from the store) cannot be escrowed: the job stops, "
            "nothing is stored, and the log says where else the pair might be found."
        ),
        gettext_lazy(
            "If the connection drops, the console reconnects to delete the temporary PFX files; if it cannot, the "
            "log names them with the command to delete them by hand."
        ),
        gettext_lazy(
            "A host registered without certificate checking (HTTPS, check off) is refused: the password would not "
            "be safe."
        ),
    ],
)


def every_pair_steps(host: Host) -> list[str]:
    return [
        _("List the guardians and the shielded certificate store of %(host)s.") % {"host": host},
        _(
            "Pair the certificates with private keys: each guardian's, and older pairs left in the store (same names "
            "in the subjects, generated together)."
        ),
        _("Escrow each pair not yet in the vault, as below (one generated password per pair)."),
    ]


def one_pair_steps() -> list[str]:
    return [
        _("Check that both certificates are in the store with their private keys."),
        _("Export each as PFX with a strong password the console generates (it is never shown or logged)."),
        _("Read both files back over the encrypted session, then delete them from the host (also on failure)."),
        _("Check the two files open with the password, match the guardian's thumbprints and belong together."),
        _("Store them in the vault, encrypted; a pair already there is not stored twice."),
    ]


def escrow_impact(host: Host) -> list[str]:
    return [
        _("%(host)s: two files under %(folder)s for a few seconds; no guardian, certificate or VM changes.")
        % {"host": host, "folder": TEMP_DIR},
        _("The vault: a new entry (audited) that can restore every VM sealed to this guardian."),
    ]


def preflight(host: Host | None, guardian: str) -> Preflight:
    """The escrow of `guardian` (a "signing:encryption" pair, or every pair) from `host`, as the last inventory
    shows it."""
    if host is None or not guardian:
        return Preflight(problem="" if host else _("Choose the host that holds the guardian."))
    if guardian == EVERY_PAIR:
        return Preflight(
            steps=every_pair_steps(host),
            impact=escrow_impact(host),
            warnings=transport_warnings(host),
            powershell=escrow_host_script(host).lines(),
            post=[("host", host.pk), ("guardian", guardian)],
            job=NewJob("escrow_host", [host]),
        )
    return one_pair(host, guardian)


def one_pair(host: Host, guardian: str) -> Preflight:
    signing, _, encryption = guardian.upper().partition(":")
    problem, links = keyless_problem(host, signing, encryption)
    if problem:
        return Preflight(problem=problem, problem_links=links)
    params = {"signing_thumbprint": signing, "encryption_thumbprint": encryption}
    params["guardian_name"] = guardian_name(host, guardian)  # from the row: the choice's label is translated
    return Preflight(
        steps=one_pair_steps(),
        impact=escrow_impact(host),
        warnings=transport_warnings(host) + escrow_warnings(signing, encryption),
        powershell=escrow_pair_script(signing, encryption).lines(),
        post=[("host", host.pk), ("guardian", guardian)],
        job=NewJob("escrow_guardian", [host], params=params),
    )


@kind_page("escrow_guardian")
def escrow_preflight(request: HttpRequest) -> HttpResponse:
    form = EscrowForm(request)
    flight = preflight(**form.cleaned_data) if form.is_valid() else Preflight.refused(form)
    return preflight_page(request, ESCROW_PAGE, form, flight)
