"""Pages of the jobs app: the job list with filters, one job's page with its live log, cancel, re-run, refresh."""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from console.roles import can, require

from .forms import JobFilterForm, RefreshForm
from .inventory import INVENTORY_REFRESH
from .kinds import KINDS, UnknownJobKind
from .models import ACTIVE_STATES, TERMINAL_STATES, Job, JobLogLine, JobState
from .runner import runner_alive
from .services import cancel_job, create_job, rerun_job


def may_run(request: HttpRequest, job: Job) -> bool:
    kind = KINDS.get(job.kind)
    return kind is not None and can(request.user, kind.permission)


@require("view_console")
def job_list(request: HttpRequest) -> HttpResponse:
    filters = JobFilterForm(request.GET or None)
    jobs = filters.apply(Job.objects.select_related("requested_by"))
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "jobs/list.html", {"page": page, "filters": filters, "query": query.urlencode()})


@require("view_console")
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("requested_by", "rerun_of"), pk=pk)
    allowed = may_run(request, job)
    context = {
        "job": job,
        "can_cancel": allowed and job.state in ACTIVE_STATES and not job.cancel_requested,
        "can_rerun": allowed and job.state in TERMINAL_STATES,
        "steps": job.steps.all(),
        "silent": job.state == JobState.RUNNING and not runner_alive(job, check_process=False),
    }
    return render(request, "jobs/detail.html", context)


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
        needed = kind.permission if kind else "run_jobs"
        return render(request, "console/forbidden.html", {"needed": needed}, status=403)
    if job.state in TERMINAL_STATES:
        messages.info(request, f"Job #{job.pk} had already ended ({job.state}).")
        return redirect("jobs:detail", pk=job.pk)
    job = cancel_job(job, request.user)
    if job.state == "cancelled":
        messages.success(request, f"Job #{job.pk} was cancelled before it started.")
    else:
        messages.info(request, f"Cancel requested: job #{job.pk} stops at its next step.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
@require("run_jobs")
def job_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    try:
        new = rerun_job(job, request.user)
    except PermissionDenied as exc:
        return render(request, "console/forbidden.html", {"needed": str(exc)}, status=403)
    except (UnknownJobKind, ValueError):
        messages.error(request, f"Job #{job.pk} cannot be run again: its kind is no longer known.")
        return redirect("jobs:detail", pk=job.pk)
    messages.success(request, f"Job #{new.pk} runs {job.label} again.")
    return redirect("jobs:detail", pk=new.pk)


@require_http_methods(["GET", "POST"])
@require("run_jobs")
def refresh_inventory(request: HttpRequest) -> HttpResponse:
    form = RefreshForm(request.POST or None, initial={"hosts": request.GET.getlist("host")})
    if request.method == "POST" and form.is_valid():
        job = create_job(request.user, INVENTORY_REFRESH, hosts=list(form.cleaned_data["hosts"]))
        return redirect("jobs:detail", pk=job.pk)
    return render(request, "jobs/refresh.html", {"form": form})
