"""Roles' permissions and the audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy


class ConsolePermission(models.Model):
    """Holds the console's permissions; it has no rows. Roles (groups) are granted these in roles.py."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_console", "Read hosts, inventory, vault metadata, jobs and the audit trail"),
            ("run_jobs", "Run non-destructive jobs (refresh, escrow, import, migrate)"),
            ("run_destructive_jobs", "Run destructive jobs (guardian reset, vTPM off/on)"),
            ("manage_hosts", "Register, edit and delete hosts and their credentials"),
            ("manage_users", "Create users and give them roles"),
            ("download_vault", "Download escrowed PFX pairs"),
        ]

    def __str__(self) -> str:
        return "console permissions"


SECRET_WORDS = ("password", "secret", "pfx", "private", "token", "key_material")


def redact_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """Audit detail must never carry a secret, whatever a caller passes by mistake."""
    clean: dict[str, Any] = {}
    for key, value in detail.items():
        if any(word in key.lower() for word in SECRET_WORDS):
            clean[key] = "[redacted]"
        elif isinstance(value, dict):
            clean[key] = redact_detail(value)
        else:
            clean[key] = value
    return clean


class AuditEvent(models.Model):
    """Who did what, when, to which object. Written by every change the console makes."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    action = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'system'} {self.action} {self.object_repr}"

    @classmethod
    def record(cls, user: Any, action: str, obj: models.Model | None = None, **detail: Any) -> AuditEvent:
        """Write one audit event. `user` may be None for the system (periodic tasks, reaper)."""
        authenticated = user is not None and getattr(user, "is_authenticated", False)
        return cls.objects.create(
            user=user if authenticated else None,
            username=user.get_username() if authenticated else "",
            action=action,
            object_type=obj._meta.model_name or "" if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=str(obj)[:200] if obj is not None else "",
            detail=redact_detail(detail),
        )


class PasswordChangeRequired(models.Model):
    """A user who must choose a new password before using the console: the first admin of `make run`, whose password
    was printed in a terminal, or a user an admin gave a password with "must change" ticked. Read at login
    (console/sessions.py keeps it in the session); removed when the password is changed."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="password_change_required"
    )
    since = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} must change their password"

    @classmethod
    def set_for(cls, user: Any, required: bool) -> None:
        if required:
            cls.objects.get_or_create(user=user)
        else:
            cls.objects.filter(user=user).delete()

    @classmethod
    def applies_to(cls, user: Any) -> bool:
        return cls.objects.filter(user=user).exists()


class ExternalAccount(models.Model):
    """A user who signs in through single sign-on: which sign-in (OpenID Connect or the LDAP directory) vouches for
    them, and under which stable name there (the OIDC `sub`, the directory entry's DN). Such a user's role follows
    their groups there at every login. A local account is never taken over by a sign-in of the same name."""

    OIDC, LDAP = "oidc", "ldap"
    SOURCES = [(OIDC, gettext_lazy("OpenID Connect")), (LDAP, gettext_lazy("LDAP directory"))]

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="external_account"
    )
    source = models.CharField(max_length=10, choices=SOURCES)
    subject = models.CharField(max_length=255)
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "subject"], name="one_user_per_external_subject")]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_source_display()}: {self.subject})"


class Preferences(models.Model):
    """What a user chose for themselves in "My account": the time zone every page shows times in ("" until chosen:
    the browser's own zone is then stored once, by static/console.js) and the language of every page ("": the
    browser's)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="console_preferences"
    )
    time_zone = models.CharField(max_length=64, blank=True)
    time_zone_from_browser = models.BooleanField(default=False)  # set by the browser, not chosen by the user
    # One of settings.LANGUAGES; "" follows the browser's Accept-Language.
    language = models.CharField(max_length=16, blank=True)

    def __str__(self) -> str:
        return f"preferences of {self.user}"
