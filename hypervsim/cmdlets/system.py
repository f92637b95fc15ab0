"""Host facts: Get-CimInstance Win32_OperatingSystem, as a Windows Server 2022 (or Windows 11 Pro) host answers it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypervsim.cmdlets import CmdletError, Invocation, cmdlet
from hypervsim.types import cim_object

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
    if class_name.casefold() == "win32_operatingsystem" and namespace == "root/cimv2":
        return [operating_system(inv)]
    raise CmdletError("Invalid class ", "HRESULT 0x80041010", "MetadataError", CIM, class_name)
