"""Catalog: what the console changes on a VM — power, vTPM, key protector, saved state — and how it moves a VM
between hosts (export / compare / import, live migration, removal).

Reads of a VM's security settings and key protector for many VMs at once live in inventory.py (ReadVmDetails);
the few single-VM reads here are what the workflows re-check right before and after a change.

Hyper-V's -Name/-VMName are wildcard patterns: every VM name goes out through literal_name(), so a VM literally
named `*` or `Win11-?` addresses itself only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import UnexpectedReply
from ..keyprotector import MIN_KEY_PROTECTOR_BYTES
from ..operation import SWITCH, Cmd, Operation, PipelineResult, literal_name
from ..psobjects import byte_string, flag, prop, text
from .guardians import raise_unless_not_found
from .inventory import VmFacts, is_vm, read_vm

# -- reads ------------------------------------------------------------------------------------------------------


def _is_missing_vm(error: Any) -> bool:
    blob = f"{getattr(error, 'fqid', '')} {getattr(error, 'message', '')}".lower()
    return "unable to find a virtual machine" in blob or "invalidparameter" in blob


@dataclass
class GetVM(Operation[VmFacts | None]):
    """One VM by name (`Get-VM -Name`): its id, state, generation and path; None when the host has no such VM."""

    vm_name: str
    name: ClassVar[str] = "get_vm"
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-VM", {"Name": literal_name(self.vm_name)})]]

    def parse(self, result: PipelineResult) -> VmFacts | None:
        found = [read_vm(o) for o in result.output if is_vm(o)]
        if found:
            return found[0]
        if result.errors and not all(_is_missing_vm(e) for e in result.errors):
            raise result.errors[0]
        return None


@dataclass
class VmSecurity:
    tpm_enabled: bool
    key_protector: bytes = b""

    @property
    def has_key_protector(self) -> bool:
        return len(self.key_protector) >= MIN_KEY_PROTECTOR_BYTES


@dataclass
class GetVmSecurity(Operation[VmSecurity]):
    """Whether the VM's TPM is on, and its raw key protector (fewer than 16 bytes means none)."""

    vm_name: str
    name: ClassVar[str] = "get_vm_security"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VMSecurity", "Get-VMKeyProtector")

    def statements(self) -> list[list[Cmd]]:
        return [
            [Cmd("Get-VMSecurity", {"VMName": literal_name(self.vm_name)})],
            [Cmd("Get-VMKeyProtector", {"VMName": literal_name(self.vm_name)})],
        ]

    def parse(self, result: PipelineResult) -> VmSecurity:
        security = next((o for o in result.output if prop(o, "TpmEnabled") is not None), None)
        raw = next((byte_string(o) for o in result.output if isinstance(o, bytes | bytearray | list)), b"")
        return VmSecurity(tpm_enabled=flag(prop(security, "TpmEnabled")), key_protector=raw)


@dataclass
class VmHostFacts:
    computer_name: str
    live_migration: bool
    virtual_machine_path: str = ""
    virtual_hard_disk_path: str = ""
    migration_authentication: str = ""  # CredSSP | Kerberos (VirtualMachineMigrationAuthenticationType)


@dataclass
class GetVmHost(Operation[VmHostFacts]):
    """The Hyper-V host's settings that migration needs: its computer name, live migration, default folders."""

    name: ClassVar[str] = "get_vm_host"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VMHost",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-VMHost")]]

    def parse(self, result: PipelineResult) -> VmHostFacts:
        obj = result.output[0] if result.output else None
        return VmHostFacts(
            computer_name=text(prop(obj, "ComputerName", "Name")),
            live_migration=flag(prop(obj, "VirtualMachineMigrationEnabled")),
            virtual_machine_path=text(prop(obj, "VirtualMachinePath")),
            virtual_hard_disk_path=text(prop(obj, "VirtualHardDiskPath")),
            migration_authentication=migration_authentication(prop(obj, "VirtualMachineMigrationAuthenticationType")),
        )


MIGRATION_AUTHENTICATION = {"0": "CredSSP", "1": "Kerberos"}  # the enum's values, when it arrives as a number


def migration_authentication(value: Any) -> str:
    """The enum's name, whether it arrives as its name (depth 1), its number or an enum object."""
    name = text(value).rsplit(".", 1)[-1]
    return MIGRATION_AUTHENTICATION.get(name, name)


