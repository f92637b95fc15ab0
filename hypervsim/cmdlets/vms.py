"""Hyper-V cmdlets: VMs, their security settings and key protectors, checkpoints, export/import and migration."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import shutil
import uuid
import weakref
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from hypervsim import keyprotector, logon, wildcards
from hypervsim.certs import guardian_pair
from hypervsim.cmdlets import BINDING_EXCEPTION, CmdletError, Invocation, cmdlet, unresolved_parameter_set
from hypervsim.cmdlets.files import local_path, read_host_file
from hypervsim.cmdlets.utility import text_of, type_name_of
from hypervsim.model import (
    LOCAL_GUARDIAN,
    MIGRATION_CREDSSP,
    MIGRATION_KERBEROS,
    VHD_ROOT,
    VM_ROOT,
    Guardian,
    HostModel,
    SavedState,
    VirtualMachine,
)
from hypervsim.types import (
    CompatibilityOperation,
    MigrationAuthenticationType,
    SnapshotType,
    VMHeartbeatStatus,
    VMState,
    dotnet_object,
    property_of,
)

NS = "Microsoft.HyperV.PowerShell"
VIRTUALIZATION = [f"{NS}.VirtualizationException", "System.Exception"]
VMCX_FORMAT = "hypervsim-vmcx/1"
VM_PARAMS = "VMName VM ComputerName Passthru"


def vm_error(
    message: str, fqid: str = "Unspecified", category: str = "NotSpecified", target: Any = None
) -> CmdletError:
    return CmdletError(message, fqid, category, VIRTUALIZATION, target)


def general_access_denied(operation: str, path: str, target: Any = None) -> CmdletError:
    """Hyper-V's answer, and its event 13000 text, when the session's logon cannot reach a share (the second hop)."""
    return vm_error(
        f"{operation}\r\n\r\nThe Virtual Machine Management Service encountered an error while accessing '{path}': "
        "General access denied error (0x80070005).",
        "AccessDenied",
        "PermissionDenied",
        target,
    )


def vm_not_found(name: str) -> CmdletError:
    return vm_error(
        f'Hyper-V was unable to find a virtual machine with name "{name}".', "InvalidParameter", "InvalidArgument", name
    )


def vm_id_not_found(vm_id: str) -> CmdletError:
    return vm_error(
        f'Hyper-V was unable to find a virtual machine with id "{vm_id}".', "InvalidParameter", "InvalidArgument", vm_id
    )


def invalid_state(vm: VirtualMachine) -> CmdletError:
    return vm_error(
        f"The operation cannot be performed while the virtual machine '{vm.name}' is in its current state.",
        "InvalidState",
        "InvalidOperation",
        vm.name,
    )


# -- output shapes ------------------------------------------------------------------------------------------


def vm_object(host: HostModel, vm: VirtualMachine) -> Any:
    running = vm.state == "Running"
    adapted = {
        "ComputerName": host.name,
        "Name": vm.name,
        "Id": uuid.UUID(vm.id),
        "VMId": uuid.UUID(vm.id),
        "VMName": vm.name,
        "State": VMState[vm.state],
        "Generation": vm.generation,
        "Version": "10.0",
        "Path": vm.path,
        "ConfigurationLocation": vm.configuration_location,
        "CheckpointFileLocation": vm.path,
        "SnapshotFileLocation": vm.path,
        "IsClustered": False,
        "CPUUsage": 3 if running else 0,
        "MemoryAssigned": vm.memory_mb * 1024 * 1024 if running else 0,
        "MemoryStartup": vm.memory_mb * 1024 * 1024,
        "ProcessorCount": vm.processor_count,
        "Uptime": dt.timedelta(hours=5) if running else dt.timedelta(0),
        "Heartbeat": VMHeartbeatStatus.OkApplicationsHealthy if running else None,
        "Status": "Operating normally",
        "ParentSnapshotName": vm.checkpoints[-1].name if vm.checkpoints else None,
        "CreationTime": dt.datetime.fromisoformat(vm.created),
    }
    return dotnet_object(
        [f"{NS}.VirtualMachine", f"{NS}.VirtualMachineBase", f"{NS}.VirtualizationObject"],
        adapted,
        to_string=f"VirtualMachine (Name = '{vm.name}') [Id = '{vm.id}']",
    )


def security_object(host: HostModel, vm: VirtualMachine) -> Any:
    """VMSecurity: it names its host but not its VM, so a caller asking for several VMs cannot tell the answers
    apart by a property. A lenient host still adds VMName and VMId, as the simulator used to."""
    properties: dict[str, Any] = {
        "TpmEnabled": vm.tpm_enabled,
        "KsdEnabled": False,
        "Shielded": False,
        "EncryptStateAndVmMigrationTraffic": vm.tpm_enabled,
        "VirtualizationBasedSecurityOptOut": False,
        "BindToHostTpm": False,
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    if not host.strict.security_without_vm:
        properties |= {"VMName": vm.name, "VMId": uuid.UUID(vm.id)}
    return dotnet_object(
        [f"{NS}.VMSecurity", f"{NS}.VMComponentObject", f"{NS}.VirtualizationObject"],
        properties,
        to_string=f"{NS}.VMSecurity",
    )


def snapshot_object(host: HostModel, vm: VirtualMachine, index: int) -> Any:
    checkpoint = vm.checkpoints[index]
    return dotnet_object(
        [f"{NS}.VMSnapshot", f"{NS}.VirtualMachineBase", f"{NS}.VirtualizationObject"],
        {
            "ComputerName": host.name,
            "Name": checkpoint.name,
            "Id": uuid.UUID(checkpoint.id),
            "VMName": vm.name,
            "VMId": uuid.UUID(vm.id),
            "SnapshotType": SnapshotType.Standard,
            "CreationTime": dt.datetime.fromisoformat(checkpoint.created),
            "ParentSnapshotName": vm.checkpoints[index - 1].name if index else None,
            "Path": vm.path,
            "State": VMState.Off,
        },
        to_string=f"VMSnapshot (Name = '{checkpoint.name}') [VMName = '{vm.name}']",
    )


# -- targeting ----------------------------------------------------------------------------------------------


def target_vms(inv: Invocation, parameter: str = "VMName") -> list[VirtualMachine]:
    """VMs named by a [string[]] parameter (wildcard patterns) or given as VM objects / pipeline input.

    An unknown name is a non-terminating error, as on Windows; the other VMs are still processed.
    """
    names = inv.strings(parameter)
    objects = inv.get("VM") or ([] if names else inv.input)
    objects = list(objects) if isinstance(objects, list | tuple) else [objects]
    if not names and not objects:
        inv.require_input(parameter)
    found: list[VirtualMachine] = []
    matches = [_named(inv, name) for name in names] + [_addressed(inv, obj) for obj in objects]
    for vm in (vm for group in matches for vm in group):
        if vm not in found:
            found.append(vm)
    return found


def _named(inv: Invocation, name: str) -> list[VirtualMachine]:
    """The VMs a name parameter matches. Windows treats it as a wildcard pattern, so `Win11-?` also matches
    Win11-A; a lenient host matches a name without wildcards exactly (backtick escapes taken off), and also a VM id
    given as a name."""
    if not inv.host.strict.wildcard_names:
        return _lenient_named(inv, name)
    pattern = wildcards.compile_pattern(name)
    matches = [vm for vm in inv.host.vms.values() if pattern.match(vm.name)]
    if not matches and not wildcards.has_wildcards(name):
        inv.errors.append(vm_not_found(wildcards.unescaped(name)))
    return matches


def _addressed(inv: Invocation, obj: Any) -> list[VirtualMachine]:
    """The VM a VM object stands for: by its id on Windows, exactly one. A lenient host, or an object without an
    id, takes its id or name as a name is taken."""
    vm_id = property_of(obj, "VMId") or property_of(obj, "Id")
    if not inv.host.strict.wildcard_names or vm_id is None:
        return _named(inv, str(vm_id or property_of(obj, "Name")))
    vm = inv.host.vms.get(str(vm_id).lower())
    if vm is None:
        inv.errors.append(vm_id_not_found(str(vm_id)))
    return [vm] if vm else []


def _lenient_named(inv: Invocation, name: str) -> list[VirtualMachine]:
    if wildcards.has_wildcards(name):
        return [vm for vm in inv.host.vms.values() if fnmatch.fnmatchcase(vm.name.casefold(), name.casefold())]
    literal = wildcards.unescaped(name)
    try:
        return [inv.host.vm(literal)]
    except KeyError:
        inv.errors.append(vm_not_found(literal))
        return []


# -- inventory cmdlets --------------------------------------------------------------------------------------


@cmdlet("Get-VM", f"{NS}.Commands.GetVM", "ComputerName", "Name", sets={"Name": "Name", "Id": "Id"}, default_set="Name")
def get_vm(inv: Invocation) -> list[Any]:
    if inv.parameter_set == "Name":
        vms = target_vms(inv, "Name") if inv.has("Name") else list(inv.host.vms.values())
        return [vm_object(inv.host, vm) for vm in vms]
    out = []
    for vm_id in inv.strings("Id"):
        vm = inv.host.vms.get(vm_id.lower())
        if vm is None:
            inv.errors.append(vm_id_not_found(vm_id))
        else:
            out.append(vm_object(inv.host, vm))
    return out


@cmdlet("Get-VMSecurity", f"{NS}.Commands.GetVMSecurity", "VMName VM ComputerName", "VMName")
def get_vm_security(inv: Invocation) -> list[Any]:
    return [security_object(inv.host, vm) for vm in target_vms(inv)]


@cmdlet("Get-VMKeyProtector", f"{NS}.Commands.GetVMKeyProtector", "VMName VM ComputerName", "VMName")
def get_vm_key_protector(inv: Invocation) -> list[Any]:
    opaque = inv.host.strict.opaque_key_protector
    return [keyprotector.spelled(vm.key_protector, opaque) for vm in target_vms(inv)]


@cmdlet("Get-VMSnapshot", f"{NS}.Commands.GetVMSnapshot", "VMName VM Name Id SnapshotType ComputerName", "VMName Name")
def get_vm_snapshot(inv: Invocation) -> list[Any]:
    wanted = [n.casefold() for n in inv.strings("Name")]
    out = []
    for vm in target_vms(inv):
        for index, checkpoint in enumerate(vm.checkpoints):
            if not wanted or any(fnmatch.fnmatchcase(checkpoint.name.casefold(), w) for w in wanted):
                out.append(snapshot_object(inv.host, vm, index))
    return out


@cmdlet("Get-VMHost", f"{NS}.Commands.GetVMHost", "ComputerName")
def get_vm_host(inv: Invocation) -> list[Any]:
    host = inv.host
    return [
        dotnet_object(
            [f"{NS}.VMHost", f"{NS}.VirtualizationObject"],
            {
                "ComputerName": host.name,
                "Name": host.name,
                "FullyQualifiedDomainName": f"{host.name}.{host.domain}" if host.domain else host.name,
                "LogicalProcessorCount": 16,
                "MemoryCapacity": 68719476736,
                "VirtualMachinePath": VM_ROOT,
                "VirtualHardDiskPath": VHD_ROOT,
                "VirtualMachineMigrationEnabled": host.live_migration,
                "VirtualMachineMigrationAuthenticationType": MigrationAuthenticationType[host.migration_authentication],
                "MaximumVirtualMachineMigrations": 2,
                "MaximumStorageMigrations": 2,
                "UseAnyNetworkForMigration": False,
            },
            to_string=f"VMHost (Name = '{host.name}')",
        )
    ]


# -- security changes ---------------------------------------------------------------------------------------


def local_guardian(host: HostModel, vm: VirtualMachine, create: bool) -> Guardian | None:
    """The host's UntrustedGuardian that security changes are applied with.

    Hyper-V refuses any security change while that guardian exists without its private keys; with `create` it makes
    a fresh guardian (new certificates in the store) when there is none, as the first TPM enable does.
    """
    guardian = host.guardian(LOCAL_GUARDIAN)
    if guardian is not None and not (
        host.private_key_held(guardian.signing) and host.private_key_held(guardian.encryption)
    ):
        raise vm_error(
            f"An error occurred while applying security changes to '{vm.name}'.\r\n\r\n"
            f"Guardian '{guardian.name}' does not have a private key and cannot be the owner.",
            "Unspecified",
            "NotSpecified",
            vm.name,
        )
    if guardian is None and create:
        guardian = host.add_guardian(LOCAL_GUARDIAN, *guardian_pair(LOCAL_GUARDIAN, host.name))
    return guardian


def _require_off(vm: VirtualMachine, allow_saved: bool = False) -> None:
    if vm.state == "Running" or (vm.state == "Saved" and not allow_saved):
        raise invalid_state(vm)


def each_vm(inv: Invocation, vms: list[VirtualMachine], change: Callable[[VirtualMachine], None]) -> list[Any]:
    """Apply a change per VM under the host lock. A VM that fails gets its own non-terminating error, as Hyper-V
    cmdlets write them, and the others still change. Returns the -Passthru output."""
    changed = []
    with inv.host.changing():
        for vm in vms:
            if inv.cancelled.is_set():  # ctrl_c: stop before the next VM, as a stopped pipeline does
                break
            try:
                change(vm)
            except CmdletError as error:
                inv.errors.append(error)
            else:
                changed.append(vm)
    return [vm_object(inv.host, vm) for vm in changed] if inv.switch("Passthru") else []


@cmdlet(
    "Set-VMKeyProtector",
    f"{NS}.Commands.SetVMKeyProtector",
    "Passthru KeyProtector NewLocalKeyProtector RestoreLastKnownGoodKeyProtector",
    "VMName",
    True,
    sets={"VMName": "VMName! ComputerName", "VMObject": "VM!"},
    default_set="VMName",
)
def set_vm_key_protector(inv: Invocation) -> list[Any]:
    # Microsoft's docs put the three ways in every set (VMName, VMObject), so the cmdlet itself must refuse none or
    # several; Windows' wording for that is not documented, and the simulator answers as an unresolved set.
    ways = ("NewLocalKeyProtector", "KeyProtector", "RestoreLastKnownGoodKeyProtector")
    if [inv.has(way) for way in ways].count(True) != 1:
        raise unresolved_parameter_set()
    given = _key_protector_bytes(inv.get("KeyProtector")) if inv.has("KeyProtector") else None

    def set_protector(vm: VirtualMachine) -> None:
        _require_off(vm, allow_saved=True)  # allowed while saved: the saved state then no longer resumes
        if inv.switch("RestoreLastKnownGoodKeyProtector"):
            _restore_last_known_good(vm)
            return
        guardian = local_guardian(inv.host, vm, create=given is None)
        if given is not None:
            vm.key_protector = given
            return
        if inv.host.hgs_mode != "Local" or guardian is None:
            raise vm_error("The local key protector can only be created in Local mode.", target=vm.name)
        store = inv.host.store or {}
        owner = (store[guardian.signing.thumbprint], store[guardian.encryption.thumbprint])
        vm.key_protector = keyprotector.KeyProtector.create(*owner).to_bytes()

    return each_vm(inv, target_vms(inv), set_protector)


def _restore_last_known_good(vm: VirtualMachine) -> None:
    """Back to the key protector the VM last started with (undoes a Set-VMKeyProtector that broke the start)."""
    if not vm.last_good_key_protector:
        raise vm_error(
            f"The operation failed because no last known good key protector was found for '{vm.name}'.",
            "ObjectNotFound",
            "ObjectNotFound",
            vm.name,
        )
    vm.key_protector = vm.last_good_key_protector


def _key_protector_bytes(value: Any) -> bytes:
    """The protector as the model stores it (the binary spelling, whichever spelling was given)."""
    raw = bytes(value) if isinstance(value, bytes | bytearray) else bytes(int(b) for b in value or [])
    try:
        return keyprotector.parse(raw).to_bytes()
    except keyprotector.KeyProtectorError:
        raise vm_error("The key protector is not valid.", "InvalidParameter", "InvalidArgument") from None


@cmdlet("Enable-VMTPM", f"{NS}.Commands.EnableVMTPM", VM_PARAMS, "VMName", True)
def enable_vm_tpm(inv: Invocation) -> list[Any]:
    def enable(vm: VirtualMachine) -> None:
        _require_off(vm)
        if not keyprotector.has_key_protector(vm.key_protector):
            raise vm_error(
                f"The selected security settings of virtual machine '{vm.name}' cannot be changed without a "
                "valid key protector configured.",
                "InvalidState",
                "InvalidOperation",
                vm.name,
            )
        local_guardian(inv.host, vm, create=False)
        vm.tpm_enabled = True

    return each_vm(inv, target_vms(inv), enable)


@cmdlet("Disable-VMTPM", f"{NS}.Commands.DisableVMTPM", VM_PARAMS, "VMName", True)
def disable_vm_tpm(inv: Invocation) -> list[Any]:
    def disable(vm: VirtualMachine) -> None:
        _require_off(vm)
        local_guardian(inv.host, vm, create=False)
        vm.tpm_enabled = False

    return each_vm(inv, target_vms(inv), disable)


# -- power --------------------------------------------------------------------------------------------------


def start_problem(host: HostModel, vm: VirtualMachine) -> str | None:
    """Why the VM cannot start on this host, in Windows' words; None when it can."""
    if vm.tpm_enabled:
        try:
            kp = keyprotector.parse(vm.key_protector)
            unwrapped = kp.unwrap(host.store or {}) is not None
        except keyprotector.KeyProtectorError:
            unwrapped = False
        if not unwrapped:
            return (
                f"'{vm.name}' failed to start.\r\n\r\nThe key protector could not be unwrapped. Details are included "
                f"in the HostGuardianService-Client event log.\r\n\r\n'{vm.name}' failed to start. "
                f"(Virtual machine ID {vm.id.upper()})"
            )
    if vm.state == "Saved" and vm.saved_state and vm.saved_state.security_digest != vm.security_digest():
        return (
            f"'{vm.name}' could not initialize. (Virtual machine ID {vm.id.upper()})\r\n\r\n'{vm.name}' could not "
            "restore the saved state: The computed authentication tag did not match the input authentication tag. "
            "(0xC000A002)"
        )
    return None


