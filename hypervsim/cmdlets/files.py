"""Provider cmdlets: the `Shielded VM Local Certificates` store under Cert:\\LocalMachine, files, and PFX in/out."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypervsim.certs import Certificate, PfxPasswordError, export_pfx, load_pfx
from hypervsim.cmdlets import CmdletError, Invocation, cmdlet
from hypervsim.model import DriveMissing, HostModel, PathOutsideArea, ShareAccessDenied, ShareGone
from hypervsim.types import dotnet_object, property_of, utc

STORE_NAME = "Shielded VM Local Certificates"
OTHER_STORES = ("My", "Root", "CA", "TrustedPeople")  # exist on every host; not modelled beyond being empty
CERT_PROVIDER = r"Microsoft.PowerShell.Security\Certificate"
FS_PROVIDER = r"Microsoft.PowerShell.Core\FileSystem"
ITEM_NOT_FOUND = [
    "System.Management.Automation.ItemNotFoundException",
    "System.Management.Automation.SessionStateException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
]
WIN32 = [
    "System.ComponentModel.Win32Exception",
    "System.Runtime.InteropServices.ExternalException",
    "System.SystemException",
    "System.Exception",
]
IO = ["System.IO.IOException", "System.SystemException", "System.Exception"]
DRIVE_NOT_FOUND = [
    "System.Management.Automation.DriveNotFoundException",
    "System.Management.Automation.SessionStateException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
]
_CERT_PREFIX = re.compile(r"^(cert:|microsoft\.powershell\.security\\certificate::)\\?", re.IGNORECASE)


def io_error(message: str, fqid: str, category: str, target: str) -> CmdletError:
    return CmdletError(message, fqid, category, IO, target)


def path_not_found(path: str) -> CmdletError:
    return CmdletError(
        f"Cannot find path '{path}' because it does not exist.", "PathNotFound", "ObjectNotFound", ITEM_NOT_FOUND, path
    )


def access_denied(path: str) -> CmdletError:
    """A file system provider refused by the share: the session's logon has no credentials for it."""
    return CmdletError(
        f"Access to the path '{path}' is denied.",
        "UnauthorizedAccessError",
        "PermissionDenied",
        ["System.UnauthorizedAccessException", "System.SystemException", "System.Exception"],
        path,
    )


@dataclass(frozen=True)
class CertPath:
    """A path in the certificate provider: LocalMachine, one of its stores, or a certificate in a store."""

    store: str | None
    thumbprint: str | None


def cert_path(text: str) -> CertPath | None:
    """Parse Cert:\\LocalMachine[\\<store>[\\<thumbprint>]]; None when the path is not in the certificate provider."""
    match = _CERT_PREFIX.match(text.replace("/", "\\"))
    if not match:
        return None
    parts = [p for p in text.replace("/", "\\")[match.end() :].split("\\") if p]
    if not parts or parts[0].casefold() != "localmachine" or len(parts) > 3:
        return CertPath("?", None)
    store = parts[1] if len(parts) > 1 else None
    return CertPath(store, parts[2].upper() if len(parts) > 2 else None)


def store_of(host: HostModel, path: CertPath) -> dict[str, Certificate] | None:
    """The certificates of the store the path names, or None when that store does not exist on the host."""
    if path.store is None or path.store == "?":
        return None
    if path.store.casefold() == STORE_NAME.casefold():
        return host.store
    return {} if path.store.casefold() in (s.casefold() for s in OTHER_STORES) else None


