"""Host facts: Get-CimInstance Win32_OperatingSystem and Win32_ComputerSystem, as a Windows Server 2022 (or Windows
11 Pro) host answers them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypervsim.cmdlets import CmdletError, Invocation, cmdlet
from hypervsim.types import cim_object

WORKGROUP = "WORKGROUP"
CIM = ["Microsoft.Management.Infrastructure.CimException", "System.Exception"]


def operating_system(inv: Invocation) -> Any:
    host = inv.host
    installed = dt.datetime.fromisoformat(host.installed)
    return cim_object(
        "root/cimv2/Win32_OperatingSystem",
        ["CIM_OperatingSystem", "CIM_LogicalElement", "CIM_ManagedSystemElement"],
        {
            "Caption": host.os_caption,
            "Version": host.os_version,
            "BuildNumber": host.os_build,
            "CSName": host.name,
            "OSArchitecture": "64-bit",
            "ProductType": host.product_type,
            "InstallDate": installed,
            "LastBootUpTime": installed,
            "Manufacturer": "Microsoft Corporation",
            "Name": f"{host.os_caption}|C:\\Windows|\\Device\\Harddisk0\\Partition2",
        },
        to_string=f"Win32_OperatingSystem: {host.os_caption}",
    )


def computer_system(inv: Invocation) -> Any:
    """Domain membership as Win32_ComputerSystem has it: a workgroup host's Domain is its workgroup's name."""
    host = inv.host
    return cim_object(
        "root/cimv2/Win32_ComputerSystem",
        ["CIM_UnitaryComputerSystem", "CIM_ComputerSystem", "CIM_System", "CIM_LogicalElement"],
        {
            "Name": host.name,
            "DNSHostName": host.name,
            "PartOfDomain": not host.workgroup,
            "Domain": host.domain or WORKGROUP,
            "Workgroup": WORKGROUP if host.workgroup else None,
            "DomainRole": 2 if host.workgroup else 3,  # standalone server / member server
            "Manufacturer": "Microsoft Corporation",
            "Model": "Virtual Machine",
        },
        to_string=f"Win32_ComputerSystem: {host.name}",
    )


CLASSES = {"win32_operatingsystem": operating_system, "win32_computersystem": computer_system}


@cmdlet(
    "Get-CimInstance",
    "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
    "ClassName Namespace Filter Property ComputerName KeyOnly Shallow OperationTimeoutSec",
    "ClassName",
)
def get_cim_instance(inv: Invocation) -> list[Any]:
    inv.require("ClassName")
    class_name = str(inv.get("ClassName"))
    namespace = str(inv.get("Namespace", "root/cimv2")).replace("\\", "/").casefold()
    if class_name.casefold() in CLASSES and namespace == "root/cimv2":
        return [CLASSES[class_name.casefold()](inv)]
    raise CmdletError("Invalid class ", "HRESULT 0x80041010", "MetadataError", CIM, class_name)
