"""The automatic escrow policy (settings.ESCROW_POLICY): every guardian whose private keys the inventory finds on a
host and the vault lacks is escrowed by an `escrow_guardian` job of the service user, without anyone pressing a
button.

It runs at the end of every inventory refresh (the default: "at the next refresh"), or from beat every
ESCROW_POLICY_SECONDS (jobs/tasks.py). It reads only the stored analysis (hosts.inventory.reading), so a run costs a
few queries; the job itself is the ordinary escrow job, with its generated PFX password (never logged or shown).
A guardian with a policy job still queued, waiting or running gets no second one.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from console.models import AuditEvent
from console.roles import OPERATOR, set_role
from hosts.inventory.models import KeyHolding
from hosts.inventory.reading import unescrowed_holdings
from jobs.models import Job
from jobs.services import create_job

log = logging.getLogger(__name__)

ESCROW_KIND = "escrow_guardian"
# Runs after a refresh and from beat may overlap: one at a time (in the shared cache, so across processes); a run
# that finds it taken leaves the work to the one holding it. Expires on its own should a process die holding it.
RUN_LOCK, RUN_LOCK_SECONDS = "escrow-policy-run", 60


def service_user() -> Any:
    """The console's own account for policy jobs: an operator (escrow needs no more) that cannot log in. Created on
    first use; its role and unusable password are set again each time, so an edit by hand cannot widen or break it.
    An admin who deactivates it on the Users page pauses the policy (and the run says so in its log)."""
    users = get_user_model()
    user, created = users.objects.get_or_create(
        username=settings.ESCROW_POLICY_USER,
        defaults={"first_name": "Automatic escrow", "last_name": "(the console)"},
    )
    if created or user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    set_role(user, OPERATOR)
    return user


def pending_pairs() -> set[tuple[str, str]]:
    """The pairs an escrow job is already queued, waiting or running for (a handful of rows: read in Python)."""
    pairs = set()
    for job in Job.objects.active().filter(kind=ESCROW_KIND).only("params"):
        signing, encryption = job.params.get("signing_thumbprint", ""), job.params.get("encryption_thumbprint", "")
        pairs.add((str(signing).upper(), str(encryption).upper()))
    return pairs


def escrow_missing(trigger: str) -> list[Job]:
    """Start one escrow job per guardian the vault lacks and some host holds; none when the policy is off. Audited
    (one event per run that started jobs, plus each job's own creation and the vault's escrow event)."""
    if not settings.ESCROW_POLICY:
        return []
    if not cache.add(RUN_LOCK, trigger, RUN_LOCK_SECONDS):
        log.info(_("Escrow policy: another run is under way; it starts what is missing"))
        return []
    try:
        return _escrow_missing(trigger)
    finally:
        cache.delete(RUN_LOCK)


def _escrow_missing(trigger: str) -> list[Job]:
    holdings = unescrowed_holdings()
    busy = pending_pairs()
    todo = [h for h in holdings if h.guardian.pair not in busy]
    if not todo:
        log.info(_("Escrow policy: every guardian with private keys on a host is in the vault or being escrowed"))
        return []
    user = service_user()
    if not user.is_active:
        log.warning(
            _("Escrow policy: the account '%(user)s' is deactivated, so it starts no job"),
            {"user": user.get_username()},
        )
        return []
    with transaction.atomic():
        jobs = [start_escrow(user, holding) for holding in todo]
        AuditEvent.record(
            user,
            "escrow_policy.run",
            trigger=trigger,
            jobs=[job.pk for job in jobs],
            guardians=[f"{h.guardian.display_name} {h.guardian.signing_thumbprint[:8]} on {h.host}" for h in todo],
        )
    started = ngettext(
        "Escrow policy: started %(count)d escrow job: %(jobs)s",
        "Escrow policy: started %(count)d escrow jobs: %(jobs)s",
        len(jobs),
    )
    log.info(started, {"count": len(jobs), "jobs": ", ".join(f"#{job.pk}" for job in jobs)})
    return jobs


def start_escrow(user: Any, holding: KeyHolding) -> Job:
    guardian = holding.guardian
    names = holding.names or [guardian.display_name]
    params = {
        "signing_thumbprint": guardian.signing_thumbprint,
        "encryption_thumbprint": guardian.encryption_thumbprint,
        "guardian_name": names[0],
        "policy": True,
    }
    return create_job(user, ESCROW_KIND, hosts=[holding.host], params=params)
