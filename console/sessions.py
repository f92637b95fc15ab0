"""How long a login lasts: an idle timeout and an absolute lifetime, for pages and websockets alike.

Idle: the session expires SESSION_COOKIE_AGE seconds (CONSOLE_SESSION_IDLE_SECONDS) after it was last renewed, and
the middleware renews it at most once a minute, so a busy page does not write the session on every request.
Absolute: SESSION_MAX_SECONDS after the login the session ends whatever the user does; the login time is kept in
the session (a session without one predates this rule and ends at once).
"""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.utils.crypto import constant_time_compare

LOGIN_AT = "console_login_at"
RENEWED_AT = "console_renewed_at"
MUST_CHANGE_PASSWORD = "console_must_change_password"  # noqa: S105 (a session key, not a password)
# The language chosen in "My account" ("" = the browser's), kept in the session by console.preferences and read
# by pages and websockets alike (jobs.consumers says states in each viewer's language).
LANGUAGE_SESSION_KEY = "console_language"


def known_language(code: str) -> bool:
    return code in dict(settings.LANGUAGES)


def chosen_language(session: Any) -> str:
    """The language the session's user chose, "" when none (or none known)."""
    chosen = str(session.get(LANGUAGE_SESSION_KEY, "") or "") if session is not None else ""
    return chosen if known_language(chosen) else ""


def start(session: SessionBase, must_change_password: bool) -> None:
    """Called at login: the clock of the absolute lifetime starts now."""
    now = time.time()
    session[LOGIN_AT] = now
    session[RENEWED_AT] = now
    if must_change_password:
        session[MUST_CHANGE_PASSWORD] = True
    else:
        session.pop(MUST_CHANGE_PASSWORD, None)


def past_lifetime(data: Any) -> bool:
    """Has this session outlived SESSION_MAX_SECONDS since its login? `data` is a session or its decoded dict."""
    login_at = data.get(LOGIN_AT)
    if not isinstance(login_at, int | float):
        return True
    return time.time() - login_at > settings.SESSION_MAX_SECONDS


def renew_if_due(session: SessionBase) -> None:
    """Push the idle expiry forward (by saving the session) once a minute at most, or more often for short ages."""
    every = min(60.0, settings.SESSION_COOKIE_AGE / 10)
    renewed = session.get(RENEWED_AT)
    if not isinstance(renewed, int | float) or time.time() - renewed >= every:
        session[RENEWED_AT] = time.time()


def session_user(session_key: str | None, user_id: Any) -> Any:
    """For an open websocket: its user read afresh, or None once the session has ended (logged out, idle or past its
    lifetime, the password changed since) or the user is gone or deactivated. Roles are the caller's to check."""
    if not session_key or user_id is None:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()  # {} once the session is gone or expired
    if str(data.get(SESSION_KEY)) != str(user_id) or past_lifetime(data):
        return None
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(str(data.get(HASH_SESSION_KEY, "")), user.get_session_auth_hash()):
        return None
    return user