@cmdlet("Start-VM", f"{NS}.Commands.StartVM", "Name VM ComputerName Passthru AsJob", "Name", True)
def start_vm(inv: Invocation) -> list[Any]:
    def start(vm: VirtualMachine) -> None:
        problem = start_problem(inv.host, vm) if vm.state != "Running" else None
        if problem:
            raise vm_error(problem, target=vm.name)
        if vm.state != "Running" and vm.tpm_enabled:
            vm.last_good_key_protector = vm.key_protector  # it unwrapped: Hyper-V remembers it as last known good
        vm.state, vm.saved_state = "Running", None

    return each_vm(inv, target_vms(inv, "Name"), start)


@cmdlet("Stop-VM", f"{NS}.Commands.StopVM", "Name VM ComputerName Force TurnOff Save Passthru AsJob", "Name", True)
def stop_vm(inv: Invocation) -> list[Any]:
    """Shut down, turn off or save; turning off a saved VM discards its saved state."""

    def stop(vm: VirtualMachine) -> None:
        if vm.state == "Running" and inv.switch("Save"):
            vm.state, vm.saved_state = "Saved", SavedState(vm.security_digest())
        elif vm.state == "Running" or (vm.state == "Saved" and inv.switch("TurnOff")):
            vm.state, vm.saved_state = "Off", None
        elif vm.state == "Saved" and not inv.switch("Save"):
            raise invalid_state(vm)

    return each_vm(inv, target_vms(inv, "Name"), stop)


