"""Middleware of the console: the session's lifetime, and a password that must be changed before anything else."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve

from . import sessions

# What someone who must change their password may still reach: the change itself, logging out, and static files.
OPEN_DURING_PASSWORD_CHANGE = {"password_change", "logout", "login"}


class SessionLifetimeMiddleware:
    """Ends a session past its absolute lifetime (the login page follows, as for any stranger), and renews the idle
    expiry of a live one. Runs after AuthenticationMiddleware and before LoginRequiredMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            if sessions.past_lifetime(request.session):
                request.console_logout_reason = "session lifetime"  # type: ignore[attr-defined]  # for the audit
                logout(request)
            else:
                sessions.renew_if_due(request.session)
        return self.get_response(request)


class PasswordChangeRequiredMiddleware:
    """Sends a user whose password must be changed (the first password `make run` printed, or one an admin set with
    "must change") to the change page from every page but that one and logging out."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        must_change = request.user.is_authenticated and request.session.get(sessions.MUST_CHANGE_PASSWORD)
        if must_change and not self.is_open(request):
            return redirect("password_change")
        return self.get_response(request)

    @staticmethod
    def is_open(request: HttpRequest) -> bool:
        if request.path_info.startswith(settings.STATIC_URL):
            return True
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.url_name in OPEN_DURING_PASSWORD_CHANGE
