"""Single sign-on: through an OpenID Connect provider (here), and what it shares with the LDAP directory's sign-in
(console/directory.py).

Both follow the same rules. A person's role follows their groups there at every login (CONSOLE_*_ROLE_GROUPS: the
highest role any of their groups gives); someone in none of those groups is not let in, and loses the role they had.
A user is created at their first sign-in and linked to that sign-in (console.models.ExternalAccount); a local account
of the same name is never taken over. A refusal says why, on the login page and in the audit trail's failed login.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from .accounts import client_detail, english, refusal, refusal_reason, refuse
from .models import AuditEvent, ExternalAccount
from .roles import ROLE_NAMES, role_of, set_role

# Refusals: shown in the reader's language, recorded in the audit trail in English (accounts.english).
NO_GROUP = gettext_lazy(
    "Your account is in none of the groups that give a role in the console: ask an admin to add you."
)
NO_NAME = gettext_lazy("The provider named no user (no `sub` or `{claim}` claim): the sign-in is refused.")
NAME_TAKEN = gettext_lazy(
    "A local account named {name} exists: single sign-on does not take it over (an admin can rename it)."
)
STALE = gettext_lazy(
    "This sign-in does not belong to this browser's session (unknown or already used state): "
    "start again with the sign-in button."
)
MISMATCH = gettext_lazy(
    "The provider's answer did not match this sign-in (nonce or signature): start again with the sign-in button."
)
WRONG_ISSUER = gettext_lazy(
    "The ID token was issued by another provider or for another client: the sign-in is refused."
)
UNREACHABLE = gettext_lazy("The sign-in provider could not be reached or refused the sign-in code: try again later.")


# --- what both sign-ins share ---------------------------------------------------------------------------------------


def role_for(groups: Iterable[str], mapping: list[tuple[str, str]]) -> str | None:
    """The highest role that one of these groups gives (mapping: [(role, group), …]), or None."""
    names = set(groups)
    granted = {role for role, group in mapping if group in names}
    return next((role for role in reversed(ROLE_NAMES) if role in granted), None)


def someone_else(user: Any, source: str, subject: str) -> bool:
    """Is this existing user (found by name) not the person the sign-in vouches for: a local account, or one linked to
    another sign-in or subject?"""
    link = ExternalAccount.objects.filter(user=user).first()
    return link is None or (link.source, link.subject) != (source, subject)


def link(user: Any, source: str, subject: str) -> None:
    """Remember who vouches for this user; audited as the user's creation at their first sign-in."""
    _, created = ExternalAccount.objects.get_or_create(user=user, defaults={"source": source, "subject": subject})
    if created:
        AuditEvent.record(user, "user.create", user, via=source, subject=subject)


def take_role(user: Any, role: str | None, source: str) -> None:
    """Give the user the role their groups give now (none: no role at all), audited when it changes."""
    before = role_of(user) or "none"
    if before == (role or "none"):
        return
    if role is None:
        user.groups.clear()
    else:
        set_role(user, role)
    AuditEvent.record(user, "user.role_change", user, role_from=before, role_to=role or "none", by=f"{source} groups")


def active_only(user: Any) -> Any:
    """A deactivated user's session ends, whichever sign-in started it (as ModelBackend.get_user does)."""
    return user if user is not None and user.is_active else None


# --- OpenID Connect -------------------------------------------------------------------------------------------------


class OpenIDConnectBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow (PKCE, nonce, signature by the provider's JWKS), plus: the ID token's issuer
    and audience checked, users matched by the provider's `sub` (never by e-mail), and the role from the groups
    claim."""

    role: str | None = None

    def get_user(self, user_id: Any) -> Any:
        return active_only(ModelBackend().get_user(user_id))

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if payload.get("iss") != settings.OIDC_ISSUER or self.OIDC_RP_CLIENT_ID not in audiences:
            refuse(self.request, WRONG_ISSUER)
            raise SuspiciousOperation(english(WRONG_ISSUER))
        return super().get_or_create_user(access_token, id_token, payload)

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The ID token's claims, completed by the userinfo endpoint's (which must name the same subject)."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            refuse(self.request, MISMATCH)
            raise SuspiciousOperation("the userinfo endpoint answered for another subject")
        return {**payload, **userinfo}

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
        self.role = role_for([groups] if isinstance(groups, str) else groups, settings.OIDC_ROLE_GROUPS)
        if self.role is None:
            refuse(self.request, NO_GROUP)
            for user in self.filter_users_by_claims(claims):
                take_role(user, None, ExternalAccount.OIDC)
        if not (claims.get("sub") and self.username(claims)):
            refuse(self.request, format_lazy(NO_NAME, claim=settings.OIDC_USERNAME_CLAIM))
        return bool(claims.get("sub") and self.username(claims) and self.role)

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[Any]:
        return get_user_model().objects.filter(
            external_account__source=ExternalAccount.OIDC, external_account__subject=str(claims.get("sub", ""))
        )

    def username(self, claims: dict[str, Any]) -> str:
        return str(claims.get(settings.OIDC_USERNAME_CLAIM) or "")[:150]

    def create_user(self, claims: dict[str, Any]) -> Any:
        name = self.username(claims)
        if get_user_model().objects.filter(username__iexact=name).exists():
            refuse(self.request, format_lazy(NAME_TAKEN, name=name))
            raise SuspiciousOperation(f"a local account is named {name}")
        with transaction.atomic():
            user = get_user_model().objects.create_user(name, email=claims.get("email") or "")  # no usable password
            link(user, ExternalAccount.OIDC, str(claims["sub"]))
            take_role(user, self.role, ExternalAccount.OIDC)
        return user

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        take_role(user, self.role, ExternalAccount.OIDC)
        return user


class CallbackView(OIDCAuthenticationCallbackView):
    """The provider sends the browser back here. Whatever goes wrong ends on the login page saying why, audited."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if "code" in request.GET and not self.state_known(request):
            return self.refused(STALE)
        try:
            return super().get(request)
        except SuspiciousOperation:  # a wrong nonce or a bad signature, raised before a user is looked for
            return self.refused(refusal_reason(request) or MISMATCH)
        except requests.RequestException:  # the token or userinfo endpoint down, or the code refused (replayed)
            return self.refused(UNREACHABLE)

    @staticmethod
    def state_known(request: HttpRequest) -> bool:
        return str(request.GET.get("state", "")) in request.session.get("oidc_states", {})

    def login_failure(self) -> HttpResponse:
        """Authentication returned no user: the failed login is already audited (console.accounts.on_login_failed)."""
        error = re.sub(r"[^a-z_]", "", str(self.request.GET.get("error", "")))[:40]
        provider = settings.OIDC_PROVIDER_NAME
        said = _("%(provider)s refused the sign-in (%(error)s).") % {"provider": provider, "error": error}
        reason = refusal(self.request) or (said if error else str(UNREACHABLE))
        messages.error(self.request, reason)
        return redirect("login")

    def refused(self, reason: str | Promise) -> HttpResponse:
        detail = client_detail(self.request)
        AuditEvent.record(None, "login.failed", None, via=ExternalAccount.OIDC, reason=english(reason), **detail)
        messages.error(self.request, str(reason))
        return redirect("login")


def sso_off(request: HttpRequest) -> HttpResponse:
    messages.error(request, _("Single sign-on is not configured on this console: log in with your user name."))
    return redirect("login")


@login_not_required
@require_GET
def oidc_sign_in(request: HttpRequest) -> HttpResponse:
    """The login page's "Sign in with <provider>" button: to the provider, with a fresh state, nonce and PKCE challenge
    kept in this session."""
    return OIDCAuthenticationRequestView.as_view()(request) if settings.OIDC_ENABLED else sso_off(request)


@login_not_required
@require_GET
def oidc_callback(request: HttpRequest) -> HttpResponse:
    return CallbackView.as_view()(request) if settings.OIDC_ENABLED else sso_off(request)