def certificate_object(cert: Certificate, has_private_key: bool | None = None, in_store: bool = True) -> Any:
    """An X509Certificate2 as Windows serializes it (with the provider's extended properties from the store)."""
    adapted = {
        "Archived": False,
        "FriendlyName": "",
        "HasPrivateKey": cert.has_private_key if has_private_key is None else has_private_key,
        "Issuer": cert.issuer,
        "NotAfter": utc(cert.not_after),
        "NotBefore": utc(cert.not_before),
        "RawData": cert.der,
        "SerialNumber": cert.serial_number,
        "Subject": cert.subject,
        "Thumbprint": cert.thumbprint,
        "Version": 3,
    }
    extended = {}
    if in_store:
        parent = rf"{CERT_PROVIDER}::LocalMachine\{STORE_NAME}"
        extended = {
            "PSPath": rf"{parent}\{cert.thumbprint}",
            "PSParentPath": parent,
            "PSChildName": cert.thumbprint,
            "PSDrive": "Cert",
            "PSProvider": CERT_PROVIDER,
            "PSIsContainer": False,
            "DnsNameList": [],
            "EnhancedKeyUsageList": [],
        }
    text = "\r\n\r\n".join(
        f"[{label}]\r\n  {value}"
        for label, value in [
            ("Subject", cert.subject),
            ("Issuer", cert.issuer),
            ("Serial Number", cert.serial_number),
            ("Not Before", cert.not_before.strftime("%m/%d/%Y %I:%M:%S %p")),
            ("Not After", cert.not_after.strftime("%m/%d/%Y %I:%M:%S %p")),
            ("Thumbprint", cert.thumbprint),
        ]
    )
    return dotnet_object(
        [
            "System.Security.Cryptography.X509Certificates.X509Certificate2",
            "System.Security.Cryptography.X509Certificates.X509Certificate",
        ],
        adapted,
        extended,
        to_string=text + "\r\n",
    )


def store_object(name: str) -> Any:
    parent = rf"{CERT_PROVIDER}::LocalMachine"
    return dotnet_object(
        ["System.Security.Cryptography.X509Certificates.X509Store"],
        {"Name": name, "Location": "LocalMachine"},
        {"PSPath": rf"{parent}\{name}", "PSParentPath": parent, "PSChildName": name, "PSIsContainer": True},
        to_string=name,
    )


def file_object(host: HostModel, local: Path) -> Any:
    """A FileInfo or DirectoryInfo with the FileSystem provider's extended properties."""
    full, is_dir = host.files.windows_path(local), local.is_dir()
    adapted: dict[str, Any] = {"Name": local.name, "FullName": full, "Exists": True}
    adapted["LastWriteTimeUtc"] = utc(dt.datetime.fromtimestamp(local.stat().st_mtime, dt.UTC))
    if not is_dir:
        adapted["Length"] = local.stat().st_size
    extended = {
        "PSPath": rf"{FS_PROVIDER}::{full}",
        "PSParentPath": rf"{FS_PROVIDER}::{full.rsplit(chr(92), 1)[0]}",
        "PSChildName": local.name,
        "PSIsContainer": is_dir,
        "Mode": "d-----" if is_dir else "-a----",
    }
    kind = "System.IO.DirectoryInfo" if is_dir else "System.IO.FileInfo"
    return dotnet_object([kind, "System.IO.FileSystemInfo", "System.MarshalByRefObject"], adapted, extended, full)


def local_path(host: HostModel, windows_path: str) -> Path:
    """The local file for a Windows path on this host; a Windows-like 'not found' error for anything outside."""
    try:
        return host.files.resolve(windows_path)
    except ShareAccessDenied:
        raise access_denied(windows_path) from None
    except ShareGone:  # Windows' ERROR_NETNAME_DELETED
        message = "The specified network name is no longer available."
        raise io_error(message, "ShareGone", "ReadError", windows_path) from None
    except DriveMissing as missing:
        message = f"Cannot find drive. A drive with the name '{missing.drive}' does not exist."
        raise CmdletError(message, "DriveNotFound", "ObjectNotFound", DRIVE_NOT_FOUND, missing.drive) from None
    except PathOutsideArea:
        raise path_not_found(windows_path) from None


def read_host_file(host: HostModel, windows_path: str) -> bytes:
    local = local_path(host, windows_path)
    if not local.is_file():
        raise path_not_found(windows_path)
    return local.read_bytes()


def find_certificate(host: HostModel, ref: Any) -> Certificate:
    """A certificate given as Cert:\\ path, thumbprint, or an X509Certificate2 object (e.g. from Get-Item)."""
    text = ref if isinstance(ref, str) else property_of(ref, "PSPath") or property_of(ref, "Thumbprint") or ""
    path = cert_path(str(text)) or CertPath(STORE_NAME, str(text).upper())
    cert = (store_of(host, path) or {}).get(path.thumbprint or "")
    if cert is None:
        raise path_not_found(str(text))
    return cert


