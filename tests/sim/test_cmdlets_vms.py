"""The simulated host's Hyper-V cmdlets, in-process: inventory, power, export/import and live migration."""
# ruff: noqa: F811 - pytest fixtures imported from test_sim_cmdlets are parameters here

from __future__ import annotations

import threading
import uuid

import pytest
from psrpcore.types import serialize_clixml

from hypervsim.cmdlets import CMDLETS, CmdletError, Invocation, invoke
from hypervsim.keyprotector import NO_KEY_PROTECTOR
from hypervsim.model import HostModel
from hypervsim.scenarios import add_tpm_vms
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - fixtures shared with the HGS tests

VIRTUALIZATION = ["Microsoft.HyperV.PowerShell.VirtualizationException", "System.Exception"]


def names(objects: list) -> list[str]:
    return [o.Name for o in objects]


def test_get_vm_lists_the_scenario_with_windows_types(make_host):
    vms = out(make_host("healthy"), "Get-VM")
    assert names(vms) == ["Win11-A", "Win11-B", "Win11-C", "Srv-Plain"]
    assert [vm.State.name for vm in vms] == ["Running", "Off", "Saved", "Off"]
    xml = serialize_clixml(vms[0], None)  # type: ignore[arg-type]  # no SecureStrings: no cipher needed
    assert "<T>Microsoft.HyperV.PowerShell.VirtualMachine</T>" in xml
    assert (
        "<T>Microsoft.HyperV.PowerShell.VMState</T><T>System.Enum</T>" in xml and "<ToString>Running</ToString>" in xml
    )
    assert vms[0].Id == vms[0].VMId and isinstance(vms[0].Id, uuid.UUID) and vms[0].Generation == 2


def test_get_vm_takes_name_arrays_wildcards_and_ids(make_host):
    host = make_host("healthy")
    assert names(out(host, "Get-VM", Name=["win11-b", "Srv-Plain"])) == ["Win11-B", "Srv-Plain"]
    assert names(out(host, "Get-VM", Name="Win11-*")) == ["Win11-A", "Win11-B", "Win11-C"]
    assert out(host, "Get-VM", Name="Nothing*") == []
    vm_id = host.vm("Win11-C").id
    assert names(out(host, "Get-VM", Id=vm_id.upper())) == ["Win11-C"]


def test_unknown_vm_is_a_non_terminating_error_like_windows(make_host):
    host = make_host("healthy")
    found, errors = invoke(host, "Get-VM", {"Name": ["Ghost", "Win11-A"]})
    assert names(found) == ["Win11-A"]
    (err,) = errors
    assert err.message == 'Hyper-V was unable to find a virtual machine with name "Ghost".'
    assert err.fqid == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert (err.category, err.exception_type, err.target) == ("InvalidArgument", VIRTUALIZATION, "Ghost")


def test_security_key_protector_and_checkpoints(make_host):
    host = make_host("healthy")
    security = out(host, "Get-VMSecurity", VMName=["Win11-A", "Srv-Plain"])
    assert [(s.ComputerName, s.TpmEnabled, s.Shielded) for s in security] == [  # the host's name, not the VM's
        ("HV01", True, False),
        ("HV01", False, False),
    ]
    assert security[0].PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VMSecurity"
    (kp,) = out(host, "Get-VMKeyProtector", VMName="Win11-A")
    assert isinstance(kp, bytes) and len(kp) > 1000
    assert out(host, "Get-VMKeyProtector", VMName="Srv-Plain") == [NO_KEY_PROTECTOR]
    (checkpoint,) = out(host, "Get-VMSnapshot", VMName="Win11-B")
    assert (checkpoint.Name, checkpoint.VMName, checkpoint.SnapshotType.name) == (
        "Before update",
        "Win11-B",
        "Standard",
    )
    assert out(host, "Get-VMSnapshot", VMName="Win11-A") == []


def test_vm_host_reports_live_migration(make_host):
    assert out(make_host("healthy"), "Get-VMHost")[0].VirtualMachineMigrationEnabled is False
    vm_host = out(make_host("migration-source", "HV02"), "Get-VMHost")[0]
    assert vm_host.VirtualMachineMigrationEnabled is True and vm_host.ComputerName == "HV02"


