"""The simulated host's VM configuration cmdlets, in-process: what a rescue reads of a VM and builds a new VM with,
and Windows' refusals (a missing disk, a disk a running VM has open, an unknown switch, settings of a running VM)."""
# ruff: noqa: F811 - pytest fixtures imported from test_cmdlets are parameters here

from __future__ import annotations

from hypervsim.model import LAB_SWITCH
from tests.sim.test_cmdlets import error, lab, make_host, out  # noqa: F401 - shared fixtures

MB = 1024 * 1024


def test_a_vms_disks_adapters_and_firmware_are_read_with_windows_types(make_host):
    host = make_host("healthy")
    (disk,) = out(host, "Get-VMHardDiskDrive", VMName="Win11-A")
    assert disk.Path.endswith(r"\Win11-A.vhdx") and disk.ControllerType.name == "SCSI" and disk.ControllerLocation == 0
    (adapter,) = out(host, "Get-VMNetworkAdapter", VMName="Win11-A")
    assert adapter.SwitchName == LAB_SWITCH and adapter.VMName == "Win11-A"
    (firmware,) = out(host, "Get-VMFirmware", VMName="Win11-A")
    assert firmware.SecureBoot.name == "On" and firmware.SecureBootTemplate == "MicrosoftWindows"


def test_a_generation_1_vm_has_no_firmware_settings(make_host):
    host = make_host("healthy")
    with host.changing():
        host.vm("Srv-Plain").generation = 1
    assert "generation 1" in error(host, "Get-VMFirmware", VMName="Srv-Plain").message
    assert "generation 1" in error(host, "Set-VMFirmware", VMName="Srv-Plain", EnableSecureBoot="Off").message


def test_a_new_vm_has_no_vtpm_one_adapter_and_the_disks_added_in_order(make_host):
    host = make_host("healthy")
    (vm,) = out(
        host, "New-VM", Name="Copy", Generation=2, MemoryStartupBytes=2048 * MB, NoVHD=None, SwitchName="labswitch"
    )
    assert vm.Generation == 2 and vm.State.name == "Off"
    out(host, "Add-VMHardDiskDrive", VMName="Copy", Path=host.vm("Win11-B").vhd_paths[0])
    out(host, "Add-VMNetworkAdapter", VMName="Copy", Name="Second")
    out(host, "Set-VMProcessor", VMName="Copy", Count=4)
    new = host.vm("Copy")
    assert not new.tpm_enabled and new.processor_count == 4 and new.memory_mb == 2048
    assert new.network_adapters == [{"name": "Network Adapter", "switch": LAB_SWITCH}, {"name": "Second", "switch": ""}]
    assert new.vhd_paths == host.vm("Win11-B").vhd_paths


def test_new_vm_refuses_what_windows_refuses(make_host):
    host = make_host("healthy")
    assert "does not belong to the set" in error(host, "New-VM", Name="X", Generation=3, NoVHD=None).message
    assert "multiple of 2 MB" in error(host, "New-VM", Name="X", MemoryStartupBytes=33 * MB, NoVHD=None).message
    assert "unable to find a virtual switch" in error(host, "New-VM", Name="X", SwitchName="Nope", NoVHD=None).message
    assert all(vm.name != "X" for vm in host.vms.values())


def test_a_disk_that_is_missing_or_open_in_a_running_vm_cannot_be_added(make_host):
    host = make_host("healthy")
    out(host, "New-VM", Name="Copy", Generation=2, NoVHD=None)
    missing = error(host, "Add-VMHardDiskDrive", VMName="Copy", Path=r"C:\VMs\none.vhdx")
    assert "cannot find the file specified. (0x80070002)" in missing.message
    running = host.vm("Win11-A").vhd_paths[0]  # Win11-A runs in the healthy scenario
    in_use = error(host, "Add-VMHardDiskDrive", VMName="Copy", Path=running)
    assert "being used by another process" in in_use.message and host.vm("Copy").vhd_paths == []


def test_processors_and_secure_boot_change_only_while_the_vm_is_off_and_rename_works_in_any_state(make_host):
    host = make_host("healthy")
    assert "current state" in error(host, "Set-VMProcessor", VMName="Win11-A", Count=2).message
    assert "current state" in error(host, "Set-VMFirmware", VMName="Win11-A", EnableSecureBoot="Off").message
    assert "could not be found" in error(host, "Set-VMFirmware", VMName="Win11-B", SecureBootTemplate="Nope").message
    out(host, "Set-VMFirmware", VMName="Win11-B", EnableSecureBoot="Off")
    assert not host.vm("Win11-B").secure_boot
    out(host, "Rename-VM", Name="Win11-A", NewName="Win11-A (keys lost)")
    assert host.vm("Win11-A (keys lost)").state == "Running"
