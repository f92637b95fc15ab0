"""A share reached with explicit credentials: how a host with a session that cannot pass its own credentials on
(NTLM, a workgroup: the second hop, docs/domain.md) still copies files from another host's share.

The share's account travels as a PSCredential (a SecureString password) and only as a parameter value: New-PSDrive
-Credential connects to the share with it for this session, Copy-Item copies through the drive, Remove-PSDrive ends
the connection. `New-SmbMapping` would need the password as a plain [string] parameter, so it is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..operation import SWITCH, Cmd, Credential, Operation, PipelineResult
from ..psobjects import prop, text
from .guardians import raise_unless_not_found


@dataclass
class GetSmbShare(Operation[str | None]):
    """The local folder a share of this host serves (`Get-SmbShare -Name`); None when the host has no such share."""

    share_name: str
    name: ClassVar[str] = "get_smb_share"
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-SmbShare",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Get-SmbShare", {"Name": self.share_name})]]

    def parse(self, result: PipelineResult) -> str | None:
        raise_unless_not_found(result)
        return text(prop(result.output[0], "Path")) or None if result.output else None


@dataclass
class MapShare(Operation[None]):
    """Connect this session to a share with the share's own account, as a PowerShell drive (global to the runspace,
    so the next pipelines of the session see it)."""

    drive: str
    root: str  # \\server\share
    credential: Credential
    name: ClassVar[str] = "map_share"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("New-PSDrive",)

    def statements(self) -> list[list[Cmd]]:
        params = {"Name": self.drive, "PSProvider": "FileSystem", "Root": self.root, "Credential": self.credential}
        return [[Cmd("New-PSDrive", params | {"Scope": "Global"})]]

    def parse(self, result: PipelineResult) -> None:
        return None


@dataclass
class UnmapShare(Operation[None]):
    """Remove the drive (and its connection to the share); a drive already gone (a new session) is fine."""

    drive: str
    name: ClassVar[str] = "unmap_share"
    read_only: ClassVar[bool] = False
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Remove-PSDrive",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Remove-PSDrive", {"Name": self.drive, "Scope": "Global", "Force": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        raise_unless_not_found(result)
        return None


@dataclass
class CopyFolder(Operation[None]):
    """Copy a folder with everything in it (`Copy-Item -Recurse`) to `destination` (made as the copy)."""

    path: str
    destination: str
    name: ClassVar[str] = "copy_folder"
    read_only: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Copy-Item",)

    def statements(self) -> list[list[Cmd]]:
        return [[Cmd("Copy-Item", {"LiteralPath": self.path, "Destination": self.destination, "Recurse": SWITCH})]]

    def parse(self, result: PipelineResult) -> None:
        return None
