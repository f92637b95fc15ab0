"""HgsClient commands (CDXML over ROOT/Microsoft/Windows/Hgs): client configuration, guardians, key protectors.

The module exports them as functions (FunctionsToExport), not cmdlets: Get-Command reports CommandType Function and
a JEA role must list them under VisibleFunctions.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import defusedxml.ElementTree as SafeXml
from psrpcore.types import PSUInt16, PSUInt64

from hypervsim import keyprotector
from hypervsim.certs import Certificate, guardian_pair
from hypervsim.cmdlets import CmdletError, CmdletSpec, Invocation, cmdlet
from hypervsim.cmdlets.files import certificate_object, local_path, open_pfx, path_not_found, read_host_file
from hypervsim.model import Guardian, HostModel
from hypervsim.types import HgsClientMode, cim_object, property_of

NAMESPACE = "ROOT/Microsoft/Windows/Hgs"
CIM = ["Microsoft.Management.Infrastructure.CimException", "System.Exception"]
GUARDIAN_PARAMS = "Name AllowExpired AllowUntrustedRoot"
Body = Callable[[Invocation], list[Any]]


def hgs_function(
    name: str, command_class: str, parameters: str = "", positional: str = "", should_process: bool = False, **kw: Any
) -> Callable[[Body], CmdletSpec]:
    """Register an HgsClient command: a function, as the module exports it."""
    return cmdlet(name, command_class, parameters, positional, should_process, kind="Function", **kw)


def hgs_error(message: str, hresult: int, category: str = "NotSpecified", target: Any = None) -> CmdletError:
    """CDXML cmdlets report the WMI provider's HRESULT as the FullyQualifiedErrorId."""
    return CmdletError(message, f"HRESULT 0x{hresult:08x}", category, CIM, target)


def guardian_object(host: HostModel, guardian: Guardian) -> Any:
    """MSFT_HgsGuardian; HasPrivateSigningKey reflects what the store holds right now.

    The WMI class declares the certificates as uint8[] (what a host strict about `certificate_bytes` sends); the
    simulator otherwise shows them as certificate objects, as the module presents them locally."""
    signing_key = host.private_key_held(guardian.signing)

    def certificate(cert: Certificate, has_key: bool) -> Any:
        return cert.der if host.strict.certificate_bytes else certificate_object(cert, has_key, in_store=False)

    return cim_object(
        f"{NAMESPACE}/MSFT_HgsGuardian",
        [],
        {
            "EncryptionCertificate": certificate(guardian.encryption, host.private_key_held(guardian.encryption)),
            "HasPrivateSigningKey": signing_key,
            "Name": guardian.name,
            "SigningCertificate": certificate(guardian.signing, signing_key),
        },
        to_string=f'MSFT_HgsGuardian (Name = "{guardian.name}")',  # a CIM instance shows its key properties
    )


def _kp_guardian_object(host: HostModel, row: keyprotector.GuardianRow) -> Any:
    """A key protector row as MSFT_HgsGuardian: named after the local guardian with those certificates, if any."""
    match = next(
        (g for g in host.guardians.values() if g.encryption.thumbprint == row.encryption.thumbprint),
        Guardian("", row.signing, row.encryption),
    )
    return guardian_object(host, Guardian(match.name, row.signing, row.encryption))


def key_protector_object(host: HostModel, kp: keyprotector.KeyProtector) -> Any:
    return cim_object(
        f"{NAMESPACE}/MSFT_HgsKeyProtector",
        [],
        {
            "Guardians": [_kp_guardian_object(host, row) for row in kp.rows],
            "Owner": _kp_guardian_object(host, kp.owner),
            "RawData": kp.to_xml() if host.strict.opaque_key_protector else kp.to_bytes(),
        },
    )


@hgs_function("Get-HgsClientConfiguration", "Get-HgsClientConfiguration")
def get_hgs_client_configuration(inv: Invocation) -> list[Any]:
    mode = HgsClientMode[inv.host.hgs_mode]
    return [
        cim_object(
            f"{NAMESPACE}/MSFT_HgsClientConfiguration",
            [],
            {
                "AttestationOperationMode": _uint(inv, 0, PSUInt16, "Unknown"),
                "AttestationServerUrl": "",
                "AttestationStatus": _uint(inv, 0, PSUInt16, "NotConfigured"),
                "AttestationSubstatus": _uint(inv, 0, PSUInt64, "NoInformation"),
                "FallbackAttestationServerUrl": "",
                "FallbackKeyProtectionServerUrl": "",
                "IsFallbackInUse": False,
                "IsHostGuarded": False,
                "KeyProtectionServerUrl": "",
                "Mode": _uint(inv, mode.value, PSUInt16, mode),
            },
        )
    ]


