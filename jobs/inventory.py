"""The first job kind: refresh the inventory of one or several hosts (what they hold: guardians, certificates, VMs)."""

from __future__ import annotations

from collections.abc import Callable

from .kinds import JobContext, JobFailed, job_kind

INVENTORY_REFRESH = "inventory_refresh"


def host_log(ctx: JobContext, host_name: str) -> Callable[..., None]:
    """A log callable for one host's remoting; lines name the host when the job has several."""
    prefix = f"{host_name}: " if host_name else ""

    def write(text: str, level: str = "info") -> None:
        ctx.log(prefix + text, level)

    return write


@job_kind(INVENTORY_REFRESH, label="Refresh inventory", permission="run_jobs", mutating=False, refresh_inventory=False)
def refresh_inventory(ctx: JobContext) -> str:
    """Read each host over its own session; an unreachable host keeps its last inventory, marked stale."""
    from hosts.inventory.refresh import refresh_host

    if not ctx.hosts:
        raise JobFailed("No host to refresh: choose at least one host.")
    failed = []
    for host in ctx.hosts:
        ctx.check_cancelled()
        with ctx.step(f"Refresh inventory of {host.name}") as step:
            if not step.needed:
                continue
            outcome = refresh_host(host, log=host_log(ctx, host.name if len(ctx.hosts) > 1 else ""))
            if outcome.ok:
                ctx.log(f"{host.name}: inventory refreshed ({outcome.requests} requests)", "info")
            else:
                ctx.log(f"{host.name}: {outcome.error} — the last inventory is kept and marked stale", "error")
                failed.append(host.name)
    ctx.record("failed_hosts", failed)
    if failed and len(failed) == len(ctx.hosts):
        raise JobFailed(f"Could not refresh {', '.join(failed)}: see the log for the reason of each host.")
    refreshed = len(ctx.hosts) - len(failed)
    summary = f"Refreshed {refreshed} of {len(ctx.hosts)} host{'s' if len(ctx.hosts) > 1 else ''}"
    return summary + (f"; unreachable: {', '.join(failed)}" if failed else "")
