"""Values the simulated host exchanges over PSRP: decrypted secrets and .NET-shaped output objects.

Windows sends a cmdlet's output as CLIXML whose <TN> lists the .NET type chain, whose <Props> hold the type's own
(adapted) properties and whose <MS> hold the extended ones PowerShell adds. These helpers build psrpcore objects that
serialize the same way, so the unmodified pypsrp client sees what it would see from a real host.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from psrpcore.types import PSEnumBase, PSNoteProperty, PSObject, PSType


class Secret(str):
    """A decrypted SecureString parameter value; its repr never shows the plaintext."""

    def __repr__(self) -> str:
        return "Secret('********')"


class Credential:
    """A PSCredential parameter value: the user name and the decrypted password; its repr shows only the user."""

    __slots__ = ("user", "password")

    def __init__(self, user: str, password: Secret) -> None:
        self.user, self.password = user, password

    def __repr__(self) -> str:
        return f"Credential({self.user!r}, '********')"


def dotnet_object(
    type_names: list[str],
    adapted: dict[str, Any],
    extended: dict[str, Any] | None = None,
    to_string: str | None = None,
) -> PSObject:
    """An object serialized with the given .NET type chain (System.Object appended) and properties."""
    obj = PSObject()
    names = list(type_names)
    if names[-1] != "System.Object":
        names.append("System.Object")
    obj.PSObject.type_names = names
    for name, value in adapted.items():
        obj.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    for name, value in (extended or {}).items():
        obj.PSObject.extended_properties.append(PSNoteProperty(name, value))
    if to_string is not None:
        obj.PSObject.to_string = to_string
    return obj


def cim_object(class_path: str, parents: list[str], properties: dict[str, Any], to_string: str = "") -> PSObject:
    """A CIM instance as Windows serializes it: one type name per class in the hierarchy, then CimInstance."""
    names = [f"Microsoft.Management.Infrastructure.CimInstance#{class_path}"]
    namespace = class_path.rsplit("/", 1)[0]
    names += [f"Microsoft.Management.Infrastructure.CimInstance#{namespace}/{p}" for p in parents]
    names.append("Microsoft.Management.Infrastructure.CimInstance")
    return dotnet_object(names, properties, to_string=to_string or class_path.rsplit("/", 1)[-1])


def property_of(obj: Any, name: str) -> Any:
    """A property of an object from the pipeline or a parameter, whatever its shape (PSObject, dict, attribute)."""
    try:
        return obj[name]
    except (KeyError, TypeError, AttributeError, IndexError):
        return getattr(obj, name, None)


def utc(when: dt.datetime) -> dt.datetime:
    """Timestamps travel as UTC-aware datetimes; psrpcore renders them as xs:dateTime."""
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@PSType(["Microsoft.HyperV.PowerShell.VMState"])
class VMState(PSEnumBase):
    """Hyper-V's VM state enum (values as in Microsoft.HyperV.PowerShell)."""

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777


@PSType(["Microsoft.HyperV.PowerShell.VMHeartbeatStatus"])
class VMHeartbeatStatus(PSEnumBase):
    Unknown = 0
    Disabled = 1
    NoContact = 2
    Error = 3
    LostCommunication = 4
    OkApplicationsUnknown = 5
    OkApplicationsHealthy = 6
    OkApplicationsCritical = 7
    Paused = 8


@PSType(["Microsoft.HyperV.PowerShell.SnapshotType"])
class SnapshotType(PSEnumBase):
    Standard = 0
    Recovery = 1
    Planned = 2
    Missing = 3
    Replica = 4
    AppConsistentReplica = 5
    SyncedReplica = 6


@PSType(["Microsoft.HyperV.PowerShell.MigrationAuthenticationType"])
class MigrationAuthenticationType(PSEnumBase):
    CredSSP = 0
    Kerberos = 1


@PSType(["Microsoft.HyperV.PowerShell.VMCompatibilityReport.OperationType"])
class CompatibilityOperation(PSEnumBase):
    ImportVirtualMachine = 0
    MoveVirtualMachine = 1


@PSType(["Microsoft.Windows.HgsClient.HgsClientMode"])
class HgsClientMode(PSEnumBase):
    """The HGS client's mode (MSFT_HgsClientConfiguration.Mode); Local is the standalone mode guardian operations
    need. The WMI class names 2 "Secure Hosting Service Mode"; the cmdlets' docs call it HostGuardianService."""

    Unknown = 0
    Local = 1
    HostGuardianService = 2


@PSType(["Microsoft.HyperV.PowerShell.ControllerType"])
class ControllerType(PSEnumBase):
    IDE = 0
    SCSI = 1
    PMEM = 2


@PSType(["Microsoft.HyperV.PowerShell.OnOffState"])
class OnOffState(PSEnumBase):
    On = 0
    Off = 1