@dataclass
class Membership:
    """Whether the host is in a domain (Win32_ComputerSystem): live migration needs both hosts in one."""

    part_of_domain: bool
    domain: str  # the domain, or the workgroup's name

    def __str__(self) -> str:
        return f"domain {self.domain}" if self.part_of_domain else f"workgroup {self.domain}"


@dataclass
class ReadMembership(Operation[Membership]):
    """The host's domain membership: `Get-CimInstance Win32_ComputerSystem` (PartOfDomain, Domain)."""

    name: ClassVar[str] = "read_membership"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-CimInstance",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-CimInstance", {"ClassName": "Win32_ComputerSystem"})]]

    def parse(self, result: PipelineResult) -> Membership:
        obj = result.output[0] if result.output else None
        if obj is None:
            raise UnexpectedReply("Get-CimInstance Win32_ComputerSystem returned nothing.")
        return Membership(flag(prop(obj, "PartOfDomain")), text(prop(obj, "Domain")))


@dataclass
class TestPath(Operation[bool]):
    """Whether a file or folder exists on the host (`Test-Path -LiteralPath`)."""

    path: str
    name: ClassVar[str] = "test_path"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Test-Path",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Test-Path", {"LiteralPath": self.path})]]

    def parse(self, result: PipelineResult) -> bool:
        return bool(result.output) and flag(result.output[0])


# -- power and saved state --------------------------------------------------------------------------------------


@dataclass
class StartVM(Operation[None]):
    """Start a VM; the host's error (e.g. "The key protector could not be unwrapped") is raised as is."""

    vm_name: str
    name: ClassVar[str] = "start_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Start-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Start-VM", {"Name": literal_name(self.vm_name)})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class StopVM(Operation[None]):
    """Shut a VM down (`-Force`: no prompt); `turn_off` cuts the power instead, which also discards a saved state."""

    vm_name: str
    turn_off: bool = False
    name: ClassVar[str] = "stop_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Stop-VM",)

    def statements(self) -> list[list[Cmd]]:
        params: dict[str, Any] = {"Name": literal_name(self.vm_name), "Force": SWITCH}
        if self.turn_off:
            params["TurnOff"] = SWITCH
        return [[Cmd("Stop-VM", params)]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class RemoveSavedState(Operation[None]):
    """Discard a VM's saved state (a saved state from before a TPM change cannot be resumed anyway)."""

    vm_name: str
    name: ClassVar[str] = "remove_saved_state"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-VMSavedState",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-VMSavedState", {"VMName": literal_name(self.vm_name)})]]

    def parse(self, result: PipelineResult) -> None:
        return None


# -- vTPM and key protector -------------------------------------------------------------------------------------


@dataclass
class EnableTpm(Operation[None]):
    vm_name: str
    name: ClassVar[str] = "enable_tpm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Enable-VMTPM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Enable-VMTPM", {"VMName": literal_name(self.vm_name)})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class DisableTpm(Operation[None]):
    vm_name: str
    name: ClassVar[str] = "disable_tpm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Disable-VMTPM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Disable-VMTPM", {"VMName": literal_name(self.vm_name)})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class NewLocalKeyProtector(Operation[None]):
    """Seal the VM to the host's UntrustedGuardian (created with fresh certificates when missing)."""

    vm_name: str
    name: ClassVar[str] = "new_local_key_protector"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Set-VMKeyProtector",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Set-VMKeyProtector", {"VMName": literal_name(self.vm_name), "NewLocalKeyProtector": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class SetKeyProtector(Operation[None]):
    """Give the VM these key protector bytes (e.g. the protector with one more guardian granted access)."""

    vm_name: str
    key_protector: bytes
    name: ClassVar[str] = "set_key_protector"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Set-VMKeyProtector",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Set-VMKeyProtector", {"VMName": literal_name(self.vm_name), "KeyProtector": self.key_protector})]]

    def parse(self, result: PipelineResult) -> None:
        return None

    def __repr__(self) -> str:
        return f"SetKeyProtector({self.vm_name!r}, <{len(self.key_protector)} bytes>)"


