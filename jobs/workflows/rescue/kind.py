"""The rescue job kind: one VM of one host, rebuilt without a vTPM on its own disks; the old VM kept, renamed."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.models import AuditEvent
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job

from ..pages import preflight_link
from .plan import rescue_vm


def rescue_again(job: Job) -> str:
    return preflight_link("/jobs/new/rescue/", job, [("vm", vm) for vm in job.vms])


@job_kind(
    "rescue_vm",
    label=gettext_lazy("Rescue a VM whose keys are lost"),
    permission="run_jobs",  # nothing is deleted or turned off: the old VM is kept as it was, renamed
    mutating=True,
    preflight_url=rescue_again,
)
def rescue_vm_job(ctx: JobContext) -> str:
    host = ctx.the_host(_("Choose the host and the VM to rescue."))
    if len(ctx.vms) != 1:
        raise JobFailed(_("Choose the one VM to rescue."))
    vm_name = ctx.vms[0]
    plan = rescue_vm(ctx, ctx.session(host), host, vm_name)
    AuditEvent.record(ctx.user, "vm.rescue", host, job=ctx.job.pk, vm=vm_name, kept_as=plan.kept_as)
    return _("'%(vm)s' runs on %(host)s without a vTPM; the old VM is kept as '%(kept)s'") % {
        "vm": vm_name,
        "host": host,
        "kept": plan.kept_as,
    }
