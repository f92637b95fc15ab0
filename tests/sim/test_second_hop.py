"""The second hop (docs/domain.md): what a session may reach beyond its host, by how it logged on.

In-process stories run the cmdlets under a chosen logon (`logon.impersonating`), as a Windows thread runs under its
session's token; the remote ones check that a real pypsrp session over NTLM gets that logon from the listener.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_cmdlets are parameters here

from __future__ import annotations

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hypervsim import cli, logon, start_host
from hypervsim.logon import Logon
from hypervsim.model import MIGRATION_CREDSSP, MIGRATION_KERBEROS, HostModel
from hypervsim.types import MigrationAuthenticationType
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - fixtures shared with the HGS tests

SHARE = r"\\LAB\share"
NTLM = Logon(logon.NTLM, "labadmin")
BASIC = Logon(logon.BASIC, "labadmin")
CREDSSP = Logon(logon.CREDSSP, "LAB\\labadmin")
KERBEROS_DELEGATED = Logon(
    logon.KERBEROS, "labadmin@LAB.TEST", frozenset({logon.SHARE_SERVICE, logon.MIGRATION_SERVICE})
)
KERBEROS = Logon(logon.KERBEROS, "labadmin@LAB.TEST")
DENIED = "General access denied error (0x80070005)"
NO_DOMAIN = "The specified domain either does not exist or could not be contacted. (0x8007054B)"
NOT_RECOGNISED = "The credentials supplied to the package were not recognized (0x8009030D)"
NO_CREDENTIALS = "No credentials are available in the security package (0x8009030E)"


def second_hop_on(*hosts: HostModel) -> None:
    for host in hosts:
        host.strict.second_hop = True


def join(domain: str | None, authentication: str, *hosts: HostModel) -> None:
    for host in hosts:
        host.domain, host.migration_authentication, host.live_migration = domain, authentication, True


# -- the share ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "reaches_share"),
    [(NTLM, False), (BASIC, False), (CREDSSP, True), (KERBEROS_DELEGATED, True), (KERBEROS, False)],
    ids=["ntlm", "basic", "credssp", "kerberos-delegated", "kerberos"],
)
def test_the_share_answers_only_a_logon_that_can_delegate(make_host, session, reaches_share):
    host = make_host("healthy")
    second_hop_on(host)
    with logon.impersonating(session):
        assert out(host, "Test-Path", Path=SHARE) == [reaches_share]
        assert out(host, "Test-Path", Path=r"C:\Windows\Temp") == [True]  # local work needs no second hop
        if reaches_share:
            out(host, "Export-VM", Name="Win11-B", Path=rf"{SHARE}\exports")
        else:
            err = error(host, "Export-VM", Name="Win11-B", Path=rf"{SHARE}\exports")
            assert DENIED in err.message and err.category == "PermissionDenied"
            assert err.message.startswith("Failed to export virtual machine 'Win11-B'.")


def test_an_ntlm_session_cannot_import_compare_or_list_an_export_on_the_share(make_host):
    source, target = make_host("healthy", "HV01"), make_host("fresh", "HV02")
    second_hop_on(source, target)
    with logon.impersonating(CREDSSP):
        out(source, "Export-VM", Name="Win11-B", Path=rf"{SHARE}\exports")
    vmcx = rf"{SHARE}\exports\Win11-B\Virtual Machines\{source.vm('Win11-B').id.upper()}.vmcx"
    with logon.impersonating(NTLM):
        assert DENIED in error(target, "Compare-VM", Path=vmcx).message
        assert DENIED in error(target, "Import-VM", Path=vmcx, Copy=None).message
        listing = error(target, "Get-ChildItem", Path=SHARE)
        assert listing.message == rf"Access to the path '{SHARE}' is denied." and listing.category == "PermissionDenied"
        assert error(target, "Remove-Item", Path=rf"{SHARE}\exports", Recurse=None).category == "PermissionDenied"
    assert "Win11-B" not in [vm.name for vm in target.vms.values()]
    with logon.impersonating(CREDSSP):
        (vm,) = out(target, "Import-VM", Path=vmcx, Copy=None, GenerateNewId=None)
    assert vm.Name == "Win11-B"


def test_the_switch_is_on_by_default_and_off_the_share_answers_every_session(make_host):
    host = make_host("healthy")
    with logon.impersonating(NTLM):
        assert out(host, "Test-Path", Path=SHARE) == [False]  # Windows' behaviour, the default
        host.strict.second_hop = False
        assert out(host, "Test-Path", Path=SHARE) == [True]


# -- live migration -----------------------------------------------------------------------------------------------

# (hosts' domain, their migration authentication, the session) -> the reason Move-VM fails, or None: it moves.
MIGRATIONS = [
    ("workgroup-ntlm", None, MIGRATION_CREDSSP, NTLM, NO_DOMAIN),
    ("workgroup-credssp", None, MIGRATION_CREDSSP, CREDSSP, NO_DOMAIN),
    ("domain-ntlm", "LAB", MIGRATION_CREDSSP, NTLM, NOT_RECOGNISED),
    ("domain-credssp", "LAB", MIGRATION_CREDSSP, CREDSSP, None),
    ("domain-kerberos-delegated", "LAB", MIGRATION_KERBEROS, KERBEROS_DELEGATED, None),
    ("domain-kerberos", "LAB", MIGRATION_KERBEROS, KERBEROS, NO_CREDENTIALS),
    # a CredSSP logon holds the password, so its logon session gets Kerberos tickets of its own: no delegation needed
    ("domain-kerberos-type-credssp-session", "LAB", MIGRATION_KERBEROS, CREDSSP, None),
    ("domain-credssp-type-kerberos-session", "LAB", MIGRATION_CREDSSP, KERBEROS_DELEGATED, NOT_RECOGNISED),
]


@pytest.mark.parametrize(
    ("domain", "authentication", "session", "reason"), [m[1:] for m in MIGRATIONS], ids=[m[0] for m in MIGRATIONS]
)
def test_move_vm_needs_one_domain_and_the_credentials_its_authentication_type_asks_for(
    make_host, domain, authentication, session, reason
):
    source, target = make_host("migration-source", "HV01"), make_host("migration-target", "HV02")
    second_hop_on(source, target)
    join(domain, authentication, source, target)
    with logon.impersonating(session):
        if reason is None:
            out(source, "Move-VM", Name="Win11-B", DestinationHost="HV02")
            assert target.vm("Win11-B") and "Win11-B" not in [vm.name for vm in source.vms.values()]
            return
        compare = error(source, "Compare-VM", Name="Win11-B", DestinationHost="HV02")
        move = error(source, "Move-VM", Name="Win11-B", DestinationHost="HV02")
    for err in (compare, move):
        assert reason in err.message and "failed at migration source 'HV01'" in err.message
    assert source.vm("Win11-B") and "Win11-B" not in [vm.name for vm in target.vms.values()]


def test_hosts_of_two_domains_cannot_live_migrate(make_host):
    source, target = make_host("migration-source", "HV01"), make_host("migration-target", "HV02")
    second_hop_on(source, target)
    join("LAB", MIGRATION_CREDSSP, source)
    join("OTHER", MIGRATION_CREDSSP, target)
    with logon.impersonating(CREDSSP):
        assert NO_DOMAIN in error(source, "Move-VM", Name="Win11-B", DestinationHost="HV02").message


# -- what a host says about itself ----------------------------------------------------------------------------------


def test_get_vmhost_and_win32_computersystem_tell_membership_and_migration_authentication(make_host):
    host = make_host("healthy")
    (system,) = out(host, "Get-CimInstance", ClassName="Win32_ComputerSystem")
    assert (system.PartOfDomain, system.Domain, system.Workgroup) == (False, "WORKGROUP", "WORKGROUP")
    (vmhost,) = out(host, "Get-VMHost")
    assert vmhost.VirtualMachineMigrationAuthenticationType == MigrationAuthenticationType.CredSSP  # the default
    join("lab.test", MIGRATION_KERBEROS, host)
    host.save()
    again = HostModel.load_or_create(host.state_dir, host.name)
    (system,) = out(again, "Get-CimInstance", ClassName="Win32_ComputerSystem")
    assert (system.PartOfDomain, system.Domain, system.Workgroup) == (True, "lab.test", None)
    (vmhost,) = out(again, "Get-VMHost")
    assert vmhost.VirtualMachineMigrationAuthenticationType == MigrationAuthenticationType.Kerberos
    assert vmhost.FullyQualifiedDomainName == "HV01.lab.test"


# -- over the wire --------------------------------------------------------------------------------------------------


def invoke(pool: RunspacePool, name: str, **params: object) -> PowerShell:
    ps = PowerShell(pool).add_cmdlet(name)
    for key, value in params.items():
        ps.add_parameter(key, value)
    ps.invoke()
    return ps


@pytest.mark.timeout(60)
def test_a_session_over_ntlm_is_refused_on_the_share_and_by_the_peer(sim_lab):
    pair = sim_lab(hosts=2, scenarios=["migration-source", "migration-target"])
    for sim in pair.hosts:
        sim.strict.second_hop = True
        join("LAB", MIGRATION_CREDSSP, sim.model)
    source = pair.hosts[0]
    wsman = WSMan(source.address, port=source.port, username=source.user, password=source.password, ssl=False)
    with wsman, RunspacePool(wsman) as pool:
        assert invoke(pool, "Test-Path", Path=SHARE).output == [False]
        export = invoke(pool, "Export-VM", Name="Win11-B", Path=rf"{SHARE}\exports")
        assert DENIED in str(export.streams.error[0])
        move = invoke(pool, "Move-VM", Name="Win11-B", DestinationHost="HV02")
        assert NOT_RECOGNISED in str(move.streams.error[0])
    assert source.model.vm("Win11-B")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("served", "typed"),
    [
        ("LAB\\probe", "LAB\\probe"),
        ("LAB\\probe", "probe"),
        ("LAB\\probe", ".\\probe"),
        ("LAB\\probe", "HV01\\probe"),
        ("probe@lab.test", "probe@lab.test"),
        ("probe@lab.test", "LAB\\probe"),
        ("probe", "probe"),
        ("probe", ".\\probe"),
    ],
)
def test_accounts_work_over_ntlm_as_administrators_type_them(tmp_path, served, typed):
    host = start_host("HV01", tmp_path / "hv01", "fresh", user=served, password="S3cret!pw")
    try:
        wsman = WSMan(host.address, port=host.port, username=typed, password="S3cret!pw", ssl=False)
        with wsman, RunspacePool(wsman) as pool:
            assert invoke(pool, "Test-Path", Path=r"C:\Windows\Temp").output == [True]
        assert host.announcement()["user"] == served
    finally:
        host.stop()


def test_get_item_wsman_credssp_tells_whether_the_host_accepts_delegated_credentials(make_host):
    host = make_host("fresh")
    (leaf,) = out(host, "Get-Item", Path=r"WSMan:\localhost\Service\Auth\CredSSP")
    assert (leaf.Name, leaf.Value) == ("CredSSP", "false")
    host.credssp_server = True
    assert out(host, "Get-Item", Path=r"WSMan:\localhost\Service\Auth\CredSSP")[0].Value == "true"


def test_the_command_line_sets_membership_migration_authentication_and_the_credssp_role(tmp_path):
    args = cli._parser().parse_args(
        ["lab", "--dir", str(tmp_path), "--scenario", "fresh", "fresh", "--domain", "lab.test"]
        + ["--migration-authentication", "Kerberos", "--credssp-server", "--user", "LAB\\probe"]
    )
    hosts = cli._start(args)
    try:
        for h in hosts:
            assert (h.model.domain, h.model.migration_authentication, h.model.credssp_server) == (
                "lab.test",
                MIGRATION_KERBEROS,
                True,
            )
            assert h.announcement()["user"] == "LAB\\probe"
        wsman = WSMan(
            hosts[0].address, port=hosts[0].port, username="LAB\\probe", password=hosts[0].password, ssl=False
        )
        with wsman, RunspacePool(wsman) as pool:
            (system,) = invoke(pool, "Get-CimInstance", ClassName="Win32_ComputerSystem").output
            assert system.adapted_properties["PartOfDomain"] is True
    finally:
        for h in hosts:
            h.stop()