@cmdlet("Remove-VMSavedState", f"{NS}.Commands.RemoveVMSavedState", VM_PARAMS, "VMName", True)
def remove_vm_saved_state(inv: Invocation) -> list[Any]:
    def discard(vm: VirtualMachine) -> None:
        if vm.state != "Saved":
            raise invalid_state(vm)
        vm.state, vm.saved_state = "Off", None

    each_vm(inv, target_vms(inv), discard)
    return []


@cmdlet("Remove-VM", f"{NS}.Commands.RemoveVM", "Name VM ComputerName Force Passthru", "Name", True)
def remove_vm(inv: Invocation) -> list[Any]:
    """Unregisters the VM; its virtual hard disks stay on disk, as on Windows."""

    def remove(vm: VirtualMachine) -> None:
        if vm.state == "Running":
            raise invalid_state(vm)
        del inv.host.vms[vm.id]

    each_vm(inv, target_vms(inv, "Name"), remove)
    return []


# -- export, import, migration ------------------------------------------------------------------------------


@cmdlet(
    "Export-VM",
    f"{NS}.Commands.ExportVM",
    "Name VM ComputerName Path CaptureLiveState Passthru AsJob",
    "Name Path",
    True,
)
def export_vm(inv: Invocation) -> list[Any]:
    """Writes <Path>\\<VM>\\Virtual Machines\\<ID>.vmcx (with the key protector) and copies its disks beside it."""
    inv.require("Path")
    root = str(inv.get("Path")).rstrip("\\")

    def export(vm: VirtualMachine) -> None:
        if inv.host.files.denied(root):
            raise general_access_denied(f"Failed to export virtual machine '{vm.name}'.", root, vm.name)
        folder = local_path(inv.host, rf"{root}\{vm.name}")
        if folder.exists() and any(folder.iterdir()):
            raise vm_error(
                f"Failed to export virtual machine '{vm.name}': the folder '{root}\\{vm.name}' already exists and "
                "is not empty. Cannot create a file when that file already exists. (0x800700B7)",
                "OperationFailed",
                "ResourceExists",
                vm.name,
            )
        _write_export(inv, vm, rf"{root}\{vm.name}")

    return each_vm(inv, target_vms(inv, "Name"), export)


