"""Test connection: the host's OS facts and HGS client mode, in one pipeline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import NotLocalMode, UnexpectedReply
from ..operation import Cmd, Operation, PipelineResult
from ..psobjects import enum_name, flag, has_type, number, prop, text, timestamp

LOCAL_MODE = "Local"
# Win32_OperatingSystem.ProductType: 1 a workstation (Windows 11/10: Hyper-V on a desktop PC), 2 a domain
# controller, 3 a server.
WORKSTATION = 1
CLIENT_EDITION_NOTE = (
    "A Windows client edition (a desktop PC): guardians, escrow, restore and vTPM work as on Windows Server. "
    "Live migration needs both hosts in one Active Directory domain, so without one VMs move by export and import. "
    "Remoting needs the network profile Private and, for a local account, LocalAccountTokenFilterPolicy "
    "(Prepare a host: Windows 11 or 10 Pro)."
)
# MSFT_HgsClientConfiguration declares these uint16 fields (learn.microsoft.com/previous-versions/windows/desktop/
# hgsclientwmi/msft-hgsclientconfiguration): a host sends the number, or the name where a type adapts it. The names
# of the attestation values are the console's own short labels for the class's descriptions. Mode 0 is "unknown".
HGS_MODES = {1: LOCAL_MODE, 2: "HostGuardianService"}
ATTESTATION_STATUSES = {
    0: "NotConfigured",
    1: "NotAttempted",
    100: "Passed",
    200: "Expired",
    300: "TransientError",
    301: "UnauthorizedHost",
    302: "TpmError",
    303: "InsecureHostConfiguration",
}


@dataclass
class HostFacts:
    """What a host is: its name, Windows version and whether its HGS client is in Local mode."""

    computer_name: str = ""
    os_caption: str = ""
    os_version: str = ""
    os_build: str = ""
    product_type: int = 0  # 0: not said
    last_boot: dt.datetime | None = None
    mode: str = ""  # Local | HostGuardianService | "" (unknown: Get-HgsClientConfiguration failed)
    is_host_guarded: bool = False
    attestation_status: str = ""
    # Get-VMHost's VirtualMachineMigrationEnabled, as the inventory read it (None: not read, e.g. Test connection).
    live_migration_enabled: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def client_edition(self) -> bool:
        return self.product_type == WORKSTATION

    @property
    def local_mode(self) -> bool:
        return self.mode == LOCAL_MODE

    def require_local(self) -> None:
        if not self.local_mode:
            error = NotLocalMode(
                f"{self.computer_name or 'The host'} is in {self.mode or 'an unknown'} HGS mode, not Local: "
                "local guardian operations do not apply there."
            )
            error.facts = self  # type: ignore[attr-defined]
            raise error

    def as_dict(self) -> dict[str, Any]:
        return {
            "computer_name": self.computer_name,
            "os_caption": self.os_caption,
            "os_version": self.os_version,
            "os_build": self.os_build,
            "product_type": self.product_type,
            "last_boot": self.last_boot.isoformat() if self.last_boot else "",
            "mode": self.mode,
            "is_host_guarded": self.is_host_guarded,
            "attestation_status": self.attestation_status,
        }

    def __str__(self) -> str:
        os_part = " ".join(p for p in (self.os_caption, self.os_version) if p)
        return f"{self.computer_name or 'host'}: {os_part or 'Windows'}, HGS client mode {self.mode or 'unknown'}"


def is_os(obj: Any) -> bool:
    return has_type(obj, "Win32_OperatingSystem") or (
        prop(obj, "BuildNumber") is not None and prop(obj, "Caption") is not None
    )


def is_hgs_configuration(obj: Any) -> bool:
    return has_type(obj, "HgsClientConfiguration") or (
        prop(obj, "Mode") is not None and prop(obj, "IsHostGuarded") is not None
    )


def read_os(obj: Any, facts: HostFacts) -> None:
    facts.computer_name = text(prop(obj, "CSName", "PSComputerName", "ComputerName"))
    facts.os_caption = text(prop(obj, "Caption"))
    facts.os_version = text(prop(obj, "Version"))
    facts.os_build = text(prop(obj, "BuildNumber"))
    facts.product_type = number(prop(obj, "ProductType"))
    facts.last_boot = timestamp(prop(obj, "LastBootUpTime"))


def read_hgs(obj: Any, facts: HostFacts) -> None:
    """Mode and attestation status as names, whether the host sent the WMI class's numbers or names; a value the
    console does not know leaves the mode unknown (never taken for Local), with a note."""
    raw_mode = prop(obj, "Mode")
    facts.mode = enum_name(raw_mode, HGS_MODES)
    if not facts.mode:
        facts.problems.append(
            f"The HGS client reports its mode as {text(raw_mode, 'nothing')!r}, which is neither Local (1) nor "
            "HostGuardianService (2): its mode is taken as unknown."
        )
    facts.is_host_guarded = flag(prop(obj, "IsHostGuarded"))
    raw_status = prop(obj, "AttestationStatus")
    facts.attestation_status = enum_name(raw_status, ATTESTATION_STATUSES) or text(raw_status)


OS_STATEMENT = [Cmd("Get-CimInstance", {"ClassName": "Win32_OperatingSystem"})]
HGS_STATEMENT = [Cmd("Get-HgsClientConfiguration")]


@dataclass
class TestConnection(Operation[HostFacts]):
    """Reach the host, authenticate, and read its OS facts and HGS client mode.

    With require_local (the default) a host in HostGuardianService mode raises NotLocalMode, whose `.facts`
    still carry what was read.
    """

    __test__ = False  # not a pytest test class, despite the name
    require_local: bool = True

    name: ClassVar[str] = "Test connection"
    read_only: ClassVar[bool] = True
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-CimInstance", "Get-HgsClientConfiguration")

    def statements(self) -> list[list[Cmd]]:
        return [OS_STATEMENT, HGS_STATEMENT]

    def parse(self, result: PipelineResult) -> HostFacts:
        facts = HostFacts()
        for obj in result.output:
            if is_os(obj):
                read_os(obj, facts)
            elif is_hgs_configuration(obj):
                read_hgs(obj, facts)
        if not facts.os_caption and not facts.mode:
            raise UnexpectedReply("The host answered, but not with the OS facts and HGS configuration asked for.")
        if self.require_local:
            facts.require_local()
        return facts