def test_power_cycle_with_save_and_passthru(make_host):
    host = make_host("healthy")
    assert out(host, "Stop-VM", Name="Win11-A", Save=None, Passthru=None)[0].State.name == "Saved"
    assert out(host, "Start-VM", Name="Win11-A", Passthru=None)[0].State.name == "Running"
    out(host, "Stop-VM", Name="Win11-A", Force=None)
    assert host.vm("Win11-A").state == "Off" and host.vm("Win11-A").saved_state is None
    assert error(host, "Stop-VM", Name="Win11-C").fqid == "InvalidState,Microsoft.HyperV.PowerShell.Commands.StopVM"
    out(host, "Stop-VM", Name="Win11-C", TurnOff=None)
    assert host.vm("Win11-C").state == "Off"


def test_remove_saved_state_needs_a_saved_vm(make_host):
    host = make_host("healthy")
    out(host, "Remove-VMSavedState", VMName="Win11-C")
    assert host.vm("Win11-C").state == "Off"
    assert error(host, "Remove-VMSavedState", VMName="Win11-C").category == "InvalidOperation"


def test_remove_vm_keeps_its_disks_and_refuses_a_running_vm(make_host):
    host = make_host("healthy")
    assert error(host, "Remove-VM", Name="Win11-A", Force=None).fqid.startswith("InvalidState,")
    disk = host.vm("Win11-B").vhd_paths[0]
    out(host, "Remove-VM", Name="Win11-B", Force=None)
    assert "Win11-B" not in names(out(host, "Get-VM"))
    assert out(host, "Test-Path", Path=disk) == [True]


def export(host: HostModel, vm: str) -> str:
    out(host, "Export-VM", Name=vm, Path=r"\\LAB\share\exports")
    return rf"\\LAB\share\exports\{vm}\Virtual Machines\{host.vm(vm).id.upper()}.vmcx"


def test_export_then_compare_reports_an_identifier_conflict_on_the_same_host(make_host):
    host = make_host("healthy")
    vmcx = export(host, "Win11-B")
    assert out(host, "Test-Path", Path=r"\\LAB\share\exports\Win11-B\Virtual Hard Disks\Win11-B.vhdx") == [True]
    (report,) = out(host, "Compare-VM", Path=vmcx)
    assert report.PSTypeNames[0] == "Microsoft.HyperV.PowerShell.VMCompatibilityReport"
    assert "same identifier already exists" in report.Incompatibilities[0].Message
    assert out(host, "Compare-VM", Path=vmcx, Copy=None, GenerateNewId=None)[0].Incompatibilities == []
    assert "same identifier" in error(host, "Import-VM", Path=vmcx).message
    second = error(host, "Export-VM", Name="Win11-B", Path=r"\\LAB\share\exports")
    assert "already exists" in second.message and second.category == "ResourceExists"


def test_import_copy_with_new_id_gives_a_second_vm(make_host):
    host = make_host("healthy")
    vmcx = export(host, "Win11-B")
    (copy,) = out(host, "Import-VM", Path=vmcx, Copy=None, GenerateNewId=None, VhdDestinationPath=r"D:\VMs\Copy")
    assert copy.Name == "Win11-B" and str(copy.Id) != host.vm("Win11-B").id
    imported = host.vms[str(copy.Id)]
    assert imported.vhd_paths == [r"D:\VMs\Copy\Win11-B.vhdx"] and imported.tpm_enabled
    assert out(host, "Test-Path", Path=r"D:\VMs\Copy\Win11-B.vhdx") == [True]
    assert [c.name for c in imported.checkpoints] == ["Before update"]


def test_import_registers_in_place_on_another_host_of_the_lab(make_host):
    source, target = make_host("healthy", "HV01"), make_host("fresh", "HV02")
    vmcx = export(source, "Win11-A")  # a running VM is exported with its state
    (vm,) = out(target, "Import-VM", Path=vmcx)
    assert (vm.Name, str(vm.Id), vm.State.name) == ("Win11-A", source.vm("Win11-A").id, "Saved")
    assert vm.Path == r"\\LAB\share\exports\Win11-A"
    assert error(target, "Import-VM", Path=r"\\LAB\share\exports\nothing.vmcx").category == "ObjectNotFound"
    out(target, "Set-Content", Path=r"C:\bad.vmcx", Value=b"{", Encoding="Byte")
    assert "not valid" in error(target, "Import-VM", Path=r"C:\bad.vmcx").message


def test_move_needs_live_migration_on_both_hosts(make_host):
    source, target = make_host("healthy", "HV01"), make_host("migration-target", "HV02")
    source.domain = target.domain = "lab.test"  # a workgroup pair is refused before (test_second_hop.py)
    err = error(source, "Move-VM", Name="Win11-B", DestinationHost="HV02")
    assert "not enabled on host 'HV01'" in err.message and source.vm("Win11-B")
    source.live_migration, target.live_migration = True, False
    assert "actively refused" in error(source, "Move-VM", Name="Win11-B", DestinationHost="HV02").message
    assert "No such host is known" in error(source, "Move-VM", Name="Win11-B", DestinationHost="HV09").message