def _write_export(inv: Invocation, vm: VirtualMachine, folder: str) -> None:
    record = vm.to_json()
    if vm.state == "Running":  # a running VM is exported with its state captured, as Windows' default does
        record["state"], record["saved_state"] = "Saved", {"security_digest": vm.security_digest()}
    disks = []
    for vhd in vm.vhd_paths:
        name = vhd.rsplit("\\", 1)[-1]
        target = local_path(inv.host, rf"{folder}\Virtual Hard Disks\{name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        source = local_path(inv.host, vhd)
        target.write_bytes(source.read_bytes() if source.is_file() else b"")
        disks.append(name)
    record["vhd_paths"] = disks
    config = local_path(inv.host, rf"{folder}\Virtual Machines\{vm.id.upper()}.vmcx")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"format": VMCX_FORMAT, "vm": record}))
    local_path(inv.host, rf"{folder}\Snapshots").mkdir(exist_ok=True)


def _read_vmcx(inv: Invocation, path: str) -> tuple[VirtualMachine, str]:
    """The VM an exported configuration describes, and the export folder it lives in."""
    if inv.host.files.denied(path):
        raise general_access_denied("Failed to import a virtual machine.", path, path)
    data = read_host_file(inv.host, path)
    try:
        record = json.loads(data)
        if record.get("format") != VMCX_FORMAT:
            raise ValueError("not a vmcx")
        vm = VirtualMachine.from_json(record["vm"])
    except (ValueError, KeyError, TypeError):
        raise vm_error(
            f"Failed to import a virtual machine. The configuration file '{path}' is not valid.",
            "OperationFailed",
            "InvalidData",
            path,
        ) from None
    folder = path.replace("/", "\\").rsplit("\\", 2)[0]  # ...\<VM>\Virtual Machines\<ID>.vmcx
    return vm, folder


