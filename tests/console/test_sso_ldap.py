"""Sign-in through an LDAP directory, against a real slapd started by the tests (tests/plugins/ldap_server.py), through
the console's own login form: the role of the person's groups at every login, local accounts still working — also
while the directory is down — and clear refusals, audited, with no password in the audit trail or the logs."""

from __future__ import annotations

import html
import logging
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from console import directory, sso
from console.models import AuditEvent, ExternalAccount
from console.roles import role_of
from tests.plugins.ldap_server import BIND_PASSWORD, PASSWORD, Directory
from tests.plugins.sso import apply, console_settings
from tests.plugins.users import PASSWORD as LOCAL_PASSWORD
from tests.plugins.worker import free_port

pytestmark = pytest.mark.django_db


def log_in(name: str, password: str = PASSWORD) -> tuple[Client, str]:
    """The login form, as a person fills it: the client and the page it ends on (as text)."""
    client = Client()
    response = client.post("/login/", {"username": name, "password": password}, follow=True)
    return client, html.unescape(response.content.decode())


def logged_in(client: Client) -> bool:
    return client.get("/").status_code == 200


def test_a_directory_user_logs_in_with_the_role_of_their_groups(ldap_settings: Directory) -> None:
    client, _ = log_in("lars")
    assert logged_in(client)
    lars = get_user_model().objects.get(username="lars")
    assert role_of(lars) == "admin" and not lars.has_usable_password()
    assert (lars.first_name, lars.email) == ("Lars", "lars@guardian.test")
    assert ExternalAccount.objects.get(user=lars).source == "ldap"
    assert AuditEvent.objects.get(action="login", user=lars).detail["via"] == "ldap"
    assert AuditEvent.objects.filter(action="user.create", user=lars).exists()


def test_a_group_change_in_the_directory_changes_the_role_at_the_next_login(ldap_settings: Directory) -> None:
    log_in("olga")
    olga = get_user_model().objects.get(username="olga")
    assert role_of(olga) == "operator"
    ldap_settings.set_groups("olga", ["gc-view"])
    try:
        client, _ = log_in("olga")
        assert logged_in(client) and role_of(olga) == "viewer"
        change = AuditEvent.objects.filter(action="user.role_change", object_id=str(olga.pk)).first()
        assert change is not None and change.detail["role_to"] == "viewer" and change.detail["by"] == "ldap groups"
    finally:
        ldap_settings.set_groups("olga", ["gc-ops"])


def test_someone_in_no_mapped_group_is_refused_and_not_created(ldap_settings: Directory) -> None:
    client, page = log_in("dora")
    assert not logged_in(client)
    assert str(sso.NO_GROUP) in page
    assert not get_user_model().objects.filter(username="dora").exists()
    assert AuditEvent.objects.get(action="login.failed").detail == {
        "username": "dora",
        "locked_out": False,
        "address": "127.0.0.1",
        "user_agent": "",
        "reason": str(sso.NO_GROUP),
    }


def test_a_wrong_directory_password_is_an_ordinary_failed_login(ldap_settings: Directory) -> None:
    client, page = log_in("lars", "not-the-password")
    assert not logged_in(client)
    assert "didn't match" in page
    assert "reason" not in AuditEvent.objects.get(action="login.failed").detail


def test_local_accounts_still_work_and_are_not_taken_over(ldap_settings: Directory, admin: Any) -> None:
    client, _ = log_in("ada", LOCAL_PASSWORD)  # the local admin
    assert logged_in(client)
    client, page = log_in("ada", PASSWORD)  # "ada" of the directory, with the directory's password
    assert not logged_in(client)
    assert sso.NAME_TAKEN.format(name="ada") in page
    assert role_of(admin) == "admin" and not ExternalAccount.objects.filter(user=admin).exists()


def test_when_the_directory_is_down_local_admins_still_log_in(settings: Any, ldap_directory: Directory, admin: Any):
    closed = f"ldap://127.0.0.1:{free_port()}"  # nothing listens there
    apply(settings, console_settings(**{**ldap_directory.console_env(), "CONSOLE_LDAP_SERVER_URI": closed}))
    started = time.monotonic()
    client, _ = log_in("ada", LOCAL_PASSWORD)
    assert logged_in(client)
    assert time.monotonic() - started < 3
    client, page = log_in("lars")
    assert not logged_in(client)
    assert str(directory.UNREACHABLE) in page
    assert AuditEvent.objects.get(action="login.failed").detail["reason"] == str(directory.UNREACHABLE)


def test_no_password_reaches_the_audit_trail_or_the_logs(ldap_settings: Directory, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    log_in("lars")
    log_in("dora")
    log_in("vince", "a-wrong-Passw0rd")
    audit = str(list(AuditEvent.objects.values_list("detail", flat=True)))
    for secret in (PASSWORD, BIND_PASSWORD, "a-wrong-Passw0rd"):
        assert secret not in audit
        assert secret not in caplog.text


def test_settings_name_what_is_missing(ldap_directory: Directory) -> None:
    env = ldap_directory.console_env()
    del env["CONSOLE_LDAP_GROUP_SEARCH_BASE"]
    with pytest.raises(ImproperlyConfigured, match="CONSOLE_LDAP_GROUP_SEARCH_BASE is missing"):
        console_settings(**env)
    with pytest.raises(ImproperlyConfigured, match="CONSOLE_LDAP_GROUP_TYPE must be one of"):
        console_settings(**ldap_directory.console_env(), CONSOLE_LDAP_GROUP_TYPE="novell")


def test_the_bind_password_may_come_from_a_file(ldap_directory: Directory, tmp_path: Any) -> None:
    env = ldap_directory.console_env()
    secret_file = tmp_path / "bind"
    secret_file.write_text(env.pop("CONSOLE_LDAP_BIND_PASSWORD") + "\n")
    values = console_settings(**env, CONSOLE_LDAP_BIND_PASSWORD_FILE=str(secret_file))
    assert values["AUTH_LDAP_BIND_PASSWORD"] == BIND_PASSWORD
    backends = values["AUTHENTICATION_BACKENDS"]
    assert backends.index("django.contrib.auth.backends.ModelBackend") < backends.index(
        "console.directory.DirectoryBackend"
    )  # local accounts first: a local admin's login never waits for the directory
