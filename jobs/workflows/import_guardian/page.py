"""The import page: choose a vault entry and a host, see what the host already holds, start the job."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.models import KeyHolding
from hosts.models import Host
from hosts.remoting.catalog.guardians import TEMP_DIR
from hosts.vault.models import EscrowedPair

from ..pages import GuardianPage, HostForm, NewJob, Preflight, RowField, kind_page, preflight_page
from ..placement import PLACE_ANYWHERE, allows_exportable, has_held, may_place, placement_refusal
from ..transfer import transport_warnings
from .plan import import_notes, import_script


class VaultEntryField(RowField):
    def label_from_instance(self, obj: EscrowedPair) -> str:
        return f"{obj.guardian_name or _('guardian')} {obj.signing_thumbprint[:8]}"


class ImportForm(HostForm):
    pair = VaultEntryField(
        EscrowedPair.objects.all(),
        required=False,
        empty_label=None,
        error_messages={"invalid_choice": gettext_lazy("Choose a vault entry from the list.")},
    )
    exportable = forms.BooleanField(required=False)


IMPORT_PAGE = GuardianPage(
    title=gettext_lazy("Import a guardian to a host"),
    intro=gettext_lazy(
        "Installs a guardian from the vault on a host, with its private keys, so that the VMs sealed to it can "
        "start there (after a reinstall, or before moving a VM to that host)."
    ),
    choice="pair",
    choice_label=gettext_lazy("Vault entry"),
    submit_label=gettext_lazy("Import"),
    risks=[
        gettext_lazy("A vault entry that fails its integrity check is not used: nothing is sent to the host."),
        gettext_lazy(
            "If the connection drops during the import, the console reconnects to delete the temporary PFX files; "
            "running the import again continues where it stopped (certificates already in the store are not "
            "imported twice)."
        ),
        gettext_lazy("If the guardian shows HasPrivateSigningKey False afterwards, the job fails and says so."),
        gettext_lazy(
            "A host registered without certificate checking (HTTPS, check off) is refused: the password would not "
            "be safe."
        ),
        gettext_lazy(
            'The private keys are imported non-exportable unless an admin ticks "Exportable": nobody can export '
            "them from that host again (escrow the pair from the vault, not from the host)."
        ),
    ],
    tick=("exportable", gettext_lazy("Exportable")),
    tick_permission=PLACE_ANYWHERE,
)


def import_steps(host: Host, guardian_name: str, exportable: bool) -> list[str]:
    copy = (
        _("Copy both PFX files to %(folder)s over the encrypted session and import them into the store (exportable).")
        if exportable
        else _(
            "Copy both PFX files to %(folder)s over the encrypted session and import them into the store "
            "(not exportable)."
        )
    )
    return [
        _("Read the guardians and the shielded certificate store of %(host)s; stop here if the pair is already there.")
        % {"host": host},
        _("Create 'Shielded VM Local Certificates' if this host never had a vTPM."),
        copy % {"folder": TEMP_DIR},
        _("Delete the temporary files (also when something fails)."),
        _("Create guardian '%(guardian)s' by thumbprints with -AllowExpired -AllowUntrustedRoot.")
        % {"guardian": guardian_name},
        _("Check that the guardian has its private signing key (HasPrivateSigningKey)."),
    ]


def preflight(host: Host | None, pair: EscrowedPair | None, user: Any = None, exportable: bool = False) -> Preflight:
    """The import of vault entry `pair` to `host` by `user`, as the host's last inventory shows it."""
    cancel_url = f"/vault/{pair.pk}/" if pair is not None else "/vault/"
    if host is None or pair is None:
        if pair is not None:
            problem = _("Choose the host to import it to.")
        elif host is not None:
            problem = _("Choose the vault entry to import.")
        else:
            problem = _("Choose the vault entry and the host to import it to.")
        return Preflight(problem=problem, cancel_url=cancel_url)
    if not may_place(user, host, pair):
        return Preflight(problem=placement_refusal(host, pair), cancel_url=cancel_url)
    if exportable and not allows_exportable(user):
        return Preflight(problem=_("Only an admin may import private keys as exportable."), cancel_url=cancel_url)
    present = already_there(host, pair)
    if present is not None:
        return present
    plan, script = import_script(host, pair, exportable)
    impact = [
        _(
            "%(host)s: two certificates with private keys added to its shielded store, and one guardian; existing "
            "guardians and VMs are not changed."
        )
        % {"host": host},
        _("VMs sealed to this guardian can then start on this host."),
    ]
    return Preflight(
        steps=import_steps(host, plan.name, exportable),
        impact=impact,
        warnings=transport_warnings(host) + placement_notes(host, pair) + import_notes(host, pair, plan),
        powershell=script.lines(),
        post=[("host", host.pk), ("pair", pair.pk)] + ([("exportable", "on")] if exportable else []),
        cancel_url=cancel_url,
        job=NewJob("import_guardian", [host], params={"vault_entry": pair.pk} | exportable_param(exportable)),
    )


def already_there(host: Host, pair: EscrowedPair) -> Preflight | None:
    """The stored inventory's answer before the host is asked: the host holds this guardian with both private keys
    already, so an import would change nothing."""
    holding = KeyHolding.objects.filter(
        host=host,
        has_private_keys=True,
        guardian__signing_thumbprint=pair.signing_thumbprint,
        guardian__encryption_thumbprint=pair.encryption_thumbprint,
    ).first()
    if holding is None:
        return None
    names = ", ".join(holding.names) or _("its certificates only")
    key = f"{pair.signing_thumbprint}-{pair.encryption_thumbprint}"
    said = {"host": host, "pair": pair, "names": names}
    return Preflight(
        problem=_("%(host)s already holds %(pair)s with both private keys (%(names)s): there is nothing to import.")
        % said,
        problem_links=[(_("The guardian's page"), f"/guardians/{key}/")],
        cancel_url=f"/vault/{pair.pk}/",
    )


def placement_notes(host: Host, pair: EscrowedPair) -> list[str]:
    if has_held(host, pair):
        return []
    return [
        _("%(host)s has never held %(pair)s: you are placing its private keys on a new host (audited).")
        % {"host": host, "pair": pair}
    ]


def exportable_param(exportable: bool) -> dict[str, bool]:
    return {"exportable": True} if exportable else {}


@kind_page("import_guardian")
def import_preflight(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request)
    flight = preflight(**form.cleaned_data, user=request.user) if form.is_valid() else Preflight.refused(form)
    return preflight_page(request, IMPORT_PAGE, form, flight)
