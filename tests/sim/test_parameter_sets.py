"""Parameter sets as the console meets them over pypsrp: parameters of two sets together are refused the way
PowerShell's binder refuses them, before the cmdlet touches the host; a set's missing mandatory parameter is named."""

# ruff: noqa: F811 - pytest fixtures imported from test_sim_cmdlets are parameters here
from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.sim import kind_to_the_second_hop
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - fixtures shared with the HGS tests
from tests.sim.test_cmdlets_remote import fails, guardian_names, ok, prop, run, session

pytestmark = pytest.mark.timeout(60)
BINDING = "System.Management.Automation.ParameterBindingException"
INVALID_ARGUMENT = 5  # ErrorCategory.InvalidArgument
UNRESOLVED = (
    "Parameter set cannot be resolved using the specified named parameters. One or more parameters issued cannot be "
    "used together or an insufficient number of parameters were provided."
)


def refused_as_unresolved(err: Any, command_class: str) -> None:
    assert str(err) == UNRESOLVED
    assert err.fq_error == f"AmbiguousParameterSet,{command_class}"
    assert err.category == INVALID_ARGUMENT and err.exception.types[0] == BINDING


def test_new_guardian_refuses_generated_certificates_with_a_thumbprint_and_names_a_missing_one(sim_host):
    h = sim_host("healthy")
    signing, encryption = (
        h.model.guardians["UntrustedGuardian"].signing,
        h.model.guardians["UntrustedGuardian"].encryption,
    )
    with session(h) as pool:
        mixed = fails(pool, "New-HgsGuardian", Name="Mixed", GenerateCertificates=None,
                      SigningCertificateThumbprint=signing.thumbprint)  # fmt: skip
        refused_as_unresolved(mixed, "New-HgsGuardian")
        half = fails(pool, "New-HgsGuardian", Name="Half", SigningCertificateThumbprint=signing.thumbprint)
        assert str(half).endswith("missing mandatory parameters: EncryptionCertificateThumbprint.")
        assert half.fq_error == "MissingMandatoryParameter,New-HgsGuardian"
        assert fails(pool, "New-HgsGuardian", Name="NoWay").fq_error == "AmbiguousParameterSet,New-HgsGuardian"
        assert sorted(prop(g, "Name") for g in ok(pool, "Get-HgsGuardian")) == ["UntrustedGuardian"]
        thumbs = {
            "SigningCertificateThumbprint": signing.thumbprint,
            "EncryptionCertificateThumbprint": encryption.thumbprint,
        }
        ok(pool, "New-HgsGuardian", Name="Again", AllowUntrustedRoot=None, **thumbs)
    assert set(h.model.guardians) == {"UntrustedGuardian", "Again"}


def test_grant_and_revoke_take_the_guardian_as_an_object_or_by_name_not_both(sim_host):
    h = sim_host("healthy")
    with session(h) as pool:
        (peer,) = ok(pool, "New-HgsGuardian", Name="Peer", GenerateCertificates=None)
        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
        both = {"KeyProtector": raw, "Guardian": peer, "GuardianFriendlyName": "Peer"}
        refused_as_unresolved(fails(pool, "Grant-HgsKeyProtectorAccess", **both), "Grant-HgsKeyProtectorAccess")
        refused_as_unresolved(fails(pool, "Revoke-HgsKeyProtectorAccess", **both), "Revoke-HgsKeyProtectorAccess")
        neither = fails(pool, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, AllowUntrustedRoot=None)
        refused_as_unresolved(neither, "Grant-HgsKeyProtectorAccess")
        (granted,) = ok(pool, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, Guardian=peer, AllowUntrustedRoot=None)
        assert guardian_names(prop(granted, "Guardians")) == ["UntrustedGuardian", "Peer"]


