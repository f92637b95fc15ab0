"""The restore job kind: VMs of one host, one after another (one from the restore page, all from "every VM")."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from hosts.vault.models import EscrowedPair
from jobs.kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep, each

from ..placement import check_placement, record_placement
from .plan import restore_vm


def restore_outline(job: Job) -> list[PlannedStep]:
    host = job.host_names[0] if job.host_names else ""
    return each([restore_step(vm_name, host) for vm_name in job.vms])


@job_kind(
    "restore_vm",
    label=gettext_lazy("Restore a VM after reinstall"),
    permission="run_jobs",
    mutating=True,
    outline=restore_outline,
)
def restore_vm_job(ctx: JobContext) -> str:
    host = ctx.host
    if host is None or not ctx.vms:
        raise JobFailed(_("Choose the host and the VM to restore."))
    restored: list[str] = []
    placed: list[EscrowedPair] = []  # the pairs whose keys this run copies to the host, for the audit trail

    def placing(pair: EscrowedPair) -> None:
        check_placement(ctx.user, host, pair)
        placed.append(pair)

    for vm_name in ctx.vms:
        remedy = _(
            "Nothing was taken out of the vault. Run the restore again once %(host)s answers: it continues where it "
            "stopped."
        ) % {"host": host}
        try:
            with ctx.step(restore_step(vm_name, host), if_host_fails=remedy):
                name = restore_vm(ctx.session(host), host, vm_name, placing)
        except JobFailed as exc:
            if not restored:
                raise
            ctx.record("restored_vms", restored)  # the VMs restored before this one stay restored
            raise JobPartlyFailed(running_on(restored, host), f"'{vm_name}': {exc}") from None
        for pair in placed:
            record_placement(ctx.user, host, pair, exportable=False, job=ctx.job.pk)
        placed.clear()
        restored.append(vm_name)
        ctx.record("guardian_name", name)
    ctx.record("restored_vms", restored)
    return running_on(restored, host)


def running_on(restored: list[str], host: object) -> str:
    return _("%(vms)s running on %(host)s") % {"vms": ", ".join(restored), "host": host}


def restore_step(vm_name: str, host: object) -> str:
    """A step title, in the job's language: the same on every run of the job, so a resumed run finds it done."""
    return _("Restore VM '%(vm)s' on %(host)s") % {"vm": vm_name, "host": host}
