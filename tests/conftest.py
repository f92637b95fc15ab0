"""Shared fixtures. Feature-specific fixtures live in tests/plugins/ and are loaded here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import translation

pytest_plugins = [
    "tests.plugins.users",
    "tests.plugins.sim",  # simulated Hyper-V hosts (hypervsim) over real sockets
    "tests.plugins.hosts",  # registered hosts pointing at simulated hosts
    "tests.plugins.worker",  # a real Celery worker process
    "tests.plugins.jobs",  # waiting for a job's state or log line: wait_for_job, wait_for_line
    "tests.plugins.browser",  # Chromium through Playwright, and a live console server
    "tests.plugins.ldap_server",  # a real slapd with a throwaway directory
    "tests.plugins.oidc_provider",  # a real OpenID Connect provider process (tests/oidc_provider/)
    "tests.plugins.sso",  # the console pointed at those two
    "tests.plugins.kdc",  # a real MIT Kerberos KDC with a throwaway realm
    "tests.plugins.notifications",  # a real SMTP server and webhook receiver on loopback, a worker sending to them
]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Let the test database be dropped at the end: on PostgreSQL, connections left open by threads (channels'
    sync-to-async executor, worker helpers) would otherwise keep it alive and every run would leave one behind."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _language_of_each_test() -> Iterator[None]:
    """Each test starts in the default language. Django's LocaleMiddleware activates the request's language for
    the thread and leaves it active after the response (the next request activates its own), so a test client's
    Japanese request would otherwise leave the rest of the test, and the next test, speaking Japanese."""
    translation.deactivate()
    yield
    translation.deactivate()
