"""Celery tasks: send one delivery (retried with exponential back-off), the digest e-mails, and the periodic round
that tells of certificates entering their expiry window and queues again deliveries whose task was never sent.

Each attempt is one row of the delivery log. A failure that a later attempt may cure (no answer, a 5xx, a mail server
away) is retried after NOTIFY_RETRY_SECONDS × 2^(attempt − 1) until NOTIFY_ATTEMPTS attempts; one that cannot be
cured (an unknown address, a 4xx, a secret that cannot be opened) fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import ngettext

from hosts.crypto import SecretError

from . import channels, sources
from .channels import DeliveryFailed
from .events import DELIVER_TASK, send_later
from .models import Delivery, DeliveryAttempt, DeliveryState, Destination, Notification, Outcome

log = logging.getLogger(__name__)

FORGOTTEN_AFTER = timedelta(minutes=5)  # an immediate delivery never tried by then lost its task message


def backoff(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1, 2, …): doubling each time."""
    return float(settings.NOTIFY_RETRY_SECONDS) * 2 ** (attempt - 1)


def attempt_send(task: Any, send: Callable[[], None], recipient: str, event: str, attempt: int) -> str:
    """Run `send`, log the attempt, and retry the task later when that may help: the outcome (sent, failed)."""
    try:
        send()
    except SecretError as error:  # the sealed URL or secret cannot be opened: its message names the key, never it
        failure = DeliveryFailed(f"the destination's stored secret cannot be opened: {error}", retry=False)
    except DeliveryFailed as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - a fault of the console: logged as failed, by its type only (its
        # message might carry an address)
        log.warning("sending to %s failed unexpectedly: %s", recipient, type(error).__name__)
        failure = DeliveryFailed(f"an unexpected {type(error).__name__} (a fault of the console)", retry=False)
    else:
        DeliveryAttempt.log(recipient, event, attempt, Outcome.SENT)
        return Outcome.SENT
    final = not failure.retry or attempt >= settings.NOTIFY_ATTEMPTS
    DeliveryAttempt.log(recipient, event, attempt, Outcome.FAILED if final else Outcome.RETRYING, str(failure))
    if final:
        return Outcome.FAILED
    raise task.retry(countdown=backoff(attempt))


def address_of(user: Any) -> str:
    """A user's e-mail address as it is now (their subscription follows their account)."""
    return str(getattr(user, "email", "") or "")


def sender(delivery: Delivery) -> Callable[[], None]:
    notification, destination = delivery.notification, delivery.destination
    if destination is None:
        address = address_of(delivery.user)
        return lambda: channels.send_email(address, notification.subject, channels.text_of(notification))
    if destination.type == Destination.WEBHOOK:
        return lambda: channels.send_webhook(destination, notification)
    return lambda: channels.send_apprise(destination, notification)


@shared_task(bind=True, name=DELIVER_TASK, max_retries=None, ignore_result=True, acks_late=True)
def deliver(self: Any, delivery_id: int) -> str:
    """Send one pending delivery (a redelivered task of one already sent or failed does nothing)."""
    owed = Delivery.objects.select_related("notification", "destination", "user")
    delivery = owed.filter(pk=delivery_id, state=DeliveryState.PENDING).first()
    if delivery is None:
        return "gone"
    attempt = delivery.attempts + 1
    Delivery.objects.filter(pk=delivery.pk).update(attempts=attempt)
    event = str(delivery.notification)
    outcome = attempt_send(self, sender(delivery), delivery.recipient_name, event, attempt)
    Delivery.objects.filter(pk=delivery.pk).update(state=outcome)
    return outcome


@shared_task(name="notifications.send_digests", ignore_result=True)
def send_digests() -> int:
    """Queue one digest e-mail per user with deliveries gathered since the last one; how many users."""
    users = set(Delivery.objects.filter(digest=True, state=DeliveryState.PENDING).values_list("user_id", flat=True))
    for user_id in sorted(users):
        send_digest.delay(user_id)
    return len(users)


@shared_task(bind=True, name="notifications.send_digest", max_retries=None, ignore_result=True, acks_late=True)
def send_digest(self: Any, user_id: int) -> str:
    """One e-mail to the user telling every event gathered for them, oldest first."""
    pending = Delivery.objects.filter(digest=True, state=DeliveryState.PENDING, user_id=user_id)
    owed = list(pending.select_related("notification", "user").order_by("notification__created_at", "pk"))
    if not owed:
        return "gone"
    user, ids = owed[0].user, [delivery.pk for delivery in owed]
    attempt = max(delivery.attempts for delivery in owed) + 1
    Delivery.objects.filter(pk__in=ids).update(attempts=attempt)
    with translation.override(settings.LANGUAGE_CODE):  # as the notifications it gathers (sources.py)
        subject = ngettext("Digest: %(n)d event", "Digest: %(n)d events", len(owed)) % {"n": len(owed)}
    body = "\n\n".join(f"{d.notification.subject}\n{channels.text_of(d.notification)}" for d in owed)
    address = address_of(user)
    send = lambda: channels.send_email(address, subject, body)  # noqa: E731 - one line, named for the call
    outcome = attempt_send(self, send, f"digest e-mail to {user}", subject, attempt)
    Delivery.objects.filter(pk__in=ids).update(state=outcome)
    return outcome


@shared_task(name="notifications.sweep", ignore_result=True)
def sweep() -> int:
    """Tell of certificates that entered their expiry window, queue again immediate deliveries never tried (their
    task could not be sent), and forget notifications and log rows older than NOTIFY_KEEP_DAYS; how many
    certificates were told of."""
    old = timezone.now() - timedelta(days=settings.NOTIFY_KEEP_DAYS)
    Notification.objects.filter(created_at__lt=old).delete()
    DeliveryAttempt.objects.filter(at__lt=old).delete()
    forgotten = Delivery.objects.filter(
        digest=False,
        state=DeliveryState.PENDING,
        attempts=0,
        notification__created_at__lt=timezone.now() - FORGOTTEN_AFTER,
    )
    send_later(list(forgotten.values_list("pk", flat=True)))
    return sources.announce_expiring_certificates(timezone.now())