def test_move_takes_the_vm_and_its_disks_to_the_peer(make_host):
    source, target = make_host("migration-source", "HV01"), make_host("migration-target", "HV02")
    vm_id = source.vm("Win11-B").id
    (moved,) = out(
        source, "Move-VM", Name="Win11-B", DestinationHost="hv02.lab.local", IncludeStorage=None, Passthru=None
    )
    assert str(moved.Id) == vm_id and moved.ComputerName == "HV02"
    assert "Win11-B" not in names(out(source, "Get-VM")) and target.vm("Win11-B").tpm_enabled
    assert out(target, "Test-Path", Path=target.vm("Win11-B").vhd_paths[0]) == [True]


def test_a_running_tpm_vm_cannot_move_to_a_host_without_its_guardian(make_host):
    source, _ = make_host("migration-source", "HV01"), make_host("migration-target", "HV02")
    err = error(source, "Move-VM", Name="Win11-A", DestinationHost="HV02")
    assert "failed at migration destination 'HV02'" in err.message and "could not be unwrapped" in err.message
    assert source.vm("Win11-A").state == "Running"


def test_concurrent_moves_in_both_directions_neither_deadlock_nor_lose_vms(make_host):
    hv01, hv02 = make_host("migration-source", "HV01"), make_host("migration-source", "HV02")
    for vm in list(hv02.vms.values()):
        vm.name = vm.name + "-2"  # distinct names; ids are distinct already
    total = len(hv01.vms) + len(hv02.vms)
    failures: list[BaseException] = []

    def shuttle(source: HostModel, target: HostModel, name: str) -> None:
        try:
            for _ in range(5):
                out(source, "Move-VM", Name=name, DestinationHost=target.name)
                out(target, "Move-VM", Name=name, DestinationHost=source.name)
                out(source, "Get-VM")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [
        threading.Thread(target=shuttle, args=(hv01, hv02, "Win11-B")),
        threading.Thread(target=shuttle, args=(hv02, hv01, "Win11-B-2")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert failures == []
    assert len(hv01.vms) + len(hv02.vms) == total


def test_benchmarks_can_grow_a_host_with_startable_tpm_vms(make_host):
    host = make_host("fresh")
    add_tpm_vms(host, 3)
    assert names(out(host, "Get-VM", Name="Bench-*")) == ["Bench-001", "Bench-002", "Bench-003"]
    out(host, "Start-VM", Name="Bench-002")
    assert host.vm("Bench-002").state == "Running"


def test_a_stopped_pipeline_changes_no_further_vms(make_host):
    host = make_host("healthy")
    inv = Invocation(host, host.lab, {"Name": ["Win11-B", "Srv-Plain"]})
    inv.cancelled.set()
    assert CMDLETS["Start-VM"](inv) == []
    assert host.vm("Win11-B").state == "Off" and host.vm("Srv-Plain").state == "Off"


def test_error_action_decides_what_an_unknown_vm_becomes(make_host):
    host = make_host("healthy")
    assert invoke(host, "Get-VM", {"Name": ["Ghost", "Win11-A"], "ErrorAction": "SilentlyContinue"})[1] == []
    with pytest.raises(CmdletError) as stopped:
        invoke(host, "Get-VM", {"Name": ["Ghost", "Win11-A"], "ErrorAction": "Stop"})
    assert stopped.value.fqid == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"


def test_downstream_of_a_command_that_wrote_nothing_a_cmdlet_does_not_run(make_host):
    """`Get-VM | Get-VMKeyProtector` on a host without VMs: no output and no missing-parameter error, as on Windows."""
    host = make_host("fresh")
    out(host, "Remove-VM", Name="Srv-Plain", Force=None)
    for name in ("Get-VMSecurity", "Get-VMKeyProtector", "Get-VMSnapshot", "Start-VM", "Remove-HgsGuardian"):
        assert invoke(host, name, {}, input=[]) == ([], []), name
    assert invoke(host, "Grant-HgsKeyProtectorAccess", {"GuardianFriendlyName": "X"}, input=[]) == ([], [])
    assert error(host, "Get-VMKeyProtector").fqid.startswith("MissingMandatoryParameter,")  # not piped: still needed
