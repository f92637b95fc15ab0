"""Celery tasks: run a job, reap jobs of dead workers, refresh every host's inventory on a schedule."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import OperationalError

from . import runner

log = logging.getLogger(__name__)


@shared_task(bind=True, name="jobs.run_job", acks_late=True, max_retries=None, ignore_result=True)
def run_job(self: Any, job_id: int) -> str:
    try:
        outcome = runner.execute(job_id)
    except OperationalError as exc:
        # A busy or briefly unreachable database before the job started: try again rather than drop the job.
        log.warning("job %s could not start: %s; retrying", job_id, exc)
        raise self.retry(countdown=0.5, exc=exc) from None
    if outcome.startswith("waiting:"):
        # The host is locked by another mutating job; that job wakes us when it ends, this retry is the safety net.
        raise self.retry(countdown=float(getattr(settings, "JOBS_WAIT_RETRY_SECONDS", 2)))
    return outcome


@shared_task(name="jobs.reap_lost_jobs", ignore_result=True)
def reap_lost_jobs() -> list[int]:
    reaped = runner.reap()
    if reaped:
        log.warning("jobs of a stopped worker marked lost: %s", reaped)
    return reaped


@shared_task(name="jobs.refresh_all_inventory", ignore_result=True)
def refresh_all_inventory() -> int | None:
    """Periodic inventory refresh of every host, as a job people can watch (skipped while one is still active)."""
    from hosts.models import Host

    from .inventory import INVENTORY_REFRESH
    from .models import ACTIVE_STATES, Job
    from .services import create_job

    hosts = list(Host.objects.order_by("name"))
    if not hosts or Job.objects.filter(kind=INVENTORY_REFRESH, state__in=ACTIVE_STATES).exists():
        return None
    return create_job(None, INVENTORY_REFRESH, hosts=hosts, params={"scheduled": True}).pk


@worker_ready.connect
def reap_at_worker_start(**_: Any) -> None:
    """A worker that starts after a crash marks the jobs the dead worker left behind as lost."""
    try:
        runner.reap()
    except Exception:  # noqa: BLE001 - a worker must start even when the database is briefly away
        log.warning("reaping at worker start failed", exc_info=True)
