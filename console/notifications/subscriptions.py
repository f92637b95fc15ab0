"""Changing who is told what: one's own subscription, and the team's destinations. Every change is audited, naming
what changed and never a URL or secret (the audit trail shows a destination by its name and redacted address)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from console.models import AuditEvent

from .events import send_test
from .models import Destination, Subscription


def subscription_of(user: Any) -> Subscription:
    """The user's subscription, unsaved and empty when they have none yet."""
    return Subscription.objects.filter(user=user).first() or Subscription(user=user)


def save_subscription(user: Any, email: str, kinds: list[str], mode: str) -> Subscription:
    with transaction.atomic():
        subscription = subscription_of(user)
        email_changed = user.email != email
        if email_changed:
            user.email = email
            user.save(update_fields=["email"])
        subscription.kinds, subscription.mode = sorted(kinds), mode
        subscription.save()
        AuditEvent.record(
            user, "notifications.subscribe", user, kinds=subscription.kinds, mode=mode, email_changed=email_changed
        )
    return subscription


def save_destination(by: Any, destination: Destination | None, data: dict[str, Any]) -> Destination:
    """Create (destination None) or change a team destination; a blank URL or secret keeps the stored one."""
    created = destination is None
    destination = destination or Destination()
    destination.name, destination.type = data["name"], data["type"]
    destination.kinds, destination.enabled = sorted(data["kinds"]), data["enabled"]
    if data["url"]:
        destination.set_url(data["url"])
    if data["secret"]:
        destination.set_secret(data["secret"])
    with transaction.atomic():
        destination.save()
        AuditEvent.record(
            by,
            "notifications.destination.create" if created else "notifications.destination.change",
            destination,
            type=destination.type,
            to=destination.shown,
            kinds=destination.kinds,
            enabled=destination.enabled,
            url_changed=bool(data["url"]),
            signing_key_changed=bool(data["secret"]),
        )
    return destination


def remove_destination(by: Any, destination: Destination) -> None:
    with transaction.atomic():
        AuditEvent.record(by, "notifications.destination.delete", destination, to=destination.shown)
        destination.delete()


def test_destination(by: Any, destination: Destination) -> None:
    with transaction.atomic():
        send_test(destination, by.get_username())
        AuditEvent.record(by, "notifications.destination.test", destination, to=destination.shown)
