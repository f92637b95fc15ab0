"""The simulated host's cmdlets as the console meets them: unmodified pypsrp over real sockets (NTLM + encryption).

One story per cmdlet family and per host behaviour the workflows rely on; the full matrix runs in-process in
test_sim_cmdlets*.py and test_sim_behaviours.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

from hypervsim import scenarios, start_host
from hypervsim.certs import thumbprint
from hypervsim.model import STORE_PATH
from tests.plugins.sim import kind_to_the_second_hop

pytestmark = pytest.mark.timeout(60)
UNWRAP = "The key protector could not be unwrapped"


@contextmanager
def session(h: Any, secrets: bool = False) -> Iterator[RunspacePool]:
    wsman = WSMan(
        h.address, port=h.port, username=h.user, password=h.password, ssl=False, auth="negotiate", operation_timeout=5
    )
    with wsman, RunspacePool(wsman) as pool:
        if secrets:
            pool.exchange_keys()  # SecureString parameters need the session key (client RSA key: slow-ish)
        yield pool


def run(pool: RunspacePool, *statements: tuple[str, dict[str, Any]]) -> PowerShell:
    """Commands of one pipeline; a name starting with '|' pipes into the previous command."""
    ps = PowerShell(pool)
    for index, (name, params) in enumerate(statements):
        if index and not name.startswith("|"):
            ps.add_statement()
        ps.add_cmdlet(name.lstrip("|"))
        for key, value in params.items():
            ps.add_parameter(key, value)
    ps.invoke()
    return ps


def ok(pool: RunspacePool, name: str, /, **params: Any) -> list[Any]:
    ps = run(pool, (name, params))
    assert not ps.had_errors and not ps.streams.error, [str(e) for e in ps.streams.error]
    return ps.output


def fails(pool: RunspacePool, name: str, /, **params: Any) -> Any:
    ps = run(pool, (name, params))
    assert ps.streams.error, f"{name} did not fail"
    return ps.streams.error[0]


def secure(text: str) -> TaggedValue:
    return TaggedValue("SS", text)


def prop(obj: Any, name: str) -> Any:
    return obj.adapted_properties.get(name, obj.extended_properties.get(name))


def guardian_names(guardians: list[Any]) -> list[str]:
    """The names in a key protector's Guardians (or its Owner, in a list). Output is serialized at depth 1, so each
    arrives as its CIM instance's text, MSFT_HgsGuardian (Name = "X"); a host without depth 1 sends objects."""
    return [guardian_name(g) for g in guardians]


def guardian_name(guardian: Any) -> str:
    if not isinstance(guardian, str):
        return str(prop(guardian, "Name"))
    shown = re.fullmatch(r'MSFT_HgsGuardian \(Name = "(.*)"\)', guardian)
    assert shown, guardian
    return shown[1]


def test_inventory_cmdlets_arrive_with_windows_types(sim_host):
    h = sim_host("healthy")
    with session(h) as pool:
        vms = ok(pool, "Get-VM")
        assert vms[0].types[0] == "Microsoft.HyperV.PowerShell.VirtualMachine"
        assert [(prop(v, "Name"), str(prop(v, "State"))) for v in vms][:3] == [
            ("Win11-A", "Running"),
            ("Win11-B", "Off"),
            ("Win11-C", "Saved"),
        ]
        (security,) = ok(pool, "Get-VMSecurity", VMName="Win11-B")
        assert prop(security, "TpmEnabled") is True
        (snapshot,) = ok(pool, "Get-VMSnapshot", VMName="Win11-B")
        assert prop(snapshot, "Name") == "Before update"
        (vm_host,) = ok(pool, "Get-VMHost")
        assert prop(vm_host, "VirtualMachineMigrationEnabled") is False
        (os_info,) = ok(pool, "Get-CimInstance", ClassName="Win32_OperatingSystem")
        assert prop(os_info, "Caption") == "Microsoft Windows Server 2022 Datacenter"
        (config,) = ok(pool, "Get-HgsClientConfiguration")
        assert prop(config, "Mode") == 1  # Local, as the uint16 the WMI class declares