def _paths(inv: Invocation) -> list[str]:
    """-Path/-LiteralPath, or the PSPath of piped items (provider-qualified paths work like plain ones)."""
    paths = inv.strings("Path") or inv.strings("LiteralPath")
    paths = paths or [str(property_of(item, "PSPath") or item) for item in inv.input]
    prefix = f"{FS_PROVIDER}::".casefold()
    return [p[len(prefix) :] if p.casefold().startswith(prefix) else p for p in paths]


@cmdlet(
    "Get-ChildItem",
    "Microsoft.PowerShell.Commands.GetChildItemCommand",
    "Path LiteralPath Filter Recurse Force",
    "Path",
)
def get_child_item(inv: Invocation) -> list[Any]:
    out: list[Any] = []
    for text in _paths(inv) or ["."]:
        path = cert_path(text)
        if path is not None:
            out += _list_certificates(inv, text, path)
            continue
        local = local_path(inv.host, text)
        if not local.exists():
            inv.errors.append(path_not_found(text))
        elif local.is_dir():
            out += [file_object(inv.host, child) for child in sorted(local.iterdir())]
        else:
            out.append(file_object(inv.host, local))
    return out


def _list_certificates(inv: Invocation, text: str, path: CertPath) -> list[Any]:
    if path.store is None:
        stores = list(OTHER_STORES) + ([STORE_NAME] if inv.host.store is not None else [])
        return [store_object(name) for name in stores]
    store = store_of(inv.host, path)
    if store is None or (path.thumbprint and path.thumbprint not in store):
        inv.errors.append(path_not_found(text))
        return []
    certs = [store[path.thumbprint]] if path.thumbprint else list(store.values())
    return [certificate_object(c) for c in certs]


# Whether the WinRM service accepts delegated credentials: what `Enable-WSManCredSSP -Role Server` turns on.
CREDSSP_SERVICE = r"WSMan:\localhost\Service\Auth\CredSSP"


def credssp_role(host: HostModel) -> Any:
    value = "true" if host.credssp_server else "false"
    return dotnet_object(
        ["Microsoft.WSMan.Management.WSManConfigLeafElement", "Microsoft.WSMan.Management.WSManConfigElement"],
        {
            "Name": "CredSSP",
            "Value": value,
            "Type": "System.String",
            "PSPath": f"Microsoft.WSMan.Management\\WSMan::{CREDSSP_SERVICE[7:]}",
        },
        to_string="Microsoft.WSMan.Management.WSManConfigLeafElement",
    )


@cmdlet("Get-Item", "Microsoft.PowerShell.Commands.GetItemCommand", "Path LiteralPath Force", "Path")
def get_item(inv: Invocation) -> list[Any]:
    out: list[Any] = []
    for text in _paths(inv):
        path = cert_path(text)
        if text.replace("/", "\\").casefold() == CREDSSP_SERVICE.casefold():
            out.append(credssp_role(inv.host))
        elif path is None:
            local = local_path(inv.host, text)
            if local.exists():
                out.append(file_object(inv.host, local))
            else:
                inv.errors.append(path_not_found(text))
        elif path.thumbprint is None and store_of(inv.host, path) is not None and path.store:
            out.append(store_object(STORE_NAME if path.store.casefold() == STORE_NAME.casefold() else path.store))
        else:
            store = store_of(inv.host, path) or {}
            if path.thumbprint in store:
                out.append(certificate_object(store[path.thumbprint]))
            else:
                inv.errors.append(path_not_found(text))
    return out


@cmdlet("New-Item", "Microsoft.PowerShell.Commands.NewItemCommand", "Path Name ItemType Value Force", "Path", True)
def new_item(inv: Invocation) -> list[Any]:
    inv.require("Path")
    text = str(inv.get("Path")) + (f"\\{inv.get('Name')}" if inv.get("Name") else "")
    path = cert_path(text)
    if path is None:
        return [_new_file_item(inv, text)]
    if path.store is None or path.thumbprint is not None or path.store == "?":
        raise CmdletError(
            "New-Item can only create certificate stores in the certificate provider.",
            "NotSupported",
            "InvalidOperation",
            [
                "System.Management.Automation.PSNotSupportedException",
                "System.NotSupportedException",
                "System.SystemException",
                "System.Exception",
            ],
            text,
        )
    if store_of(inv.host, path) is not None:
        raise io_error(
            f"An item with the specified name {text} already exists.", "NewItemIOError", "ResourceExists", text
        )
    if path.store.casefold() != STORE_NAME.casefold():
        raise path_not_found(text)
    with inv.host.changing() as host:
        host.store = {}
    return [store_object(STORE_NAME)]