def _id_conflict(host: HostModel, vm: VirtualMachine) -> str | None:
    if vm.id in host.vms:
        return (
            f"The Virtual Machine Management Service failed to register the configuration for the virtual machine "
            f"'{vm.name}' because a virtual machine with the same identifier already exists. Select a new "
            "identifier and try the operation again."
        )
    return None


@dataclass
class ImportPlan:
    """What Compare-VM -Path planned and its report carries, so Import-VM -CompatibilityReport imports just that."""

    vm: VirtualMachine  # as it would be registered: new id, paths on this host
    folder: str  # the export folder the files come from
    path: str  # the configuration file
    copy: bool


@dataclass
class MovePlan:
    """What Compare-VM -DestinationHost checked, so Compare-VM -CompatibilityReport can check it again."""

    vm_id: str
    destination: str
    storage: str


# The plan behind each report this host made. A report the client sends back is a deserialized copy without one,
# which Windows cannot bind to -CompatibilityReport either; only a live report (piped in one pipeline) works.
_PLANS: weakref.WeakKeyDictionary[Any, ImportPlan | MovePlan] = weakref.WeakKeyDictionary()


def _plan_import(inv: Invocation) -> ImportPlan:
    path = str(inv.get("Path"))
    vm, folder = _read_vmcx(inv, path)
    if inv.switch("GenerateNewId"):
        vm.id = str(uuid.uuid4())
    copy = inv.parameter_set == "Copy"
    vm.path = str(inv.get("VirtualMachinePath") or VM_ROOT) if copy else folder
    vhd_folder = str(inv.get("VhdDestinationPath") or VHD_ROOT) if copy else rf"{folder}\Virtual Hard Disks"
    vm.vhd_paths = [rf"{vhd_folder}\{name}" for name in vm.vhd_paths]
    return ImportPlan(vm, folder, path, copy)


