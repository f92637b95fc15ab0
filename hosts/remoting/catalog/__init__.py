"""The catalog: every remote operation the console can send, each a short sequence of cmdlets with a typed result.

Modules: host.py (test connection), inventory.py (refresh), keyprotectors.py (who may unseal a VM, as the host reads
its key protector), guardians.py (guardians, certificate store, PFX), shares.py (a share
reached with explicit credentials), vms.py (VMs, TPM, key protectors, moving VMs), vmconfig.py (a VM's configuration,
and a new VM built from it).
Each operation is also a name of the catalog (`catalog.RemoveGuardian`). `all_cmdlets()` is what the simulator must
implement; a test keeps the two equal.
"""

from __future__ import annotations

from ..operation import Operation
from .guardians import (
    CreateShieldedStore,
    ExportGuardian,
    ExportPfx,
    GetGuardians,
    ImportGuardianMetadata,
    ImportPfx,
    ListShieldedCertificates,
    NewGuardianByThumbprints,
    ReadFileBytes,
    RemoveFiles,
    RemoveGuardian,
    StoreCertificate,
    StoreListing,
    WriteFileBytes,
)
from .host import HostFacts, TestConnection
from .inventory import (
    CertificateFacts,
    GuardianFacts,
    HostInventoryFacts,
    ReadHostInventory,
    ReadVmDetails,
    VmDetails,
    VmFacts,
)
from .keyprotectors import ReadKeyProtectors
from .shares import CopyFolder, GetSmbShare, MapShare, UnmapShare
from .vmconfig import (
    AddHardDiskDrive,
    AddNetworkAdapter,
    NetworkAdapter,
    NewVM,
    ReadVmSettings,
    RenameVM,
    SetProcessorCount,
    SetSecureBoot,
    VmSettings,
)
from .vms import (
    CompareMove,
    CompareVM,
    CompatibilityReport,
    DisableTpm,
    EnableTpm,
    ExportVM,
    GenerateLocalGuardian,
    GetVM,
    GetVmHost,
    GetVmSecurity,
    GrantKeyProtectorAccess,
    ImportOptions,
    ImportVM,
    Membership,
    MoveVM,
    NewLocalKeyProtector,
    ReadMembership,
    RemoveFolder,
    RemoveSavedState,
    RemoveVM,
    RevokeKeyProtectorAccess,
    SetKeyProtector,
    StartVM,
    StopVM,
    TestPath,
    VmHostFacts,
    VmSecurity,
)


def operations() -> list[type[Operation]]:  # type: ignore[type-arg]
    """Every concrete operation class of the catalog."""
    found: list[type[Operation]] = []  # type: ignore[type-arg]
    todo = list(Operation.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith(__name__):
            found.append(cls)
    return found


def all_cmdlets() -> set[str]:
    """Every cmdlet name any catalog operation can send."""
    names: set[str] = set()
    for cls in operations():
        names |= cls.cmdlets()
    return names


__all__ = [
    # host.py
    "HostFacts",
    "TestConnection",
    # inventory.py
    "CertificateFacts",
    "GuardianFacts",
    "HostInventoryFacts",
    "ReadHostInventory",
    "ReadVmDetails",
    "VmDetails",
    "VmFacts",
    # keyprotectors.py
    "ReadKeyProtectors",
    # guardians.py
    "CreateShieldedStore",
    "ExportGuardian",
    "ExportPfx",
    "GetGuardians",
    "ImportGuardianMetadata",
    "ImportPfx",
    "ListShieldedCertificates",
    "NewGuardianByThumbprints",
    "ReadFileBytes",
    "RemoveFiles",
    "RemoveGuardian",
    "StoreCertificate",
    "StoreListing",
    "WriteFileBytes",
    # shares.py
    "CopyFolder",
    "GetSmbShare",
    "MapShare",
    "UnmapShare",
    # vms.py
    "CompareMove",
    "CompareVM",
    "CompatibilityReport",
    "DisableTpm",
    "EnableTpm",
    "ExportVM",
    "GenerateLocalGuardian",
    "GetVM",
    "GetVmHost",
    "GetVmSecurity",
    "GrantKeyProtectorAccess",
    "RevokeKeyProtectorAccess",
    "ImportOptions",
    "ImportVM",
    "Membership",
    "MoveVM",
    "NewLocalKeyProtector",
    "RemoveFolder",
    "RemoveSavedState",
    "ReadMembership",
    "RemoveVM",
    "SetKeyProtector",
    "StartVM",
    "StopVM",
    "TestPath",
    "VmHostFacts",
    "VmSecurity",
    # vmconfig.py
    "AddHardDiskDrive",
    "AddNetworkAdapter",
    "NetworkAdapter",
    "NewVM",
    "ReadVmSettings",
    "RenameVM",
    "SetProcessorCount",
    "SetSecureBoot",
    "VmSettings",
    # the catalog as a whole
    "all_cmdlets",
    "operations",
]
