"""Catalog: a VM's configuration as Hyper-V reports it (generation, memory, processors, disks in controller order,
network adapters with their switch, Secure Boot), and what builds a new VM from it — what the rescue of a VM whose
guardian's keys are lost everywhere sends: a new VM without a vTPM on the old VM's disks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UnexpectedReply
from ..operation import SWITCH, Cmd, Long, Operation, PipelineResult, literal_name
from ..psobjects import has_type, known_number, prop, text
from .inventory import VmFacts, is_vm, read_vm

MB = 1024 * 1024


@dataclass(frozen=True)
class NetworkAdapter:
    name: str
    switch: str  # "" when not connected


@dataclass
class VmSettings:
    """What a new VM needs to run the same guest: read from the host, kept in the rescue's job result."""

    name: str
    vm_id: str
    state: str
    generation: int
    memory_startup_bytes: int
    processor_count: int
    disks: list[str] = field(default_factory=list)  # the paths Get-VMHardDiskDrive lists, in controller order
    adapters: list[NetworkAdapter] = field(default_factory=list)
    secure_boot: bool = True
    secure_boot_template: str = ""
    same_name: int = 1  # how many VMs answer to this name (Hyper-V does not require names to be unique)

    def as_record(self) -> dict[str, Any]:
        """The settings as the job result keeps them (plain JSON)."""
        return {
            "name": self.name,
            "vm_id": self.vm_id,
            "generation": self.generation,
            "memory_startup_mb": self.memory_startup_bytes // MB,
            "processor_count": self.processor_count,
            "disks": list(self.disks),
            "network_adapters": [{"name": a.name, "switch": a.switch} for a in self.adapters],
            "secure_boot": "On" if self.secure_boot else "Off",
            "secure_boot_template": self.secure_boot_template,
        }


def _disk_order(obj: Any) -> tuple[int, int, int]:
    kind = 0 if text(prop(obj, "ControllerType")).upper() in ("IDE", "0") else 1
    return (kind, known_number(prop(obj, "ControllerNumber")) or 0, known_number(prop(obj, "ControllerLocation")) or 0)


@dataclass
class ReadVmSettings(Operation[VmSettings | None]):
    """Get-VM, Get-VMHardDiskDrive, Get-VMNetworkAdapter and Get-VMFirmware of one VM; None when there is none."""

    vm_name: str
    name: ClassVar[str] = "read_vm_settings"
    errors_are_fatal: ClassVar[bool] = False  # a missing VM answers with errors: None
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VM", "Get-VMHardDiskDrive", "Get-VMNetworkAdapter", "Get-VMFirmware")

    def statements(self) -> list[list[Cmd]]:
        name = literal_name(self.vm_name)
        return [
            [Cmd("Get-VM", {"Name": name})],
            [Cmd("Get-VMHardDiskDrive", {"VMName": name})],
            [Cmd("Get-VMNetworkAdapter", {"VMName": name})],
            [Cmd("Get-VMFirmware", {"VMName": name})],
        ]

    def parse(self, result: PipelineResult) -> VmSettings | None:
        vms = [o for o in result.output if is_vm(o)]
        if not vms:
            return None
        if len(vms) == 1 and result.errors:
            raise result.errors[0]  # a VM that is there, whose disks, adapters or firmware could not be read
        vm: VmFacts = read_vm(vms[0])
        disks = sorted((o for o in result.output if has_type(o, "HyperV.PowerShell.HardDiskDrive")), key=_disk_order)
        adapters = [o for o in result.output if has_type(o, "HyperV.PowerShell.VMNetworkAdapter")]
        firmware = next((o for o in result.output if has_type(o, "HyperV.PowerShell.VMFirmware")), None)
        return VmSettings(
            name=vm.name,
            vm_id=vm.vm_id,
            state=vm.state,
            generation=vm.generation,
            memory_startup_bytes=known_number(prop(vms[0], "MemoryStartup")) or 0,
            processor_count=known_number(prop(vms[0], "ProcessorCount")) or 1,
            disks=[text(prop(d, "Path")) for d in disks],
            adapters=[NetworkAdapter(text(prop(a, "Name")), text(prop(a, "SwitchName"))) for a in adapters],
            secure_boot=text(prop(firmware, "SecureBoot")).casefold() in ("on", "0") if firmware is not None else False,
            secure_boot_template=text(prop(firmware, "SecureBootTemplate")),
            same_name=len(vms),
        )


@dataclass
class RenameVM(Operation[None]):
    """Give a VM another name (`Rename-VM`): allowed in any state."""

    vm_name: str
    new_name: str
    name: ClassVar[str] = "rename_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Rename-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Rename-VM", {"Name": literal_name(self.vm_name), "NewName": self.new_name})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class NewVM(Operation[VmFacts]):
    """A new VM without disks (`New-VM -NoVHD`); its one network adapter joins `switch` when given. Hyper-V gives
    a new VM no vTPM: one is added only by Enable-VMTPM."""

    vm_name: str
    generation: int
    memory_startup_bytes: int
    switch: str = ""
    name: ClassVar[str] = "new_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("New-VM",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {
            "Name": self.vm_name,
            "Generation": self.generation,
            "MemoryStartupBytes": Long(self.memory_startup_bytes),
            "NoVHD": SWITCH,
        }
        if self.switch:
            params["SwitchName"] = self.switch
        return [[Cmd("New-VM", params)]]

    def parse(self, result: PipelineResult) -> VmFacts:
        found = [read_vm(o) for o in result.output if is_vm(o)]
        if not found:
            raise UnexpectedReply("New-VM returned no VM.")
        return found[0]


@dataclass
class SetProcessorCount(Operation[None]):
    vm_name: str
    count: int
    name: ClassVar[str] = "set_vm_processor"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Set-VMProcessor",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Set-VMProcessor", {"VMName": literal_name(self.vm_name), "Count": self.count})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class SetSecureBoot(Operation[None]):
    """Secure Boot on (with its template) or off (`Set-VMFirmware`), generation 2 VMs only."""

    vm_name: str
    enabled: bool
    template: str = ""
    name: ClassVar[str] = "set_vm_firmware"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Set-VMFirmware",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {
            "VMName": literal_name(self.vm_name),
            "EnableSecureBoot": "On" if self.enabled else "Off",
        }
        if self.enabled and self.template:
            params["SecureBootTemplate"] = self.template
        return [[Cmd("Set-VMFirmware", params)]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class AddHardDiskDrive(Operation[None]):
    """Attach an existing virtual hard disk at the next free location (`Add-VMHardDiskDrive -Path`)."""

    vm_name: str
    path: str
    name: ClassVar[str] = "add_vm_hard_disk_drive"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Add-VMHardDiskDrive",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Add-VMHardDiskDrive", {"VMName": literal_name(self.vm_name), "Path": self.path})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class AddNetworkAdapter(Operation[None]):
    vm_name: str
    adapter_name: str
    switch: str
    name: ClassVar[str] = "add_vm_network_adapter"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Add-VMNetworkAdapter",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {"VMName": literal_name(self.vm_name), "Name": self.adapter_name}
        if self.switch:
            params["SwitchName"] = self.switch
        return [[Cmd("Add-VMNetworkAdapter", params)]]

    def parse(self, result: PipelineResult) -> None:
        return None
