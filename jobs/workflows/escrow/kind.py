"""Escrow job kinds: one guardian's pair, or every pair with private keys on a host."""

from __future__ import annotations

from jobs.kinds import JobContext, JobFailed, job_kind

from .plan import escrow_host, escrow_pair


@job_kind("escrow_guardian", label="Escrow a guardian", permission="run_jobs", mutating=True)
def escrow_guardian_job(ctx: JobContext) -> str:
    """params: signing_thumbprint, encryption_thumbprint, guardian_name."""
    host = ctx.the_host("No host given: choose the host that holds the guardian.")
    sign, enc = ctx.params.get("signing_thumbprint", ""), ctx.params.get("encryption_thumbprint", "")
    remedy = f"Nothing was stored in the vault; run the escrow again once {host} answers."
    with ctx.step(f"Escrow {ctx.params.get('guardian_name') or 'guardian'} from {host}", if_host_fails=remedy):
        name = ctx.params.get("guardian_name", "")
        pair = escrow_pair(ctx.session(host), host, sign, enc, guardian_name=name, user=ctx.user)
    ctx.record("vault_entry", pair.pk)
    return f"{pair} is in the vault"


@job_kind("escrow_host", label="Escrow every pair on a host", permission="run_jobs", mutating=True)
def escrow_host_job(ctx: JobContext) -> str:
    host = ctx.the_host("No host given.")
    with ctx.step(f"Escrow every pair with private keys on {host}"):
        stored, already, failures = escrow_host(ctx.session(host), host, user=ctx.user)
    ctx.record("stored", stored)
    ctx.record("already_escrowed", already)
    if failures:
        raise JobFailed(
            f"Escrowed {stored}, {already} already in the vault, {len(failures)} failed: " + "; ".join(failures)
        )
    return f"Escrowed {stored} new pair(s); {already} already in the vault"
