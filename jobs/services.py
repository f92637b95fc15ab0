"""Creating, cancelling and re-running jobs: the only way views and workflows start work on hosts."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from console.models import SECRET_WORDS, AuditEvent
from console.roles import check

from .kinds import RerunNeedsPreflight, get_kind
from .models import Job, JobState

if TYPE_CHECKING:
    from hosts.models import Host

log = logging.getLogger(__name__)

JOBS_GROUP = "jobs"


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def check_no_secrets(params: dict[str, Any], path: str = "") -> None:
    """Job parameters and results are shown to every viewer: refuse anything that looks like a secret."""
    for key, value in params.items():
        where = f"{path}{key}"
        if any(word in str(key).lower() for word in SECRET_WORDS):
            raise ValueError(f"job data must not carry secrets (key {where!r})")
        if isinstance(value, dict):
            check_no_secrets(value, f"{where}.")
        elif isinstance(value, bytes | bytearray):
            raise ValueError(f"job data must not carry binary data (key {where!r})")
    json.dumps(params)  # raises TypeError for anything that would not survive the JSON column


def create_job(
    user: Any,
    kind: str,
    hosts: Sequence[Host] = (),
    vms: Iterable[str] = (),
    params: dict[str, Any] | None = None,
    rerun_of: Job | None = None,
) -> Job:
    """Create a queued job, audit it, and enqueue it once the surrounding transaction commits.

    `user` None means the console itself (periodic tasks). Raises Forbidden when the user lacks the kind's
    permission, UnknownJobKind for an unknown kind and ValueError for secret-looking parameters.
    """
    job_kind = get_kind(kind)
    if user is not None:
        check(user, job_kind.permission)
    params = dict(params or {})
    check_no_secrets(params)
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            host_names=[host.name for host in hosts],
            vms=[str(vm) for vm in vms],
            params=params,
            requested_by=user if user is not None and user.is_authenticated else None,
            requested_by_name=user.get_username() if user is not None else "console",
            rerun_of=rerun_of,
        )
        job.hosts.set(list(hosts))
        AuditEvent.record(user, "job.create", job, kind=kind, hosts=job.host_names, vms=job.vms, params=params)
        transaction.on_commit(lambda: enqueue(job.pk), robust=True)
    return job


def enqueue(job_id: int) -> None:
    from .tasks import run_job

    Job.objects.filter(pk=job_id).update(enqueued_at=timezone.now())
    run_job.delay(job_id)
    publish_state(Job.objects.get(pk=job_id))


def cancel_job(job: Job, user: Any) -> Job:
    """A queued or waiting job ends cancelled at once; a running one is asked to stop at its next safe point."""
    name = user.get_username() if user is not None else "console"
    now = timezone.now()
    stopped = Job.objects.filter(pk=job.pk, state__in=[JobState.QUEUED, JobState.WAITING]).update(
        state=JobState.CANCELLED,
        cancel_requested=True,
        cancelled_by_name=name,
        finished_at=now,
        waiting_for="",
        summary=f"Cancelled by {name} before it started.",
    )
    if not stopped:
        Job.objects.filter(pk=job.pk, state=JobState.RUNNING).update(cancel_requested=True, cancelled_by_name=name)
    job.refresh_from_db()
    AuditEvent.record(user, "job.cancel", job, state=job.state)
    publish_state(job)
    return job


def rerun_job(job: Job, user: Any) -> Job:
    """A new job of the same kind with the same targets and parameters. Kinds with a preflight page and
    destructive kinds are never re-run this way (RerunNeedsPreflight): their confirmation must be given again."""
    if not get_kind(job.kind).one_click_rerun:
        raise RerunNeedsPreflight(job.kind)
    return create_job(user, job.kind, list(ordered_hosts(job)), job.vms, job.params, rerun_of=job)


def rerun_preflight_url(job: Job) -> str | None:
    """Where "Run again" sends the user for a kind with a preflight page: that page, filled from the old job."""
    kind = get_kind(job.kind)
    if kind.preflight_url is None:
        return None
    try:
        url = kind.preflight_url(job)
    except Exception:  # noqa: BLE001 - a job whose parameters no longer fit its page gets no link, not a 500
        log.warning("preflight_url of job %s failed", job.pk, exc_info=True)
        return None
    return url if is_same_site_path(url) else None


def is_same_site_path(url: Any) -> bool:
    """A path on this console ("/jobs/new/…"), never another site ("//evil", "https://…", "/\\evil")."""
    return (
        isinstance(url, str)
        and url.startswith("/")
        and not url.startswith(("//", "/\\"))
        and url.isprintable()
        and len(url) <= 2000
        and url_has_allowed_host_and_scheme(url, allowed_hosts=None)
    )


def ordered_hosts(job: Job) -> list[Host]:
    """The job's hosts in the order they were given (many-to-many rows carry no order)."""
    hosts = list(job.hosts.all())
    order = {name: i for i, name in enumerate(job.host_names)}
    return sorted(hosts, key=lambda host: order.get(host.name, len(order)))


def publish(group: str, message: dict[str, Any]) -> None:
    """Best-effort publish from synchronous code: viewers replay from the database anyway."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - Redis down must not break the request; the DB has the truth
        log.warning("could not publish to %s", group, exc_info=True)


def publish_state(job: Job) -> None:
    message = {"type": "job.state", "state": job.state_message()}
    publish(job_group(job.pk), message)
    publish(JOBS_GROUP, message)
