"""Logging in and out, and one's own password: the login page (with the lockout django-axes imposes and the wait
left), the "change my password" page, and the audit trail of every login, logout and failed login.

Lockouts are django-axes' (settings: AXES_*): failed logins are counted per user name and per address in its
AccessAttempt table. What this module adds is what a person sees and what the audit trail keeps: the client's
address and user agent, never the password typed.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime
from typing import Any

from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import sessions
from .models import AuditEvent, PasswordChangeRequired

USER_AGENT_LENGTH = 200
REFUSAL = "console_sign_in_refusal"  # the request attribute a refused sign-in leaves its reason in
# Which sign-in logged a user in (the backend Django remembers in the session), for the audit trail.
SIGN_INS = {"console.sso.OpenIDConnectBackend": "oidc", "console.directory.DirectoryBackend": "ldap"}


# --- who is at the other end ----------------------------------------------------------------------------------------


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address: REMOTE_ADDR, or behind a proxy (CONSOLE_BEHIND_PROXY) the last X-Forwarded-For entry,
    the one our proxy appended (earlier entries come from the client and prove nothing). Also django-axes' source
    of addresses (AXES_CLIENT_IP_CALLABLE), so lockouts and the audit trail name the same address."""
    if getattr(settings, "BEHIND_PROXY", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if is_ip(forwarded):
            return forwarded
    remote = request.META.get("REMOTE_ADDR", "")
    return remote if is_ip(remote) else None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_detail(request: HttpRequest | None) -> dict[str, str]:
    """Address and user agent, for audit events."""
    if request is None:
        return {}
    agent = request.META.get("HTTP_USER_AGENT", "")
    return {"address": client_address(request) or "unknown", "user_agent": agent[:USER_AGENT_LENGTH]}


def refuse(request: HttpRequest | None, reason: str | Promise) -> None:
    """Note why a single sign-on was refused although the person may be who they say (no group, a local account of
    that name, the directory down): the login page shows it, the failed login's audit event keeps it."""
    if request is not None:
        setattr(request, REFUSAL, reason)


def refusal(request: HttpRequest | None) -> str:
    """Why the sign-in was refused, in the reader's language ("" if it was not)."""
    return str(getattr(request, REFUSAL, ""))


def refusal_reason(request: HttpRequest | None) -> str | Promise:
    """Why the sign-in was refused, untranslated yet: shown in the reader's language, recorded in English."""
    return getattr(request, REFUSAL, "")


def english(text: str | Promise) -> str:
    """A reason as the audit trail keeps it: English, the trail's language whoever reads it later."""
    with translation.override("en"):
        return str(text)


# --- lockouts -------------------------------------------------------------------------------------------------------


def lockouts(field: str, value: str | None = None) -> dict[str, datetime]:
    """User names (field "username") or addresses ("ip_address") locked out now, each with when its lock ends; only
    `value` if given. One grouped query, however many names a password sprayer tried.

    A name or address is locked while its failures within the last AXES_COOLOFF_TIME reach AXES_FAILURE_LIMIT (what
    django-axes counts); the lock lifts at the latest when its last counted failure is that old, which is the time
    given here (failures tried during a lock are not counted: AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT)."""
    cooloff = settings.AXES_COOLOFF_TIME
    recent = AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - cooloff, **{f"{field}__isnull": False})
    if value is not None:
        recent = recent.filter(**{field: value})
    totals = recent.values(field).annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    locked = totals.filter(failures__gte=settings.AXES_FAILURE_LIMIT)
    return {str(row[field]): row["last"] + cooloff for row in locked}


def lockout_ends(username: str | None, address: str | None) -> datetime | None:
    """When the lockout of this user name or address ends (the later of the two), or None if neither is locked."""
    ends = [*lockouts("username", username).values()] if username else []
    ends += [*lockouts("ip_address", address).values()] if address else []
    return max(ends, default=None)


def wait_text(ends: datetime) -> str:
    """ "14 minutes", "1 minute", "40 seconds": the wait left until `ends`, rounded up."""
    seconds = max(1, math.ceil((ends - timezone.now()).total_seconds()))
    if seconds < 60:
        return ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}
    minutes = math.ceil(seconds / 60)
    return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}


