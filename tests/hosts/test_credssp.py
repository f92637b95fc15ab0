"""CredSSP as a host's authentication (issue 10): registered over HTTPS with a verified certificate, tested and
refreshed against a simulated host whose listener accepts CredSSP with pyspnego's acceptor; refused with the remedy
when the host's CredSSP server role is off; never saved where it would hand the password to an unverified server."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from django.test import Client

from hosts.inventory.refresh import refresh_host
from hosts.models import Host
from hosts.remoting import open_session
from hosts.remoting.catalog import vms
from tests.hosts.test_connection import assert_failed_as, run_test
from tests.hosts.test_register import errors_of, form_data, register

pytestmark = pytest.mark.django_db

SHARE = r"\\LAB\share"
ACCOUNT = r"LAB\hvconsole"


@pytest.fixture
def domain_host(sim_host: Any) -> Any:
    """A host of domain lab.test on HTTPS, as Windows about the second hop, with its CredSSP server role on."""
    sim = sim_host("healthy", https=True, user=ACCOUNT)
    with sim.model.changing() as model:
        model.domain, model.credssp_server = "lab.test", True
    sim.strict.second_hop = True
    return sim


def test_a_credssp_host_connects_refreshes_and_its_session_reaches_the_share(
    operator_client: Client, domain_host: Any, registered_host: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)  # pyspnego and requests-credssp log every token at DEBUG
    host, page = run_test(operator_client, registered_host(domain_host, auth="credssp"))
    assert host.last_test_ok is True, host.last_test_message
    assert "connected" in page and domain_host.password not in page
    assert refresh_host(host).ok
    assert "Win11-A" in {vm.name for vm in host.vms.all()}  # type: ignore[attr-defined]
    # The logon holds the account's credentials: the share answers from this session, and not from an NTLM one.
    with open_session(host.connection_spec()) as session:
        assert session.run(vms.TestPath(SHARE)) is True
    with open_session(replace(host.connection_spec(), auth="ntlm")) as session:
        assert session.run(vms.TestPath(SHARE)) is False
    assert domain_host.password not in caplog.text


def test_credssp_refused_by_the_host_names_the_remedy_and_no_credential(
    operator_client: Client, domain_host: Any, registered_host: Any, caplog: Any
) -> None:
    with domain_host.model.changing() as model:
        model.credssp_server = False
    caplog.set_level(logging.DEBUG)
    host, page = run_test(operator_client, registered_host(domain_host, auth="credssp"))
    assert_failed_as(host, "credssp")
    assert "does not accept CredSSP" in host.last_test_message
    assert "Enable-WSManCredSSP -Role Server -Force" in host.last_test_message
    assert "CredSSP refused" in page
    assert domain_host.password not in page + caplog.text


def test_a_wrong_password_over_credssp_is_refused_as_credentials(
    operator_client: Client, domain_host: Any, registered_host: Any
) -> None:
    host, page = run_test(operator_client, registered_host(domain_host, auth="credssp", password="Not-The-0ne"))
    assert_failed_as(host, "auth")
    assert "CredSSP" in host.last_test_message and "Not-The-0ne" not in page + host.last_test_message


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"transport": "http"}, "auth", "This host is set to plain HTTP."),
        ({"transport": "https", "cert_check": "none"}, "cert_check", "The certificate check is off."),
    ],
)
def test_credssp_is_not_saved_where_the_password_could_reach_an_unverified_server(
    admin_client: Client, fields: dict[str, str], where: str, says: str
) -> None:
    response = register(admin_client, **form_data(auth="credssp", **fields))
    errors = errors_of(response)
    assert any("CredSSP gives the host the account's password itself" in e and says in e for e in errors[where])
    assert not Host.objects.exists()


def test_credssp_over_verified_https_is_saved(admin_client: Client) -> None:
    response = register(admin_client, **form_data(auth="credssp", transport="https", cert_check="system"))
    assert response.status_code == 302, errors_of(response)
    assert Host.objects.get().auth == "credssp"


def test_the_form_and_the_prepare_page_state_the_risk_and_the_steps(admin_client: Client) -> None:
    form = admin_client.get("/hosts/new/").content.decode()
    assert "reusable password" in form and "dedicated" in form and 'value="credssp"' in form
    prepare = admin_client.get("/hosts/prepare/").content.decode()
    assert "the host receives reusable credentials" in prepare and "dedicated account" in prepare
    assert "Enable-WSManCredSSP -Role Server -Force" in prepare
    assert "Set-VMHost -VirtualMachineMigrationAuthenticationType CredSSP" in prepare
