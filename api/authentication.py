"""Who is calling the API: a personal token (`Authorization: Bearer gct_…`), or the console's own session (the
browsable docs). A refused token answers 401 or 403 with a message that says why, never the token itself."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from console.roles import role_of

from .models import ApiToken, rank

SCHEME = b"bearer"


class TokenAuthentication(BaseAuthentication):  # type: ignore[misc]  # DRF has no type hints here
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != SCHEME:
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(_("Send the token as 'Authorization: Bearer <token>'."))
        try:
            plain = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Unknown token.")) from None
        return self.accept(ApiToken.find(plain))

    def accept(self, token: ApiToken | None) -> tuple[Any, ApiToken]:
        if token is None:
            raise exceptions.AuthenticationFailed(_("Unknown token."))
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(_("Token %(token)s was revoked.") % {"token": token})
        if token.expired:
            raise exceptions.AuthenticationFailed(
                _("Token %(token)s expired at %(at)s UTC.")
                % {"token": token, "at": f"{token.expires_at:%Y-%m-%d %H:%M}"}
            )
        user = token.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("The owner of this token cannot sign in."))
        if rank(token.role) > rank(role_of(user)):
            # The owner's role was lowered after the token was made: the token may not keep more.
            raise exceptions.PermissionDenied(
                _(
                    "Token %(token)s has the role %(role)s, above its owner's (%(owner_role)s): "
                    "revoke it and make a new one."
                )
                % {"token": token, "role": token.role, "owner_role": role_of(user) or "none"}
            )
        # console.roles asks the request's user whether it passed the second factor; a token carries the answer
        # its owner's session had when the token was made.
        user.is_verified = lambda: token.verified  # type: ignore[attr-defined]  # django-otp's attribute
        token.used()
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # 401, not 403, when no credentials came
