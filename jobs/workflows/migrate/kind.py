"""The migration job kind: one VM from a source host to a target host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.models import AuditEvent
from hosts.models import Host
from hosts.remoting.errors import RemotingError, remedy_action
from hosts.remoting.session import HostSession
from hosts.vault.models import EscrowedPair
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep
from jobs.services import ordered_hosts

from ..pages import preflight_link
from ..placement import record_placement
from .plan import MigrationOptions, share_problems
from .run import migrate_vm, migration_outline


def migrate_again(job: Job) -> str:
    """The wizard with the job's choices; the user checks both hosts again before a second run."""

    hosts = ordered_hosts(job)
    query: list[tuple[str, object]] = [
        ("target", hosts[1].pk if len(hosts) > 1 else ""),
        ("vm", job.vms[0] if job.vms else ""),
    ]
    query += [
        ("form", "1"),
        *((key, job.params.get(key)) for key in ("method", "unseal", "source_after", "share", "files_path")),
    ]
    query += [(key, "on") for key in ("new_id", "start") if job.params.get(key)]
    return preflight_link("/jobs/new/migrate/", job, query)


def migrate_approval(hosts: Sequence[Host], params: dict[str, Any]) -> str:
    if params.get("source_after") != "remove":
        return ""
    source = hosts[0] if hosts else _("the source")
    return _("The migration removes the VM's source copy from %(source)s once it runs on the target.") % {
        "source": source
    }


def planned_migration(job: Job) -> list[PlannedStep]:
    """The steps the job's options decide (run.migration_outline); registry.outline_of asks for them in the job's
    language, as its recorded steps are titled."""
    if len(job.host_names) != 2 or len(job.vms) != 1:
        return []
    opts = MigrationOptions.from_params(job.vms[0], job.params)
    return [PlannedStep(title) for title in migration_outline(opts, *job.host_names)]


@job_kind(
    "migrate_vm",
    label=gettext_lazy("Migrate a VM between hosts"),
    permission="run_jobs",
    mutating=True,
    preflight_url=migrate_again,
    approval=migrate_approval,
    outline=planned_migration,
)
def migrate_vm_job(ctx: JobContext) -> str:
    """hosts: [source, target]; vms: [name]; params: MigrationOptions.as_params()."""
    if len(ctx.hosts) != 2 or len(ctx.vms) != 1:
        raise JobFailed(_("A migration needs a source host, a target host and one VM."))
    opts = MigrationOptions.from_params(ctx.vms[0], ctx.params)
    if opts.problems():
        raise JobFailed(" ".join(opts.problems()))
    source, target = ctx.hosts
    refused = share_problems(opts, source, target)
    if refused:
        raise JobFailed(" ".join(refused))
    try:
        summary = migrate_vm(ctx, (reach(ctx, source), reach(ctx, target)), (source, target), opts)
    finally:
        audit_carried_pair(ctx, target)  # the keys stay on the target even when a later step fails
    detail = {"job": ctx.job.pk, "vm": opts.vm_name, "source": source.name, "method": opts.method}
    AuditEvent.record(ctx.user, "vm.migrated", target, unseal=opts.unseal, source_after=opts.source_after, **detail)
    return summary


def audit_carried_pair(ctx: JobContext, target: Host) -> None:
    """The placement of the owner's pair on the target, when the carry imported it (placement.py)."""
    carried = EscrowedPair.objects.filter(pk=ctx.job.results.get("carried_pair") or 0).first()
    if carried is not None:
        record_placement(ctx.user, target, carried, exportable=False, job=ctx.job.pk)


def reach(ctx: JobContext, host: Host) -> HostSession:
    """The host's session for this job; a host that cannot be reached stops the job before anything changed."""
    try:
        session: HostSession = ctx.session(host)
        return session
    except RemotingError as exc:
        action = remedy_action(exc.kind)
        refused = _("Nothing was changed: %(host)s cannot be reached — %(error)s %(action)s") % {
            "host": host,
            "error": exc,
            "action": action,
        }
        raise JobFailed(refused.rstrip()) from None
