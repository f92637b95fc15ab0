"""Escrow job kinds: one guardian's pair, or every pair with private keys on a host."""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from jobs.kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from jobs.models import Job
from jobs.registry import PlannedStep

from .plan import escrow_host, escrow_pair

# Step titles are made with gettext in the job's language (jobs/runner.py runs the whole job under
# translation.override(job.language), and registry.outline_of does the same for outlines): a job's language never
# changes, so a resumed run records and skips its steps under the same titles.


def guardian_step(guardian_name: str, host: object) -> str:
    if not guardian_name:
        return _("Escrow guardian from %(host)s") % {"host": host}
    return _("Escrow %(guardian)s from %(host)s") % {"guardian": guardian_name, "host": host}


def host_step(host: object) -> str:
    return _("Escrow every pair with private keys on %(host)s") % {"host": host}


def guardian_outline(job: Job) -> list[PlannedStep]:
    return [PlannedStep(guardian_step(job.params.get("guardian_name", ""), name)) for name in job.host_names[:1]]


def host_outline(job: Job) -> list[PlannedStep]:
    return [PlannedStep(host_step(name)) for name in job.host_names[:1]]


def pairs_failed(failures: list[str]) -> str:
    count = len(failures)
    failed = ngettext("%(count)d pair failed", "%(count)d pairs failed", count) % {"count": count}
    return f"{failed}: " + "; ".join(failures)


def escrowed_summary(stored: int, already: int) -> str:
    if stored:
        new = ngettext("%(count)d new pair escrowed", "%(count)d new pairs escrowed", stored) % {"count": stored}
    else:
        new = _("no new pair escrowed")
    if already:
        there = ngettext("%(count)d pair already in the vault", "%(count)d pairs already in the vault", already) % {
            "count": already
        }
    else:
        there = _("no pair already in the vault")
    return _("%(new)s; %(there)s") % {"new": new, "there": there}


@job_kind(
    "escrow_guardian",
    label=gettext_lazy("Escrow a guardian"),
    permission="run_jobs",
    mutating=True,
    outline=guardian_outline,
)
def escrow_guardian_job(ctx: JobContext) -> str:
    """params: signing_thumbprint, encryption_thumbprint, guardian_name."""
    host = ctx.the_host(_("No host given: choose the host that holds the guardian."))
    sign, enc = ctx.params.get("signing_thumbprint", ""), ctx.params.get("encryption_thumbprint", "")
    remedy = _("Nothing was stored in the vault; run the escrow again once %(host)s answers.") % {"host": host}
    with ctx.step(guardian_step(ctx.params.get("guardian_name", ""), host), if_host_fails=remedy):
        name = ctx.params.get("guardian_name", "")
        pair = escrow_pair(ctx.session(host), host, sign, enc, guardian_name=name, user=ctx.user)
    ctx.record("vault_entry", pair.pk)
    return _("%(pair)s is in the vault") % {"pair": pair}


@job_kind(
    "escrow_host",
    label=gettext_lazy("Escrow every pair on a host"),
    permission="run_jobs",
    mutating=True,
    outline=host_outline,
)
def escrow_host_job(ctx: JobContext) -> str:
    host = ctx.the_host(_("No host given."))
    with ctx.step(host_step(host)):
        stored, already, failures = escrow_host(ctx.session(host), host, user=ctx.user)
    ctx.record("stored", stored)
    ctx.record("already_escrowed", already)
    done = escrowed_summary(stored, already)
    if failures and (stored or already):
        raise JobPartlyFailed(done, pairs_failed(failures))
    if failures:
        raise JobFailed(pairs_failed(failures))
    return done
