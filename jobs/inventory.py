"""The first job kind: refresh the inventory of one or several hosts (what they hold: guardians, certificates, VMs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from hosts.inventory.refresh import refresh_hosts

from .kinds import JobContext, JobFailed, JobPartlyFailed, job_kind
from .registry import PlannedStep
from .workflows.escrow.policy import escrow_missing

if TYPE_CHECKING:
    from .models import Job

log = logging.getLogger(__name__)  # its records are lines of the running job (jobs/joblog.py)

INVENTORY_REFRESH = "inventory_refresh"


def host_log(ctx: JobContext, host_name: str) -> Callable[..., None]:
    """A log callable for one host's remoting; lines name the host when the job has several. Passed explicitly:
    the hosts are read on threads of their own, where the job's logger context (jobs/joblog.py) does not reach."""
    prefix = f"{host_name}: " if host_name else ""

    def write(text: str, level: str = "info") -> None:
        ctx.log(prefix + text, level)

    return write


def refresh_step(host_names: list[str]) -> str:
    if len(host_names) > 1:
        return _("Refresh inventory of %(count)s hosts") % {"count": len(host_names)}
    return _("Refresh inventory of %(host)s") % {"host": "".join(host_names)}


def refresh_outline(job: Job) -> list[PlannedStep]:
    return [PlannedStep(refresh_step(job.host_names))] if job.host_names else []


@job_kind(
    INVENTORY_REFRESH,
    label=gettext_lazy("Refresh inventory"),
    permission="run_jobs",
    mutating=False,
    refresh_inventory=False,
    outline=refresh_outline,
)
def refresh_inventory(ctx: JobContext) -> str:
    """Read all hosts at once, each over its own session (refresh_hosts); an unreachable host keeps its last
    inventory, marked stale. Cancel is honoured before the reads start: they are short and read-only."""
    if not ctx.hosts:
        raise JobFailed(_("No host to refresh: choose at least one host."))
    ctx.check_cancelled()
    several = len(ctx.hosts) > 1
    with ctx.step(refresh_step([host.name for host in ctx.hosts])):
        outcomes = refresh_hosts(ctx.hosts, log_for=lambda host: host_log(ctx, host.name if several else ""))
    for host in ctx.hosts:  # failures were logged by the refresh itself, with their reason
        if outcomes[host.pk].ok:
            done = {"host": host.name, "requests": outcomes[host.pk].requests}
            log.info(_("%(host)s: inventory refreshed (%(requests)s requests)"), done)
    failed = [host.name for host in ctx.hosts if not outcomes[host.pk].ok]
    ctx.record("failed_hosts", failed)
    if failed and len(failed) == len(ctx.hosts):
        raise JobFailed(
            _("Could not refresh %(hosts)s: see the log for the reason of each host.") % {"hosts": ", ".join(failed)}
        )
    if settings.ESCROW_POLICY and not settings.ESCROW_POLICY_SECONDS:  # the policy's default: at the next refresh
        escrow_after_refresh(ctx)
    refreshed = len(ctx.hosts) - len(failed)
    counts = {"refreshed": refreshed, "count": len(ctx.hosts)}
    summary = (
        ngettext(
            "Refreshed %(refreshed)s of %(count)s host", "Refreshed %(refreshed)s of %(count)s hosts", len(ctx.hosts)
        )
        % counts
    )
    if failed:
        # Not a success: the failed hosts keep their last inventory, marked stale.
        unreachable = ", ".join(failed)
        raise JobPartlyFailed(
            _("%(summary)s; unreachable: %(hosts)s") % {"summary": summary, "hosts": unreachable},
            _(
                "Could not refresh %(hosts)s: see the log for the reason of each host. Their last inventory is kept, "
                "marked stale."
            )
            % {"hosts": unreachable},
        )
    return summary


def escrow_after_refresh(ctx: JobContext) -> None:
    """The automatic escrow policy on what this refresh found. Its failure is logged, never the refresh's: the
    inventory was read all the same, and the next run tries the escrow again."""
    try:
        jobs = escrow_missing(trigger=f"refresh job {ctx.job.pk}")
    except Exception as exc:  # noqa: BLE001 - the refresh succeeded; the policy's trouble is said, not raised
        log.warning(_("The automatic escrow policy could not start its jobs: %(error)s"), {"error": exc})
        return
    ctx.record("escrow_jobs", [job.pk for job in jobs])
