"""CredSSP on the simulator's HTTPS listener (docs/fidelity.md, "Sessions and the wire"): offered only while the
host's CredSSP server role is on, accepted with pyspnego's acceptor, and a CredSSP session reaches the second hop."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan
from requests_credssp.exceptions import AuthenticationException, NTStatusException

from hypervsim import start_lab
from hypervsim.model import MIGRATION_CREDSSP
from tests.sim.test_second_hop import NOT_RECOGNISED, SHARE, invoke

ACCOUNT = "LAB\\labadmin"
SEC_E_LOGON_DENIED = 0x8009030C


def role(sim: Any, on: bool) -> None:
    with sim.model.changing() as model:
        model.credssp_server = on


def challenges(sim: Any) -> list[str]:
    """The WWW-Authenticate headers of the 401 an unauthenticated request gets, one per scheme."""
    reply = requests.post(sim.url, data=b"", verify=sim.ca_file or False, timeout=10)
    assert reply.status_code == 401
    return list(reply.raw.headers.getlist("WWW-Authenticate"))


def credssp(sim: Any, password: str | None = None, auth: str = "credssp") -> WSMan:
    """A WSMan client of the host over HTTPS with the lab CA verified (CredSSP, or `auth`)."""
    return WSMan(
        sim.address,
        port=sim.port,
        ssl=True,
        auth=auth,
        username=ACCOUNT,
        password=password or sim.password,
        cert_validation=sim.ca_file,
    )


@pytest.mark.timeout(60)
def test_an_https_listener_offers_credssp_only_while_the_role_is_on(sim_host: Any) -> None:
    https = sim_host("fresh", https=True, user=ACCOUNT)
    assert challenges(https) == ["Negotiate"]
    role(https, True)
    assert challenges(https) == ["Negotiate", "CredSSP"]
    http = sim_host("fresh", user=ACCOUNT)
    role(http, True)
    assert challenges(http) == ["Negotiate"]  # the simulator offers CredSSP over TLS only


@pytest.mark.timeout(60)
def test_credssp_with_the_role_off_is_answered_without_credssp(sim_host: Any) -> None:
    sim = sim_host("fresh", https=True, user=ACCOUNT)
    with pytest.raises(AuthenticationException, match="did not response CredSSP"), credssp(sim) as wsman:
        RunspacePool(wsman).open()


@pytest.mark.timeout(60)
def test_a_wrong_password_over_credssp_is_a_logon_denied(sim_host: Any) -> None:
    sim = sim_host("fresh", https=True, user=ACCOUNT)
    role(sim, True)
    with pytest.raises(NTStatusException) as refused, credssp(sim, "Wrong-Passw0rd") as wsman:
        RunspacePool(wsman).open()
    assert refused.value.status == SEC_E_LOGON_DENIED


@pytest.mark.timeout(60)
def test_a_credssp_session_reaches_the_share_and_live_migrates(tmp_path: Any) -> None:
    lab = start_lab(tmp_path, 2, ["migration"], https=True, user=ACCOUNT)
    try:
        for sim in lab.hosts:
            sim.strict.second_hop = True
            role(sim, True)
            with sim.model.changing() as model:
                model.domain, model.migration_authentication = "lab.test", MIGRATION_CREDSSP
        source = lab.hosts[0]
        with credssp(source) as wsman, RunspacePool(wsman) as pool:
            assert invoke(pool, "Test-Path", Path=SHARE).output == [True]
            move = invoke(pool, "Move-VM", Name="Win11-B", DestinationHost="HV02")
            assert not move.had_errors, [str(e) for e in move.streams.error]
        assert lab.hosts[1].model.vm("Win11-B")
        # The same host over NTLM: no credentials for the second hop, as before.
        with credssp(source, auth="ntlm") as wsman, RunspacePool(wsman) as pool:
            assert invoke(pool, "Test-Path", Path=SHARE).output == [False]
            move = invoke(pool, "Move-VM", Name="Win11-A", DestinationHost="HV02")
            assert NOT_RECOGNISED in str(move.streams.error[0])
    finally:
        lab.stop()
