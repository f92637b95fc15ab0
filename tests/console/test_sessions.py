"""A login does not last for ever: it ends after hours without use (idle) and a day after it began (absolute)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from console import sessions
from console.models import AuditEvent
from tests.console.test_settings import production_env, start_console_with
from tests.plugins.users import PASSWORD


def logged_in(username: str) -> Client:
    client = Client()
    assert client.post("/login/", {"username": username, "password": PASSWORD}).status_code == 302
    return client


def edit_session(client: Client, **values: Any) -> None:
    session = client.session
    session.update(values)
    session.save()


def test_a_session_lasts_eight_idle_hours_by_default(viewer: Any, settings: Any) -> None:
    assert settings.SESSION_COOKIE_AGE == 8 * 3600 and settings.SESSION_MAX_SECONDS == 24 * 3600
    logged_in("vera")
    expires = Session.objects.get().expire_date
    assert 8 * 3600 - 60 < (expires - timezone.now()).total_seconds() <= 8 * 3600


def test_using_the_console_pushes_the_idle_expiry_forward(viewer: Any) -> None:
    client = logged_in("vera")
    edit_session(client, **{sessions.RENEWED_AT: time.time() - 3600})
    Session.objects.update(expire_date=timezone.now() + timedelta(hours=7))
    assert client.get("/").status_code == 200
    remaining = (Session.objects.get().expire_date - timezone.now()).total_seconds()
    assert remaining > 8 * 3600 - 60


def test_an_idle_session_has_ended(viewer: Any) -> None:
    client = logged_in("vera")
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert client.get("/")["Location"].startswith("/login/")


def test_a_day_after_the_login_the_session_ends_however_busy(viewer: Any) -> None:
    client = logged_in("vera")
    edit_session(client, **{sessions.LOGIN_AT: time.time() - 24 * 3600 - 5})
    response = client.get("/hosts/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/hosts/"
    assert AuditEvent.objects.get(action="logout").detail["reason"] == "session lifetime"
    assert logged_in("vera").get("/hosts/").status_code == 200  # a new login starts a new day


def test_the_lifetimes_come_from_the_environment(tmp_path: Path) -> None:
    env = production_env(tmp_path, CONSOLE_SESSION_IDLE_SECONDS="1800", CONSOLE_SESSION_MAX_SECONDS="43200")
    result = start_console_with(env, "settings.SESSION_COOKIE_AGE, settings.SESSION_MAX_SECONDS")
    assert result.stdout.strip() == "1800 43200", result.stderr
