"""Roles: viewer reads, operator runs non-destructive jobs, admin manages hosts, users and destructive jobs.

Roles are Django groups holding the permissions of ConsolePermission; each role includes the one below it.
Views check permissions (never group names) through `require`.

Admin work — destructive jobs, vault downloads, managing hosts and users — may also need the second factor
(CONSOLE_ADMIN_2FA, console/two_factor.py): `check` refuses it to a session that has not passed it, and the one 403
page sends such a user to verify (or to set up two-factor first).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from django_otp import user_has_device

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLE_NAMES = (VIEWER, OPERATOR, ADMIN)
# The roles as pages name them; the codes above stay the group names, the audit's and the API's values.
ROLE_TITLES: dict[str, Promise] = {
    VIEWER: gettext_lazy("viewer"),
    OPERATOR: gettext_lazy("operator"),
    ADMIN: gettext_lazy("admin"),
    "none": gettext_lazy("none"),
}

ROLE_PERMISSIONS = {
    VIEWER: ["view_console"],
    OPERATOR: ["view_console", "run_jobs"],
    ADMIN: [
        "view_console",
        "run_jobs",
        "run_destructive_jobs",
        "manage_hosts",
        "manage_users",
        "download_vault",
    ],
}

# Permissions that CONSOLE_ADMIN_2FA guards with the second factor.
SECOND_FACTOR_PERMISSIONS = frozenset({"run_destructive_jobs", "download_vault", "manage_hosts", "manage_users"})


def role_title(role: str) -> str:
    """A role code as the reader's language names it ("admin" → 「管理者」; no role: "none"); an unknown code as it
    is."""
    return str(ROLE_TITLES.get(role or "none", role))


def lowest_role_with(codename: str) -> str:
    return next((role for role in ROLE_NAMES if codename in ROLE_PERMISSIONS[role]), ADMIN)


def ensure_roles(**_: Any) -> None:
    """Create the role groups with their permissions (run after every migrate)."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        perms = Permission.objects.filter(content_type__app_label="console", codename__in=codenames)
        group.permissions.set(perms)


def set_role(user: Any, role: str) -> None:
    if role not in ROLE_NAMES:
        raise ValueError(f"unknown role {role!r}")
    ensure_roles()
    user.groups.set([Group.objects.get(name=role)])


def role_of(user: Any) -> str:
    if not user.is_authenticated:
        return ""
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    for role in reversed(ROLE_NAMES):
        if role in names:
            return role
    return ""


def can(user: Any, codename: str) -> bool:
    return bool(user.is_authenticated and user.has_perm(f"console.{codename}"))


class Forbidden(PermissionDenied):
    """The user lacks console.<codename>; the one 403 page (console.views.forbidden) names the role that has it."""

    def __init__(self, codename: str) -> None:
        super().__init__(codename)
        self.codename = codename


class SecondFactorRequired(Forbidden):
    """The user has console.<codename>, but this session must pass the second factor first (or the user must set one
    up: `enrolled` False)."""

    def __init__(self, codename: str, enrolled: bool) -> None:
        super().__init__(codename)
        self.enrolled = enrolled


def needs_second_factor(user: Any, codename: str) -> bool:
    """Must this session pass the second factor before using `codename`? Under CONSOLE_ADMIN_2FA=required for every
    guarded permission; under optional only for users who set two-factor up. A user object without django-otp's
    `is_verified` (not from a request) counts as unverified."""
    mode = settings.ADMIN_2FA
    if codename not in SECOND_FACTOR_PERMISSIONS or mode == "off":
        return False
    verified = getattr(user, "is_verified", None)
    if callable(verified) and verified():
        return False
    return mode == "required" or user_has_device(user)


def check(user: Any, codename: str) -> None:
    """Raise Forbidden unless the user has console.<codename>, SecondFactorRequired while the second factor is due."""
    if not can(user, codename):
        raise Forbidden(codename)
    if needs_second_factor(user, codename):
        raise SecondFactorRequired(codename, enrolled=user_has_device(user))


def require(codename: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: the user needs console.<codename>, else the 403 page that says which role is missing."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            check(request.user, codename)
            return view(request, *args, **kwargs)

        wrapped.required_permission = codename  # type: ignore[attr-defined]  # read by the security sweep
        return wrapped

    return decorate


def roles_context(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    return {
        "role": role_of(user),
        "perm_run_jobs": can(user, "run_jobs"),
        "perm_destructive": can(user, "run_destructive_jobs"),
        "perm_manage_hosts": can(user, "manage_hosts"),
        "perm_manage_users": can(user, "manage_users"),
        "two_factor_on": settings.ADMIN_2FA != "off",
    }
