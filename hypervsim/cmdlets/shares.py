"""SMB shares and PowerShell drives: Get-SmbShare, New-PSDrive / Remove-PSDrive on a share with explicit
credentials, and Copy-Item (docs/fidelity.md, "A share reached with explicit credentials").

A session without credentials of its own for a third machine (NTLM, the second hop) reaches a share once it maps it
with New-PSDrive -Credential: Windows connects to the share with those credentials (WNetAddConnection2) for the
session's logon, and the file server checks them, not the session's. The drive belongs to the runspace (its logon
here) and goes with Remove-PSDrive.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from hypervsim import logon
from hypervsim.cmdlets import CmdletError, Invocation, cmdlet
from hypervsim.cmdlets.files import io_error, local_path
from hypervsim.types import Credential, cim_object, dotnet_object

SESSION_STATE = [
    "System.Management.Automation.SessionStateException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
]
DRIVE_NOT_FOUND = ["System.Management.Automation.DriveNotFoundException", *SESSION_STATE]
WIN32 = [
    "System.ComponentModel.Win32Exception",
    "System.Runtime.InteropServices.ExternalException",
    "System.SystemException",
    "System.Exception",
]
NOT_SUPPORTED = [
    "System.Management.Automation.PSNotSupportedException",
    "System.NotSupportedException",
    "System.SystemException",
    "System.Exception",
]
CIM = ["Microsoft.Management.Infrastructure.CimException", "System.SystemException", "System.Exception"]
_UNC_ROOT = re.compile(r"^\\\\([^\\]+)\\([^\\]+)\\?$")
# Windows' texts for WNetAddConnection2's errors (winerror.h: 1326, 53, 67) and ERROR_NETNAME_DELETED (64).
WRONG_PASSWORD = "The user name or password is incorrect."
NO_NETWORK_PATH = "The network path was not found."
NO_SHARE = "The network name cannot be found."
NAME_DELETED = "The specified network name is no longer available."


def drive_not_found(name: str) -> CmdletError:
    message = f"Cannot find drive. A drive with the name '{name}' does not exist."
    return CmdletError(message, "DriveNotFound", "ObjectNotFound", DRIVE_NOT_FOUND, name)


def share_object(name: str, path: str) -> Any:
    return cim_object(
        "ROOT/Microsoft/Windows/SMB/MSFT_SmbShare",
        [],
        {"Name": name, "Path": path, "ScopeName": "*", "Description": "", "ShareState": 1, "ShareType": 0},
    )


@cmdlet(
    "Get-SmbShare",
    "Get-SmbShare",
    "Name ScopeName Scoped Special ContinuouslyAvailable ShareState FolderEnumerationMode CachingMode "
    "ConcurrentUserLimit AvailabilityType CaTimeout EncryptData IncludeHidden CimSession ThrottleLimit AsJob",
    "Name ScopeName",
    kind="Function",
)
def get_smb_share(inv: Invocation) -> list[Any]:
    """The host's shares (a CDXML function of the SmbShare module); an unknown name is CIM's "not found"."""
    wanted = inv.strings("Name")
    names = {name.casefold() for name in wanted}
    out = [share_object(s.name, s.path) for s in inv.host.shares.values() if not names or s.name.casefold() in names]
    for name in wanted:
        if name.casefold() not in inv.host.shares:
            inv.errors.append(
                CmdletError(
                    f"No MSFT_SmbShare objects found with property 'Name' equal to '{name}'.  Verify the value of "
                    "the property and retry.",
                    "CmdletizationQuery_NotFound_Name,Get-SmbShare",
                    "ObjectNotFound",
                    CIM,
                    name,
                )
            )
    return out


def _network_error(message: str, root: str) -> CmdletError:
    return CmdletError(message, "CouldNotMapNetworkDrive", "InvalidOperation", WIN32, root)


def _connect(inv: Invocation, root: str, credential: Credential) -> None:
    """What WNetAddConnection2 answers for \\\\server\\share with these credentials."""
    match = _UNC_ROOT.match(root)
    lab = inv.host.lab
    peer = lab.peer(match.group(1)) if match and lab is not None else None
    if peer is None or not peer.on_network:
        raise _network_error(NO_NETWORK_PATH, root)
    assert match is not None
    share = peer.shares.get(match.group(2).casefold())
    if share is None:
        raise _network_error(NO_SHARE, root)
    if not share.accepts(peer.name, credential.user, credential.password):
        raise _network_error(WRONG_PASSWORD, root)


@cmdlet(
    "New-PSDrive",
    "Microsoft.PowerShell.Commands.NewPSDriveCommand",
    "Name! PSProvider! Root! Description Scope Persist Credential",
    "Name PSProvider Root",
    True,
)
def new_ps_drive(inv: Invocation) -> list[Any]:
    name, root = str(inv.get("Name")), str(inv.get("Root")).rstrip("\\")
    if str(inv.get("PSProvider")).casefold() not in ("filesystem", r"microsoft.powershell.core\filesystem"):
        message = f"Cannot find a provider with the name '{inv.get('PSProvider')}'."
        not_found = ["System.Management.Automation.ProviderNotFoundException", *SESSION_STATE]
        raise CmdletError(message, "ProviderNotFound", "ObjectNotFound", not_found)
    session = logon.current()
    if name.casefold() in session.drives:
        message = f"A drive with the name '{name}' already exists."
        raise CmdletError(message, "DriveAlreadyExists", "ResourceExists", SESSION_STATE, name)
    credential = inv.get("Credential")
    if isinstance(credential, Credential) and _UNC_ROOT.match(root):
        _connect(inv, root, credential)
        user = credential.user
    else:  # no credentials of its own: the root must be reachable as the session is (the second hop)
        try:
            found = local_path(inv.host, root).is_dir()
        except CmdletError:
            found = False
        if not found:
            message = f'The specified drive root "{root}" either does not exist, or it is not a folder.'
            raise io_error(message, "DriveRootError", "ReadError", name)
        user = session.user
    session.drives[name.casefold()] = logon.Drive(name, root, user)
    return [
        dotnet_object(
            ["System.Management.Automation.PSDriveInfo"],
            {"Name": name, "Root": root, "Description": str(inv.get("Description", "")), "CurrentLocation": ""},
            {"Provider": r"Microsoft.PowerShell.Core\FileSystem"},
            to_string=name,
        )
    ]


@cmdlet(
    "Remove-PSDrive",
    "Microsoft.PowerShell.Commands.RemovePSDriveCommand",
    "Name LiteralName PSProvider Scope Force",
    "Name",
    True,
)
def remove_ps_drive(inv: Invocation) -> list[Any]:
    """Remove the drives (and so their connections to the share) of this session."""
    drives = logon.current().drives
    for name in inv.strings("Name") or inv.strings("LiteralName"):
        if drives.pop(name.casefold(), None) is None:
            inv.errors.append(drive_not_found(name))
    return []


@cmdlet(
    "Copy-Item",
    "Microsoft.PowerShell.Commands.CopyItemCommand",
    "Path LiteralPath Destination Container Recurse Force PassThru Filter Include Exclude Credential UseTransaction "
    "FromSession ToSession",
    "Path Destination",
    True,
)
def copy_item(inv: Invocation) -> list[Any]:
    """Copy a file, or a folder with -Recurse, file by file; each file is read through its path again, so a share
    that goes away in the middle fails the copy there (Windows: ERROR_NETNAME_DELETED)."""
    inv.require("Destination")
    if inv.get("Credential") is not None:  # the FileSystem provider takes credentials only through New-PSDrive
        message = (
            "The provider does not support the use of credentials. Perform the operation again without specifying "
            "credentials."
        )
        raise CmdletError(message, "NotSupported", "NotImplemented", NOT_SUPPORTED)
    destination = str(inv.get("Destination"))
    for text in inv.strings("LiteralPath") or inv.strings("Path"):
        source = local_path(inv.host, text)
        target = local_path(inv.host, destination)
        if source.is_dir() and not inv.switch("Recurse"):
            target.mkdir(parents=True, exist_ok=True)
            continue
        into = target / source.name if target.is_dir() else target
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for local in files:
            relative = local.relative_to(source) if source.is_dir() else None
            try:
                read = local_path(inv.host, text + ("\\" + "\\".join(relative.parts) if relative else ""))
            except CmdletError as error:
                if error.fqid == "ShareGone":
                    raise io_error(NAME_DELETED, "CopyDirectoryInfoItemIOError", "WriteError", text) from None
                raise
            written = into / relative if relative is not None else into
            written.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(read, written)
    return []
