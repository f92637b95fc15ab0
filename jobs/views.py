"""Pages of the jobs app: the job list with filters, one job's page with its live log, cancel, re-run, refresh."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from console.roles import Forbidden, can, check, require
from hosts.inventory.models import VirtualMachine

from .forms import JobFilterForm, RefreshForm
from .inventory import INVENTORY_REFRESH
from .models import ACTIVE_STATES, TERMINAL_STATES, Job, JobLogLine, JobState, JobStep, epoch_millis
from .progress import progress
from .registry import KINDS, RerunNeedsPreflight, UnknownJobKind
from .results import as_list, result_sentences
from .runner import jobs_setting, runner_alive
from .services import cancel_job, create_job, is_same_site_path, rerun_job, rerun_preflight_url

# Result keys a workflow records to offer the user's next move as a button (ctx.record("next_url", "/jobs/new/…"),
# optionally ctx.record("next_label", "Undo this reset…")). They are not listed among the results.
NEXT_URL, NEXT_LABEL = "next_url", "next_label"
NEXT_LABELS = {"reset_guardian": gettext_lazy("Undo this reset…")}
LONG_TEXT = 120  # characters; a longer result value (an XML blob in base64) is shown by its size only


def note_progress(running: list[Job]) -> None:
    """The running jobs of a list, each with `headline` ("step 3 of 7: …"): their steps in one query."""
    steps: dict[int, list[JobStep]] = {}
    for step in JobStep.objects.filter(job__in=running).order_by("id"):
        steps.setdefault(step.job_id, []).append(step)
    for job in running:
        job.headline = progress(job, steps.get(job.pk, []), ended=False).headline  # type: ignore[attr-defined]


def may_run(request: HttpRequest, job: Job) -> bool:
    kind = KINDS.get(job.kind)
    return kind is not None and can(request.user, kind.permission)


def may_cancel(request: HttpRequest, job: Job) -> bool:
    """Does the job page or the job list offer "Cancel" for this job? What job_cancel itself checks, while it runs."""
    return (
        can(request.user, "run_jobs")
        and may_run(request, job)
        and job.state in ACTIVE_STATES
        and not job.cancel_requested
    )


@require("view_console")
def job_list(request: HttpRequest) -> HttpResponse:
    filters = JobFilterForm(request.GET or None)
    jobs = filters.apply(Job.objects.select_related("requested_by"))
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    note_progress([job for job in page if job.state == JobState.RUNNING])
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "query": query.urlencode(),
        "cancellable": {job.pk for job in page if may_cancel(request, job)},
    }
    return render(request, "jobs/list.html", context)


@require("view_console")
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("requested_by", "rerun_of"), pk=pk)
    allowed = may_run(request, job)
    kind = KINDS.get(job.kind)
    context = {
        "job": job,
        "can_cancel": may_cancel(request, job),
        "can_rerun": allowed and job.state in TERMINAL_STATES and kind is not None,
        "progress": job.progress(),
        "finished_ms": epoch_millis(job.finished_at) if job.finished_at else None,
        "host_links": host_links(job),
        "vm_links": vm_links(job),
        "params": readable(job.params),
        "results": results_shown(job),
        "next_action": next_action(job),
        "silent": silence(job),
        "unsent": unsent_notice(job),
        "orphaned_runs": job.orphaned_runs.all(),
    }
    if context["can_rerun"] and kind is not None and not kind.one_click_rerun:
        context["rerun_url"] = rerun_preflight_url(job)
        context["can_rerun"] = context["rerun_url"] is not None
    return render(request, "jobs/detail.html", context)


def host_links(job: Job) -> list[tuple[str, str]]:
    """(name, URL of the host's page) per host of the job; URL "" for a host no longer registered by that name."""
    pks = dict(job.hosts.values_list("name", "pk"))
    return [(name, reverse("hosts:detail", args=[pks[name]]) if name in pks else "") for name in job.host_names]


def vm_links(job: Job) -> list[tuple[str, str]]:
    """(name, URL of the VM's inventory page) per VM of the job, looked up on the job's hosts in their order."""
    order = {name: i for i, name in enumerate(job.host_names)}
    found: dict[str, tuple[int, int]] = {}
    rows = VirtualMachine.objects.filter(host__in=job.hosts.all(), name__in=job.vms).values_list(
        "name", "host__name", "pk"
    )
    for name, host_name, pk in rows:
        rank = order.get(host_name, len(order))
        if name not in found or rank < found[name][0]:
            found[name] = (rank, pk)
    return [(name, reverse("inventory:vm", args=[found[name][1]]) if name in found else "") for name in job.vms]


def results_shown(job: Job) -> SafeString | str:
    """The results as sentences with links (jobs/results.py), or "" when there is nothing to say."""
    sentences = result_sentences(job.results)
    return as_list(sentences) if sentences else ""


def readable(data: dict[str, Any]) -> dict[str, Any]:
    """Parameters or results as the page shows them: empty values left out, long texts by their size."""
    return {key: shorten(value) for key, value in data.items() if value not in (None, "", [], {})}


def shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > LONG_TEXT:
        return _("(%(count)s characters)") % {"count": f"{len(value):,}"}
    if isinstance(value, dict):
        return {key: shorten(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shorten(item) for item in value]
    return value


def next_action(job: Job) -> tuple[str, str] | None:
    """The button for the next move a workflow recorded (a same-site path only), with its label."""
    url = job.results.get(NEXT_URL)
    if not is_same_site_path(url):
        return None
    label = job.results.get(NEXT_LABEL)
    if not isinstance(label, str) or not label.strip():
        label = str(NEXT_LABELS.get(job.kind, _("Next step…")))
    return label.strip()[:80], url


def silence(job: Job) -> str:
    """Why a running job has gone quiet, for the page: "" while its worker heartbeats."""
    if job.state != JobState.RUNNING or runner_alive(job, check_process=False):
        return ""
    since = f"{timezone.localtime(job.heartbeat_at):%H:%M:%S %Z}" if job.heartbeat_at else _("its start")
    # A running worker's reaper marks such a job lost within one reaper period after JOBS_LOST_AFTER_SECONDS.
    grace = jobs_setting("JOBS_LOST_AFTER_SECONDS", 30) + 2 * jobs_setting("JOBS_REAPER_SECONDS", 15)
    overdue = job.heartbeat_at is None or timezone.now() - job.heartbeat_at > timedelta(seconds=grace)
    if not overdue:
        return _(
            "No heartbeat from the worker running this job since %(since)s: its worker has probably stopped. "
            "A running worker marks the job lost within a minute."
        ) % {"since": since}
    return _(
        "No heartbeat from the worker running this job since %(since)s, and no worker has marked it lost: "
        "no worker seems to be running. Start one (make run, or celery -A console worker plus celery -A console "
        "beat); it marks this job lost at its start. Then check the host's inventory before running the job again."
    ) % {"since": since}


def unsent_notice(job: Job) -> str:
    """Why a pending job has not started: its task could not be sent to the task queue. "" when it was sent."""
    if job.unsent_since is None or job.state not in ACTIVE_STATES:
        return ""
    every = jobs_setting("JOBS_REAPER_SECONDS", 15)
    return _(
        "Waiting for the task queue: the task of this job could not be sent to the queue (Redis) since "
        "%(since)s. It is sent again every %(every)s seconds, and starts as soon as the queue answers; nothing "
        "needs doing here. If it lasts, check that Redis is running (REDIS_URL)."
    ) % {"since": f"{timezone.localtime(job.unsent_since):%H:%M:%S %Z}", "every": f"{every:g}"}


@require("view_console")
def job_log_text(request: HttpRequest, pk: int) -> HttpResponse:
    """The whole log as plain text, streamed from the database (a 100k-line log is never held in memory)."""
    job = get_object_or_404(Job, pk=pk)

    def lines() -> Iterator[str]:
        rows = JobLogLine.objects.filter(job=job).order_by("seq").values_list("at", "level", "text")
        for at, level, text in rows.iterator(chunk_size=5000):
            yield f"{at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {level.upper():<8} {text}\n"

    response = StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}.log"'
    return response  # type: ignore[return-value]  # streamed: HttpResponseBase, served the same way


@require_POST
@require("run_jobs")
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if not may_run(request, job):
        kind = KINDS.get(job.kind)
        raise Forbidden(kind.permission if kind else "run_jobs")
    if job.state in TERMINAL_STATES:
        messages.info(
            request, _("Job #%(job)s had already ended (%(state)s).") % {"job": job.pk, "state": job.state_label}
        )
        return redirect("jobs:detail", pk=job.pk)
    job = cancel_job(job, request.user)
    if job.state == JobState.CANCELLED:
        messages.success(request, _("Job #%(job)s was cancelled before it started.") % {"job": job.pk})
    else:
        messages.info(request, _("Cancel requested: job #%(job)s stops at its next step.") % {"job": job.pk})
    return redirect("jobs:detail", pk=job.pk)


@require_POST
@require("run_jobs")
def job_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        new = rerun_job(job, request.user)
    except RerunNeedsPreflight:
        return rerun_through_preflight(request, job)
    except (UnknownJobKind, ValueError):
        messages.error(request, _("Job #%(job)s cannot be run again: its kind is no longer known.") % {"job": job.pk})
        return redirect("jobs:detail", pk=job.pk)
    messages.success(request, _("Job #%(job)s runs %(kind)s again.") % {"job": new.pk, "kind": job.label})
    return redirect("jobs:detail", pk=new.pk)


def rerun_through_preflight(request: HttpRequest, job: Job) -> HttpResponse:
    """A kind that asks for confirmation is run again from its preflight page, filled from the old job."""
    check(request.user, KINDS[job.kind].permission)
    url = rerun_preflight_url(job)
    if url is None:
        messages.error(
            request,
            _("%(kind)s is not run again in one click: start it from its page, which asks you to confirm.")
            % {"kind": job.label},
        )
        return redirect("jobs:detail", pk=job.pk)
    messages.info(
        request,
        _("Check and confirm this page to run job #%(job)s (%(kind)s) again.") % {"job": job.pk, "kind": job.label},
    )
    return redirect(url)


@require_http_methods(["GET", "POST"])
@require("run_jobs")
def refresh_inventory(request: HttpRequest) -> HttpResponse:
    form = RefreshForm(request.POST or None, initial={"hosts": request.GET.getlist("host")})
    if request.method == "POST" and form.is_valid():
        job = create_job(request.user, INVENTORY_REFRESH, hosts=list(form.cleaned_data["hosts"]))
        return redirect("jobs:detail", pk=job.pk)
    return render(request, "jobs/refresh.html", {"form": form})
