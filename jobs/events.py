"""What live viewers are told: the channel groups of jobs and a best-effort publish to them.

The database is the source of truth (a viewer replays from it), so publishing never fails the caller. No model is
imported here: the Job model publishes its own state changes through this module.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

JOBS_GROUP = "jobs"  # every job's state changes: the job list and the dashboard


def job_group(job_id: int) -> str:
    """One job's lines and state changes: its job page."""
    return f"job-{job_id}"


def publish(group: str, message: dict[str, Any]) -> None:
    """Best-effort publish from synchronous code: viewers replay from the database anyway."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - Redis down must not break the request; the DB has the truth
        log.warning("could not publish to %s", group, exc_info=True)


class Publishable(Protocol):
    """A job as this module needs it (jobs.models.Job is one): typed here so the model can import this module."""

    pk: Any

    def state_message(self) -> dict[str, Any]: ...


def publish_state(job: Publishable) -> None:
    message = {"type": "job.state", "state": job.state_message()}
    publish(job_group(job.pk), message)
    publish(JOBS_GROUP, message)