def _uint(inv: Invocation, number: int, kind: type[int], shown: Any) -> Any:
    """A uint16/uint64 CIM property: the number the WMI class declares on a host strict about `wmi_numbers`, else the
    name the simulator used to send."""
    return kind(number) if inv.host.strict.wmi_numbers else shown


@hgs_function("Get-HgsGuardian", "Get-HgsGuardian", "Name", "Name")
def get_hgs_guardian(inv: Invocation) -> list[Any]:
    names = inv.strings("Name")
    if not names:
        return [guardian_object(inv.host, g) for g in inv.host.guardians.values()]
    out = []
    for name in names:
        guardian = inv.host.guardian(name)
        if guardian is None:
            inv.errors.append(_guardian_not_found(name))
        else:
            out.append(guardian_object(inv.host, guardian))
    return out


def _guardian_not_found(name: str) -> CmdletError:
    return CmdletError(
        f"No MSFT_HgsGuardian objects found with property 'Name' equal to '{name}'.  "
        "Verify the value of the property and retry.",
        "CmdletizationQuery_NotFound_Name",
        "ObjectNotFound",
        CIM,
        name,
    )


@hgs_function(
    "New-HgsGuardian",
    "New-HgsGuardian",
    "Name!",
    "Name",
    True,
    sets={
        "AcceptCertificates": "SigningCertificate! SigningCertificatePassword EncryptionCertificate! "
        "EncryptionCertificatePassword AllowExpired AllowUntrustedRoot",
        "ByThumbprints": "SigningCertificateThumbprint! EncryptionCertificateThumbprint! AllowExpired "
        "AllowUntrustedRoot",
        "GenerateCertificates": "GenerateCertificates!",
    },
)
def new_hgs_guardian(inv: Invocation) -> list[Any]:
    inv.require("Name")  # a name piped in is not modelled
    name = str(inv.get("Name"))
    with inv.host.changing() as host:
        if host.guardian(name) is not None:
            raise hgs_error(f"A guardian with the name '{name}' already exists.", 0x800700B7, "ResourceExists", name)
        if inv.parameter_set == "GenerateCertificates":
            return [guardian_object(host, host.add_guardian(name, *guardian_pair(name, host.name)))]
        if inv.parameter_set == "ByThumbprints":
            signing = _from_store(host, str(inv.get("SigningCertificateThumbprint")))
            encryption = _from_store(host, str(inv.get("EncryptionCertificateThumbprint")))
        else:
            signing = _from_pfx(inv, "SigningCertificate")
            encryption = _from_pfx(inv, "EncryptionCertificate")
        for cert in (signing, encryption):
            _check_trust(inv, cert)
        return [guardian_object(host, host.add_guardian(name, signing, encryption))]


def _from_store(host: HostModel, thumbprint: str) -> Certificate:
    cert = (host.store or {}).get(thumbprint.upper().replace(" ", ""))
    if cert is None:
        raise hgs_error("Cannot find object or property.", 0x80092004, "ObjectNotFound", thumbprint)
    return cert


def _from_pfx(inv: Invocation, parameter: str) -> Certificate:
    data = read_host_file(inv.host, str(inv.get(parameter)))
    try:
        return open_pfx(data, inv.secret(f"{parameter}Password") or "")
    except CmdletError:
        raise hgs_error("The specified network password is not correct.", 0x80070056, "InvalidArgument") from None


def _check_trust(inv: Invocation, cert: Certificate) -> None:
    """Self-signed guardian certificates need -AllowUntrustedRoot and expired ones -AllowExpired, as on Windows."""
    now = dt.datetime.now(dt.UTC)
    if not cert.not_before <= now <= cert.not_after and not inv.switch("AllowExpired"):
        raise hgs_error(
            "A required certificate is not within its validity period when verifying against the current system "
            "clock or the timestamp in the signed file.",
            0x800B0101,
            "InvalidArgument",
        )
    if cert.subject == cert.issuer and not inv.switch("AllowUntrustedRoot"):
        raise hgs_error(
            "A certificate chain processed, but terminated in a root certificate which is not trusted by the "
            "trust provider.",
            0x800B0109,
            "InvalidArgument",
        )


