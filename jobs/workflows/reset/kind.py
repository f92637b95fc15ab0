"""The reset and undo job kinds: the plan's steps on the job's host, the audit events and the undo button."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.models import AuditEvent
from console.params import parse_id
from hosts.inventory.analysis import UNTRUSTED_GUARDIAN
from hosts.models import Host
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep

from ..pages import preflight_link
from .plan import removed_by, reset_guardian, reset_job_of, reset_outline, undo_outline, undo_reset

log = logging.getLogger(__name__)


def reset_again(job: Job) -> str:
    return preflight_link(
        "/jobs/new/reset/", job, [("guardian", job.params.get("guardian_name") or UNTRUSTED_GUARDIAN)]
    )


def undo_again(job: Job) -> str:
    return f"/jobs/new/reset/undo/?job={parse_id(str(job.params.get('reset_job', ''))) or ''}"


def reset_approval(hosts: Sequence[Host], params: dict[str, Any]) -> str:
    name = params.get("guardian_name") or UNTRUSTED_GUARDIAN
    where = hosts[0] if hosts else _("its host")
    return _(
        "A guardian reset removes guardian '%(guardian)s' from %(host)s (the VMs sealed to it only start again from "
        "it)."
    ) % {"guardian": name, "host": where}


def planned_reset(job: Job) -> list[PlannedStep]:
    name = job.params.get("guardian_name") or UNTRUSTED_GUARDIAN
    return [PlannedStep(title) for host in job.host_names[:1] for title in reset_outline(name, host)]


def planned_undo(job: Job) -> list[PlannedStep]:
    removed = removed_by(reset_job_of(job.params.get("reset_job")))
    if removed is None:
        return []
    return [PlannedStep(title) for host in job.host_names[:1] for title in undo_outline(removed.guardian_name, host)]


@job_kind(
    "reset_guardian",
    label=gettext_lazy("Reset a broken guardian"),
    permission="run_destructive_jobs",
    mutating=True,
    preflight_url=reset_again,
    approval=reset_approval,
    outline=planned_reset,
)
def reset_guardian_job(ctx: JobContext) -> str:
    """params: guardian_name (default UntrustedGuardian)."""
    host = ctx.the_host(_("No host given: choose the host whose guardian lost its private keys."))
    summary = reset_guardian(ctx, ctx.session(host), host, ctx.params.get("guardian_name") or UNTRUSTED_GUARDIAN)
    removed = dict(ctx.job.results.get("removed_guardian") or {})
    removed.pop("metadata_xml", None)
    AuditEvent.record(ctx.user, "guardian.reset", host, job=ctx.job.pk, **removed)
    undo_url = f"/jobs/new/reset/undo/?job={ctx.job.pk}"
    ctx.record("next_url", undo_url)  # the job page shows it as a button (jobs.views.NEXT_URL)
    ctx.record("next_label", _("Undo this reset…"))
    log.info(_("To undo: %(url)s"), {"url": undo_url})
    return summary


@job_kind(
    "undo_guardian_reset",
    label=gettext_lazy("Undo a guardian reset"),
    permission="run_destructive_jobs",
    mutating=True,
    preflight_url=undo_again,
    outline=planned_undo,
)
def undo_reset_job(ctx: JobContext) -> str:
    """params: reset_job (id of the finished reset job whose removed guardian comes back)."""
    host = ctx.host
    removed = removed_by(reset_job_of(ctx.params.get("reset_job")))
    if host is None or removed is None:
        raise JobFailed(_("That reset job recorded no removed guardian: there is nothing to undo."))
    summary = undo_reset(ctx, ctx.session(host), host, removed)
    AuditEvent.record(ctx.user, "guardian.reset_undone", host, job=ctx.job.pk, reset_job=ctx.params.get("reset_job"))
    return summary