def _new_file_item(inv: Invocation, text: str) -> Any:
    local = local_path(inv.host, text)
    if local.exists() and not inv.switch("Force"):
        fqid = "DirectoryExist" if local.is_dir() else "NewItemIOError"
        raise io_error(f"An item with the specified name {text} already exists.", fqid, "ResourceExists", text)
    if str(inv.get("ItemType", "File")).casefold() == "directory":
        local.mkdir(parents=True, exist_ok=True)
    else:
        local.parent.mkdir(parents=True, exist_ok=True)
        value = inv.get("Value")
        local.write_bytes(b"" if value is None else str(value).encode())
    return file_object(inv.host, local)


@cmdlet(
    "Remove-Item",
    "Microsoft.PowerShell.Commands.RemoveItemCommand",
    "Path LiteralPath Recurse Force DeleteKey",
    "Path",
    True,
)
def remove_item(inv: Invocation) -> list[Any]:
    for text in _paths(inv):
        path = cert_path(text)
        try:
            _remove_cert_item(inv, text, path) if path is not None else _remove_file(inv, text)
        except CmdletError as error:
            inv.errors.append(error)
    return []


def _remove_cert_item(inv: Invocation, text: str, path: CertPath) -> None:
    store = store_of(inv.host, path)
    if store is None or (path.thumbprint and path.thumbprint not in store):
        raise path_not_found(text)
    with inv.host.changing() as host:
        if path.thumbprint:
            del store[path.thumbprint]
        elif path.store and path.store.casefold() == STORE_NAME.casefold():
            host.store = None


