"""The reset and undo pages: impact from the last inventory, the plan's PowerShell, and the job."""

from __future__ import annotations

from dataclasses import dataclass, field

from django import forms
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.inventory.models import Guardian
from hosts.models import Host
from hosts.remoting.catalog.guardians import RemoveGuardian
from jobs.models import Job
from jobs.services import ordered_hosts

from ..pages import HostForm, NewJob, PageForm, RowField, kind_page, refusals, start_or_show
from ..powershell import by_hand
from .plan import (
    RemovedGuardian,
    ResetPlan,
    certificates_in_inventory,
    plan_from_inventory,
    removed_by,
    reset_script,
    undo_script,
)

RESET_RISKS = [
    gettext_lazy(
        "A VM sealed only to this guardian, whose pair is not in the vault, stays unable to start: the reset does "
        "not make that worse (the private keys are already gone), but only a backup of the pair can bring it back."
    ),
    gettext_lazy(
        "If any private key the host still holds for those VMs cannot be escrowed first, the job stops before "
        "removing anything."
    ),
    gettext_lazy(
        "Enabling a TPM afterwards creates a new UntrustedGuardian; once a VM is sealed to it, the undo will refuse "
        "to replace it."
    ),
]

# The undo page shows the way the last inventory predicts first, then the other one, under this heading.
OTHER_WAY = {
    True: gettext_lazy(
        "If the certificates are gone from the store by then, it re-creates the guardian from the kept metadata:"
    ),
    False: gettext_lazy(
        "If both certificates are back in the store by then, it re-creates the guardian by their thumbprints:"
    ),
}

CHOOSE_RESET = gettext_lazy("Choose a reset job that removed a guardian.")


class ResetForm(HostForm):
    # The guardian's name as the host spells it (a link from the broken guardians' list); UntrustedGuardian if none.
    guardian = forms.CharField(required=False, strip=False, max_length=200)

    def clean_guardian(self) -> str:
        return str(self.cleaned_data["guardian"]) or UNTRUSTED_GUARDIAN


@dataclass
class ResetPreflight:
    """What the reset page shows: without a host, the broken guardians to choose from; with one, what a reset of
    `guardian_name` would do there as its last inventory tells. The job re-reads the host live, so a problem seen
    here is a warning, not a refusal."""

    guardian_name: str = UNTRUSTED_GUARDIAN
    host: Host | None = None
    offers: list[Guardian] = field(default_factory=list)
    plan: ResetPlan | None = None
    powershell: list[str] = field(default_factory=list)
    undoable: list[Job] = field(default_factory=list)
    problem: str = ""
    job: NewJob | None = None

    @property
    def removal(self) -> str:
        """The one command that removes the guardian, quoted by the one renderer (its name comes from a host)."""
        return by_hand(RemoveGuardian(self.guardian_name))


def choose_host(problem: str = "") -> ResetPreflight:
    """The page without a host: the broken guardians that every host's last inventory shows, to choose one (the
    stored analysis marks them: Guardian.needs_reset)."""
    broken = Guardian.objects.filter(needs_reset=True).select_related("host").order_by("host__name", "name")
    return ResetPreflight(offers=list(broken), problem=problem)


def preflight(host: Host | None, guardian: str) -> ResetPreflight:
    if host is None:
        return choose_host()
    plan = plan_from_inventory(host, guardian)
    flight = ResetPreflight(guardian, host, plan=plan, powershell=reset_script(plan, host).lines())
    flight.undoable = past_resets(host)
    if plan.guardian is not None and plan.guardian.has_private_signing_key:
        flight.problem = _(
            "The last inventory shows '%(guardian)s' on %(host)s with its private keys: it is not broken."
        ) % {"guardian": guardian, "host": host}
    flight.job = NewJob("reset_guardian", [host], params={"guardian_name": guardian})
    return flight


