"""Shared fixtures. Feature-specific fixtures live in tests/plugins/ and are loaded here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.core.management.color import Style
from django.core.management.commands import flush
from django.db import connection, models, transaction
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
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


# What lets a fixture or test reach the test database other than through a fixture built on it (django_db_setup):
# unblocking the database itself, or looking fixtures up by name at run time (request.getfixturevalue("admin")).
BACK_DOORS = {"django_db_blocker", "request"}
DATABASE_FREE = pytest.StashKey[bool]()


def never_touches_the_database(item: pytest.Item) -> bool:
    """No fixture of the test is built on the test database (django_db_setup), no django_db mark, and neither the
    test nor any of the project's fixtures it uses takes a back door (pytest-django's own fixtures take them all)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None or item.get_closest_marker("django_db") is not None or "django_db_setup" in info.names_closure:
        return False
    ours = [d for name in info.names_closure for d in info.name2fixturedefs.get(name, ()) if is_ours(d)]
    return not BACK_DOORS & {*info.argnames, *(arg for d in ours for arg in d.argnames)}


def is_ours(fixturedef: pytest.FixtureDef[Any]) -> bool:
    return str(getattr(fixturedef.func, "__module__", "")).startswith("tests.")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that never touches the test database is the same on every database: pytest-django refuses its queries,
    and the tests that start subprocesses of their own take DATABASE_URL out of their environment. Marked so, the
    PostgreSQL pass leaves it to the SQLite one (tryfirst: before `-m` deselects by marker)."""
    for item in items:
        if never_touches_the_database(item):
            item.add_marker(pytest.mark.same_on_every_database)
            item.stash[DATABASE_FREE] = True


def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    """Keeps the rule above honest: a test it took for database-free that gets the database after all fails here
    (on SQLite, where it runs) instead of silently leaving PostgreSQL out."""
    if fixturedef.argname in ("db", "transactional_db") and request.node.stash.get(DATABASE_FREE, False):
        pytest.fail(f"{request.node.nodeid} reaches the database: see never_touches_the_database (tests/conftest.py)")


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


# What Django's post_migrate handlers write into an emptied database: content types, permissions, and the console's
# role groups with their permissions (console/roles.py).
POST_MIGRATE_ROWS = ("contenttypes.ContentType", "auth.Permission", "auth.Group", "auth.Group_permissions")
_post_migrate_rows: dict[str, list[models.Model]] = {}
_emit_post_migrate = flush.emit_post_migrate_signal  # type: ignore[attr-defined]  # flush.py imports it


def _refill_after_flush(verbosity: int, interactive: bool, database: str) -> None:
    """After each transactional test pytest-django flushes the database, and the flush runs every post_migrate
    handler again: ~50 ms of queries per test for the same few hundred rows. The first flush of a process runs them;
    the next ones put the rows it left back as they were (same keys), then run the one handler whose row carries a
    time (the stored analysis: hosts/inventory/signals.py)."""
    from hosts.inventory.signals import analyse_after_migrate

    saved = _post_migrate_rows.get(database)
    if saved is None:
        _emit_post_migrate(verbosity, interactive, database)
        _post_migrate_rows[database] = [
            row for label in POST_MIGRATE_ROWS for row in apps.get_model(label)._base_manager.using(database).all()
        ]
        return
    with transaction.atomic(using=database):
        for label in POST_MIGRATE_ROWS:
            model = apps.get_model(label)
            model._base_manager.using(database).bulk_create([row for row in saved if isinstance(row, model)])
    analyse_after_migrate(sender=None, app_config=apps.get_app_config("inventory"), using=database)


flush.emit_post_migrate_signal = _refill_after_flush  # type: ignore[attr-defined]
_truncate = PostgresOperations.sql_flush


def _delete_rows(
    ops: PostgresOperations,
    style: Style,
    tables: list[str],
    *,
    reset_sequences: bool = False,
    allow_cascade: bool = False,
) -> list[str]:
    """PostgreSQL empties the tables after a transactional test with DELETE instead of TRUNCATE: the same empty
    tables (the sequences go on either way), but a TRUNCATE of the ~50 tables costs PostgreSQL ~1 s and ~150 ms of CPU
    per test, the DELETEs of the few rows a test leaves a few milliseconds. The foreign keys are deferred (Django makes
    them DEFERRABLE), so the order does not matter; flush runs it all in one transaction."""
    if not tables or reset_sequences:
        return _truncate(ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    deletes = [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(ops.quote_name(table))};" for table in tables]
    return ["SET CONSTRAINTS ALL DEFERRED;", *deletes]


PostgresOperations.sql_flush = _delete_rows  # type: ignore[method-assign,assignment]


@pytest.fixture(autouse=True)
def _language_of_each_test() -> Iterator[None]:
    """Each test starts in the default language. Django's LocaleMiddleware activates the request's language for
    the thread and leaves it active after the response (the next request activates its own), so a test client's
    Japanese request would otherwise leave the rest of the test, and the next test, speaking Japanese."""
    translation.deactivate()
    yield
    translation.deactivate()