def _reported_plan(inv: Invocation) -> ImportPlan | MovePlan:
    """The plan of the report given as -CompatibilityReport; anything but a live report of this host fails to bind."""
    report = inv.get("CompatibilityReport")
    try:
        plan = _PLANS.get(report)
    except TypeError:  # unhashable: a list or a hashtable
        plan = None
    if plan is None:
        raise CmdletError(
            f"Cannot bind parameter 'CompatibilityReport'. Cannot convert the \"{text_of(report)}\" value of type "
            f'"{type_name_of(report)}" to type "{NS}.VMCompatibilityReport".',
            "CannotConvertArgumentNoMessage",
            "InvalidArgument",
            BINDING_EXCEPTION,
        )
    return plan


def compatibility_error(message: str, message_id: int, source: Any) -> Any:
    return dotnet_object(
        [f"{NS}.VMCompatibilityError"],
        {"Message": message, "MessageId": message_id, "Source": source},
        to_string=message,
    )


def compatibility_report(properties: dict[str, Any]) -> Any:
    return dotnet_object([f"{NS}.VMCompatibilityReport"], properties, to_string=f"{NS}.VMCompatibilityReport")


def _import_report(host: HostModel, plan: ImportPlan) -> Any:
    """The incompatibility report Import-VM would act on (here: an identifier already in use)."""
    vm = plan.vm
    conflict = _id_conflict(host, vm)
    report = compatibility_report(
        {
            "VM": vm_object(host, vm),
            "OperationType": CompatibilityOperation.ImportVirtualMachine,
            "Destination": host.name,
            "Path": plan.path,
            "SnapshotPath": vm.path,
            "VhdDestinationPath": vm.vhd_paths[0].rsplit("\\", 1)[0] if vm.vhd_paths else None,
            "VhdSourcePath": None,
            "Incompatibilities": [compatibility_error(conflict, 13000, vm_object(host, vm))] if conflict else [],
        }
    )
    _PLANS[report] = plan
    return report


IMPORT_SETS = {
    "Register": "Path! Register ComputerName",
    "Copy": "Path! VhdDestinationPath Copy! VirtualMachinePath SnapshotFilePath SmartPagingFilePath GenerateNewId "
    "ComputerName",
    "CompatibilityReport": "CompatibilityReport!",
}
MOVE_SETS = {
    "NameSingleDestination": "Name! DestinationHost! IncludeStorage DestinationStoragePath ComputerName",
    "VMSingleDestination": "VM! DestinationHost! IncludeStorage DestinationStoragePath",
}
REPORT_BY_VALUE = {"CompatibilityReport": f"{NS}.VMCompatibilityReport"}


@cmdlet(
    "Compare-VM",
    f"{NS}.Commands.CompareVM",
    "AsJob",
    "Path",
    locks_itself=True,  # a move is checked against two hosts, locked in the global order
    sets=MOVE_SETS | IMPORT_SETS,
    default_set="NameSingleDestination",
    by_value=REPORT_BY_VALUE,
)
def compare_vm(inv: Invocation) -> list[Any]:
    """A compatibility report: of importing an exported VM here (-Path), or of moving a VM to another host of the lab
    (-DestinationHost, checked as Move-VM checks it), or the same check again (-CompatibilityReport)."""
    plan = _reported_plan(inv) if inv.parameter_set == "CompatibilityReport" else None
    if isinstance(plan, MovePlan):
        return _compare_move(inv, plan)
    if inv.parameter_set in MOVE_SETS:
        return _compare_move(inv, None)
    with inv.host.lock:
        return [_import_report(inv.host, plan or _plan_import(inv))]