def _remove_file(inv: Invocation, text: str) -> None:
    local = local_path(inv.host, text)
    if not local.exists():
        raise path_not_found(text)
    if local.parent == inv.host.files.root or local == inv.host.files.share:
        raise io_error(
            f"Cannot remove item {text}: it is the root of a drive or share.", "RemoveItemIOError", "WriteError", text
        )
    if local.is_dir():
        if any(local.iterdir()) and not inv.switch("Recurse"):
            message = f"The item at {text} has children and the Recurse parameter was not specified."
            raise io_error(message, "RemoveItemUnauthorizedAccessError", "WriteError", text)
        for child in sorted(local.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        local.rmdir()
    else:
        local.unlink()


@cmdlet("Test-Path", "Microsoft.PowerShell.Commands.TestPathCommand", "Path LiteralPath PathType IsValid", "Path")
def test_path(inv: Invocation) -> list[Any]:
    kind = str(inv.get("PathType", "Any")).casefold()
    return [_exists(inv.host, text, kind) for text in _paths(inv)]


def _exists(host: HostModel, text: str, kind: str) -> bool:
    path = cert_path(text)
    if path is not None:
        store = store_of(host, path)
        container = path.thumbprint is None
        found = store is not None and (container or path.thumbprint in store)
        found = found or (path.store is None)
        return found and (kind == "any" or (kind == "container") == container)
    try:
        local = host.files.resolve(text)
    except PathOutsideArea:  # a share refused or gone, a drive the session lacks: False, as on Windows
        return False
    return {"any": local.exists(), "leaf": local.is_file(), "container": local.is_dir()}.get(kind, False)


@cmdlet(
    "Get-Content", "Microsoft.PowerShell.Commands.GetContentCommand", "Path LiteralPath Encoding Raw TotalCount", "Path"
)
def get_content(inv: Invocation) -> list[Any]:
    out: list[Any] = []
    for text in _paths(inv):
        data = read_host_file(inv.host, text)
        if str(inv.get("Encoding", "")).casefold() == "byte":
            out += [data] if inv.switch("Raw") else list(data)
        else:
            decoded = data.decode("utf-8-sig", errors="replace")
            out += [decoded] if inv.switch("Raw") else decoded.splitlines()
    return out


@cmdlet(
    "Set-Content",
    "Microsoft.PowerShell.Commands.SetContentCommand",
    "Path LiteralPath Value Encoding Force NoNewline",
    "Path Value",
    True,
)
def set_content(inv: Invocation) -> list[Any]:
    targets = inv.strings("Path") or inv.strings("LiteralPath")
    if not targets:
        inv.require("Path")
    value = inv.get("Value", inv.input)
    if str(inv.get("Encoding", "")).casefold() == "byte":
        data = _as_bytes(value)
    else:
        data = "".join(f"{v}\r\n" for v in _as_list(value)).encode()
    for text in targets:
        local = local_path(inv.host, text)
        if not local.parent.is_dir():
            raise path_not_found(text.rsplit("\\", 1)[0])
        local.write_bytes(data)
    return []


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return bytes(int(v) for v in _as_list(value))
    except (TypeError, ValueError):
        raise CmdletError(
            'Cannot convert the value to type "System.Byte".',
            "InvalidCastFromAnyTypeToByte",
            "InvalidArgument",
            ["System.Management.Automation.PSInvalidCastException", "System.InvalidCastException", "System.Exception"],
        ) from None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@cmdlet(
    "Export-PfxCertificate",
    "Microsoft.CertificateServices.Commands.ExportPfxCertificate",
    "Cert PFXData FilePath Password ProtectTo ChainOption NoProperties NoClobber Force CryptoAlgorithmOption",
    "Cert FilePath",
    True,
)
def export_pfx_certificate(inv: Invocation) -> list[Any]:
    inv.require("FilePath")
    ref = inv.get("Cert") or (inv.input[0] if inv.input else None)
    if ref is None:
        inv.require_input("Cert")
    password = inv.secret("Password")
    if password is None:
        raise CmdletError(
            "Password or ProtectTo must be specified.",
            "Export-PfxCertificate",
            "InvalidArgument",
            ["System.ArgumentException", "System.SystemException", "System.Exception"],
        )
    cert = find_certificate(inv.host, ref)
    local = local_path(inv.host, str(inv.get("FilePath")))
    if local.exists() and inv.switch("NoClobber"):
        raise io_error(f"The file '{local.name}' already exists.", "System.IO.IOException", "WriteError", local.name)
    if not local.parent.is_dir():
        raise path_not_found(str(inv.get("FilePath")))
    if cert.key is None:  # Export-PfxCertificate asks for the private key and refuses a certificate without one
        raise CmdletError(
            "Cannot export non-exportable private key.",
            "System.Security.Cryptography.CryptographicException",
            "NotSpecified",
            ["System.Security.Cryptography.CryptographicException", "System.SystemException", "System.Exception"],
        )
    local.write_bytes(export_pfx(cert, password))
    return [file_object(inv.host, local)]


@cmdlet(
    "Import-PfxCertificate",
    "Microsoft.CertificateServices.Commands.ImportPfxCertificate",
    "FilePath CertStoreLocation Password Exportable",
    "FilePath CertStoreLocation",
    True,
)
def import_pfx_certificate(inv: Invocation) -> list[Any]:
    inv.require("FilePath")
    location = str(inv.get("CertStoreLocation", r"Cert:\CurrentUser\My"))
    path = cert_path(location)
    store = store_of(inv.host, path) if path else None
    if (
        path is None
        or store is None
        or path.thumbprint
        or not path.store
        or path.store.casefold() != STORE_NAME.casefold()
    ):
        raise path_not_found(location)
    data = read_host_file(inv.host, str(inv.get("FilePath")))
    cert = open_pfx(data, inv.secret("Password") or "")
    with inv.host.changing():
        existing = store.get(cert.thumbprint)
        if existing is None or cert.key is not None:
            store[cert.thumbprint] = cert
    return [certificate_object(store[cert.thumbprint])]


def open_pfx(data: bytes, password: str) -> Certificate:
    """Load a PFX the way Import-PfxCertificate does, failing with Windows' message on a wrong password."""
    try:
        return load_pfx(data, password)
    except PfxPasswordError:
        raise CmdletError(
            "The PFX file you are trying to import requires either a different password or membership in an "
            "Active Directory principal to which it is protected.",
            "System.ComponentModel.Win32Exception",
            "NotSpecified",
            WIN32,
        ) from None