@hgs_function("Remove-HgsGuardian", "Remove-HgsGuardian", "Name InputObject", "Name", True)
def remove_hgs_guardian(inv: Invocation) -> list[Any]:
    """Removes the guardian entry only: its certificates (and private keys) stay in the store."""
    names = inv.strings("Name") or [str(property_of(o, "Name")) for o in _as_list(inv.get("InputObject") or inv.input)]
    if not names:
        inv.require_input("Name")
    with inv.host.changing() as host:
        for name in names:
            guardian = host.guardian(name)
            if guardian is None:
                inv.errors.append(_guardian_not_found(name))
            else:
                del host.guardians[guardian.name]
    return []


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


@hgs_function(
    "Export-HgsGuardian",
    "Export-HgsGuardian",
    "InputObject Path Name",
    "InputObject Path",
    aliases={"Guardian": "InputObject", "FilePath": "Path"},
    lenient=("export_guardian_by_object", "Name"),
)
def export_hgs_guardian(inv: Invocation) -> list[Any]:
    """Writes a guardian's public certificates (no private keys) as XML for Import-HgsGuardian elsewhere.

    Windows takes the guardian as an object (`Get-HgsGuardian -Name X | Export-HgsGuardian -Path Y`); a lenient host
    also takes -Name."""
    inv.require("Path")
    sources = _as_list(inv.get("InputObject")) if inv.has("InputObject") else list(inv.input)
    if not sources and inv.has("Name"):
        sources = [_named_guardian(inv.host, str(inv.get("Name")))]
    if not sources:
        inv.require_input("InputObject")
    local = local_path(inv.host, str(inv.get("Path")))
    if not local.parent.is_dir():
        raise path_not_found(str(inv.get("Path")))
    for source in sources:  # each piped guardian is written to the path in turn, as PowerShell processes records
        local.write_bytes(_guardian_xml(_exported_guardian(inv.host, source)))
    return []


def _named_guardian(host: HostModel, name: str) -> Guardian:
    guardian = host.guardian(name) if name else None
    if guardian is None:
        raise _guardian_not_found(name)
    return guardian


def _exported_guardian(host: HostModel, source: Any) -> Guardian:
    """The guardian an object carries: its own certificates, or the host's guardian of its name when the object's
    certificates cannot be read (a copy the client sent back)."""
    if isinstance(source, Guardian):
        return source
    try:
        return _guardian_from_object(source)
    except CmdletError:
        return _named_guardian(host, str(property_of(source, "Name") or ""))


def _guardian_xml(guardian: Guardian) -> bytes:
    root = ElementTree.Element("Guardian", Name=guardian.name)
    for tag, cert in (("SigningCertificate", guardian.signing), ("EncryptionCertificate", guardian.encryption)):
        ElementTree.SubElement(root, tag).text = base64.b64encode(cert.der).decode()
    return b'<?xml version="1.0" encoding="utf-8"?>\r\n' + ElementTree.tostring(root)


@hgs_function("Import-HgsGuardian", "Import-HgsGuardian", f"{GUARDIAN_PARAMS} Path", "Path Name", True)
def import_hgs_guardian(inv: Invocation) -> list[Any]:
    """A guardian from another host's public metadata: no private keys here, by design."""
    inv.require("Path", "Name")
    name = str(inv.get("Name"))
    data = read_host_file(inv.host, str(inv.get("Path")))
    try:
        root = SafeXml.fromstring(data)
        signing = Certificate(base64.b64decode(root.findtext("SigningCertificate") or ""))
        encryption = Certificate(base64.b64decode(root.findtext("EncryptionCertificate") or ""))
        signing.x509, encryption.x509  # noqa: B018 - parse now so bad data fails here
    except Exception:  # noqa: BLE001 - any malformed file is the same error to the caller
        raise hgs_error("The data is invalid.", 0x8007000D, "InvalidData") from None
    with inv.host.changing() as host:
        if host.guardian(name) is not None:
            raise hgs_error(f"A guardian with the name '{name}' already exists.", 0x800700B7, "ResourceExists", name)
        for cert in (signing, encryption):
            _check_trust(inv, cert)
        guardian = Guardian(name, signing, encryption)
        host.guardians[name] = guardian
        return [guardian_object(host, guardian)]


