"""The import job kind: a vault pair onto one host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.params import parse_id
from hosts.models import Host
from hosts.vault.models import EscrowedPair
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep

from ..placement import check_exportable, check_placement, has_held, record_placement
from .plan import import_pair


def vault_pair(params: dict[str, Any]) -> EscrowedPair | None:
    pk = parse_id(str(params.get("vault_entry", "")))
    return EscrowedPair.objects.filter(pk=pk).first() if pk is not None else None


def import_approval(hosts: Sequence[Host], params: dict[str, Any]) -> str:
    """Private keys going to a host that never held them (placement.py) need a second admin."""
    pair = vault_pair(params)
    if not hosts or pair is None or has_held(hosts[0], pair):
        return ""
    return _("%(host)s has never held %(pair)s: its private keys would be put on a new host.") % {
        "host": hosts[0],
        "pair": pair,
    }


def import_step(pair: object, host: object) -> str:
    """A step title, in the job's language: the same on every run of the job, so a resumed run finds it done."""
    return _("Import %(pair)s to %(host)s") % {"pair": pair, "host": host}


def import_outline(job: Job) -> list[PlannedStep]:
    pair = vault_pair(job.params)
    return [PlannedStep(import_step(pair, host)) for host in job.host_names[:1] if pair is not None]


@job_kind(
    "import_guardian",
    label=gettext_lazy("Import a guardian to a host"),
    permission="run_jobs",
    mutating=True,
    approval=import_approval,
    outline=import_outline,
)
def import_guardian_job(ctx: JobContext) -> str:
    """params: vault_entry (EscrowedPair id), exportable (bool, admins only)."""
    host = ctx.the_host(_("No host given: choose the host to import the guardian to."))
    pair = vault_pair(ctx.params)
    if pair is None:
        raise JobFailed(_("The vault entry no longer exists."))
    exportable = ctx.params.get("exportable") is True
    check_exportable(ctx.user, exportable)
    check_placement(ctx.user, host, pair)
    remedy = _(
        "The vault entry is unchanged. Run the import again once %(host)s answers: it skips what is already done "
        "(certificates already in the store are not imported twice)."
    ) % {"host": host}
    with ctx.step(import_step(pair, host), if_host_fails=remedy):
        name = import_pair(ctx.session(host), host, pair, exportable)
    record_placement(ctx.user, host, pair, exportable, job=ctx.job.pk)
    ctx.record("guardian_name", name)
    return _("%(host)s holds %(pair)s as guardian '%(guardian)s' with its private keys") % {
        "host": host,
        "pair": pair,
        "guardian": name,
    }
