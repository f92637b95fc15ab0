"""Hyper-V cmdlets that read and build a VM's configuration: disks, network adapters, firmware, processors, a new
VM, a new name. What the rescue of a VM with lost keys sends (a new VM without a vTPM on the old VM's disks)."""

from __future__ import annotations

import uuid
from typing import Any

from hypervsim.cmdlets import CmdletError, Invocation, cmdlet
from hypervsim.cmdlets.vms import NS, each_vm, invalid_state, target_vms, vm_error, vm_object
from hypervsim.model import SECURE_BOOT_TEMPLATES, HostModel, PathOutsideArea, VirtualMachine
from hypervsim.types import ControllerType, OnOffState, dotnet_object

MB = 1024 * 1024
MAX_PROCESSORS = 64  # the simulated host's logical processors
VM_COMPONENT = [f"{NS}.VMComponentObject", f"{NS}.VirtualizationObject"]


def _owner(host: HostModel, vm: VirtualMachine) -> dict[str, Any]:
    return {"VMName": vm.name, "VMId": uuid.UUID(vm.id), "ComputerName": host.name, "IsDeleted": False}


def _controller(vm: VirtualMachine) -> ControllerType:
    return ControllerType.SCSI if vm.generation == 2 else ControllerType.IDE


def disk_object(host: HostModel, vm: VirtualMachine, location: int) -> Any:
    kind = _controller(vm)
    return dotnet_object(
        [f"{NS}.HardDiskDrive", f"{NS}.Drive", *VM_COMPONENT],
        {
            **_owner(host, vm),
            "Name": f"Hard Drive on {kind.name} controller number 0 at location {location}",
            "Path": vm.vhd_paths[location],
            "ControllerType": kind,
            "ControllerNumber": 0,
            "ControllerLocation": location,
            "DiskNumber": None,
        },
        to_string=f"HardDiskDrive (Name = 'Hard Drive on {kind.name} controller number 0 at location {location}')",
    )


def adapter_object(host: HostModel, vm: VirtualMachine, adapter: dict[str, str]) -> Any:
    mac = uuid.uuid5(uuid.UUID(vm.id), adapter["name"]).hex[:12].upper()
    return dotnet_object(
        [f"{NS}.VMNetworkAdapter", f"{NS}.VMNetworkAdapterBase", *VM_COMPONENT],
        {
            **_owner(host, vm),
            "Name": adapter["name"],
            "SwitchName": adapter["switch"] or None,
            "Connected": bool(adapter["switch"]),
            "MacAddress": "00155D" + mac[6:],
            "IsLegacy": False,
        },
        to_string=f"VMNetworkAdapter (Name = '{adapter['name']}', VMName = '{vm.name}')",
    )


def firmware_object(host: HostModel, vm: VirtualMachine) -> Any:
    return dotnet_object(
        [f"{NS}.VMFirmware", *VM_COMPONENT],
        {
            **_owner(host, vm),
            "SecureBoot": OnOffState.On if vm.secure_boot else OnOffState.Off,
            "SecureBootTemplate": vm.secure_boot_template,
            "PreferredNetworkBootProtocol": "IPv4",
            "BootOrder": "Microsoft.HyperV.PowerShell.VMComponentObject[]",
        },
        to_string=f"VMFirmware (VMName = '{vm.name}')",
    )


def generation_one(vm: VirtualMachine) -> CmdletError:
    """Firmware settings exist on generation 2 VMs only (a generation 1 VM has a BIOS: Get-VMBios)."""
    return vm_error(
        f"The operation cannot be performed because '{vm.name}' is a generation 1 virtual machine.",
        "InvalidParameter",
        "InvalidArgument",
        vm.name,
    )


# -- reads -------------------------------------------------------------------------------------------------


@cmdlet("Get-VMHardDiskDrive", f"{NS}.Commands.GetVMHardDiskDrive", "VMName VM ComputerName ControllerType", "VMName")
def get_vm_hard_disk_drive(inv: Invocation) -> list[Any]:
    return [disk_object(inv.host, vm, i) for vm in target_vms(inv) for i in range(len(vm.vhd_paths))]


@cmdlet("Get-VMNetworkAdapter", f"{NS}.Commands.GetVMNetworkAdapter", "VMName VM ComputerName Name", "VMName")
def get_vm_network_adapter(inv: Invocation) -> list[Any]:
    return [adapter_object(inv.host, vm, a) for vm in target_vms(inv) for a in vm.network_adapters]


