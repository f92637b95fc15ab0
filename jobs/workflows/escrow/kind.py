"""Escrow job kinds: one guardian's pair, or every pair with private keys on a host."""

from __future__ import annotations

from jobs.kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep
from jobs.words import counted

from .plan import escrow_host, escrow_pair


def guardian_step(guardian_name: str, host: object) -> str:
    return f"Escrow {guardian_name or 'guardian'} from {host}"


def host_step(host: object) -> str:
    return f"Escrow every pair with private keys on {host}"


def guardian_outline(job: Job) -> list[PlannedStep]:
    return [PlannedStep(guardian_step(job.params.get("guardian_name", ""), name)) for name in job.host_names[:1]]


def host_outline(job: Job) -> list[PlannedStep]:
    return [PlannedStep(host_step(name)) for name in job.host_names[:1]]


@job_kind("escrow_guardian", label="Escrow a guardian", permission="run_jobs", mutating=True, outline=guardian_outline)
def escrow_guardian_job(ctx: JobContext) -> str:
    """params: signing_thumbprint, encryption_thumbprint, guardian_name."""
    host = ctx.the_host("No host given: choose the host that holds the guardian.")
    sign, enc = ctx.params.get("signing_thumbprint", ""), ctx.params.get("encryption_thumbprint", "")
    remedy = f"Nothing was stored in the vault; run the escrow again once {host} answers."
    with ctx.step(guardian_step(ctx.params.get("guardian_name", ""), host), if_host_fails=remedy):
        name = ctx.params.get("guardian_name", "")
        pair = escrow_pair(ctx.session(host), host, sign, enc, guardian_name=name, user=ctx.user)
    ctx.record("vault_entry", pair.pk)
    return f"{pair} is in the vault"


@job_kind(
    "escrow_host", label="Escrow every pair on a host", permission="run_jobs", mutating=True, outline=host_outline
)
def escrow_host_job(ctx: JobContext) -> str:
    host = ctx.the_host("No host given.")
    with ctx.step(host_step(host)):
        stored, already, failures = escrow_host(ctx.session(host), host, user=ctx.user)
    ctx.record("stored", stored)
    ctx.record("already_escrowed", already)
    done = f"{counted(stored, 'new pair')} escrowed; {counted(already, 'pair')} already in the vault"
    if failures and (stored or already):
        raise JobPartlyFailed(done, f"{counted(len(failures), 'pair')} failed: " + "; ".join(failures))
    if failures:
        raise JobFailed(f"{counted(len(failures), 'pair')} failed: " + "; ".join(failures))
    return done
