"""The simulated host's HGS, certificate-store and file cmdlets, run in-process through the cmdlet registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import NameOID
from psrpcore.types import serialize_clixml

from hypervsim import keyprotector, scenarios
from hypervsim.certs import Certificate, export_pfx, new_key, self_signed
from hypervsim.cmdlets import CMDLETS, CmdletError, invoke
from hypervsim.model import STORE_PATH, HostModel, LabContext, PathOutsideArea
from hypervsim.types import Secret

ISSUE_CMDLETS = {
    "Get-HgsClientConfiguration", "Get-HgsGuardian", "New-HgsGuardian", "Remove-HgsGuardian", "Export-HgsGuardian",
    "Import-HgsGuardian", "ConvertTo-HgsKeyProtector", "Grant-HgsKeyProtectorAccess", "Get-ChildItem", "Get-Item",
    "New-Item", "Remove-Item", "Export-PfxCertificate", "Import-PfxCertificate", "Get-Content", "Set-Content",
    "Test-Path", "Get-VM", "Get-VMSecurity", "Get-VMKeyProtector", "Set-VMKeyProtector", "Enable-VMTPM",
    "Disable-VMTPM", "Start-VM", "Stop-VM", "Remove-VMSavedState", "Get-VMSnapshot", "Get-VMHost", "Export-VM",
    "Compare-VM", "Import-VM", "Move-VM", "Remove-VM", "Get-CimInstance",
}  # fmt: skip
# Select-Object and Get-Command: a JEA endpoint's default visible cmdlets, for small reads and for asking what a
# command is; Revoke undoes a grant. The share commands carry the workgroup migration (issue 10): a share of the
# source mapped on the target with the share's own account.
BEYOND_THE_ISSUE = {
    "Select-Object", "Get-Command", "Revoke-HgsKeyProtectorAccess",
    "Get-SmbShare", "New-PSDrive", "Remove-PSDrive", "Copy-Item",
    # The rescue of a VM whose keys are lost (issue 13): its settings read, a new VM without a vTPM built from them.
    "Get-VMHardDiskDrive", "Get-VMNetworkAdapter", "Get-VMFirmware", "Set-VMProcessor", "Rename-VM",
    "New-VM", "Set-VMFirmware", "Add-VMHardDiskDrive", "Add-VMNetworkAdapter",
}  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> LabContext:
    return LabContext(tmp_path / "share")


@pytest.fixture
def make_host(tmp_path: Path, lab: LabContext):
    def make(scenario: str = "healthy", name: str = "HV01") -> HostModel:
        host = HostModel.load_or_create(tmp_path / name, name, scenario)
        host.attach(lab)
        return host

    return make


def out(host: HostModel, name: str, /, **params: object) -> list:
    result, errors = invoke(host, name, params)
    assert errors == []
    return result


def error(host: HostModel, name: str, /, **params: object) -> CmdletError:
    """The first error, terminating or not."""
    try:
        _, errors = invoke(host, name, params)
    except CmdletError as exc:
        return exc
    assert errors, f"{name} did not fail"
    return errors[0]


def local_guardian(host: HostModel):
    return out(host, "Get-HgsGuardian", Name="UntrustedGuardian")[0]


def export_guardian(host: HostModel, name: str, path: str) -> None:
    """`Get-HgsGuardian -Name <name> | Export-HgsGuardian -Path <path>`: Export-HgsGuardian takes no -Name."""
    result, errors = invoke(host, "Export-HgsGuardian", {"Path": path}, input=out(host, "Get-HgsGuardian", Name=name))
    assert (result, errors) == ([], [])


def cert(guardian: Any, role: str) -> Certificate:
    """A guardian object's Signing or Encryption certificate. MSFT_HgsGuardian carries it as the byte array the WMI
    class declares (a host without `certificate_bytes` sends an X509Certificate2 object, whose RawData it is)."""
    value = getattr(guardian, f"{role}Certificate")
    return Certificate(bytes(value if isinstance(value, bytes | bytearray) else value.RawData))


def test_registry_is_the_issue_list_and_resolves_names_like_powershell():
    assert set(CMDLETS) == ISSUE_CMDLETS | BEYOND_THE_ISSUE
    assert "get-vm" in CMDLETS
    assert CMDLETS.get("GET-HGSGUARDIAN") is CMDLETS["Get-HgsGuardian"]


def test_parameters_bind_by_any_case_and_unique_prefix(make_host):
    host = make_host("healthy")
    assert out(host, "Get-HgsGuardian", name="UntrustedGuardian")[0].Name == "UntrustedGuardian"
    assert [vm.Name for vm in out(host, "Get-VM", Na="Win11-A")] == ["Win11-A"]


def test_unknown_and_ambiguous_parameters_fail_as_in_powershell(make_host):
    host = make_host("healthy")
    unknown = error(host, "Get-VM", Colour="red")
    assert unknown.message == "A parameter cannot be found that matches parameter name 'Colour'."
    assert unknown.fqid == "NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"
    assert unknown.exception_type[0] == "System.Management.Automation.ParameterBindingException"
    ambiguous = error(host, "New-HgsGuardian", Name="X", Signing="a")
    assert "ambiguous" in ambiguous.message and ambiguous.fqid.startswith("AmbiguousParameter,")


def test_client_configuration_is_local_mode(make_host):
    host = make_host("fresh")
    config = out(host, "Get-HgsClientConfiguration")[0]
    assert config.Mode == 1 and config.IsHostGuarded is False  # uint16, as the WMI class declares: 1 is Local
    assert config.PSTypeNames[0].endswith("ROOT/Microsoft/Windows/Hgs/MSFT_HgsClientConfiguration")
    host.strict.wmi_numbers = False  # the enum the simulator used to send
    assert out(host, "Get-HgsClientConfiguration")[0].Mode.name == "Local"


def test_healthy_guardian_has_windows_subjects_and_private_keys(make_host):
    host = make_host("healthy", "HV07")
    guardian = local_guardian(host)
    assert guardian.HasPrivateSigningKey is True
    signing, encryption = cert(guardian, "Signing"), cert(guardian, "Encryption")
    assert signing.subject == "CN=Shielded VM Signing Certificate (UntrustedGuardian) (HV07)"
    assert encryption.subject == "CN=Shielded VM Encryption Certificate (UntrustedGuardian) (HV07)"
    assert signing.thumbprint == hashlib.sha1(signing.der).hexdigest().upper()  # noqa: S324
    assert signing.thumbprint == host.guardian("UntrustedGuardian").signing.thumbprint
    assert 9.9 < (signing.not_after - signing.not_before).days / 365 < 10.1
    xml = serialize_clixml(guardian, None)  # type: ignore[arg-type]  # no SecureStrings: no cipher needed
    assert '<BA N="SigningCertificate">' in xml and "MSFT_HgsGuardian</T>" in xml
    host.strict.certificate_bytes = False  # the certificate objects the simulator used to send
    shown = local_guardian(host)
    assert shown.SigningCertificate.Thumbprint == signing.thumbprint
    xml = serialize_clixml(shown, None)  # type: ignore[arg-type]
    assert "<T>System.Security.Cryptography.X509Certificates.X509Certificate2</T>" in xml and '<BA N="RawData">' in xml


def test_guardian_without_certificates_reports_no_private_key(make_host):
    assert local_guardian(make_host("deleted-certs")).HasPrivateSigningKey is False


def test_unknown_guardian_is_a_not_found_error(make_host):
    err = error(make_host("healthy"), "Get-HgsGuardian", Name="Nobody")
    assert err.fqid == "CmdletizationQuery_NotFound_Name,Get-HgsGuardian"
    assert err.category == "ObjectNotFound" and "'Nobody'" in err.message


def test_generate_certificates_creates_the_store_and_names_both_subjects(make_host):
    host = make_host("fresh")
    assert out(host, "Test-Path", Path=STORE_PATH) == [False]
    guardian = out(host, "New-HgsGuardian", Name="Lab", GenerateCertificates=None)[0]
    assert cert(guardian, "Signing").subject == "CN=Shielded VM Signing Certificate (Lab) (HV01)"
    assert guardian.HasPrivateSigningKey is True
    assert out(host, "Test-Path", Path=STORE_PATH) == [True]
    assert len(out(host, "Get-ChildItem", Path=STORE_PATH)) == 2


def test_guardian_by_thumbprints_needs_untrusted_root_switch_and_present_certificates(make_host):
    host = make_host("healthy")
    g = local_guardian(host)
    thumbs = {"SigningCertificateThumbprint": cert(g, "Signing").thumbprint}
    thumbs["EncryptionCertificateThumbprint"] = cert(g, "Encryption").thumbprint
    untrusted = error(host, "New-HgsGuardian", Name="Again", **thumbs)
    assert untrusted.fqid == "HRESULT 0x800b0109,New-HgsGuardian" and "not trusted" in untrusted.message
    again = out(host, "New-HgsGuardian", Name="Again", AllowUntrustedRoot=None, **thumbs)[0]
    assert cert(again, "Signing").thumbprint == cert(g, "Signing").thumbprint
    missing = error(
        host,
        "New-HgsGuardian",
        Name="Ghost",
        AllowUntrustedRoot=None,
        **(thumbs | {"SigningCertificateThumbprint": "AB" * 20}),
    )
    assert missing.fqid == "HRESULT 0x80092004,New-HgsGuardian"


def test_guardian_from_the_export_scripts_pfx_files_on_the_share(make_host, lab):
    host = make_host("reinstalled")
    scenarios.backup_files(host, lab.share / "backup")
    _, _, password = scenarios.previous_guardian_backup(host)
    params = {
        "Name": "Restored", "AllowUntrustedRoot": None, "AllowExpired": None,
        "SigningCertificate": r"\\LAB\share\backup\UntrustedGuardian-signing.pfx",
        "EncryptionCertificate": r"\\lab\SHARE\backup\UntrustedGuardian-encryption.pfx",
        "SigningCertificatePassword": Secret(password), "EncryptionCertificatePassword": Secret(password),
    }  # fmt: skip
    wrong = error(host, "New-HgsGuardian", **(params | {"EncryptionCertificatePassword": Secret("nope")}))
    assert wrong.message == "The specified network password is not correct."
    assert host.guardian("Restored") is None
    guardian = out(host, "New-HgsGuardian", **params)[0]
    assert guardian.HasPrivateSigningKey is True
    assert cert(guardian, "Signing").subject.endswith("(UntrustedGuardian) (HV01)")


def test_remove_guardian_by_pipeline_object(make_host):
    host = make_host("healthy")
    result, errors = invoke(host, "Remove-HgsGuardian", {}, input=[local_guardian(host)])
    assert (result, errors) == ([], [])
    assert host.guardians == {}
    assert error(host, "Remove-HgsGuardian", Name="UntrustedGuardian").category == "ObjectNotFound"


def test_public_guardian_moves_between_hosts_without_private_keys(make_host):
    source, target = make_host("healthy", "HV01"), make_host("fresh", "HV02")
    out(target, "New-HgsGuardian", Name="UntrustedGuardian", GenerateCertificates=None)
    export_guardian(target, "UntrustedGuardian", r"\\LAB\share\HV02.xml")
    imported = out(source, "Import-HgsGuardian", Path=r"\\LAB\share\HV02.xml", Name="HV02", AllowUntrustedRoot=None)[0]
    assert imported.HasPrivateSigningKey is False
    assert cert(imported, "Encryption").thumbprint == target.guardians["UntrustedGuardian"].encryption.thumbprint
    assert "already exists" in error(source, "Import-HgsGuardian", Path=r"\\LAB\share\HV02.xml", Name="HV02").message
    bad = error(source, "Import-HgsGuardian", Path=r"\\LAB\share\missing.xml", Name="X")
    assert bad.fqid == "PathNotFound,Import-HgsGuardian"


def test_convert_key_protector_names_the_owner_by_certificate(make_host):
    host = make_host("healthy")
    raw = out(host, "Get-VMKeyProtector", VMName="Win11-A")[0]
    kp = out(host, "ConvertTo-HgsKeyProtector", Bytes=raw)[0]
    assert kp.Owner.Name == "UntrustedGuardian"
    assert [g.Name for g in kp.Guardians] == ["UntrustedGuardian"]
    assert kp.RawData == raw
    host.guardians.clear()  # a KP stores certificates, not names: with no matching guardian the name is empty
    assert out(host, "ConvertTo-HgsKeyProtector", Bytes=raw)[0].Owner.Name == ""
    assert error(host, "ConvertTo-HgsKeyProtector", Bytes=b"\x00\x00\x00\x04").fqid.startswith("HRESULT 0x80070057")


def test_grant_access_needs_the_owners_private_signing_key(make_host):
    host = make_host("deleted-certs")
    raw = out(host, "Get-VMKeyProtector", VMName="Win11-A")[0]
    out(host, "New-HgsGuardian", Name="Other", GenerateCertificates=None)
    err = error(
        host, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, GuardianFriendlyName="Other", AllowUntrustedRoot=None
    )
    assert "Keyset does not exist" in err.message


def test_embedded_certificates_let_a_client_recover_thumbprints(make_host):
    """The console's fallback: find the X.509 structures inside the raw key protector bytes, on a host that spells
    key protectors the binary way (Windows' are opaque: test_strict)."""
    host = make_host("healthy")
    host.strict.opaque_key_protector = False
    raw = out(host, "Get-VMKeyProtector", VMName="Win11-B")[0]
    found = []
    for i in range(len(raw) - 4):
        if raw[i] == 0x30 and raw[i + 1] == 0x82:
            length = int.from_bytes(raw[i + 2 : i + 4], "big") + 4
            try:
                der = x509.load_der_x509_certificate(raw[i : i + length]).public_bytes(Encoding.DER)
            except ValueError:
                continue
            found.append(hashlib.sha1(der).hexdigest().upper())  # noqa: S324
    g = host.guardians["UntrustedGuardian"]
    assert found == [g.signing.thumbprint, g.encryption.thumbprint]


def test_tampered_key_protector_is_rejected(make_host):
    raw = bytearray(out(make_host("healthy"), "Get-VMKeyProtector", VMName="Win11-A")[0])
    raw[40] ^= 0xFF
    with pytest.raises(keyprotector.KeyProtectorError):
        keyprotector.parse(bytes(raw))


def test_certificate_store_listing_and_items(make_host):
    host = make_host("healthy")
    certs = out(host, "Get-ChildItem", Path=STORE_PATH)
    assert {c.HasPrivateKey for c in certs} == {True}
    thumb = certs[0].Thumbprint
    item = out(host, "Get-Item", Path=rf"{STORE_PATH}\{thumb.lower()}")[0]
    assert item.Thumbprint == thumb and item.PSParentPath.endswith(r"LocalMachine\Shielded VM Local Certificates")
    missing = error(host, "Get-Item", Path=rf"{STORE_PATH}\{'0' * 40}")
    assert missing.message == f"Cannot find path '{STORE_PATH}\\{'0' * 40}' because it does not exist."
    assert missing.fqid == "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
    out(host, "Remove-Item", Path=rf"{STORE_PATH}\{thumb}")
    assert out(host, "Test-Path", Path=rf"{STORE_PATH}\{thumb}") == [False]


def test_listing_a_missing_store_is_path_not_found(make_host):
    err = error(make_host("fresh"), "Get-ChildItem", Path=STORE_PATH)
    assert err.fqid == "PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand"
    assert err.exception_type[0] == "System.Management.Automation.ItemNotFoundException"


def test_new_item_creates_the_store_once(make_host):
    host = make_host("fresh")
    store = out(host, "New-Item", Path=STORE_PATH)[0]
    assert store.Name == "Shielded VM Local Certificates"
    assert out(host, "Get-ChildItem", Path=STORE_PATH) == []
    assert "already exists" in error(host, "New-Item", Path=STORE_PATH).message


def test_pfx_export_read_back_as_bytes_and_reimported(make_host):
    host = make_host("healthy")
    thumb = host.guardians["UntrustedGuardian"].signing.thumbprint
    cert_path = rf"{STORE_PATH}\{thumb}"
    file_info = out(
        host, "Export-PfxCertificate", Cert=cert_path, FilePath=r"C:\Windows\Temp\s.pfx", Password=Secret("pw1")
    )[0]
    assert file_info.FullName == r"C:\Windows\Temp\s.pfx" and file_info.Length > 1000
    data = out(host, "Get-Content", Path=r"C:\Windows\Temp\s.pfx", Encoding="Byte", Raw=None)[0]
    key, cert, _ = pkcs12.load_key_and_certificates(data, b"pw1")
    assert key is not None and cert is not None and Certificate(cert.public_bytes(Encoding.DER)).thumbprint == thumb
    out(host, "Remove-Item", Path=cert_path)
    wrong = error(
        host,
        "Import-PfxCertificate",
        FilePath=r"C:\Windows\Temp\s.pfx",
        CertStoreLocation=STORE_PATH,
        Password=Secret("x"),
    )
    assert wrong.message.startswith("The PFX file you are trying to import requires either a different password")
    assert (
        wrong.fqid == "System.ComponentModel.Win32Exception,Microsoft.CertificateServices.Commands.ImportPfxCertificate"
    )
    imported = out(
        host,
        "Import-PfxCertificate",
        FilePath=r"C:\Windows\Temp\s.pfx",
        CertStoreLocation=STORE_PATH,
        Password=Secret("pw1"),
        Exportable=None,
    )[0]
    assert imported.Thumbprint == thumb and imported.HasPrivateKey is True


def test_export_pfx_into_a_missing_folder_fails(make_host):
    host = make_host("healthy")
    thumb = host.guardians["UntrustedGuardian"].signing.thumbprint
    err = error(
        host, "Export-PfxCertificate", Cert=rf"{STORE_PATH}\{thumb}", FilePath=r"C:\Nope\s.pfx", Password=Secret("p")
    )
    assert err.category == "ObjectNotFound"


def test_byte_content_written_then_removed(make_host):
    host = make_host("fresh")
    assert "already exists" in error(host, "New-Item", Path=r"C:\Windows\Temp", ItemType="Directory").message
    out(host, "New-Item", Path=r"C:\Data", ItemType="Directory")
    out(host, "Set-Content", Path=r"C:\Windows\Temp\blob.bin", Value=b"\x00\x01\xff", Encoding="Byte")
    assert out(host, "Get-Content", Path=r"c:\windows\temp\BLOB.bin", Encoding="Byte", Raw=None) == [b"\x00\x01\xff"]
    assert out(host, "Get-Content", Path=r"C:\Windows\Temp\blob.bin", Encoding="Byte") == [0, 1, 255]
    assert out(host, "Test-Path", Path=r"C:\Windows\Temp\blob.bin", PathType="Leaf") == [True]
    out(host, "Remove-Item", Path=r"C:\Windows\Temp\blob.bin")
    assert out(host, "Test-Path", Path=r"C:\Windows\Temp\blob.bin") == [False]
    assert error(host, "Remove-Item", Path=r"C:\Windows\Temp\blob.bin").fqid.startswith("PathNotFound,")


@pytest.mark.parametrize(
    "path",
    [
        r"C:\..\..\etc\passwd",
        r"C:\Temp\..\..\x",
        r"\\evil\share\x",
        r"C:\a\b:stream",
        "/etc/passwd",
        r"\\LAB\share\..\x",
    ],
)
def test_paths_never_escape_the_file_area(make_host, path):
    host = make_host("fresh")
    with pytest.raises(PathOutsideArea):
        host.files.resolve(path)
    assert out(host, "Test-Path", Path=path) == [False]
    assert error(host, "Set-Content", Path=path, Value=b"x", Encoding="Byte").category == "ObjectNotFound"


def test_symlink_out_of_the_area_is_refused(make_host, tmp_path):
    host = make_host("fresh")
    (tmp_path / "outside").mkdir()
    drive = host.files.root / "C"
    drive.mkdir(parents=True, exist_ok=True)
    (drive / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(PathOutsideArea):
        host.files.resolve(r"C:\link\secret.txt")


def test_operating_system_facts(make_host):
    os_info = out(make_host("fresh"), "Get-CimInstance", ClassName="Win32_OperatingSystem")[0]
    assert os_info.Caption == "Microsoft Windows Server 2022 Datacenter"
    assert (os_info.Version, os_info.BuildNumber, os_info.CSName) == ("10.0.20348", "20348", "HV01")
    assert error(make_host("fresh", "HV02"), "Get-CimInstance", ClassName="Win32_Nope").fqid.startswith(
        "HRESULT 0x80041010"
    )


def test_a_restarted_host_keeps_its_state(make_host, tmp_path):
    host = make_host("healthy")
    out(host, "New-HgsGuardian", Name="Second", GenerateCertificates=None)
    out(host, "Stop-VM", Name="Win11-A", Save=None)
    again = HostModel.load_or_create(tmp_path / "HV01", "HV01", "fresh")
    assert set(again.guardians) == {"UntrustedGuardian", "Second"}
    assert again.store is not None and host.store is not None
    assert set(again.store) == set(host.store) and all(c.key is not None for c in again.store.values())
    assert again.vm("Win11-A").state == "Saved"
    assert again.vm("win11-a").key_protector == host.vm("Win11-A").key_protector


def test_export_script_pfx_files_and_simulator_exports_load_in_cryptography():
    cert = self_signed("Shielded VM Signing Certificate (UntrustedGuardian) (HV09)", encryption=False)
    for legacy in (True, False):
        key, loaded, _ = pkcs12.load_key_and_certificates(export_pfx(cert, "pw", legacy=legacy), b"pw")
        assert key is not None and loaded is not None


def test_piped_items_and_literal_paths_work_like_paths(make_host):
    host = make_host("healthy")
    out(host, "Set-Content", LiteralPath=r"C:\Windows\Temp\a.bin", Value=[1, 2], Encoding="Byte")
    items = out(host, "Get-ChildItem", Path=r"C:\Windows\Temp")
    assert [i.Name for i in items] == ["a.bin"]
    assert invoke(host, "Remove-Item", {}, input=items) == ([], [])
    certs = out(host, "Get-ChildItem", Path=STORE_PATH)
    assert invoke(host, "Remove-Item", {}, input=certs[:1]) == ([], [])
    assert len(out(host, "Get-ChildItem", Path=STORE_PATH)) == 1


def test_a_certificate_without_private_key_cannot_be_exported(make_host):
    host = make_host("deleted-certs")
    guardian = host.guardians["UntrustedGuardian"]
    host.store[guardian.signing.thumbprint] = guardian.signing.public_only()  # certificate back, key still gone
    path = rf"{STORE_PATH}\{guardian.signing.thumbprint}"
    assert out(host, "Get-Item", Path=path)[0].HasPrivateKey is False
    err = error(host, "Export-PfxCertificate", Cert=path, FilePath=r"C:\Windows\Temp\pub.pfx", Password=Secret("pw"))
    assert err.message == "Cannot export non-exportable private key."
    assert err.fqid.endswith(",Microsoft.CertificateServices.Commands.ExportPfxCertificate")
    assert out(host, "Test-Path", Path=r"C:\Windows\Temp\pub.pfx") == [False]


def test_file_area_snapshot_shows_what_is_left_on_the_host(make_host):
    host = make_host("fresh")
    out(host, "Set-Content", Path=r"C:\Windows\Temp\gc-1.pfx", Value=b"x", Encoding="Byte")
    assert host.files.snapshot(r"C:\Windows\Temp") == {r"C:\Windows\Temp\gc-1.pfx": b"x"}
    out(host, "Remove-Item", LiteralPath=r"C:\Windows\Temp\gc-1.pfx", Force=None)
    assert host.files.snapshot(r"C:\Windows\Temp") == {}


def test_grant_takes_a_guardian_object_and_refuses_untrusted_roots_without_the_switch(make_host):
    host = make_host("healthy")
    out(host, "New-HgsGuardian", Name="Peer", GenerateCertificates=None)
    peer = out(host, "Get-HgsGuardian", Name="Peer")[0]
    raw = out(host, "Get-VMKeyProtector", VMName="Win11-B")[0]
    untrusted = error(host, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, Guardian=peer)
    assert untrusted.fqid == "HRESULT 0x800b0109,Grant-HgsKeyProtectorAccess"
    (kp,) = out(host, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, Guardian=peer, AllowUntrustedRoot=None)
    assert [g.Name for g in kp.Guardians] == ["UntrustedGuardian", "Peer"]
    assert keyprotector.parse(kp.RawData).verify()  # re-signed by the owner


def test_long_guardian_names_go_into_the_subject_whole(make_host):
    name = "Guardian-with-a-rather-long-name-for-the-lab"
    with warnings.catch_warnings(record=True) as caught:
        guardian = out(make_host("fresh"), "New-HgsGuardian", Name=name, GenerateCertificates=None)[0]
        assert cert(guardian, "Encryption").subject == f"CN=Shielded VM Encryption Certificate ({name}) (HV01)"
    assert not [w for w in caught if "length" in str(w.message)]


@pytest.mark.parametrize("root", [r"C:\\", "C:", r"\\LAB\share", r"\\LAB\share\\"])
def test_drive_and_share_roots_cannot_be_removed(make_host, root):
    host = make_host("healthy")
    err = error(host, "Remove-Item", LiteralPath=root, Recurse=None, Force=None)
    assert err.category == "WriteError"
    assert out(host, "Test-Path", Path=r"C:\Windows\Temp") == [True] and host.lab.share.is_dir()


def _expired(common_name: str) -> Certificate:
    key = new_key("tests/expired")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=4000))
    cert = builder.not_valid_after(now - dt.timedelta(days=1)).sign(key, hashes.SHA256())
    return Certificate(cert.public_bytes(Encoding.DER), key)


def test_expired_certificates_need_allow_expired(make_host):
    host = make_host("healthy")
    signing, encryption = _expired("Old signing"), _expired("Old encryption")
    host.store |= {signing.thumbprint: signing, encryption.thumbprint: encryption}
    params = {"Name": "Old", "AllowUntrustedRoot": None}
    params |= {
        "SigningCertificateThumbprint": signing.thumbprint,
        "EncryptionCertificateThumbprint": encryption.thumbprint,
    }
    err = error(host, "New-HgsGuardian", **params)
    assert err.fqid == "HRESULT 0x800b0101,New-HgsGuardian" and "validity period" in err.message
    assert out(host, "New-HgsGuardian", AllowExpired=None, **params)[0].HasPrivateSigningKey is True


def test_byte_content_that_is_not_bytes_is_refused(make_host):
    host = make_host("fresh")
    err = error(host, "Set-Content", Path=r"C:\Windows\Temp\x.bin", Value=[1, 300], Encoding="Byte")
    assert err.exception_type[0] == "System.Management.Automation.PSInvalidCastException"
    assert out(host, "Test-Path", Path=r"C:\Windows\Temp\x.bin") == [False]
