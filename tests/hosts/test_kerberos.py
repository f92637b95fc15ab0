"""A host registered with Kerberos, against a real MIT KDC (tests/plugins/kdc.py) and a simulated host with a keytab.

The admin registers it through the form, tests the connection and refreshes the inventory; each way Kerberos fails
(the KDC down, clocks too far apart, a name the realm does not know, a wrong password) ends the connection test and
the refresh with its own headline and remedy, never a 500, and no password in any page or log line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.models import HostInventory, VirtualMachine
from hosts.inventory.refresh import refresh_host
from hosts.models import FAILURE_HEADLINES, Host, failure_headline
from tests.hosts.test_connection import assert_failed_as, assert_shown_once, run_test
from tests.hosts.test_register import register
from tests.plugins.kdc import HOST_NAME, LIBFAKETIME, PASSWORD, USER
from tests.plugins.worker import REPO

pytestmark = [pytest.mark.timeout(90), pytest.mark.django_db]
WRONG = "Not-The-Passw0rd!"


@pytest.fixture
def sim(kerberos: Any, sim_host: Any) -> Any:
    return sim_host("healthy", keytab=kerberos.keytab)


@pytest.fixture
def host(sim: Any, registered_host: Any) -> Host:
    host: Host = registered_host(sim, address=HOST_NAME, auth="kerberos", username=USER, password=PASSWORD)
    return host


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log line of the test, down to DEBUG, to look for passwords in."""
    caplog.set_level(logging.DEBUG)
    return caplog


def no_secret_in(text: str) -> bool:
    return PASSWORD not in text and WRONG not in text


def test_an_admin_registers_a_kerberos_host_tests_the_connection_and_refreshes_it(
    sim: Any, admin_client: Client, logs: pytest.LogCaptureFixture
) -> None:
    fields = {"address": HOST_NAME, "port": str(sim.port), "auth": "kerberos", "username": USER, "password": PASSWORD}
    assert register(admin_client, **fields).status_code == 302
    host = Host.objects.get()
    host, page = run_test(admin_client, host)
    assert host.last_test_ok, host.last_test_message
    assert "Connected: HV01" in page and no_secret_in(page)
    assert refresh_host(host).ok
    assert VirtualMachine.objects.filter(host=host).count() == 4
    assert not HostInventory.objects.get(host=host).stale
    assert no_secret_in(logs.text)


def test_with_the_kdc_down_the_test_and_the_refresh_say_the_kdc_is_unreachable(
    kerberos: Any, host: Host, admin_client: Client, logs: pytest.LogCaptureFixture
) -> None:
    with kerberos.down():
        host, page = run_test(admin_client, host)
        outcome = refresh_host(host)
    assert_failed_as(host, "krb_kdc")
    assert_shown_once(host, page)
    assert "No Kerberos KDC answered" in host.last_test_message and "krb5.conf" in host.last_test_message
    assert failure_headline("krb_kdc") == "Kerberos KDC unreachable"
    assert not outcome.ok and outcome.kind == "krb_kdc"
    assert HostInventory.objects.get(host=host).stale
    assert run_test(admin_client, host)[0].last_test_ok  # the KDC is back: so is the host
    assert no_secret_in(logs.text)


def test_a_kdc_whose_clock_is_an_hour_ahead_is_a_clock_problem(
    kerberos: Any, host: Host, admin_client: Client, logs: pytest.LogCaptureFixture
) -> None:
    with kerberos.clock_off_by("+1h"):
        host, page = run_test(admin_client, host)
    assert_failed_as(host, "krb_clock")
    assert_shown_once(host, page)
    assert "clocks" in host.last_test_message and "w32tm /resync" in host.last_test_message
    assert no_secret_in(logs.text)