def lockout_context(request: HttpRequest, username: str | None) -> dict[str, Any]:
    ends = lockout_ends(username, client_address(request))
    return {"lockout_wait": wait_text(ends), "lockout_until": ends} if ends else {}


def locked_out(request: HttpRequest, *_: Any, **__: Any) -> HttpResponse:
    """django-axes' lockout response (AXES_LOCKOUT_CALLABLE): the login page again, with the wait left, as 429.
    Axes calls it with (request, response, credentials) or, from its async path, (request, credentials): neither is
    needed, the user name comes from the form."""
    username = str(request.POST.get("username", ""))[:150]
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "next": request.POST.get("next", ""), **lockout_context(request, username)}
    context.setdefault("lockout_wait", wait_text(timezone.now() + settings.AXES_COOLOFF_TIME))
    return render(request, "registration/login.html", context, status=429)


def unlock(admin: Any, *, username: str | None = None, address: str | None = None) -> int:
    """Forget the failed logins of a user name or an address, lifting its lockout; audited."""
    removed = axes_reset(username=username) if username else axes_reset(ip=address) if address else 0
    AuditEvent.record(admin, "login.unlock", None, username=username or "", address=address or "", attempts=removed)
    return removed


# --- pages ----------------------------------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Django's login page, saying so when this address is locked out (before anyone types a password again), why a
    directory sign-in was refused, and offering the OpenID Connect provider's button when one is configured."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(lockout_context(self.request, None))
        context["refusal"] = refusal(self.request)
        context["oidc_provider"] = settings.OIDC_PROVIDER_NAME if settings.OIDC_ENABLED else ""
        return context


class NewPasswordForm(PasswordChangeForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        new = cleaned.get("new_password1")
        if new and new == cleaned.get("old_password"):
            self.add_error("new_password1", _("Choose a password different from the current one."))
        return cleaned


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change my password: for everyone logged in, whatever their role; the one page (with logging out) open to
    someone who must change theirs first."""

    form_class = NewPasswordForm
    template_name = "registration/password_change.html"
    success_url = reverse_lazy("dashboard")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["must_change"] = bool(self.request.session.get(sessions.MUST_CHANGE_PASSWORD))
        return context

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_valid(form)  # saves it, and keeps this session logged in
        user = form.user
        was_required = PasswordChangeRequired.applies_to(user)
        PasswordChangeRequired.set_for(user, False)
        self.request.session.pop(sessions.MUST_CHANGE_PASSWORD, None)
        AuditEvent.record(user, "user.password_change", user, required=was_required, **client_detail(self.request))
        messages.success(self.request, _("Your password has been changed."))
        return response


# --- the audit trail of logins --------------------------------------------------------------------------------------


def on_login(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    if request is not None and hasattr(request, "session"):
        sessions.start(request.session, must_change_password=PasswordChangeRequired.applies_to(user))
    via = SIGN_INS.get(getattr(user, "backend", ""))
    AuditEvent.record(user, "login", None, **client_detail(request), **({"via": via} if via else {}))


def on_logout(sender: Any, request: HttpRequest | None, user: Any, **_: Any) -> None:
    reason = getattr(request, "console_logout_reason", "")
    AuditEvent.record(user, "logout", None, **client_detail(request), **({"reason": reason} if reason else {}))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any) -> None:
    """A failed login, with the user name typed (Django has already masked the password in `credentials`; only the
    name is read here). Runs after django-axes' own receiver (INSTALLED_APPS order), which flags a lockout."""
    typed = str(credentials.get("username", ""))[:150]
    locked = bool(getattr(request, "axes_locked_out", False))
    reason = {"reason": english(refusal_reason(request))} if refusal(request) else {}
    AuditEvent.record(None, "login.failed", None, username=typed, locked_out=locked, **client_detail(request), **reason)


def connect_signals() -> None:
    user_logged_in.connect(on_login, dispatch_uid="console.accounts.on_login")
    user_logged_out.connect(on_logout, dispatch_uid="console.accounts.on_logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="console.accounts.on_login_failed")
