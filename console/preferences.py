"""Each user's time zone and language, chosen in "My account".

Time zone: else the browser's (stored once by static/console.js), else UTC. Language: else the browser's
(Accept-Language, read by Django's LocaleMiddleware), else English. Both are kept in the session (read from the
database once per session) and activated for every request, so Django shows every aware datetime in the zone and
every translated string in the language; templates write times with console_tags' `when` (UTC on hover).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from .models import AuditEvent, Preferences
from .sessions import LANGUAGE_SESSION_KEY, known_language

SESSION_KEY = "console_time_zone"


@cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_of(name: str) -> zoneinfo.ZoneInfo | None:
    return zoneinfo.ZoneInfo(name) if name in known_zones() else None


def stored_zone(user: Any) -> str:
    return Preferences.objects.filter(user=user).values_list("time_zone", flat=True).first() or ""


class TimeZoneMiddleware:
    """Activates the user's time zone for the request; `request.time_zone_name` says which ("" when unset)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = ""
        if request.user.is_authenticated:
            if SESSION_KEY not in request.session:
                request.session[SESSION_KEY] = stored_zone(request.user)
            name = str(request.session[SESSION_KEY])
        zone = zone_of(name)
        request.time_zone_name = name if zone else ""  # type: ignore[attr-defined]
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def stored_language(user: Any) -> str:
    return Preferences.objects.filter(user=user).values_list("language", flat=True).first() or ""


class LanguageMiddleware:
    """Activates the language the user chose in "My account", over the browser's that LocaleMiddleware activated."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chosen = ""
        if request.user.is_authenticated:
            if LANGUAGE_SESSION_KEY not in request.session:
                request.session[LANGUAGE_SESSION_KEY] = stored_language(request.user)
            chosen = str(request.session[LANGUAGE_SESSION_KEY])
        if not known_language(chosen):
            return self.get_response(request)
        with translation.override(chosen):
            request.LANGUAGE_CODE = chosen
            response = self.get_response(request)
            response.headers.setdefault("Content-Language", chosen)
            return response


def save_zone(request: HttpRequest, name: str, from_browser: bool) -> None:
    Preferences.objects.update_or_create(
        user=request.user, defaults={"time_zone": name, "time_zone_from_browser": from_browser}
    )
    request.session[SESSION_KEY] = name


class AccountForm(forms.Form):
    language = forms.ChoiceField(
        label=gettext_lazy("Language"),
        required=False,
        help_text=gettext_lazy("The language of every page and of the logs of the jobs you start."),
    )
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"),
        help_text=gettext_lazy("Every time the console shows is in this zone; hover one for UTC."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(name, name.replace("_", " ")) for name in sorted(known_zones())]
        language = self.fields["language"]
        assert isinstance(language, forms.ChoiceField)
        language.choices = [("", _("The browser's language")), *settings.LANGUAGES]


@require_http_methods(["GET", "POST"])
def my_account(request: HttpRequest) -> HttpResponse:
    """One's own preferences (for anyone logged in), and the links to one's password, two-factor and API tokens."""
    initial = {"time_zone": request.time_zone_name or "UTC", "language": stored_language(request.user)}  # type: ignore[attr-defined]
    form = AccountForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        save_account(request, form.cleaned_data["time_zone"], form.cleaned_data["language"])
        return redirect("my_account")
    return render(request, "console/my_account.html", {"form": form})


def save_account(request: HttpRequest, zone: str, language: str) -> None:
    """Store and audit what changed; the new language applies from this very message on."""
    old_zone, old_language = request.time_zone_name, stored_language(request.user)  # type: ignore[attr-defined]
    if zone != old_zone:
        save_zone(request, zone, from_browser=False)
        AuditEvent.record(request.user, "account.time_zone", None, time_zone=zone)
    if language != old_language:
        Preferences.objects.update_or_create(user=request.user, defaults={"language": language})
        request.session[LANGUAGE_SESSION_KEY] = language
        AuditEvent.record(request.user, "account.language", None, language=language or "browser")
    with translation.override(language or translation.get_language_from_request(request)):
        messages.success(
            request,
            _("Times are shown in %(zone)s; pages in %(language)s.")
            % {
                "zone": zone.replace("_", " "),
                "language": dict(settings.LANGUAGES).get(language, _("the browser's language")),
            },
        )


@require_POST
def browser_time_zone(request: HttpRequest) -> HttpResponse:
    """The browser's zone, sent once by static/console.js while the user has none: stored unless one is set."""
    name = request.POST.get("time_zone", "")
    if zone_of(name) is None:
        return JsonResponse({"stored": False, "reason": "unknown time zone"}, status=400)
    if stored_zone(request.user):
        return JsonResponse({"stored": False, "reason": "already chosen"})
    save_zone(request, name, from_browser=True)
    return JsonResponse({"stored": True, "time_zone": name})
