"""Celery tasks: run a job and refresh every host's inventory on a schedule; each worker's reaper thread marks the
jobs of dead workers lost."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import OperationalError, close_old_connections

from hosts.models import Host

from . import runner
from .inventory import INVENTORY_REFRESH
from .models import RUN_JOB_TASK, Job
from .services import create_job
from .workflows.escrow.policy import escrow_missing
from .workflows.recovery_kit.kit import write_scheduled_copy

log = logging.getLogger(__name__)


@shared_task(bind=True, name=RUN_JOB_TASK, acks_late=True, max_retries=None, ignore_result=True)
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


@shared_task(name="jobs.refresh_all_inventory", ignore_result=True)
def refresh_all_inventory() -> int | None:
    """Periodic inventory refresh of every host, as a job people can watch (skipped while one is still active)."""
    hosts = list(Host.objects.order_by("name"))
    if not hosts or Job.objects.active().filter(kind=INVENTORY_REFRESH).exists():
        return None
    return create_job(None, INVENTORY_REFRESH, hosts=hosts, params={"scheduled": True}).pk


@shared_task(name="jobs.escrow_policy", ignore_result=True)
def escrow_policy() -> list[int]:
    """The automatic escrow policy on its own schedule (CONSOLE_ESCROW_POLICY_SECONDS > 0): an escrow job per guardian
    the vault lacks, from the stored inventory; nothing when the policy is off."""
    return [job.pk for job in escrow_missing(trigger="schedule")]


@shared_task(name="jobs.write_recovery_kit", ignore_result=True)
def write_recovery_kit() -> str:
    """The scheduled copy of the recovery kit (CONSOLE_RECOVERY_KIT_DIR and _PASSPHRASE_FILE set)."""
    path = write_scheduled_copy()
    return str(path or "")


@worker_ready.connect
def start_reaper(**_: Any) -> None:
    """Every worker reaps on a thread of its own, at start and every JOBS_REAPER_SECONDS: a worker started after a
    crash marks the jobs the dead one left behind as lost at once, and a worker whose job slots are all busy still
    reaps (a reaper task would wait in the queue behind those jobs). Several workers reaping is harmless: marking a
    job lost is one conditional update. The same round sends again the tasks that could not be sent while the task
    queue was away, so such a job starts within JOBS_REAPER_SECONDS of the queue coming back."""
    threading.Thread(target=reap_forever, name="job-reaper", daemon=True).start()


def reap_forever() -> None:
    interval = float(getattr(settings, "JOBS_REAPER_SECONDS", 15))
    while True:
        try:
            reaped = runner.reap()
            if reaped:
                log.warning("jobs of a stopped worker marked lost: %s", reaped)
        except Exception:  # noqa: BLE001 - the database may be briefly away; the next round tries again
            log.warning("reaping lost jobs failed", exc_info=True)
        finally:
            close_old_connections()
        time.sleep(interval)
