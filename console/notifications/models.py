"""What people and team channels asked to be told, what happened, what is owed to whom, and the delivery log.

Secrets of a destination (a webhook's URL and signing secret, an apprise URL, which holds the chat service's token)
are sealed by hosts/crypto.py like host passwords: the columns are EncryptedFields, opened only to send. Pages show a
destination by its name and a redacted address (`shown`), never the secret.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from hosts.fields import EncryptedField, open_text, seal_text


class EventKind(models.TextChoices):
    RISK = "risk", gettext_lazy("A new risk appears")
    JOB_FAILED = "job_failed", gettext_lazy("A job fails or is lost")
    CERT_EXPIRING = "cert_expiring", gettext_lazy("A certificate enters its expiry window")
    APPROVAL = "approval", gettext_lazy("A job waits for approval (told to admins only)")


EVENT_KINDS = [kind.value for kind in EventKind]
TEST_KIND = "test"  # an admin's test of one destination: not an event anyone subscribes to


class Subscription(models.Model):
    """One user's e-mail notifications: which kinds of event, to the address of their account, each at once or
    gathered into the digest."""

    IMMEDIATE, DIGEST = "immediate", "digest"
    MODES = [(IMMEDIATE, gettext_lazy("each at once")), (DIGEST, gettext_lazy("gathered into a digest e-mail"))]

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kinds = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=10, choices=MODES, default=IMMEDIATE)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notifications of {self.user}"


class Destination(models.Model):
    """A team channel an admin set up: a webhook (JSON POST signed with HMAC-SHA256) or an apprise URL."""

    WEBHOOK, APPRISE = "webhook", "apprise"
    TYPES = [
        (WEBHOOK, gettext_lazy("Webhook (signed JSON POST)")),
        (APPRISE, gettext_lazy("Chat service (apprise URL)")),
    ]

    name = models.CharField(max_length=80, unique=True)
    type = models.CharField(max_length=10, choices=TYPES)
    kinds = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    url = EncryptedField()  # the webhook's URL or the apprise URL: either may carry a token
    secret = EncryptedField()  # the webhook's HMAC key
    shown = models.CharField(max_length=200, blank=True)  # the address without its secrets, for pages
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # explicit that no secret is shown
        return f"<Destination {self.name} ({self.type})>"

    def set_url(self, url: str) -> None:
        self.url = seal_text(url)
        self.shown = shown_address(url)

    def get_url(self) -> str:
        return open_text(self.url)

    def set_secret(self, secret: str) -> None:
        self.secret = seal_text(secret)

    def get_secret(self) -> str:
        return open_text(self.secret)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret)

    @property
    def kind_labels(self) -> list[str]:
        """The events it is told, as the form names them, in the active language (a code no longer known as is)."""
        labels = dict(EventKind.choices)
        return [str(labels.get(kind, kind)) for kind in self.kinds]


def shown_address(url: str) -> str:
    """scheme://host[:port] of a URL: where it goes, without the user, password, path or query that may hold a
    token (a chat service's webhook path often is its token)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "(not a URL)"


class Notification(models.Model):
    """Something that happened, as it is told: one row however many recipients it has."""

    kind = models.CharField(max_length=20, choices=[*EventKind.choices, (TEST_KIND, gettext_lazy("A test message"))])
    subject = models.CharField(max_length=200)
    body = models.TextField()
    link = models.CharField(max_length=300, blank=True)  # a path of the console, e.g. /jobs/12/
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.subject


class DeliveryState(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class Delivery(models.Model):
    """One notification owed to one recipient: a team destination, or a user's e-mail (at once or in the digest)."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    destination = models.ForeignKey(Destination, null=True, blank=True, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    digest = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["digest", "state"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(destination__isnull=True) ^ models.Q(user__isnull=True),
                name="notifications_delivery_one_recipient",
            )
        ]

    def __str__(self) -> str:
        return f"{self.notification} → {self.recipient_name}"

    @property
    def recipient_name(self) -> str:
        if self.destination is not None:
            return f"{self.destination.get_type_display()} '{self.destination.name}'"
        return f"e-mail to {self.user}"


class Outcome(models.TextChoices):
    SENT = "sent", gettext_lazy("sent")
    RETRYING = "retrying", gettext_lazy("failed, will retry")
    FAILED = "failed", gettext_lazy("failed")


class DeliveryAttempt(models.Model):
    """The delivery log: one row per attempt, naming the recipient (never its address or secret) and the error."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    recipient = models.CharField(max_length=200)
    event = models.CharField(max_length=200)
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.recipient} #{self.attempt} {self.outcome}"

    @classmethod
    def log(cls, recipient: str, event: str, attempt: int, outcome: str, error: str = "") -> Any:
        return cls.objects.create(
            recipient=recipient[:200], event=event[:200], attempt=attempt, outcome=outcome, error=error[:2000]
        )


class ExpiryNotice(models.Model):
    """A certificate already announced as entering its expiry window (by thumbprint: the same certificate on several
    hosts is told once; a renewed one has a new thumbprint and is told again)."""

    thumbprint = models.CharField(max_length=40, unique=True)
    noticed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.thumbprint
