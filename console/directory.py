"""Sign-in through an LDAP directory or Active Directory (django-auth-ldap, the 'ldap' extra), with the same rules as
the OpenID Connect sign-in (console/sso.py): the role from the person's groups at every login, users created at
their first login, a local account of the same name never taken over.

AUTHENTICATION_BACKENDS tries local accounts first, so a local admin logs in without the directory being asked, and
when the directory is down the login page says so while local accounts keep working.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy
from django_auth_ldap.backend import LDAPBackend, ldap_error

from .accounts import refuse
from .models import ExternalAccount
from .sso import NAME_TAKEN, NO_GROUP, active_only, link, role_for, someone_else, take_role

UNREACHABLE = gettext_lazy(
    "The directory (LDAP) could not be reached, or refused the console's own bind: directory accounts cannot log in "
    "now; local accounts can."
)


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend (settings AUTH_LDAP_*, from CONSOLE_LDAP_*), refusing before a user is created or
    updated when the person is in none of the mapped groups or their name belongs to a local account."""

    request: HttpRequest | None = None
    role: str | None = None

    def authenticate(self, request: Any, username: Any = None, password: Any = None, **kwargs: Any) -> Any:
        self.request = request  # a backend is made afresh for every authenticate() call
        return super().authenticate(request, username, password, **kwargs)

    def get_user(self, user_id: Any) -> Any:
        return active_only(super().get_user(user_id))

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and someone_else(user, ExternalAccount.LDAP, user.get_username()):
            refuse(self.request, format_lazy(NAME_TAKEN, name=user.get_username()))
            raise ldap_user.AuthenticationFailed("a local account has this name")
        self.role = role_for(ldap_user.group_names, settings.LDAP_ROLE_GROUPS)
        if self.role is None:
            refuse(self.request, NO_GROUP)
            if not built:
                take_role(user, None, ExternalAccount.LDAP)
            raise ldap_user.AuthenticationFailed("in none of the groups that give a role")
        return user, built

    def authenticate_ldap_user(self, ldap_user: Any, password: str) -> Any:
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            link(user, ExternalAccount.LDAP, user.get_username())
            take_role(user, self.role, ExternalAccount.LDAP)
        return user


def directory_unreachable(sender: Any, context: str, request: HttpRequest | None = None, **_: Any) -> None:
    """django-auth-ldap caught an LDAPError (server down, timeout, bad bind DN): say so on the login page."""
    refuse(request, UNREACHABLE)


ldap_error.connect(directory_unreachable, sender=DirectoryBackend, dispatch_uid="console.directory.unreachable")
