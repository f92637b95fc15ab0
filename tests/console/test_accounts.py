"""Logging in, roles, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from console.models import AuditEvent
from console.roles import role_of
from tests.plugins.users import PASSWORD


def test_every_page_sends_a_stranger_to_the_login_page(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_viewer_logs_in_and_sees_the_dashboard(client: Client, viewer: Any) -> None:
    response = client.post("/login/", {"username": "vera", "password": PASSWORD})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    assert b"Dashboard" in page.content
    assert b"vera" in page.content


def test_a_wrong_password_is_refused_with_a_plain_message(client: Client, viewer: Any) -> None:
    response = client.post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_a_user_without_a_role_is_told_what_is_missing(nobody: Any) -> None:
    client = Client()
    client.force_login(nobody)
    response = client.get("/")
    assert response.status_code == 403
    assert b"view_console" in response.content


@pytest.mark.parametrize(
    ("fixture", "run_jobs", "destructive", "manage_hosts"),
    [("viewer", False, False, False), ("operator", True, False, False), ("admin", True, True, True)],
)
def test_roles_grant_what_they_promise(
    request: pytest.FixtureRequest, fixture: str, run_jobs: bool, destructive: bool, manage_hosts: bool
) -> None:
    user = request.getfixturevalue(fixture)
    assert role_of(user) == fixture
    assert user.has_perm("console.view_console")
    assert user.has_perm("console.run_jobs") is run_jobs
    assert user.has_perm("console.run_destructive_jobs") is destructive
    assert user.has_perm("console.manage_hosts") is manage_hosts


def test_audit_detail_never_keeps_a_secret(admin: Any) -> None:
    event = AuditEvent.record(admin, "host.update", None, password="hunter2", fields={"pfx_password": "x"})
    assert event.detail == {"password": "[redacted]", "fields": {"pfx_password": "[redacted]"}}
    assert "hunter2" not in str(AuditEvent.objects.values_list("detail", flat=True))
