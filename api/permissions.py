"""The API's permission checks: console.roles' `check` for the user, and the token's role on top of it."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from console.roles import ROLE_PERMISSIONS, Forbidden, SecondFactorRequired, check, lowest_role_with

from .models import ApiToken


def require(request: Request, codename: str) -> None:
    """Raise DRF's PermissionDenied (403, a clear message) unless the caller may use console.<codename>."""
    token = request.auth
    if isinstance(token, ApiToken) and codename not in ROLE_PERMISSIONS[token.role]:
        raise exceptions.PermissionDenied(
            _("Token %(token)s has the role %(role)s; this needs %(needed)s (%(codename)s).")
            % {"token": token, "role": token.role, "needed": lowest_role_with(codename), "codename": codename}
        )
    try:
        check(request.user, codename)
    except SecondFactorRequired:
        raise exceptions.PermissionDenied(
            _("This needs %(codename)s after the second factor: make the token in a session that passed it.")
            % {"codename": codename}
        ) from None
    except Forbidden:
        raise exceptions.PermissionDenied(
            _("This needs the role %(needed)s (%(codename)s); yours does not have it.")
            % {"needed": lowest_role_with(codename), "codename": codename}
        ) from None


class RolePermission(BasePermission):  # type: ignore[misc]  # DRF has no type hints here
    """The view's `permissions` map method → codename; a method it does not list needs view_console (and then
    answers 405)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        require(request, getattr(view, "permissions", {}).get(method, "view_console"))
        return True
