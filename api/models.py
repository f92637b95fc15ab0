"""Personal API tokens: stored as a SHA-256 digest (a token is 256 random bits, so a fast hash is enough; the
plain text is shown once, when it is made), with an expiry and a role no higher than its owner's."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext as _

from console.models import AuditEvent
from console.roles import ROLE_NAMES, needs_second_factor, role_of

PREFIX = "gct_"  # says what a leaked string is (secret scanners key on such prefixes)
SHOWN = 12  # characters of the token kept in clear to tell tokens apart on the page


def digest_of(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def rank(role: str) -> int:
    """viewer < operator < admin; no role ranks below all."""
    return ROLE_NAMES.index(role) if role in ROLE_NAMES else -1


class TokenRefused(ValueError):
    """A token that cannot be made as asked; the message says why, for the page."""


class ApiToken(models.Model):
    """A personal token for the REST API. It acts as its owner, limited to its own role's permissions."""

    ROLES = [(role, role) for role in ROLE_NAMES]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    role = models.CharField(max_length=10, choices=ROLES)
    shown = models.CharField(max_length=SHOWN)
    digest = models.CharField(max_length=64, unique=True)
    # The owner had passed the second factor (or none was due) when making it: admin work through it may proceed.
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.shown}…)"

    @classmethod
    def issue(cls, user: Any, name: str, role: str, days: int) -> tuple[ApiToken, str]:
        """Make a token for `user` (audited) and return it with its plain text, which is never stored."""
        owner_role = role_of(user)
        if rank(role) < 0 or rank(role) > rank(owner_role):
            raise TokenRefused(
                _("A token cannot have the role %(role)r: yours is %(owner_role)s.")
                % {"role": role, "owner_role": owner_role or "none"}
            )
        plain = PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            role=role,
            shown=plain[:SHOWN],
            digest=digest_of(plain),
            verified=not needs_second_factor(user, "run_destructive_jobs"),
            expires_at=timezone.now() + timedelta(days=days),
        )
        AuditEvent.record(user, "api_token.create", token, role=role, expires_at=token.expires_at.isoformat())
        return token, plain

    @classmethod
    def find(cls, plain: str) -> ApiToken | None:
        return cls.objects.select_related("user").filter(digest=digest_of(plain)).first()

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired

    def revoke(self, by: Any) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
            AuditEvent.record(by, "api_token.revoke", self, owner=self.user.get_username())

    def used(self) -> None:
        """Note the use, at most once a minute (every API call would otherwise write a row)."""
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
