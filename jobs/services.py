"""Creating, cancelling and re-running jobs: the only way views and workflows start work on hosts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.http import url_has_allowed_host_and_scheme

from console.roles import check

from .models import Job
from .params import check_no_secrets
from .registry import JobKind, RerunNeedsPreflight, get_kind

if TYPE_CHECKING:
    from hosts.models import Host

log = logging.getLogger(__name__)


def create_job(
    user: Any,
    kind: str,
    hosts: Sequence[Host] = (),
    vms: Iterable[str] = (),
    params: dict[str, Any] | None = None,
    rerun_of: Job | None = None,
) -> Job:
    """Create a queued job, audit it, and enqueue it once the surrounding transaction commits — or, under the
    two-person policy, let it wait for a second admin's approval when its kind's rule says so.

    `user` None means the console itself (periodic tasks). Raises Forbidden when the user lacks the kind's
    permission, UnknownJobKind for an unknown kind and ValueError for secret-looking parameters.
    """
    job_kind = get_kind(kind)
    if user is not None:
        check(user, job_kind.permission)
    params = dict(params or {})
    check_no_secrets(params)
    approval = approval_needed(user, job_kind, hosts, params)
    return Job.enqueue(user, kind, hosts, vms, params, rerun_of, approval=approval)


def approval_needed(user: Any, kind: JobKind, hosts: Sequence[Host], params: dict[str, Any]) -> str:
    """Why this job waits for a second admin ("" when it does not): the kind's rule, under the two-person policy,
    for a job a person asked for (the console's own scheduled jobs have nobody to ask a second person for)."""
    if user is None or not settings.TWO_PERSON_APPROVAL or kind.approval is None:
        return ""
    return kind.approval(hosts, params)


def cancel_job(job: Job, user: Any) -> Job:
    """A queued or waiting job ends cancelled at once; a running one is asked to stop at its next safe point."""
    job.cancel(user)
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
