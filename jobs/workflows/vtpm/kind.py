"""The vTPM job kind: several VMs of one host, off or on, and the audit event of what changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.models import AuditEvent
from hosts.models import Host
from jobs.kinds import JobContext, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep, each

from ..pages import preflight_link
from .plan import change_vtpms, changes_from, tpm_step


def vtpm_again(job: Job) -> str:
    return preflight_link(
        "/jobs/new/vtpm/", job, [("action", job.params.get("action")), *(("vm", vm) for vm in job.vms)]
    )


def vtpm_approval(hosts: Sequence[Host], params: dict[str, Any]) -> str:
    if params.get("action") != "disable":
        return ""
    names = ", ".join(f"'{name}'" for name in params.get("confirmed") or [])
    where = hosts[0] if hosts else _("its host")
    return _(
        "Turning the vTPM off on %(host)s (%(vms)s) discards what each TPM holds (BitLocker keys, Windows Hello)."
    ) % {"host": where, "vms": names}


def vtpm_outline(job: Job) -> list[PlannedStep]:
    """Per VM its Enable- or Disable-VMTPM; the steps before it (a saved state, a key protector) show when run."""
    host = job.host_names[0] if job.host_names else ""
    return each([tpm_step(vm, job.params.get("action") == "enable", host) for vm in job.vms])


@job_kind(
    "vtpm",
    label=gettext_lazy("Turn vTPM off or on"),
    permission="run_destructive_jobs",
    mutating=True,
    preflight_url=vtpm_again,
    approval=vtpm_approval,
    outline=vtpm_outline,
)
def vtpm_job(ctx: JobContext) -> str:
    """params: action (disable|enable), confirmed (VM names typed), remove_saved_state (VM names)."""
    host = ctx.the_host(_("No host given."))
    try:
        return change_vtpms(ctx, ctx.session(host), host, changes_from(ctx.params, ctx.vms))
    finally:
        changed = ctx.job.results.get("changed") or []
        if changed:
            AuditEvent.record(ctx.user, f"vm.tpm_{ctx.params.get('action')}", host, job=ctx.job.pk, vms=changed)