def parse_key_protector(value: Any) -> keyprotector.KeyProtector:
    """Bytes, or an MSFT_HgsKeyProtector object carrying RawData."""
    raw = value if isinstance(value, bytes | bytearray) else property_of(value, "RawData")
    if isinstance(raw, list):
        raw = bytes(int(b) for b in raw)
    try:
        return keyprotector.parse(bytes(raw or b""))
    except keyprotector.KeyProtectorError:
        raise hgs_error("The parameter is incorrect.", 0x80070057, "InvalidArgument") from None


@hgs_function("ConvertTo-HgsKeyProtector", "ConvertTo-HgsKeyProtector", "Bytes", "Bytes")
def convert_to_hgs_key_protector(inv: Invocation) -> list[Any]:
    inv.require("Bytes")
    return [key_protector_object(inv.host, parse_key_protector(inv.get("Bytes")))]


# Both take the guardian as an object or by friendly name, in separate sets, and no set is the default.
GUARDIAN_SETS = {"InputObject": "Guardian!", "FriendlyName": "GuardianFriendlyName!"}


@hgs_function(
    "Grant-HgsKeyProtectorAccess",
    "Grant-HgsKeyProtectorAccess",
    "KeyProtector! AllowExpired AllowUntrustedRoot",
    "KeyProtector",
    True,
    sets=GUARDIAN_SETS,
)
def grant_hgs_key_protector_access(inv: Invocation) -> list[Any]:
    """Adds a guardian to a key protector; needs the owner's private keys on this host."""
    kp, guardian = _key_protector_and_guardian(inv)
    for cert in (guardian.signing, guardian.encryption):
        _check_trust(inv, cert)
    try:
        granted = kp.grant(inv.host.store or {}, guardian.signing, guardian.encryption)
    except keyprotector.KeyProtectorError:
        raise _owner_key_missing() from None
    return [key_protector_object(inv.host, granted)]


@hgs_function("Revoke-HgsKeyProtectorAccess", "Revoke-HgsKeyProtectorAccess", "KeyProtector!", "KeyProtector", True,
        sets=GUARDIAN_SETS)  # fmt: skip
def revoke_hgs_key_protector_access(inv: Invocation) -> list[Any]:
    """Removes a guardian from a key protector, re-signed by its owner: needs the owner's private signing key here."""
    kp, guardian = _key_protector_and_guardian(inv)
    if guardian.encryption.thumbprint == kp.owner.encryption.thumbprint:
        raise hgs_error("The owner guardian of a key protector cannot be revoked.", 0x80070057, "InvalidArgument")
    try:
        revoked = kp.revoke(inv.host.store or {}, guardian.encryption.thumbprint)
    except keyprotector.KeyProtectorError:
        raise _owner_key_missing() from None
    return [key_protector_object(inv.host, revoked)]


def _owner_key_missing() -> CmdletError:
    return hgs_error(
        "Keyset does not exist. The private signing key of the key protector's owner guardian is not available "
        "on this host.",
        0x80090016,
        "InvalidOperation",
    )


def _key_protector_and_guardian(inv: Invocation) -> tuple[keyprotector.KeyProtector, Guardian]:
    """-KeyProtector (or pipeline input) and the guardian named by -GuardianFriendlyName or given as -Guardian."""
    source = inv.get("KeyProtector") or (inv.input[0] if inv.input else None)
    if source is None:
        inv.require_input("KeyProtector")
    kp = parse_key_protector(source)
    if inv.parameter_set == "FriendlyName":
        guardian = inv.host.guardian(str(inv.get("GuardianFriendlyName")))
        if guardian is None:
            raise _guardian_not_found(str(inv.get("GuardianFriendlyName")))
        return kp, guardian
    return kp, _guardian_from_object(inv.get("Guardian"))


def _guardian_from_object(value: Any) -> Guardian:
    def cert(name: str) -> Certificate:
        nested = property_of(value, name)
        raw = nested if isinstance(nested, bytes) else property_of(nested, "RawData")
        return Certificate(bytes(raw or b""))

    try:
        guardian = Guardian(
            str(property_of(value, "Name") or ""), cert("SigningCertificate"), cert("EncryptionCertificate")
        )
        guardian.signing.x509, guardian.encryption.x509  # noqa: B018 - validate now
    except (ValueError, TypeError):
        raise hgs_error("The parameter is incorrect.", 0x80070057, "InvalidArgument") from None
    return guardian