def test_get_vm_finds_by_name_or_by_id_but_not_by_both(sim_host):
    h = sim_host("healthy")
    vm_id = h.model.vm("Win11-C").id
    with session(h) as pool:
        refused_as_unresolved(
            fails(pool, "Get-VM", Name="Win11-A", Id=vm_id), "Microsoft.HyperV.PowerShell.Commands.GetVM"
        )
        assert [prop(v, "Name") for v in ok(pool, "Get-VM", Id=vm_id)] == ["Win11-C"]
        assert len(ok(pool, "Get-VM")) == 4  # no parameter: the default Name set, every VM


def test_import_needs_copy_for_a_new_id_and_takes_a_report_piped_from_compare(sim_lab):
    # NTLM sessions reaching the lab share or the peer: a parameter-set story (test_second_hop.py has the hop).
    lab = kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["healthy", "fresh"]))
    source, target = lab.hosts
    with session(source) as pool:
        ok(pool, "Export-VM", Name="Srv-Plain", Path=r"\\LAB\share\exports")
    vmcx = rf"\\LAB\share\exports\Srv-Plain\Virtual Machines\{source.model.vm('Srv-Plain').id.upper()}.vmcx"
    with session(target) as pool:
        no_copy = fails(pool, "Import-VM", Path=vmcx, GenerateNewId=None)
        assert str(no_copy) == "Cannot process command because of one or more missing mandatory parameters: Copy."
        assert no_copy.fq_error == "MissingMandatoryParameter,Microsoft.HyperV.PowerShell.Commands.ImportVM"
        in_place_copy = fails(pool, "Import-VM", Path=vmcx, Register=None, Copy=None)
        refused_as_unresolved(in_place_copy, "Microsoft.HyperV.PowerShell.Commands.ImportVM")
        sent_back = fails(pool, "Import-VM", CompatibilityReport="a report")
        assert sent_back.fq_error == "CannotConvertArgumentNoMessage,Microsoft.HyperV.PowerShell.Commands.ImportVM"
        assert 'to type "Microsoft.HyperV.PowerShell.VMCompatibilityReport"' in str(sent_back)
        assert len(target.model.vms) == 1  # its own Srv-Plain only
        compare = {"Path": vmcx, "Copy": None, "GenerateNewId": None}
        ps = run(pool, ("Compare-VM", compare), ("|Import-VM", {}))  # the live report binds -CompatibilityReport
        assert not ps.streams.error, [str(e) for e in ps.streams.error]
        (vm,) = ps.output
    assert prop(vm, "Name") == "Srv-Plain" and str(prop(vm, "Id")) != source.model.vm("Srv-Plain").id
    assert [v.name for v in target.model.vms.values()] == ["Srv-Plain", "Srv-Plain"]


def test_compare_again_with_its_own_report_sees_what_changed_since(make_host):
    host = make_host("healthy")
    out(host, "Export-VM", Name="Win11-B", Path=r"\\LAB\share\exports")
    vmcx = rf"\\LAB\share\exports\Win11-B\Virtual Machines\{host.vm('Win11-B').id.upper()}.vmcx"
    (report,) = out(host, "Compare-VM", Path=vmcx, Copy=None, GenerateNewId=None)
    assert report.Incompatibilities == []
    (imported,) = out(host, "Import-VM", CompatibilityReport=report)
    assert str(imported.Id) == str(report.VM.Id)  # the VM the report planned, with its new id
    (again,) = out(host, "Compare-VM", CompatibilityReport=report)
    assert "same identifier already exists" in again.Incompatibilities[0].Message
    assert "same identifier" in error(host, "Import-VM", CompatibilityReport=report).message


def messages(report: Any) -> list[str]:
    """The messages of a report's incompatibilities, which arrive at depth 1 as their text (the message)."""
    return [p if isinstance(p, str) else prop(p, "Message") for p in prop(report, "Incompatibilities") or []]