def _compare_move(inv: Invocation, plan: MovePlan | None) -> list[Any]:
    name = plan.destination if plan else str(inv.get("DestinationHost"))
    storage = plan.storage if plan else str(inv.get("DestinationStoragePath") or "")
    destination = inv.lab.peer(name)
    reports = []
    with ExitStack() as stack:
        _lock_in_order(stack, {inv.host, destination or inv.host})
        if plan and plan.vm_id not in inv.host.vms:
            raise vm_id_not_found(plan.vm_id)
        for vm in [inv.host.vms[plan.vm_id]] if plan else target_vms(inv, "Name"):
            target = migration_target(inv.host, destination, name, vm)
            source_vm = vm_object(inv.host, vm)
            problems = [
                compatibility_error(p.message, p.message_id, source_vm)
                for p in migration_incompatibilities(inv.host, target, vm)
            ]
            report = compatibility_report(
                {
                    "VM": source_vm,
                    "OperationType": CompatibilityOperation.MoveVirtualMachine,
                    "Destination": target.name,
                    "Path": None,
                    "SnapshotPath": None,
                    "VhdDestinationPath": storage or None,
                    "VhdSourcePath": None,
                    "Incompatibilities": problems,
                }
            )
            _PLANS[report] = MovePlan(vm.id, target.name, storage)
            reports.append(report)
    return reports


@cmdlet(
    "Import-VM",
    f"{NS}.Commands.ImportVM",
    "AsJob",
    "Path",
    True,
    sets=IMPORT_SETS,
    default_set="Register",
    by_value=REPORT_BY_VALUE,
)
def import_vm(inv: Invocation) -> list[Any]:
    """Registers an exported VM in place, or copies it (-Copy) into the host's folders, optionally with a new id."""
    plan = _reported_plan(inv) if inv.parameter_set == "CompatibilityReport" else _plan_import(inv)
    if isinstance(plan, MovePlan):  # Windows' wording for a move report given to Import-VM is not documented
        raise vm_error("The compatibility report does not describe an import.", "InvalidParameter", "InvalidArgument")
    vm = VirtualMachine.from_json(plan.vm.to_json())  # a report imports once; its plan stays as it was
    with inv.host.changing() as host:
        conflict = _id_conflict(host, vm)
        if conflict:
            raise vm_error(conflict, "OperationFailed", "ResourceExists", vm.name)
        if plan.copy:
            for vhd in vm.vhd_paths:
                source = local_path(host, rf"{plan.folder}\Virtual Hard Disks\{vhd.rsplit(chr(92), 1)[-1]}")
                target = local_path(host, vhd)
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_file():
                    shutil.copyfile(source, target)
        host.vms[vm.id] = vm
    return [vm_object(inv.host, vm)]


@cmdlet(
    "Move-VM",
    f"{NS}.Commands.MoveVM",
    "Name VM ComputerName DestinationHost IncludeStorage DestinationStoragePath VirtualMachinePath Passthru AsJob",
    "Name DestinationHost",
    True,
    locks_itself=True,
)
def move_vm(inv: Invocation) -> list[Any]:
    """Shared-nothing live migration to another host of the lab; both hosts must have migration enabled."""
    inv.require("DestinationHost")
    destination_name = str(inv.get("DestinationHost"))
    destination = inv.lab.peer(destination_name)
    with ExitStack() as stack:
        _lock_in_order(stack, {inv.host, destination or inv.host}, change=True)
        vms = target_vms(inv, "Name")
        for vm in vms:
            target = migration_target(inv.host, destination, destination_name, vm)
            problems = migration_incompatibilities(inv.host, target, vm)
            if problems:
                side = (target, "destination") if problems[0].at_destination else (inv.host, "source")
                raise vm_error(f"{_migration_failed(vm, *side)}\r\n\r\n{problems[0].message}", target=vm.name)
        if destination is None or not vms:
            return []
        moved = [_migrate(inv, vm, destination) for vm in vms]
    return [vm_object(destination, vm) for vm in moved] if inv.switch("Passthru") else []


def _lock_in_order(stack: ExitStack, hosts: set[HostModel], change: bool = False) -> None:
    """Hosts locked in one global order (by name), so two cmdlets spanning the same hosts never deadlock."""
    for host in sorted(hosts, key=lambda h: h.name):
        stack.enter_context(host.changing() if change else host.lock)


@dataclass(frozen=True)
class Incompatibility:
    message: str
    message_id: int  # the simulator's own numbers: Windows' ids for these checks are not documented
    at_destination: bool = False  # Move-VM reports it as failing at the destination host