@cmdlet("Get-VMFirmware", f"{NS}.Commands.GetVMFirmware", "VMName VM ComputerName", "VMName")
def get_vm_firmware(inv: Invocation) -> list[Any]:
    found = []
    for vm in target_vms(inv):
        if vm.generation != 2:
            inv.errors.append(generation_one(vm))
        else:
            found.append(firmware_object(inv.host, vm))
    return found


# -- a new VM ----------------------------------------------------------------------------------------------


def _validate_generation(value: Any) -> int:
    if str(value) not in ("1", "2"):
        raise CmdletError(
            f"Cannot validate argument on parameter 'Generation'. The argument \"{value}\" does not belong to the set "
            '"1,2" specified by the ValidateSet attribute. Supply an argument that is in the set and then try the '
            "command again.",
            "ParameterArgumentValidationError",
            "InvalidData",
            ["System.Management.Automation.ParameterBindingValidationException"],
        )
    return int(str(value))


def _startup_memory(name: str, value: Any) -> int:
    amount = int(value) if value is not None else 1024 * MB
    if amount < 32 * MB or amount % (2 * MB):
        raise vm_error(
            f"Failed to modify device 'Memory'.\r\n\r\nInvalid startup memory amount assigned for '{name}'. The "
            "amount must be at least 32 MB and a multiple of 2 MB.",
            "InvalidParameter",
            "InvalidArgument",
            name,
        )
    return amount // MB


def switch_not_found(name: str) -> CmdletError:
    return vm_error(
        f'Hyper-V was unable to find a virtual switch with name "{name}".', "InvalidParameter", "InvalidArgument", name
    )


def _known_switch(host: HostModel, name: str) -> str:
    match = next((s for s in host.switches if s.casefold() == name.casefold()), None)
    if match is None:
        raise switch_not_found(name)
    return match


@cmdlet(
    "New-VM",
    f"{NS}.Commands.NewVM",
    "Name Generation MemoryStartupBytes SwitchName BootDevice Path Version ComputerName Force AsJob",
    "Name MemoryStartupBytes",
    True,
    sets={"No VHD": "NoVHD", "Existing VHD": "VHDPath!"},
    default_set="No VHD",
)
def new_vm(inv: Invocation) -> list[Any]:
    """A new VM, Off, with one network adapter ("Network Adapter", connected to -SwitchName when given). Hyper-V
    allows a second VM of the same name: VMs are told apart by id."""
    name = str(inv.get("Name") or "New Virtual Machine")
    generation = _validate_generation(inv.get("Generation", 1))
    memory = _startup_memory(name, inv.get("MemoryStartupBytes"))
    switch = _known_switch(inv.host, str(inv.get("SwitchName"))) if inv.get("SwitchName") else ""
    disks = [_existing_disk(inv, str(inv.get("VHDPath")))] if inv.parameter_set == "Existing VHD" else []
    vm = VirtualMachine(id=str(uuid.uuid4()), name=name, generation=generation, memory_mb=memory, vhd_paths=disks)
    vm.processor_count = 1
    vm.network_adapters = [{"name": "Network Adapter", "switch": switch}]
    with inv.host.changing():
        inv.host.vms[vm.id] = vm
    return [vm_object(inv.host, vm)]


def _existing_disk(inv: Invocation, path: str, adding_to: VirtualMachine | None = None) -> str:
    """A virtual hard disk to attach: it must exist, and no running VM may have it open."""
    failed = "Failed to add device 'Virtual Hard Disk'."
    try:
        exists = inv.host.files.resolve(path).is_file()
    except PathOutsideArea:
        exists = False
    if not exists:
        raise vm_error(
            f"{failed}\r\n\r\nThe system cannot find the file specified. (0x80070002)",
            "ObjectNotFound",
            "ObjectNotFound",
        )
    for other in inv.host.vms.values():
        in_use = any(p.casefold() == path.casefold() for p in other.vhd_paths)
        if other is not adding_to and other.state == "Running" and in_use:
            raise vm_error(
                f"{failed}\r\n\r\nThe process cannot access the file because it is being used by another process. "
                "(0x80070020)",
                "InvalidOperation",
                "InvalidOperation",
            )
    return path