@dataclass
class GrantKeyProtectorAccess(Operation[bytes]):
    """Add a guardian of this host (by name, e.g. one imported from another host's public metadata) to a key
    protector. Needs the owner's private signing key here. Returns the new protector's bytes, for SetKeyProtector:
    the VM itself is not changed by this operation."""

    key_protector: bytes
    guardian_name: str
    name: ClassVar[str] = "grant_key_protector_access"
    read_only: ClassVar[bool] = True  # it computes a new protector; nothing on the host changes
    CMDLETS: ClassVar[tuple[str, ...]] = ("ConvertTo-HgsKeyProtector", "Grant-HgsKeyProtectorAccess")

    def statements(self) -> list[list[Cmd]]:
        grant = {"GuardianFriendlyName": self.guardian_name, "AllowExpired": SWITCH, "AllowUntrustedRoot": SWITCH}
        return [
            [
                Cmd("ConvertTo-HgsKeyProtector", {"Bytes": self.key_protector}),
                Cmd("Grant-HgsKeyProtectorAccess", grant),
            ]
        ]

    def parse(self, result: PipelineResult) -> bytes:
        raw = next((byte_string(prop(o, "RawData")) for o in result.output if prop(o, "RawData") is not None), b"")
        if len(raw) < MIN_KEY_PROTECTOR_BYTES:
            raise UnexpectedReply("Grant-HgsKeyProtectorAccess returned no key protector.")
        return raw

    def __repr__(self) -> str:
        return f"GrantKeyProtectorAccess(<{len(self.key_protector)} bytes>, {self.guardian_name!r})"


@dataclass
class RevokeKeyProtectorAccess(Operation[bytes]):
    """Take a guardian (by name) out of a key protector: the undo of GrantKeyProtectorAccess. Needs the owner's
    private signing key here. Returns the new protector's bytes, for SetKeyProtector."""

    key_protector: bytes
    guardian_name: str
    name: ClassVar[str] = "revoke_key_protector_access"
    read_only: ClassVar[bool] = True  # it computes a new protector; nothing on the host changes
    CMDLETS: ClassVar[tuple[str, ...]] = ("ConvertTo-HgsKeyProtector", "Revoke-HgsKeyProtectorAccess")

    def statements(self) -> list[list[Cmd]]:
        return [
            [
                Cmd("ConvertTo-HgsKeyProtector", {"Bytes": self.key_protector}),
                Cmd("Revoke-HgsKeyProtectorAccess", {"GuardianFriendlyName": self.guardian_name}),
            ]
        ]

    def parse(self, result: PipelineResult) -> bytes:
        raw = next((byte_string(prop(o, "RawData")) for o in result.output if prop(o, "RawData") is not None), b"")
        if len(raw) < MIN_KEY_PROTECTOR_BYTES:
            raise UnexpectedReply("Revoke-HgsKeyProtectorAccess returned no key protector.")
        return raw

    def __repr__(self) -> str:
        return f"RevokeKeyProtectorAccess(<{len(self.key_protector)} bytes>, {self.guardian_name!r})"


# -- moving VMs -------------------------------------------------------------------------------------------------


@dataclass
class ExportVM(Operation[None]):
    """Export a VM (configuration with its key protector, and its disks) to `<path>\\<VM name>`."""

    vm_name: str
    path: str
    name: ClassVar[str] = "export_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Export-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Export-VM", {"Name": literal_name(self.vm_name), "Path": self.path})]]

    def parse(self, result: PipelineResult) -> None:
        return None


def exported_config_path(folder: str, vm_id: str) -> str:
    """Where Export-VM writes the configuration Import-VM needs: <folder>\\Virtual Machines\\<ID>.vmcx."""
    return f"{folder.rstrip(chr(92))}\\Virtual Machines\\{vm_id.upper()}.vmcx"


def _import_params(op: ImportOptions) -> dict[str, Any]:
    params: dict[str, Any] = {"Path": op.path}
    if op.copy:
        params["Copy"] = SWITCH
    if op.generate_new_id:
        params["GenerateNewId"] = SWITCH
    if op.copy and op.virtual_machine_path:
        params["VirtualMachinePath"] = op.virtual_machine_path
    if op.copy and op.vhd_destination_path:
        params["VhdDestinationPath"] = op.vhd_destination_path
    return params


@dataclass
class ImportOptions:
    """Where the exported configuration is, and how to import it: copy (the export stays) or register in place."""

    path: str
    copy: bool = True
    generate_new_id: bool = False
    virtual_machine_path: str = ""
    vhd_destination_path: str = ""