def _migration_failed(vm: VirtualMachine, host: HostModel, side: str) -> str:
    return (
        f"Virtual machine migration operation for '{vm.name}' failed at migration {side} '{host.name}'. "
        f"(Virtual machine ID {vm.id.upper()})"
    )


def migration_target(source: HostModel, destination: HostModel | None, name: str, vm: VirtualMachine) -> HostModel:
    """The destination of a move or its check. A name that is no other host of the lab fails as the Virtual Machine
    Management Service fails to resolve it (Move-VM's wording; Compare-VM is assumed to say the same)."""
    if destination is None or destination is source:
        raise vm_error(
            f"{_migration_failed(vm, source, 'source')}\r\n\r\nThe Virtual Machine Management Service failed to "
            f"establish a connection for a Virtual Machine migration with host '{name}': No such host is known. "
            "(0x80072AF9).",
            target=vm.name,
        )
    hop = second_hop_problem(source, destination) if source.strict.second_hop else None
    if hop:  # the source cannot authenticate to the destination: no report, Move-VM and Compare-VM both fail
        raise vm_error(f"{_migration_failed(vm, source, 'source')}\r\n\r\n{hop}", "AccessDenied", target=vm.name)
    return destination


def migration_incompatibilities(source: HostModel, destination: HostModel, vm: VirtualMachine) -> list[Incompatibility]:
    """Why the VM cannot move, in the order Move-VM meets them (it fails with the first); Compare-VM lists them all."""
    found = []
    if not source.live_migration:
        found.append(Incompatibility(f"Virtual machine migration is not enabled on host '{source.name}'.", 21000))
    if not destination.on_network:
        # WSAETIMEDOUT, as Windows reports a destination that does not answer at all.
        found.append(
            Incompatibility(
                "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine "
                f"migration with host '{destination.name}': A connection attempt failed because the connected party "
                "did not properly respond after a period of time, or established connection failed because connected "
                "host has failed to respond. (0x8007274C).",
                21001,
            )
        )
    elif not destination.live_migration:
        found.append(
            Incompatibility(
                "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine "
                f"migration with host '{destination.name}': No connection could be made because the target machine "
                "actively refused it. (0x8007274D).",
                21001,
            )
        )
    conflict = _id_conflict(destination, vm)
    if conflict:
        found.append(Incompatibility(conflict, 13000))
    if vm.state == "Running" and start_problem(destination, vm):
        found.append(
            Incompatibility(
                "The key protector could not be unwrapped. Details are included in the HostGuardianService-Client "
                "event log.",
                21002,
                at_destination=True,
            )
        )
    return found


AUTHENTICATION_FAILED = (
    "The Virtual Machine Management Service failed to authenticate the connection for a Virtual Machine migration at "
    "the source host: "
)


def second_hop_problem(source: HostModel, destination: HostModel) -> str | None:
    """Why the source cannot authenticate to the destination for this session: a workgroup or foreign domain, or a
    logon without the credentials the source's migration authentication type needs (docs/domain.md)."""
    if source.domain is None or (destination.domain or "").casefold() != source.domain.casefold():
        # ERROR_NO_SUCH_DOMAIN: live migration without a cluster needs both hosts in one (or a trusting) domain
        return (
            AUTHENTICATION_FAILED
            + "The specified domain either does not exist or could not be contacted. "
            + ("(0x8007054B).")
        )
    session = logon.current()
    if source.migration_authentication == MIGRATION_CREDSSP and session.mechanism != logon.CREDSSP:
        # SEC_E_UNKNOWN_CREDENTIALS: CredSSP migration needs the operator's credentials on the source
        return AUTHENTICATION_FAILED + "The credentials supplied to the package were not recognized (0x8009030D)."
    delegated = session.can_reach(logon.MIGRATION_SERVICE, destination.name)
    if source.migration_authentication == MIGRATION_KERBEROS and not delegated:
        # SEC_E_NO_CREDENTIALS: no constrained delegation to the destination's migration service
        return AUTHENTICATION_FAILED + "No credentials are available in the security package (0x8009030E)."
    return None


def _migrate(inv: Invocation, vm: VirtualMachine, destination: HostModel) -> VirtualMachine:
    storage = str(inv.get("DestinationStoragePath") or "")
    new_paths = []
    for vhd in vm.vhd_paths:
        target = rf"{storage or VHD_ROOT}\{vhd.rsplit(chr(92), 1)[-1]}"
        source_file = local_path(inv.host, vhd)
        destination.write_file(target, source_file.read_bytes() if source_file.is_file() else b"")
        new_paths.append(target)
    del inv.host.vms[vm.id]
    vm.vhd_paths = new_paths
    vm.path = storage or VM_ROOT
    destination.vms[vm.id] = vm
    return vm
