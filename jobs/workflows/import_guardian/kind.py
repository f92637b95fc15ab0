"""The import job kind: a vault pair onto one host."""

from __future__ import annotations

from console.params import parse_id
from hosts.vault.models import EscrowedPair
from jobs.kinds import JobContext, JobFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep

from ..placement import check_exportable, check_placement, record_placement
from .plan import import_pair


def import_step(pair: object, host: object) -> str:
    return f"Import {pair} to {host}"


def import_outline(job: Job) -> list[PlannedStep]:
    pk = parse_id(str(job.params.get("vault_entry", "")))
    pair = EscrowedPair.objects.filter(pk=pk).first() if pk is not None else None
    return [PlannedStep(import_step(pair, host)) for host in job.host_names[:1] if pair is not None]


@job_kind(
    "import_guardian",
    label="Import a guardian to a host",
    permission="run_jobs",
    mutating=True,
    outline=import_outline,
)
def import_guardian_job(ctx: JobContext) -> str:
    """params: vault_entry (EscrowedPair id), exportable (bool, admins only)."""
    host = ctx.the_host("No host given: choose the host to import the guardian to.")
    pk = parse_id(str(ctx.params.get("vault_entry", "")))
    pair = EscrowedPair.objects.filter(pk=pk).first() if pk is not None else None
    if pair is None:
        raise JobFailed("The vault entry no longer exists.")
    exportable = ctx.params.get("exportable") is True
    check_exportable(ctx.user, exportable)
    check_placement(ctx.user, host, pair)
    remedy = (
        f"The vault entry is unchanged. Run the import again once {host} answers: it skips what is already done "
        "(certificates already in the store are not imported twice)."
    )
    with ctx.step(import_step(pair, host), if_host_fails=remedy):
        name = import_pair(ctx.session(host), host, pair, exportable)
    record_placement(ctx.user, host, pair, exportable, job=ctx.job.pk)
    ctx.record("guardian_name", name)
    return f"{host} holds {pair} as guardian '{name}' with its private keys"