@dataclass
class CompatibilityReport:
    vm_name: str
    vm_id: str
    incompatibilities: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.incompatibilities


@dataclass
class CompareVM(Operation[CompatibilityReport]):
    """What Import-VM would find wrong on this host (`Compare-VM`), without changing anything."""

    options: ImportOptions
    name: ClassVar[str] = "compare_vm"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Compare-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Compare-VM", _import_params(self.options))]]

    def parse(self, result: PipelineResult) -> CompatibilityReport:
        return read_report(result)


@dataclass
class CompareMove(Operation[CompatibilityReport]):
    """What Move-VM would find wrong in moving a VM to `destination_host` (`Compare-VM -DestinationHost`, run on the
    source), without changing anything: live migration off on either host, the VM's ID already there, …"""

    vm_name: str
    destination_host: str
    destination_storage_path: str = ""
    name: ClassVar[str] = "compare_move"
    CMDLETS: ClassVar[tuple[str, ...]] = ("Compare-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Compare-VM", _move_params(self.vm_name, self.destination_host, self.destination_storage_path))]]

    def parse(self, result: PipelineResult) -> CompatibilityReport:
        return read_report(result)


def read_report(result: PipelineResult) -> CompatibilityReport:
    """A Microsoft.HyperV.PowerShell.VMCompatibilityReport: the VM and the messages of its incompatibilities."""
    report = result.output[0] if result.output else None
    vm = prop(report, "VM")
    problems = prop(report, "Incompatibilities") or []
    if not isinstance(problems, list):
        problems = [problems]
    messages = [text(prop(p, "Message")) or text(p) for p in problems]
    return CompatibilityReport(
        vm_name=text(prop(vm, "Name", "VMName")),
        vm_id=text(prop(vm, "VMId", "Id")).lower(),
        incompatibilities=[m for m in messages if m],
    )


@dataclass
class ImportVM(Operation[VmFacts]):
    """Import (register) an exported VM on this host; returns the VM as registered (its id may be new)."""

    options: ImportOptions
    name: ClassVar[str] = "import_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Import-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Import-VM", _import_params(self.options))]]

    def parse(self, result: PipelineResult) -> VmFacts:
        found = [read_vm(o) for o in result.output if is_vm(o)]
        if not found:
            raise UnexpectedReply("Import-VM returned no virtual machine.")
        return found[0]


@dataclass
class MoveVM(Operation[None]):
    """Live-migrate a VM with its storage to another host (run on the source; the host connects to the target)."""

    vm_name: str
    destination_host: str
    destination_storage_path: str = ""
    name: ClassVar[str] = "move_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Move-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Move-VM", _move_params(self.vm_name, self.destination_host, self.destination_storage_path))]]

    def parse(self, result: PipelineResult) -> None:
        return None


def _move_params(vm_name: str, destination_host: str, storage_path: str) -> dict[str, Any]:
    """Compare-VM and Move-VM of a shared-nothing move: the VM with all its files to one folder of the target."""
    params: dict[str, Any] = {
        "Name": literal_name(vm_name),
        "DestinationHost": destination_host,
        "IncludeStorage": SWITCH,
    }
    if storage_path:
        params["DestinationStoragePath"] = storage_path
    return params


@dataclass
class RemoveVM(Operation[None]):
    """Unregister a VM (its disks stay on disk, as on Windows)."""

    vm_name: str
    name: ClassVar[str] = "remove_vm"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-VM",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-VM", {"Name": literal_name(self.vm_name), "Force": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class RemoveFolder(Operation[None]):
    """Delete a folder and everything in it (an export left on the lab share); an absent folder is fine."""

    path: str
    name: ClassVar[str] = "remove_folder"
    read_only: ClassVar[bool] = False
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-Item",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-Item", {"LiteralPath": self.path, "Recurse": SWITCH, "Force": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        raise_unless_not_found(result)
        return None


@dataclass
class GenerateLocalGuardian(Operation[None]):
    """Create a guardian with fresh self-signed certificates, as Hyper-V does on a host's first TPM enable — for a
    migration target that has no guardian of its own yet to be authorised in a VM's key protector."""

    guardian_name: str = "UntrustedGuardian"
    name: ClassVar[str] = "generate_local_guardian"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("New-HgsGuardian",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("New-HgsGuardian", {"Name": self.guardian_name, "GenerateCertificates": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        return None