def test_guardian_certificates_and_key_protector_bytes_travel_intact(sim_host):
    h = sim_host("healthy")
    with session(h) as pool:
        (guardian,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        raw = prop(guardian, "SigningCertificate")  # a byte array, as the WMI class declares it
        assert thumbprint(raw) == h.model.guardian("UntrustedGuardian").signing.thumbprint
        subject = x509.load_der_x509_certificate(raw).subject.rfc4514_string()
        assert subject == "CN=Shielded VM Signing Certificate (UntrustedGuardian) (HV01)"
        (kp_bytes,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-A")
        assert isinstance(kp_bytes, bytes) and raw not in kp_bytes  # opaque, as Windows' are: no DER inside
        (kp,) = ok(pool, "ConvertTo-HgsKeyProtector", Bytes=kp_bytes)
        assert guardian_names([prop(kp, "Owner")]) == ["UntrustedGuardian"]
        expand = ("|Select-Object", {"ExpandProperty": "Guardians"})
        (listed,) = run(pool, ("ConvertTo-HgsKeyProtector", {"Bytes": kp_bytes}), expand).output
        assert prop(listed, "SigningCertificate") == raw  # the certificate bytes come back whole, lifted to the top
        bad = fails(pool, "Get-HgsGuardian", Name="Nobody")
        assert bad.fq_error == "CmdletizationQuery_NotFound_Name,Get-HgsGuardian"


def test_pfx_export_and_download_as_bytes(sim_host):
    h = sim_host("healthy")
    with session(h, secrets=True) as pool:
        certs = ok(pool, "Get-ChildItem", Path=STORE_PATH)
        thumb = prop(certs[0], "Thumbprint")
        target = r"C:\Windows\Temp\gc-signing.pfx"
        ok(pool, "Export-PfxCertificate", Cert=rf"{STORE_PATH}\{thumb}", FilePath=target, Password=secure("pw-1"))
        (data,) = ok(pool, "Get-Content", Path=target, Encoding="Byte", Raw=None)
        key, cert, _ = pkcs12.load_key_and_certificates(data, b"pw-1")
        assert key is not None and cert is not None
        ok(pool, "Remove-Item", Path=target)
        assert ok(pool, "Test-Path", Path=target) == [False]
    parameters = [entry["parameters"] for entry in h.command_log if entry["cmdlet"] == "Export-PfxCertificate"]
    assert parameters and parameters[0]["Password"] == "********"


def test_reinstalled_host_starts_its_vm_after_the_backup_pair_is_uploaded_and_imported(sim_host):
    h = sim_host("reinstalled")
    signing_pfx, encryption_pfx, password = scenarios.previous_guardian_backup(h)
    with session(h, secrets=True) as pool:
        err = fails(pool, "Start-VM", Name="Win11-A")
        assert UNWRAP in str(err) and err.fq_error == "Unspecified,Microsoft.HyperV.PowerShell.Commands.StartVM"
        for name, blob in (("signing", signing_pfx), ("encryption", encryption_pfx)):
            ok(pool, "Set-Content", Path=rf"C:\Windows\Temp\{name}.pfx", Value=blob, Encoding="Byte")
        pfx = r"C:\Windows\Temp\encryption.pfx"
        missing = fails(
            pool, "Import-PfxCertificate", FilePath=pfx, CertStoreLocation=STORE_PATH, Password=secure(password)
        )
        assert str(missing) == f"Cannot find path '{STORE_PATH}' because it does not exist."
        ok(pool, "New-Item", Path=STORE_PATH)
        wrong = fails(pool, "Import-PfxCertificate", FilePath=pfx, CertStoreLocation=STORE_PATH, Password=secure("x"))
        assert "requires either a different password" in str(wrong)
        ok(pool, "New-HgsGuardian", Name="Restored", AllowUntrustedRoot=None, AllowExpired=None,
           SigningCertificate=r"C:\Windows\Temp\signing.pfx", SigningCertificatePassword=secure(password),
           EncryptionCertificate=pfx, EncryptionCertificatePassword=secure(password))  # fmt: skip
        duplicate = fails(pool, "New-HgsGuardian", Name="Restored", GenerateCertificates=None)
        assert "already exists" in str(duplicate)
        ok(pool, "Start-VM", Name="Win11-A")
    assert h.model.vm("Win11-A").state == "Running"


def test_deleted_certificates_block_tpm_changes_until_the_guardian_is_reset(sim_host):
    h = sim_host("deleted-certs")
    with session(h) as pool:
        attempts: list[tuple[str, dict[str, Any]]] = [
            ("Disable-VMTPM", {"VMName": "Win11-B"}),
            ("Enable-VMTPM", {"VMName": "Win11-A"}),
            ("Set-VMKeyProtector", {"VMName": "Srv-Plain", "NewLocalKeyProtector": None}),
        ]
        for name, params in attempts:
            err = fails(pool, name, **params)
            assert "An error occurred while applying security changes" in str(err), name
            assert "Guardian 'UntrustedGuardian' does not have a private key and cannot be the owner." in str(err)
            assert err.fq_error.startswith("Unspecified,Microsoft.HyperV.PowerShell.Commands.")
        (none,) = ok(pool, "Get-VMKeyProtector", VMName="Srv-Plain")
        assert len(none) < 16  # the refused Set-VMKeyProtector left no protector behind
        ps = run(pool, ("Get-HgsGuardian", {"Name": "UntrustedGuardian"}), ("|Remove-HgsGuardian", {}))
        assert not ps.had_errors and ok(pool, "Get-HgsGuardian") == []
        ok(pool, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
        ok(pool, "Enable-VMTPM", VMName="Srv-Plain")
        ok(pool, "Start-VM", Name="Srv-Plain")
    assert h.model.vm("Srv-Plain").tpm_enabled and h.model.vm("Srv-Plain").state == "Running"


def test_guardian_reset_keeps_its_certificates_so_it_can_be_recreated_by_thumbprints(sim_host):
    h = sim_host("healthy")
    with session(h) as pool:
        (guardian,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        pair = {
            "SigningCertificateThumbprint": thumbprint(prop(guardian, "SigningCertificate")),
            "EncryptionCertificateThumbprint": thumbprint(prop(guardian, "EncryptionCertificate")),
        }
        (cert,) = ok(pool, "Get-Item", Path=rf"{STORE_PATH}\{pair['SigningCertificateThumbprint'].lower()}")
        assert cert.types[0] == "System.Security.Cryptography.X509Certificates.X509Certificate2"
        assert prop(cert, "Thumbprint") == pair["SigningCertificateThumbprint"] and prop(cert, "HasPrivateKey") is True
        assert prop(cert, "PSParentPath").endswith(r"LocalMachine\Shielded VM Local Certificates")
        missing = fails(pool, "Get-Item", Path=rf"{STORE_PATH}\{'0' * 40}")
        assert missing.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
        store = sorted(prop(c, "Thumbprint") for c in ok(pool, "Get-ChildItem", Path=STORE_PATH))
        ok(pool, "Remove-HgsGuardian", Name="UntrustedGuardian")
        assert ok(pool, "Get-HgsGuardian") == []
        assert sorted(prop(c, "Thumbprint") for c in ok(pool, "Get-ChildItem", Path=STORE_PATH)) == store
        untrusted = fails(pool, "New-HgsGuardian", Name="UntrustedGuardian", **pair)  # self-signed: say so
        assert untrusted.fq_error == "HRESULT 0x800b0109,New-HgsGuardian"
        (again,) = ok(pool, "New-HgsGuardian", Name="UntrustedGuardian", AllowUntrustedRoot=None, **pair)
        assert prop(again, "HasPrivateSigningKey") is True
        assert thumbprint(prop(again, "EncryptionCertificate")) == pair["EncryptionCertificateThumbprint"]
        ok(pool, "Start-VM", Name="Win11-B")
    assert h.model.vm("Win11-B").state == "Running"


def test_tpm_changes_need_the_vm_off_and_stale_saved_state_must_be_removed(sim_host):
    h = sim_host("healthy")
    with session(h) as pool:
        assert fails(pool, "Enable-VMTPM", VMName="Win11-A").fq_error.startswith("InvalidState,")
        ok(pool, "Set-VMKeyProtector", VMName="Win11-C", NewLocalKeyProtector=None)
        stale = fails(pool, "Start-VM", Name="Win11-C")
        assert "computed authentication tag did not match" in str(stale)
        ok(pool, "Remove-VMSavedState", VMName="Win11-C")
        (vm,) = ok(pool, "Start-VM", Name="Win11-C", Passthru=None)
        assert str(prop(vm, "State")) == "Running"


def test_unknown_parameter_is_a_binding_error(sim_host):
    h = sim_host("fresh")
    with session(h) as pool:
        err = fails(pool, "Get-VM", Colour="red")
        assert err.fq_error == "NamedParameterNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"


def test_vm_moves_between_lab_hosts_by_migration_and_by_export_import(sim_lab):
    # NTLM sessions reaching the lab share and the peer: the mechanics, not the second hop (test_second_hop.py).
    lab = kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["migration"]))
    source, target = lab.hosts
    with session(source) as pool:
        ok(pool, "Move-VM", Name="Win11-B", DestinationHost=target.name, IncludeStorage=None)
        ok(pool, "Export-VM", Name="Srv-Plain", Path=r"\\LAB\share\exports")
        vm_id = source.model.vm("Srv-Plain").id.upper()
    with session(target) as pool:
        assert [prop(v, "Name") for v in ok(pool, "Get-VM")] == ["Win11-B"]
        vmcx = rf"\\LAB\share\exports\Srv-Plain\Virtual Machines\{vm_id}.vmcx"
        (report,) = ok(pool, "Compare-VM", Path=vmcx, Copy=None, GenerateNewId=None)
        assert prop(report, "Incompatibilities") == []
        (vm,) = ok(pool, "Import-VM", Path=vmcx, Copy=None, GenerateNewId=None)
        assert prop(vm, "Name") == "Srv-Plain"
        ok(pool, "Remove-VM", Name="Srv-Plain", Force=None)
        assert UNWRAP in str(fails(pool, "Start-VM", Name="Win11-B"))  # its guardian's keys stayed on HV01


def test_public_key_flow_grants_a_peer_guardian_in_one_pipeline(sim_lab):
    # NTLM sessions reaching the lab share and the peer: the mechanics, not the second hop (test_second_hop.py).
    lab = kind_to_the_second_hop(sim_lab(hosts=2, scenarios=["healthy", "fresh"]))
    source, target = lab.hosts
    with session(target) as pool:
        ok(pool, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
        export = ("|Export-HgsGuardian", {"Path": r"\\LAB\share\HV02.xml"})
        assert not run(pool, ("Get-HgsGuardian", {"Name": "UntrustedGuardian"}), export).had_errors
    with session(source) as pool:
        ok(pool, "Import-HgsGuardian", Path=r"\\LAB\share\HV02.xml", Name="HV02", AllowUntrustedRoot=None)
        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
        grant = {"GuardianFriendlyName": "HV02", "AllowUntrustedRoot": None, "AllowExpired": None}
        ps = run(pool, ("ConvertTo-HgsKeyProtector", {"Bytes": raw}), ("|Grant-HgsKeyProtectorAccess", grant))
        assert not ps.had_errors
        (granted,) = ps.output
        assert guardian_names(prop(granted, "Guardians")) == ["UntrustedGuardian", "HV02"]
        ok(pool, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=prop(granted, "RawData"))
        ok(pool, "Export-VM", Name="Win11-B", Path=r"\\LAB\share\out")
        vm_id = source.model.vm("Win11-B").id.upper()
    with session(target) as pool:
        ok(pool, "Import-VM", Path=rf"\\LAB\share\out\Win11-B\Virtual Machines\{vm_id}.vmcx", Copy=None)
        ok(pool, "Start-VM", Name="Win11-B")
    assert target.model.vm("Win11-B").state == "Running"


def test_a_restarted_simulator_keeps_what_the_console_changed(tmp_path):
    first = start_host(name="HV01", state_dir=tmp_path / "hv01", scenario="fresh")
    try:
        with session(first) as pool:
            ok(pool, "New-HgsGuardian", Name="Kept", GenerateCertificates=None)
            ok(pool, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
            ok(pool, "Enable-VMTPM", VMName="Srv-Plain")
    finally:
        first.stop()
    again = start_host(name="HV01", state_dir=tmp_path / "hv01", scenario="healthy")  # the saved state wins
    try:
        with session(again) as pool:
            assert sorted(prop(g, "Name") for g in ok(pool, "Get-HgsGuardian")) == ["Kept", "UntrustedGuardian"]
            assert prop(ok(pool, "Get-VMSecurity", VMName="Srv-Plain")[0], "TpmEnabled") is True
            ok(pool, "Start-VM", Name="Srv-Plain")
    finally:
        again.stop()
