"""Undoing key protector changes on the simulated host: Revoke-HgsKeyProtectorAccess and
Set-VMKeyProtector -RestoreLastKnownGoodKeyProtector, in-process and once over pypsrp."""
# ruff: noqa: F811 - pytest fixtures imported from test_sim_cmdlets are parameters here

from __future__ import annotations

import pytest

from hypervsim import keyprotector
from hypervsim.cmdlets import invoke
from hypervsim.model import HostModel
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - shared fixtures
from tests.sim.test_cmdlets_remote import UNWRAP, fails, guardian_names, ok, prop, run, session


def granted_to_peer(host: HostModel, vm: str = "Win11-B") -> bytes:
    """The VM's key protector with a second guardian, Peer, whose keys are on this host too."""
    out(host, "New-HgsGuardian", Name="Peer", GenerateCertificates=None)
    raw = out(host, "Get-VMKeyProtector", VMName=vm)[0]
    kp = out(
        host, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, GuardianFriendlyName="Peer", AllowUntrustedRoot=None
    )
    return bytes(kp[0].RawData)


def test_revoke_by_friendly_name_removes_the_guardian_and_keeps_the_owner_signature(make_host):
    host = make_host("healthy")
    granted = granted_to_peer(host)
    (kp,) = out(host, "Revoke-HgsKeyProtectorAccess", KeyProtector=granted, GuardianFriendlyName="Peer")
    assert [g.Name for g in kp.Guardians] == ["UntrustedGuardian"] and kp.Owner.Name == "UntrustedGuardian"
    revoked = keyprotector.parse(kp.RawData)  # parse() checks the owner's signature
    assert revoked.protector_id == keyprotector.parse(granted).protector_id
    peer = host.guardian("Peer")
    assert peer is not None
    assert revoked.unwrap({peer.encryption.thumbprint: host.store[peer.encryption.thumbprint]}) is None
    assert keyprotector.parse(granted).unwrap({peer.encryption.thumbprint: host.store[peer.encryption.thumbprint]})


def test_revoke_takes_a_guardian_object_and_the_protector_from_the_pipeline(make_host):
    host = make_host("healthy")
    granted = granted_to_peer(host)
    peer = out(host, "Get-HgsGuardian", Name="Peer")[0]
    source = out(host, "ConvertTo-HgsKeyProtector", Bytes=granted)
    result, errors = invoke(host, "Revoke-HgsKeyProtectorAccess", {"Guardian": peer}, input=source)
    assert errors == [] and [g.Name for g in result[0].Guardians] == ["UntrustedGuardian"]
    unchanged = out(host, "Revoke-HgsKeyProtectorAccess", KeyProtector=result[0].RawData, Guardian=peer)
    assert unchanged[0].RawData == result[0].RawData  # a guardian that is not there: nothing to do


def test_revoke_refuses_the_owner_an_unknown_name_and_a_host_without_the_owners_key(make_host):
    host = make_host("healthy")
    granted = granted_to_peer(host)
    owner = error(host, "Revoke-HgsKeyProtectorAccess", KeyProtector=granted, GuardianFriendlyName="UntrustedGuardian")
    assert owner.fqid == "HRESULT 0x80070057,Revoke-HgsKeyProtectorAccess"
    nobody = error(host, "Revoke-HgsKeyProtectorAccess", KeyProtector=granted, GuardianFriendlyName="Nobody")
    assert nobody.fqid == "CmdletizationQuery_NotFound_Name,Revoke-HgsKeyProtectorAccess"
    peer = out(host, "Get-HgsGuardian", Name="Peer")[0]
    other = make_host("healthy", name="HV02")  # its own UntrustedGuardian: not the owner of HV01's protector
    keyless = error(other, "Revoke-HgsKeyProtectorAccess", KeyProtector=granted, Guardian=peer)
    assert "Keyset does not exist" in keyless.message
    assert error(host, "Revoke-HgsKeyProtectorAccess", GuardianFriendlyName="Peer").fqid.startswith(
        "MissingMandatoryParameter,"
    )


