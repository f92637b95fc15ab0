"""Two-person approval (settings.TWO_PERSON_APPROVAL): the page where a second admin reviews a job that waits for
approval — its preflight run again now on the choices that made it, with Show PowerShell, as its requester saw it —
and approves or rejects it. Who may decide, and when, is the Job's lifecycle (Job.approve, Job.reject); which jobs
wait is each kind's rule (services.create_job). The API decides through the same two methods.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy

from console.roles import require
from jobs.models import ApprovalRefused, Job, JobState

from .preflights import preflight_of

# Deciding is an admin's destructive act: the same permission, and so the same second factor, as starting one.
APPROVE_PERMISSION = "run_destructive_jobs"


CHOOSE = gettext_lazy("Choose approve or reject.")


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", gettext_lazy("Approve")), ("reject", gettext_lazy("Reject"))],
        error_messages={"required": CHOOSE, "invalid_choice": CHOOSE},
    )
    note = forms.CharField(required=False, max_length=500)  # why it was rejected, for the requester


def decide(job: Job, user: Any, decision: str, note: str = "") -> None:
    """Approve or reject `job` as `user` (ApprovalRefused says why it does not count)."""
    if decision == "approve":
        job.approve(user)
    else:
        job.reject(user, note)


def review(job: Job, user: Any) -> dict[str, Any]:
    """What the page shows: the job, and while it waits, its preflight now and whether this user may decide."""
    waiting = job.state == JobState.AWAITING_APPROVAL
    own = job.requested_by_id == user.pk or job.requested_by_name == user.get_username()
    return {"job": job, "outcome": preflight_of(job) if waiting else None, "waiting": waiting, "own": own}


@require(APPROVE_PERMISSION)
def job_approval(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    form = DecisionForm(request.POST if request.method == "POST" else None)
    refused = ""
    if form.is_valid():
        try:
            decide(job, request.user, form.cleaned_data["decision"], form.cleaned_data["note"])
            return redirect("jobs:detail", pk=job.pk)
        except ApprovalRefused as exc:
            refused = str(exc)
    context = review(job, request.user) | {"form": form, "refused": refused}
    return render(request, "workflows/approval.html", context, status=409 if refused else 200)
