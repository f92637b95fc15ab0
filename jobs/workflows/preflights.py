"""Each workflow page's preflight run from choices given as data: by the API, which starts jobs through each
workflow's own form and `preflight()` (jobs/workflows/<name>/page.py) so it validates, previews and refuses exactly
as the page does, and by the approval page, which shows a second admin the preflight of a waiting job's choices.
One table, one entry per page.

The pages' forms are bound to a request (PageForm reads request.POST); the choices are bound to a plain HttpRequest
that carries them as its POST, and the preflights themselves see no request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext as _

from hosts.models import Host
from jobs.forms import RefreshForm
from jobs.inventory import INVENTORY_REFRESH
from jobs.models import Job
from jobs.registry import get_kind
from jobs.services import ordered_hosts
from jobs.workflows import pages
from jobs.workflows.escrow import page as escrow
from jobs.workflows.import_guardian import page as import_guardian
from jobs.workflows.migrate import page as migrate
from jobs.workflows.rescue import page as rescue
from jobs.workflows.reset import page as reset
from jobs.workflows.restore import page as restore
from jobs.workflows.vtpm import page as vtpm


@dataclass
class Outcome:
    """What a preflight shows, in one shape for every workflow: the job it allows (None: why not, in problems)."""

    steps: list[str] = field(default_factory=list)
    impact: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    powershell: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    job: pages.NewJob | None = None


def posted(choices: dict[str, Any]) -> HttpRequest:
    """A POST carrying `choices` as a form would send them (a list is a multiple choice)."""
    request = HttpRequest()
    request.method = "POST"
    data = QueryDict(mutable=True)
    for name, value in choices.items():
        values = value if isinstance(value, list) else [value]
        data.setlist(name, ["1" if item is True else "" if item in (None, False) else str(item) for item in values])
    request.POST = data
    return request


def outcome_of(flight: Any) -> Outcome:
    """The common shape of the pages' preflights. A problem beside a job is a warning there (the reset page starts
    the job anyway: the job re-reads the host)."""
    said = [getattr(flight, "problem", ""), getattr(flight, "error", ""), *getattr(flight, "problems", [])]
    said += list(getattr(flight, "errors", []))
    said = [str(text) for text in said if text]
    warnings = [str(text) for text in getattr(flight, "warnings", [])]
    warnings += [f"{row.vm.name}: {row.blocker}" for row in getattr(flight, "blocked", [])]
    warnings += [str(text) for text in [getattr(flight, "warning", "")] if text]
    plan = getattr(flight, "plan", None)
    failures = [str(text) for text in getattr(plan, "failures", []) or []]
    job = flight.job
    return Outcome(
        steps=[str(text) for text in getattr(flight, "steps", [])],
        impact=[str(text) for text in getattr(flight, "impact", [])],
        warnings=warnings + (said if job is not None else []),
        powershell=list(flight.powershell),
        problems=(said + failures) if job is None else [],
        job=job,
    )


def refreshed(choices: dict[str, Any]) -> Outcome:
    form = RefreshForm(posted(choices).POST)
    if not form.is_valid():
        return Outcome(problems=pages.refusals(form))
    hosts: list[Host] = list(form.cleaned_data["hosts"])
    return Outcome(
        steps=[_("Read the guardians, certificates and VMs of %(host)s.") % {"host": host} for host in hosts],
        impact=[_("Nothing on the hosts changes: the refresh only reads them.")],
        job=pages.NewJob(INVENTORY_REFRESH, hosts),
    )


def guardian_page(form_class: type[pages.HostForm], preflight: Callable[..., Any]) -> Callable[[HttpRequest], Any]:
    def flight(request: HttpRequest) -> Any:
        form = form_class(request)
        return preflight(**form.cleaned_data) if form.is_valid() else pages.Preflight.refused(form)

    return flight


def restore_flight(request: HttpRequest) -> Any:
    """The restore page's preflight for one VM; for several (a job of "every restorable VM"), each VM's own."""
    vms = request.POST.getlist("vm")
    if len(vms) < 2:
        return guardian_page(restore.RestoreForm, restore.preflight)(request)
    form = pages.HostForm(request)
    if not form.is_valid():
        return pages.Preflight.refused(form)
    host = form.cleaned_data["host"]
    return restore.preflight_each(host, vms) if host is not None else restore.preflight_all(None)


def reset_flight(request: HttpRequest) -> Any:
    form = reset.ResetForm(request)
    return reset.preflight(**form.cleaned_data) if form.is_valid() else reset.choose_host(pages.refusals(form)[0])


def undo_flight(request: HttpRequest) -> Any:
    form = reset.UndoForm(request)
    return reset.undo_preview(form.cleaned_data["job"] if form.is_valid() else None)


def vtpm_flight(request: HttpRequest) -> Any:
    """The vTPM page's preflight, and its confirmation (each VM's name typed) from the same choices."""
    form = vtpm.VtpmForm(request)
    flight = vtpm.preflight(**form.cleaned_data) if form.is_valid() else vtpm.refused(form)
    flight.confirm(vtpm.Confirmation(request.POST, flight))
    return flight


def restore_all_flight(request: HttpRequest) -> Any:
    """Every restorable VM of a host in one job, as /jobs/new/restore/all/ starts it (each VM's own preflight)."""
    form = pages.HostForm(request)
    return restore.preflight_all(**form.cleaned_data) if form.is_valid() else pages.Preflight.refused(form)


def migrate_flight(request: HttpRequest) -> Any:
    """The wizard's live check of both hosts, which is what allows its job ("Check both hosts" ticked)."""
    choices = request.POST.copy()
    choices["preview"] = "1"
    request.POST = choices  # type: ignore[assignment]  # a mutable copy, as the wizard's own "Check" sends it
    return migrate.preflight(migrate.MigrationForm(request))


@dataclass(frozen=True)
class Workflow:
    """A page's kind (whose permission opens the page) and how its preflight reads the choices."""

    kind: str
    flight: Callable[[HttpRequest], Any] | None  # None: no preflight page (refresh)


WORKFLOWS: dict[str, Workflow] = {
    "refresh": Workflow(INVENTORY_REFRESH, None),
    "escrow": Workflow("escrow_guardian", guardian_page(escrow.EscrowForm, escrow.preflight)),
    "import": Workflow("import_guardian", guardian_page(import_guardian.ImportForm, import_guardian.preflight)),
    "restore": Workflow("restore_vm", restore_flight),
    "restore_all": Workflow("restore_vm", restore_all_flight),
    "rescue": Workflow("rescue_vm", guardian_page(rescue.RescueForm, rescue.preflight)),
    "reset": Workflow("reset_guardian", reset_flight),
    "reset_undo": Workflow("undo_guardian_reset", undo_flight),
    "vtpm": Workflow("vtpm", vtpm_flight),
    "migrate": Workflow("migrate_vm", migrate_flight),
}


def preflight(workflow: str, choices: dict[str, Any]) -> Outcome:
    """What the page of `workflow` would show after a POST of `choices`. Check the permission first."""
    entry = WORKFLOWS[workflow]
    if entry.flight is None:
        return refreshed(choices)
    return outcome_of(entry.flight(posted(choices)))


def preflight_of(job: Job) -> Outcome:
    """The preflight of the page that started `job`, run now on the choices that made it (as "Run again" fills the
    page, with the confirmations its requester typed): what the approver of the job sees."""
    workflow = next((name for name, entry in WORKFLOWS.items() if entry.kind == job.kind), "")
    if not workflow:
        return Outcome(problems=[_("Jobs of kind %(kind)s have no preflight page.") % {"kind": job.label}])
    return preflight(workflow, choices_of(job))


def choices_of(job: Job) -> dict[str, Any]:
    """The page's choices that made `job`: the query of its kind's "Run again" link, plus what was confirmed."""
    kind = get_kind(job.kind)
    query = parse_qs(urlsplit(kind.preflight_url(job)).query) if kind.preflight_url else {}
    choices: dict[str, Any] = {name: values if len(values) > 1 else values[0] for name, values in query.items()}
    hosts = ordered_hosts(job)
    if job.kind == "import_guardian" and hosts:
        choices |= {
            "host": hosts[0].pk,
            "pair": job.params.get("vault_entry"),
            "exportable": job.params.get("exportable"),
        }
    if job.kind == "restore_vm" and hosts:  # no "Run again" page to read them from: the job's host and VMs
        choices |= {"host": hosts[0].pk, "vm": job.vms if len(job.vms) > 1 else "".join(job.vms)}
    if job.kind == "vtpm":
        choices |= {f"confirm-{name}": name for name in job.params.get("confirmed") or []}
        choices |= {f"saved-{name}": "remove" for name in job.params.get("remove_saved_state") or []}
    if job.kind == "migrate_vm" and job.params.get("source_after") == "remove":
        choices["confirm_name"] = job.vms[0] if job.vms else ""
    return choices