@pytest.mark.parametrize(
    ("username", "password", "kind", "words"),
    [
        ("nobody@LAB.TEST", PASSWORD, "krb_principal", "does not know the account 'nobody@LAB.TEST'"),
        ("LAB\\labadmin", PASSWORD, "krb_principal", "Kerberos names accounts user@REALM, not DOMAIN\\user"),
        (USER, WRONG, "krb_account", f"refused the password of '{USER}'"),
    ],
    ids=["unknown-user", "domain-backslash-user", "wrong-password"],
)
def test_a_name_or_password_the_realm_refuses_is_named(
    sim: Any,
    registered_host: Any,
    admin_client: Client,
    logs: pytest.LogCaptureFixture,
    username: str,
    password: str,
    kind: str,
    words: str,
) -> None:
    host = registered_host(sim, address=HOST_NAME, auth="kerberos", username=username, password=password)
    host, page = run_test(admin_client, host)
    assert_failed_as(host, kind)
    assert_shown_once(host, page)
    assert words in host.last_test_message
    assert no_secret_in(page) and no_secret_in(logs.text) and no_secret_in(host.last_test_message)


def test_an_account_of_the_realm_that_is_not_the_hosts_administrator_is_refused_by_the_host(
    kerberos: Any, sim: Any, registered_host: Any, admin_client: Client
) -> None:
    visitor = kerberos.add_user("visitor", "Visitor-Passw0rd!")
    host = registered_host(sim, address=HOST_NAME, auth="kerberos", username=visitor, password="Visitor-Passw0rd!")
    host, _ = run_test(admin_client, host)
    assert_failed_as(host, "auth")  # the KDC gave it a ticket; WinRM answers 401 to a non-administrator
    assert "refused the credentials of 'visitor@LAB.TEST'" in host.last_test_message


def test_a_host_name_without_a_service_principal_is_named(
    kerberos: Any, host: Host, admin_client: Client, logs: pytest.LogCaptureFixture
) -> None:
    with kerberos.without("host/localhost"):
        host, _ = run_test(admin_client, host)
    assert_failed_as(host, "krb_principal")
    assert "no service principal for localhost (host/localhost)" in host.last_test_message
    assert "setspn -L" in host.last_test_message
    assert run_test(admin_client, host)[0].last_test_ok  # the new key reached the host's keytab


@pytest.fixture
def served_host(kerberos: Any, tmp_path: Any, request: Any) -> Iterator[dict[str, Any]]:
    """`python -m hypervsim serve` with the realm's keytab, its clock off by request.param ("-1h") (libfaketime)."""
    clock = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": request.param, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "hypervsim", "serve", "--state", str(tmp_path / "hv01"), "--keytab"]
    process = subprocess.Popen(
        [*command, str(kerberos.keytab)], cwd=REPO, env=os.environ | clock, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("served_host", "words"),
    [("-1h", "(the ticket starts in the future)."), ("+1h", "further apart than Kerberos allows.")],
    ids=["host-an-hour-behind", "host-an-hour-ahead"],
    indirect=["served_host"],
)
def test_a_host_whose_clock_is_off_is_a_clock_problem(
    served_host: dict[str, Any], admin_client: Client, logs: pytest.LogCaptureFixture, words: str
) -> None:
    port = int(served_host["url"].rsplit(":", 1)[1].split("/")[0])
    host = Host(name="HV01", address=HOST_NAME, port=port, auth="kerberos", username=USER)
    host.set_password(PASSWORD)
    host.full_clean()
    host.save()
    host, page = run_test(admin_client, host)
    assert_failed_as(host, "krb_clock")  # the host refused the ticket or its authenticator by its own clock
    assert_shown_once(host, page)
    assert words in host.last_test_message
    assert no_secret_in(logs.text)


def test_every_failure_kind_fits_the_fields_that_keep_it() -> None:
    """The kind of a failed connection test or refresh is stored (16 characters): a longer one breaks on PostgreSQL."""
    widths = {Host._meta.get_field("last_test_kind").max_length, HostInventory._meta.get_field("error_kind").max_length}
    longest = max(FAILURE_HEADLINES, key=len)
    assert len(longest) <= min(w for w in widths if w), longest