def past_resets(host: Host) -> list[Job]:
    jobs = Job.objects.filter(kind="reset_guardian", hosts=host).order_by("-pk")[:10]
    return [job for job in jobs if removed_by(job) is not None]


@kind_page("reset_guardian")
def reset_preflight(request: HttpRequest) -> HttpResponse:
    form = ResetForm(request)
    flight = preflight(**form.cleaned_data) if form.is_valid() else choose_host(refusals(form)[0])
    return start_or_show(request, flight.job, "workflows/reset.html", {"flight": flight, "risks": RESET_RISKS})


# -- the undo ---------------------------------------------------------------------------------------------------


class UndoForm(PageForm):
    job = RowField(
        Job.objects.filter(kind="reset_guardian"),
        required=False,
        error_messages={"invalid_choice": CHOOSE_RESET},
    )


@dataclass
class UndoPreflight:
    """What the undo page shows of a reset job: the guardian it removed, and both ways the undo can bring it back
    (the one the last inventory predicts first); or why there is nothing to undo."""

    reset: Job | None = None
    host: Host | None = None
    removed: RemovedGuardian | None = None
    other_way: str = ""
    powershell: list[str] = field(default_factory=list)
    other_powershell: list[str] = field(default_factory=list)
    problem: str = ""
    problem_links: list[tuple[str, str]] = field(default_factory=list)
    job: NewJob | None = None


def guardian_since(host: Host, removed: RemovedGuardian) -> UndoPreflight | None:
    """What the stored inventory shows in the way of the undo: the guardian is back already, or a new guardian took
    its name (re-creating it would fail: "already exists")."""
    row = Guardian.objects.filter(host=host, name__iexact=removed.guardian_name).first()
    if row is None:
        return None
    key = f"{row.signing_thumbprint}-{row.encryption_thumbprint}"
    said = {"guardian": row.name, "host": host}
    links = [(_("Guardian %(guardian)s on %(host)s") % said, f"/guardians/{key}/")]
    if (row.signing_thumbprint.upper(), row.encryption_thumbprint.upper()) == tuple(map(str.upper, removed.identity)):
        back = _("'%(guardian)s' is back on %(host)s already: nothing to undo.") % said
        return UndoPreflight(problem=back, problem_links=links)
    return UndoPreflight(
        problem=_(
            "Since the reset, %(host)s has a new guardian named '%(guardian)s' (VMs may already be sealed to it): "
            "the undo would fail on its name. Import the removed pair under another name from the vault instead, "
            "or look at the new guardian first."
        )
        % said,
        problem_links=links,
    )


def undo_preview(reset: Job | None) -> UndoPreflight:
    """The undo of reset job `reset` (None: none chosen), as the last inventory of its host predicts it."""
    removed = removed_by(reset)
    if reset is None or removed is None:
        return UndoPreflight(problem=str(CHOOSE_RESET))
    hosts = ordered_hosts(reset)
    if not hosts:
        return UndoPreflight(problem=_("The host of that reset is not registered."))
    in_the_way = guardian_since(hosts[0], removed)
    if in_the_way is not None:
        return in_the_way
    by_thumbprints = certificates_in_inventory(hosts[0], removed)
    return UndoPreflight(
        reset,
        hosts[0],
        removed,
        other_way=str(OTHER_WAY[by_thumbprints]),
        powershell=undo_script(reset, removed, by_thumbprints).lines(),
        other_powershell=undo_script(reset, removed, not by_thumbprints, looks=False).lines(),
        job=NewJob("undo_guardian_reset", hosts[:1], params={"reset_job": reset.pk}),
    )


@kind_page("undo_guardian_reset")
def undo_preflight(request: HttpRequest) -> HttpResponse:
    form = UndoForm(request)
    flight = undo_preview(form.cleaned_data["job"] if form.is_valid() else None)
    return start_or_show(request, flight.job, "workflows/reset_undo.html", {"flight": flight})
