"""hypervsim accepts Kerberos from a real KDC (tests/plugins/kdc.py) and gives the session the logon Windows would.

pypsrp asks the realm's KDC for a ticket to host/localhost; the simulated host accepts it with its keytab through
pyspnego's Negotiate acceptor, with WinRM message encryption. What the logon may reach beyond the host is the
second hop (hypervsim/logon.py): constrained delegation is the domain's word on the host's computer account
(`model.delegation`), and S4U2proxy needs a forwardable ticket unless that account may use any protocol.
"""

from __future__ import annotations

from typing import Any

import pytest
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import RunspacePool

from hypervsim import cli, logon
from hypervsim.logon import MIGRATION_SERVICE, Delegation
from hypervsim.model import MIGRATION_KERBEROS
from tests.plugins.kdc import HOST_NAME, PASSWORD, USER
from tests.plugins.sim import sim_run, sim_wsman

SHARE = r"\\LAB\share"
NO_CREDENTIALS = "No credentials are available in the security package (0x8009030E)"


def kerberos_wsman(sim: Any, **overrides: Any) -> Any:
    options = {"server": HOST_NAME, "auth": "kerberos", "username": USER, "password": PASSWORD} | overrides
    return sim_wsman(sim, **options)


def run(sim: Any, cmdlet: str, wsman: Any = None, **params: Any) -> Any:
    with RunspacePool(wsman or kerberos_wsman(sim)) as pool:
        return sim_run(pool, (cmdlet, params))


@pytest.mark.parametrize(
    ("delegation", "client_delegates", "reaches_share"),
    [
        (Delegation(), False, False),
        (Delegation(("cifs/LAB",), any_protocol=True), False, True),
        # Kerberos-only constrained delegation needs a forwardable ticket; pyspnego's is not, unless asked to delegate
        (Delegation(("cifs/LAB",)), False, False),
        (Delegation(("cifs/LAB",)), True, True),
        (Delegation(("cifs/FILES",), any_protocol=True), False, False),  # another server's share
    ],
    ids=["no-delegation", "protocol-transition", "kerberos-only", "kerberos-only-forwardable", "other-server"],
)
def test_a_kerberos_logon_reaches_the_share_where_the_domain_lets_its_host_delegate(
    kerberos, sim_host, delegation, client_delegates, reaches_share
):
    sim = sim_host("healthy", keytab=kerberos.keytab)
    sim.strict.second_hop = True
    sim.model.delegation = delegation
    # enforce_ok_as_delegate (the realm's krb5.conf): the client forwards no TGT to a host the domain does not
    # trust for delegation, but its tickets become forwardable
    wsman = kerberos_wsman(sim, negotiate_delegate=client_delegates)
    assert run(sim, "Test-Path", wsman, Path=SHARE).output == [reaches_share]
    assert run(sim, "Test-Path", Path=r"C:\Windows\Temp").output == [True]  # local work needs no second hop


def test_a_host_with_a_keytab_still_accepts_ntlm_and_one_without_refuses_kerberos(kerberos, sim_host):
    with_keytab, without = sim_host("healthy", keytab=kerberos.keytab), sim_host("healthy")
    ntlm = sim_wsman(with_keytab, auth="ntlm")
    assert run(with_keytab, "Test-Path", ntlm, Path=r"C:\Windows\Temp").output == [True]
    with pytest.raises(AuthenticationError):
        run(without, "Test-Path", kerberos_wsman(without), Path=r"C:\Windows\Temp")


@pytest.mark.parametrize(
    ("allowed_to", "moved"),
    [((f"{MIGRATION_SERVICE}/HV02", "cifs/HV02"), True), ((f"{MIGRATION_SERVICE}/HV03",), False), ((), False)],
    ids=["delegates-to-hv02", "delegates-elsewhere", "no-delegation"],
)
def test_move_vm_over_kerberos_needs_delegation_to_the_destination(kerberos, sim_lab, allowed_to, moved):
    lab = sim_lab(scenarios=["migration"], keytab=kerberos.keytab)
    source, target = lab.hosts
    for sim in lab.hosts:
        sim.strict.second_hop = True
        assert (sim.model.domain, sim.model.migration_authentication) == ("lab.test", MIGRATION_KERBEROS)
    source.model.delegation = Delegation(allowed_to, any_protocol=True)
    ps = run(source, "Move-VM", Name="Win11-B", DestinationHost="HV02")
    assert ps.had_errors is not moved
    assert (has_vm(target, "Win11-B"), has_vm(source, "Win11-B")) == (moved, not moved)
    if not moved:
        assert NO_CREDENTIALS in str(ps.streams.error[0])


def test_the_command_line_serves_kerberos_with_a_keytab_and_sets_delegation(kerberos, tmp_path):
    spn = f"{MIGRATION_SERVICE}/HV02"
    args = cli._parser().parse_args(
        ["serve", "--state", str(tmp_path / "hv01"), "--keytab", str(kerberos.keytab), "--domain", "lab.test"]
        + ["--delegate-to", spn, "--delegate-to", "cifs/LAB", "--delegate-any-protocol", "--strict", "second_hop"]
    )
    (host,) = cli._start(args)
    try:
        assert host.model.delegation == Delegation((spn, "cifs/LAB"), any_protocol=True)
        assert host.announcement()["kerberos"] is True
        assert run(host, "Test-Path", Path=SHARE).output == [True]
    finally:
        host.stop()


def test_a_kerberos_logon_is_recorded_with_its_principal_and_what_it_may_delegate(kerberos, sim_host):
    sim = sim_host("healthy", keytab=kerberos.keytab)
    sim.model.delegation = Delegation(("cifs/LAB",), any_protocol=True)
    seen: list[logon.Logon] = []
    sim._runtime.wsman.handle = record_logon(sim._runtime.wsman.handle, seen)
    run(sim, "Test-Path", Path=r"C:\Windows\Temp")
    assert {(s.mechanism, s.user, s.delegates_to) for s in seen} == {(logon.KERBEROS, USER, frozenset({"cifs/LAB"}))}


def has_vm(sim: Any, name: str) -> bool:
    return name in [vm.name for vm in sim.model.vms.values()]


def record_logon(handle: Any, seen: list[logon.Logon]) -> Any:
    def recording(body: bytes, client_ip: str, session_logon: logon.Logon | None = None) -> Any:
        if session_logon is not None:
            seen.append(session_logon)
        return handle(body, client_ip, session_logon)

    return recording
