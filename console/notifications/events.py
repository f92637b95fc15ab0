"""notify(): the one way anything tells the people and channels that asked about a kind of event.

It writes the notification and what is owed to each recipient inside the caller's transaction, so a change that
rolls back tells nobody, and hands the immediate deliveries to Celery once that transaction commits: nothing is sent
from a request or from inside a job's own transaction, and a slow mail server never holds either.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from console.roles import can

from .models import EVENT_KINDS, TEST_KIND, Delivery, Destination, EventKind, Notification, Subscription

log = logging.getLogger(__name__)

# What a subscriber must be allowed to do to be told of a kind of event: read the console, and for a job waiting for
# approval, approve it (run destructive jobs).
PERMISSION_TO_BE_TOLD: dict[str, str] = {EventKind.APPROVAL: "run_destructive_jobs"}

# The Celery task that sends one delivery (tasks.py), sent by name: tasks.py tells of expiring certificates through
# this module, so this module cannot import it.
DELIVER_TASK = "notifications.deliver"


def notify(kind: str, subject: str, body: str, link: str = "") -> Notification | None:
    """Tell everyone subscribed to `kind` (one of models.EventKind) and every enabled team destination that takes it.
    `link` is a path of the console (e.g. /jobs/12/). None when nobody asked to be told."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown kind of event {kind!r} (one of {', '.join(EVENT_KINDS)})")
    destinations = [d for d in Destination.objects.filter(enabled=True) if kind in d.kinds]
    subscriptions = [s for s in Subscription.objects.select_related("user") if wants(s, kind)]
    if not destinations and not subscriptions:
        return None
    # One line: a subject is an e-mail header (a VM's name read from a host could carry a line break).
    subject = " ".join(subject.split())[:200]
    notification = Notification.objects.create(kind=kind, subject=subject, body=body, link=link[:300])
    owed = [Delivery(notification=notification, destination=d) for d in destinations]
    owed += [
        Delivery(notification=notification, user=s.user, digest=s.mode == Subscription.DIGEST) for s in subscriptions
    ]
    created = Delivery.objects.bulk_create(owed)
    now = [delivery.pk for delivery in created if not delivery.digest]
    transaction.on_commit(lambda: send_later(now), robust=True)
    return notification


def send_test(destination: Destination, by: str) -> Notification:
    """A message to this destination alone, whatever kinds it takes: the delivery log then shows whether it arrives."""
    with translation.override(settings.LANGUAGE_CODE):  # a team channel's language, as every notification's
        subject = _("Test message to %(name)s") % {"name": destination.name}
        body = _("%(by)s sent this test from the Guardian Console. Nothing happened on any host.") % {"by": by}
    notification = Notification.objects.create(
        kind=TEST_KIND,
        subject=subject,
        body=body,
        link=reverse("notifications:team"),
    )
    delivery = Delivery.objects.create(notification=notification, destination=destination)
    transaction.on_commit(lambda: send_later([delivery.pk]), robust=True)
    return notification


def wants(subscription: Subscription, kind: str) -> bool:
    """A subscriber is told only while their role allows it (a user whose role was taken away is not)."""
    user = subscription.user
    needed = PERMISSION_TO_BE_TOLD.get(kind, "view_console")
    return kind in subscription.kinds and user.is_active and can(user, needed)


def send_later(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        try:
            current_app.send_task(DELIVER_TASK, args=[delivery_id])
        except Exception:  # noqa: BLE001 - whatever the broker's client raises: the delivery stays pending
            log.warning("delivery %s could not be queued; the next digest round sends it", delivery_id, exc_info=True)
