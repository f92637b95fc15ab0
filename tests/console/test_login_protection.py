"""Someone guesses passwords: after a few failures the user name, or the address, is locked out for a while, the
login page says how long, an admin can lift it, and every login, logout and failure is in the audit trail (with
address and user agent, never the password typed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from console.models import AuditEvent
from tests.plugins.users import PASSWORD

# Documentation addresses (RFC 5737): only ever strings in the test client's REMOTE_ADDR, never contacted.
HOME, CAFE, ELSEWHERE = "192.0.2.10", "198.51.100.7", "203.0.113.99"
WRONG = "Typed-Wrong-Passw0rd-7731"


def client_from(address: str, agent: str = "TestBrowser/1.0") -> Client:
    return Client(REMOTE_ADDR=address, HTTP_USER_AGENT=agent)


def log_in(client: Client, username: str, password: str) -> Any:
    return client.post("/login/", {"username": username, "password": password})


def fail(client: Client, username: str, times: int) -> None:
    for _ in range(times):
        assert log_in(client, username, WRONG).status_code in (200, 429)  # the limit's own failure answers 429


def test_five_wrong_passwords_lock_the_user_out_and_the_login_page_says_for_how_long(viewer: Any) -> None:
    guesser = client_from(HOME)
    fail(guesser, "vera", 4)
    response = log_in(guesser, "vera", WRONG)  # the fifth: locked from now on
    assert response.status_code == 429
    refused = log_in(guesser, "vera", PASSWORD)  # even the right password, for the time being
    page = refused.content.decode()
    assert refused.status_code == 429
    assert "Too many failed logins" in page and "refused for 15 minutes" in page
    # The same form as always (the browser tests log in through it), with the name kept.
    assert 'name="username"' in page and 'name="password"' in page and 'value="vera"' in page
    assert "_auth_user_id" not in guesser.session


def test_a_locked_user_name_is_locked_from_every_address(viewer: Any) -> None:
    for index in range(5):
        fail(client_from(f"192.0.2.{20 + index}"), "vera", 1)
    assert log_in(client_from(ELSEWHERE), "vera", PASSWORD).status_code == 429


def test_a_locked_address_is_locked_for_every_user_name_and_others_still_log_in(viewer: Any, operator: Any) -> None:
    guesser = client_from(CAFE)
    for name in ("root", "administrator", "admin", "guest", "test"):
        fail(guesser, name, 1)
    assert log_in(guesser, "otto", PASSWORD).status_code == 429
    assert "refused for" in guesser.get("/login/").content.decode()  # said before anyone types again
    assert log_in(client_from(HOME), "otto", PASSWORD).status_code == 302


def test_the_lockout_ends_after_its_time(viewer: Any) -> None:
    fail(client_from(HOME), "vera", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert log_in(client_from(HOME), "vera", PASSWORD).status_code == 302


def test_the_wait_shown_counts_down_from_the_last_failure(viewer: Any) -> None:
    fail(client_from(HOME), "vera", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=10, seconds=30))
    assert "refused for 5 minutes" in log_in(client_from(HOME), "vera", PASSWORD).content.decode()


def test_an_admin_sees_the_lockout_on_the_users_page_and_lifts_it(viewer: Any, admin_client: Client) -> None:
    fail(client_from(HOME), "vera", 5)
    listing = admin_client.get("/users/").content.decode()
    assert "locked out for 15 minutes" in listing
    response = admin_client.post(f"/users/{viewer.pk}/unlock/")
    assert response.status_code == 302
    assert "vera can log in again" in admin_client.get("/users/").content.decode()
    assert log_in(client_from(ELSEWHERE), "vera", PASSWORD).status_code == 302
    event = AuditEvent.objects.get(action="login.unlock")
    assert (event.username, event.detail["username"]) == ("ada", "vera")


def test_an_admin_lifts_the_lockout_of_an_address(viewer: Any, admin_client: Client) -> None:
    guesser = client_from(CAFE)
    for name in ("root", "guest", "test", "sa", "backup"):
        fail(guesser, name, 1)
    assert CAFE in admin_client.get("/users/").content.decode()
    assert admin_client.post("/users/unlock-address/", {"address": CAFE}).status_code == 302
    assert log_in(guesser, "vera", PASSWORD).status_code == 302
    assert AuditEvent.objects.get(action="login.unlock").detail["address"] == CAFE
    refused = admin_client.post("/users/unlock-address/", {"address": "not an address"}, follow=True)
    assert "not an IP address" in refused.content.decode()


def test_only_admins_lift_lockouts(viewer: Any, operator_client: Client) -> None:
    fail(client_from(HOME), "vera", 5)
    assert operator_client.post(f"/users/{viewer.pk}/unlock/").status_code == 403
    assert operator_client.post("/users/unlock-address/", {"address": HOME}).status_code == 403
    assert log_in(client_from(ELSEWHERE), "vera", PASSWORD).status_code == 429


def test_manage_py_axes_reset_unlocks_everyone(viewer: Any) -> None:
    fail(client_from(HOME), "vera", 5)
    call_command("axes_reset", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert log_in(client_from(HOME), "vera", PASSWORD).status_code == 302


def test_logins_logouts_and_failures_are_audited_with_address_and_agent_never_the_password(viewer: Any) -> None:
    browser = client_from(HOME, agent="Mozilla/5.0 (Windows NT 10.0) Edge/140")
    log_in(browser, "vera", WRONG)
    assert log_in(browser, "vera", PASSWORD).status_code == 302
    browser.post("/logout/")
    failed = AuditEvent.objects.get(action="login.failed")
    assert failed.user is None
    assert failed.detail == {
        "username": "vera",
        "locked_out": False,
        "address": HOME,
        "user_agent": "Mozilla/5.0 (Windows NT 10.0) Edge/140",
    }
    login, logout = AuditEvent.objects.get(action="login"), AuditEvent.objects.get(action="logout")
    assert login.username == logout.username == "vera"
    assert login.detail["address"] == logout.detail["address"] == HOME
    every_word = str(list(AuditEvent.objects.values_list("detail", flat=True)))
    assert WRONG not in every_word and PASSWORD not in every_word


def test_the_failure_that_locks_says_so_in_the_audit_trail(viewer: Any) -> None:
    fail(client_from(HOME), "vera", 4)
    log_in(client_from(HOME), "vera", WRONG)
    last = AuditEvent.objects.filter(action="login.failed").first()  # newest first
    assert last is not None and last.detail["locked_out"] is True


@pytest.mark.parametrize(
    ("forwarded", "seen"),
    [("203.0.113.99", "203.0.113.99"), ("10.9.9.9, 203.0.113.99", "203.0.113.99"), ("garbage", HOME)],
)
def test_behind_a_proxy_the_address_is_the_one_the_proxy_appended(
    settings: Any, viewer: Any, forwarded: str, seen: str
) -> None:
    settings.BEHIND_PROXY = True
    client = Client(REMOTE_ADDR=HOME, HTTP_X_FORWARDED_FOR=forwarded)
    log_in(client, "vera", WRONG)
    assert AuditEvent.objects.get(action="login.failed").detail["address"] == seen
    assert AccessAttempt.objects.get().ip_address == seen