# -- changes -----------------------------------------------------------------------------------------------


@cmdlet(
    "Add-VMHardDiskDrive",
    f"{NS}.Commands.AddVMHardDiskDrive",
    "VMName VM ComputerName Path ControllerType ControllerNumber ControllerLocation Passthru",
    "VMName",
    True,
)
def add_vm_hard_disk_drive(inv: Invocation) -> list[Any]:
    inv.require("Path")

    def add(vm: VirtualMachine) -> None:
        vm.vhd_paths.append(_existing_disk(inv, str(inv.get("Path")), vm))

    return each_vm(inv, target_vms(inv), add)


@cmdlet(
    "Add-VMNetworkAdapter", f"{NS}.Commands.AddVMNetworkAdapter", "VMName VM ComputerName Name SwitchName Passthru",
    "VMName", True,
)  # fmt: skip
def add_vm_network_adapter(inv: Invocation) -> list[Any]:
    switch = _known_switch(inv.host, str(inv.get("SwitchName"))) if inv.get("SwitchName") else ""

    def add(vm: VirtualMachine) -> None:
        vm.network_adapters.append({"name": str(inv.get("Name") or "Network Adapter"), "switch": switch})

    return each_vm(inv, target_vms(inv), add)


@cmdlet(
    "Set-VMFirmware",
    f"{NS}.Commands.SetVMFirmware",
    "VMName VM ComputerName EnableSecureBoot SecureBootTemplate Passthru",
    "VMName",
    True,
)
def set_vm_firmware(inv: Invocation) -> list[Any]:
    """Secure Boot on or off, and its template: generation 2 only, and only while the VM is off."""
    enable = inv.get("EnableSecureBoot")
    template = inv.get("SecureBootTemplate")
    if enable is not None and str(enable).casefold() not in ("on", "off"):
        raise CmdletError(
            f"Cannot bind parameter 'EnableSecureBoot'. Cannot convert value \"{enable}\" to type "
            '"Microsoft.HyperV.PowerShell.OnOffState". Error: "Unable to match the identifier name '
            f"{enable} to a valid enumerator name. Specify one of the following enumerator names and try again:\r\n"
            'On, Off"',
            "CannotConvertArgumentNoMessage",
            "InvalidArgument",
            ["System.Management.Automation.ParameterBindingException"],
        )
    known = {t.casefold(): t for t in SECURE_BOOT_TEMPLATES}
    if template is not None and str(template).casefold() not in known:
        raise vm_error(
            f"The secure boot template '{template}' could not be found.", "InvalidParameter", "InvalidArgument"
        )

    def change(vm: VirtualMachine) -> None:
        if vm.generation != 2:
            raise generation_one(vm)
        if vm.state != "Off":
            raise invalid_state(vm)
        if enable is not None:
            vm.secure_boot = str(enable).casefold() == "on"
        if template is not None:
            vm.secure_boot_template = known[str(template).casefold()]

    return each_vm(inv, target_vms(inv), change)


@cmdlet("Set-VMProcessor", f"{NS}.Commands.SetVMProcessor", "VMName VM ComputerName Count Passthru", "VMName", True)
def set_vm_processor(inv: Invocation) -> list[Any]:
    count = int(inv.get("Count")) if inv.get("Count") is not None else None

    def change(vm: VirtualMachine) -> None:
        if count is None:
            return
        if vm.state != "Off":
            raise invalid_state(vm)
        if not 1 <= count <= MAX_PROCESSORS:
            raise vm_error(
                f"Failed to modify device 'Processor'.\r\n\r\nThe number of virtual processors ({count}) for "
                f"'{vm.name}' must be between 1 and {MAX_PROCESSORS}.",
                "InvalidParameter",
                "InvalidArgument",
                vm.name,
            )
        vm.processor_count = count

    return each_vm(inv, target_vms(inv), change)


@cmdlet("Rename-VM", f"{NS}.Commands.RenameVM", "Name VM ComputerName NewName! Passthru", "Name NewName", True)
def rename_vm(inv: Invocation) -> list[Any]:
    """A new name, in any state; Hyper-V does not require names to be unique."""
    new_name = str(inv.get("NewName"))

    def rename(vm: VirtualMachine) -> None:
        vm.name = new_name

    return each_vm(inv, target_vms(inv, "Name"), rename)