def test_restore_last_known_good_puts_back_the_protector_the_vm_last_started_with(make_host, tmp_path):
    host = make_host("healthy")
    started_with = host.vm("Win11-B").key_protector
    foreign = out(make_host("healthy", name="HV02"), "Get-VMKeyProtector", VMName="Win11-B")[0]
    out(host, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=foreign)
    assert UNWRAP in error(host, "Start-VM", Name="Win11-B").message
    out(host, "Set-VMKeyProtector", VMName="Win11-B", RestoreLastKnownGoodKeyProtector=None)
    assert host.vm("Win11-B").key_protector == started_with
    out(host, "Start-VM", Name="Win11-B")
    assert host.vm("Win11-B").state == "Running"


def test_a_successful_start_is_what_makes_a_protector_last_known_good_and_it_survives_a_restart(make_host, tmp_path):
    host = make_host("fresh")
    out(host, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
    out(host, "Enable-VMTPM", VMName="Srv-Plain")
    missing = error(host, "Set-VMKeyProtector", VMName="Srv-Plain", RestoreLastKnownGoodKeyProtector=None)
    assert missing.fqid == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.SetVMKeyProtector"
    assert "no last known good key protector" in missing.message
    out(host, "Start-VM", Name="Srv-Plain")
    first = host.vm("Srv-Plain").key_protector
    running = error(host, "Set-VMKeyProtector", VMName="Srv-Plain", RestoreLastKnownGoodKeyProtector=None)
    assert running.fqid.startswith("InvalidState,")
    out(host, "Stop-VM", Name="Srv-Plain", TurnOff=None)
    out(host, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
    assert host.vm("Srv-Plain").key_protector != first
    reloaded = HostModel.load_or_create(tmp_path / "HV01", "HV01", "fresh")
    out(reloaded, "Set-VMKeyProtector", VMName="Srv-Plain", RestoreLastKnownGoodKeyProtector=None)
    assert reloaded.vm("Srv-Plain").key_protector == first


@pytest.mark.parametrize(
    "params",
    [{}, {"NewLocalKeyProtector": None, "RestoreLastKnownGoodKeyProtector": None}],
    ids=["none", "two"],
)
def test_set_key_protector_takes_exactly_one_parameter_set(make_host, params):
    err = error(make_host("healthy"), "Set-VMKeyProtector", VMName="Win11-B", **params)
    assert err.fqid == "AmbiguousParameterSet,Microsoft.HyperV.PowerShell.Commands.SetVMKeyProtector"


@pytest.mark.timeout(60)
def test_console_undoes_a_grant_and_a_bad_protector_over_pypsrp(sim_lab):
    lab = sim_lab(hosts=2, scenarios=["healthy", "healthy"])
    source, other = lab.hosts
    with session(other) as pool:
        (foreign,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
    with session(source) as pool:
        ok(pool, "New-HgsGuardian", Name="Peer", GenerateCertificates=None)
        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
        grant = {"GuardianFriendlyName": "Peer", "AllowUntrustedRoot": None}
        (granted,) = run(
            pool, ("ConvertTo-HgsKeyProtector", {"Bytes": raw}), ("|Grant-HgsKeyProtectorAccess", grant)
        ).output
        ps = run(
            pool,
            ("ConvertTo-HgsKeyProtector", {"Bytes": prop(granted, "RawData")}),
            ("|Revoke-HgsKeyProtectorAccess", {"GuardianFriendlyName": "Peer"}),
        )
        assert not ps.had_errors and guardian_names(prop(ps.output[0], "Guardians")) == ["UntrustedGuardian"]
        ok(pool, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=foreign)
        assert UNWRAP in str(fails(pool, "Start-VM", Name="Win11-B"))
        ok(pool, "Set-VMKeyProtector", VMName="Win11-B", RestoreLastKnownGoodKeyProtector=None)
        ok(pool, "Start-VM", Name="Win11-B")
    assert source.model.vm("Win11-B").state == "Running"