def test_compare_checks_a_move_to_a_lab_peer_as_move_vm_does_it(sim_lab):
    # NTLM sessions reaching the lab share or the peer: a parameter-set story (test_second_hop.py has the hop).
    lab = kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["migration"]))
    source, target = lab.hosts
    with session(source) as pool:
        (ready,) = ok(pool, "Compare-VM", Name="Win11-B", DestinationHost="HV02", DestinationStoragePath=r"D:\Moved")
        assert ready.types[0] == "Microsoft.HyperV.PowerShell.VMCompatibilityReport"
        assert str(prop(ready, "OperationType")) == "MoveVirtualMachine" and prop(ready, "Destination") == "HV02"
        assert prop(ready, "VM").startswith("VirtualMachine (Name = 'Win11-B')") and messages(ready) == []
        move = {"Name": "Win11-A", "DestinationHost": "hv02.lab.local", "IncludeStorage": None}
        (running,) = ok(pool, "Compare-VM", **move)
        [unwrap] = messages(running)  # its guardian's keys are on HV01 only
        assert unwrap.startswith("The key protector could not be unwrapped")
        # The incompatibility's own properties come back once Select-Object lifts it to the top.
        (problem,) = run(pool, ("Compare-VM", move), ("|Select-Object", {"ExpandProperty": "Incompatibilities"})).output
        assert prop(problem, "Message") == unwrap and prop(problem, "MessageId") > 0
        moving = fails(pool, "Move-VM", Name="Win11-A", DestinationHost="HV02")
        assert "failed at migration destination 'HV02'" in str(moving) and str(moving).endswith(unwrap)
        target.model.live_migration = False
        (refused,) = ok(pool, "Compare-VM", Name="Win11-A", DestinationHost="HV02")
        assert messages(refused) == [
            "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration "
            "with host 'HV02': No connection could be made because the target machine actively refused it. "
            "(0x8007274D).",
            unwrap,
        ]
        assert str(fails(pool, "Move-VM", Name="Win11-A", DestinationHost="HV02")).endswith(messages(refused)[0])
        unknown = fails(pool, "Compare-VM", Name="Win11-B", DestinationHost="HV09")
        assert "with host 'HV09': No such host is known. (0x80072AF9)." in str(unknown)
        assert unknown.fq_error == "Unspecified,Microsoft.HyperV.PowerShell.Commands.CompareVM"
        target.model.live_migration = True
        ok(pool, "Move-VM", Name="Win11-B", DestinationHost="HV02", DestinationStoragePath=r"D:\Moved")
    assert target.model.vm("Win11-B").vhd_paths[0].startswith("D:\\Moved\\")
    assert sorted(v.name for v in source.model.vms.values()) == ["Srv-Plain", "Win11-A", "Win11-C"]


def test_compare_again_with_a_move_report_sees_the_vm_already_there(make_host):
    source, target = make_host("migration-source", "HV01"), make_host("migration-target", "HV02")
    (report,) = out(source, "Compare-VM", Name="Win11-B", DestinationHost="HV02")
    assert report.Incompatibilities == []
    target.vms[source.vm("Win11-B").id] = source.vm("Win11-B")  # the same VM registered there meanwhile
    (again,) = out(source, "Compare-VM", CompatibilityReport=report)
    assert "same identifier already exists" in again.Incompatibilities[0].Message
    assert "does not describe an import" in error(source, "Import-VM", CompatibilityReport=report).message


def test_a_lab_peer_off_the_network_cannot_be_moved_to(sim_lab):
    # NTLM sessions reaching the lab share or the peer: a parameter-set story (test_second_hop.py has the hop).
    lab = kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["migration"]))
    source, target = lab.hosts
    target.down()
    try:
        with session(source) as pool:
            (report,) = ok(pool, "Compare-VM", Name="Win11-B", DestinationHost="HV02")
            [message] = messages(report)
            assert "with host 'HV02': A connection attempt failed" in message and message.endswith("(0x8007274C).")
            assert str(fails(pool, "Move-VM", Name="Win11-B", DestinationHost="HV02")).endswith(message)
    finally:
        target.up()
    assert "Win11-B" in {vm.name for vm in source.model.vms.values()}  # nothing moved
    with session(source) as pool:  # back on the network: the move goes through
        ok(pool, "Move-VM", Name="Win11-B", DestinationHost="HV02", IncludeStorage=None)
    assert target.model.vm("Win11-B") is not None
