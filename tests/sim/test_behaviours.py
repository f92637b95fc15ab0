"""Behaviours of a Hyper-V host that the console's workflows depend on (issue 2, item 7), in-process."""
# ruff: noqa: F811 - pytest fixtures imported from test_sim_cmdlets are parameters here

from __future__ import annotations

from hypervsim import scenarios
from hypervsim.model import STORE_PATH
from hypervsim.types import Secret
from tests.sim.test_cmdlets import cert, error, export_guardian, lab, make_host, out  # noqa: F401 - shared fixtures

UNWRAP = "The key protector could not be unwrapped. Details are included in the HostGuardianService-Client event log."
SHARE_BACKUP = r"\\LAB\share\backup"


def restore_params(password: str, name: str = "Restored") -> dict:
    return {
        "Name": name,
        "SigningCertificate": rf"{SHARE_BACKUP}\UntrustedGuardian-signing.pfx",
        "SigningCertificatePassword": Secret(password),
        "EncryptionCertificate": rf"{SHARE_BACKUP}\UntrustedGuardian-encryption.pfx",
        "EncryptionCertificatePassword": Secret(password),
        "AllowExpired": None,
        "AllowUntrustedRoot": None,
    }


def test_vm_sealed_to_a_lost_guardian_starts_once_its_pair_is_back_under_any_name(make_host, lab):
    host = make_host("reinstalled")
    err = error(host, "Start-VM", Name="Win11-A")
    assert UNWRAP in err.message and err.message.startswith("'Win11-A' failed to start.")
    assert err.fqid == "Unspecified,Microsoft.HyperV.PowerShell.Commands.StartVM"
    assert err.exception_type[0] == "Microsoft.HyperV.PowerShell.VirtualizationException"
    out(host, "New-HgsGuardian", Name="Unrelated", GenerateCertificates=None)  # some other guardian does not help
    assert UNWRAP in error(host, "Start-VM", Name="Win11-A").message
    scenarios.backup_files(host, lab.share / "backup")
    _, _, password = scenarios.previous_guardian_backup(host)
    out(host, "New-HgsGuardian", **restore_params(password, name="Restored-From-Backup"))
    assert out(host, "Start-VM", Name="Win11-A", Passthru=None)[0].State.name == "Running"


def test_pfx_pair_imported_into_the_store_alone_is_enough_to_start(make_host, lab):
    host = make_host("reinstalled")
    scenarios.backup_files(host, lab.share / "backup")
    _, _, password = scenarios.previous_guardian_backup(host)
    pfx = rf"{SHARE_BACKUP}\UntrustedGuardian-encryption.pfx"
    missing = error(
        host, "Import-PfxCertificate", FilePath=pfx, CertStoreLocation=STORE_PATH, Password=Secret(password)
    )
    assert missing.message == f"Cannot find path '{STORE_PATH}' because it does not exist."
    assert missing.fqid == "PathNotFound,Microsoft.CertificateServices.Commands.ImportPfxCertificate"
    out(host, "New-Item", Path=STORE_PATH)
    wrong = error(host, "Import-PfxCertificate", FilePath=pfx, CertStoreLocation=STORE_PATH, Password=Secret("guess"))
    assert "requires either a different password" in wrong.message
    imported = out(host, "Import-PfxCertificate", FilePath=pfx, CertStoreLocation=STORE_PATH, Password=Secret(password))
    assert imported[0].HasPrivateKey is True
    out(host, "Start-VM", Name=["Win11-A", "Win11-B"])
    assert {host.vm("Win11-A").state, host.vm("Win11-B").state} == {"Running"}


def test_guardian_without_private_keys_blocks_security_changes_until_removed(make_host):
    host = make_host("deleted-certs")
    attempts: list[tuple[str, dict[str, object]]] = [
        ("Disable-VMTPM", {"VMName": "Win11-B"}),
        ("Enable-VMTPM", {"VMName": "Win11-A"}),
        ("Set-VMKeyProtector", {"VMName": "Srv-Plain", "NewLocalKeyProtector": None}),
    ]
    for cmdlet, params in attempts:
        err = error(host, cmdlet, **params)
        assert "An error occurred while applying security changes" in err.message, cmdlet
        assert "Guardian 'UntrustedGuardian' does not have a private key and cannot be the owner." in err.message
    assert host.vm("Win11-B").tpm_enabled is True
    out(host, "Remove-HgsGuardian", Name="UntrustedGuardian")
    out(host, "Disable-VMTPM", VMName="Win11-B")
    out(host, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
    out(host, "Enable-VMTPM", VMName="Srv-Plain")
    fresh = out(host, "Get-HgsGuardian", Name="UntrustedGuardian")[0]
    assert fresh.HasPrivateSigningKey is True
    out(host, "Start-VM", Name="Srv-Plain")
    assert host.vm("Srv-Plain").state == "Running"


def test_remove_guardian_leaves_its_certificates_so_it_can_be_recreated(make_host):
    host = make_host("healthy")
    before = {c.Thumbprint for c in out(host, "Get-ChildItem", Path=STORE_PATH)}
    guardian = host.guardians["UntrustedGuardian"]
    out(host, "Remove-HgsGuardian", Name="UntrustedGuardian")
    assert out(host, "Get-HgsGuardian") == []
    assert {c.Thumbprint for c in out(host, "Get-ChildItem", Path=STORE_PATH)} == before
    out(host, "Start-VM", Name="Win11-B")  # the private keys are still here
    undo = out(
        host,
        "New-HgsGuardian",
        Name="UntrustedGuardian",
        SigningCertificateThumbprint=guardian.signing.thumbprint,
        EncryptionCertificateThumbprint=guardian.encryption.thumbprint,
        AllowUntrustedRoot=None,
    )[0]
    assert undo.HasPrivateSigningKey is True


def test_a_taken_guardian_name_fails_with_already_exists(make_host):
    host = make_host("healthy")
    store_before = set(host.store or {})
    err = error(host, "New-HgsGuardian", Name="untrustedguardian", GenerateCertificates=None)
    assert "already exists" in err.message
    assert (err.fqid, err.category) == ("HRESULT 0x800700b7,New-HgsGuardian", "ResourceExists")
    assert set(host.store or {}) == store_before


def test_wrong_pfx_password_fails_like_windows_and_changes_nothing(make_host, lab):
    host = make_host("reinstalled")
    scenarios.backup_files(host, lab.share / "backup")
    err = error(host, "New-HgsGuardian", **restore_params("not-the-password"))
    assert err.message == "The specified network password is not correct."
    assert err.fqid == "HRESULT 0x80070056,New-HgsGuardian"
    assert host.guardians == {} and host.store is None


def test_tpm_changes_need_the_vm_off(make_host):
    host = make_host("healthy")
    for vm in ("Win11-A", "Win11-C"):  # running, saved
        for cmdlet in ("Enable-VMTPM", "Disable-VMTPM"):
            err = error(host, cmdlet, VMName=vm)
            assert err.fqid.startswith("InvalidState,") and "current state" in err.message
    assert error(host, "Set-VMKeyProtector", VMName="Win11-A", NewLocalKeyProtector=None).fqid.startswith(
        "InvalidState"
    )
    assert all(host.vm(n).tpm_enabled for n in ("Win11-A", "Win11-C"))


def test_enabling_a_tpm_needs_a_key_protector(make_host):
    host = make_host("healthy")
    err = error(host, "Enable-VMTPM", VMName="Srv-Plain")
    assert "cannot be changed without a valid key protector configured" in err.message


def test_saved_state_from_before_a_key_protector_change_resumes_only_after_removal(make_host):
    host = make_host("healthy")
    out(host, "Set-VMKeyProtector", VMName="Win11-C", NewLocalKeyProtector=None)
    err = error(host, "Start-VM", Name="Win11-C")
    assert "The computed authentication tag did not match the input authentication tag" in err.message
    assert host.vm("Win11-C").state == "Saved"
    out(host, "Remove-VMSavedState", VMName="Win11-C")
    out(host, "Start-VM", Name="Win11-C")
    assert host.vm("Win11-C").state == "Running"


def test_saved_state_survives_when_nothing_changed(make_host):
    host = make_host("healthy")
    out(host, "Stop-VM", Name="Win11-A", Save=None)
    out(host, "Start-VM", Name="Win11-A")
    assert host.vm("Win11-A").state == "Running"


def test_new_local_key_protector_creates_untrusted_guardian_and_store_when_missing(make_host):
    host = make_host("fresh", "HV05")
    out(host, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
    guardian = out(host, "Get-HgsGuardian", Name="UntrustedGuardian")[0]
    assert cert(guardian, "Signing").subject == "CN=Shielded VM Signing Certificate (UntrustedGuardian) (HV05)"
    assert guardian.HasPrivateSigningKey is True
    assert len(out(host, "Get-ChildItem", Path=STORE_PATH)) == 2
    kp = out(host, "ConvertTo-HgsKeyProtector", Bytes=out(host, "Get-VMKeyProtector", VMName="Srv-Plain")[0])[0]
    assert cert(kp.Owner, "Signing").thumbprint == cert(guardian, "Signing").thumbprint
    out(host, "Enable-VMTPM", VMName="Srv-Plain")
    out(host, "Start-VM", Name="Srv-Plain")
    before = host.guardians["UntrustedGuardian"].signing.thumbprint
    out(host, "Stop-VM", Name="Srv-Plain")
    out(host, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)  # an existing guardian is reused
    assert host.guardians["UntrustedGuardian"].signing.thumbprint == before


def test_granting_a_peer_guardian_lets_the_vm_start_there_without_moving_private_keys(make_host):
    """The public-key-only flow: Export-HgsGuardian on the target, Import + Grant on the source, then move."""
    source, target = make_host("healthy", "HV01"), make_host("fresh", "HV02")
    out(target, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)  # HV02 gets its guardian
    export_guardian(target, "UntrustedGuardian", r"\\LAB\share\HV02-guardian.xml")
    out(source, "Import-HgsGuardian", Path=r"\\LAB\share\HV02-guardian.xml", Name="HV02", AllowUntrustedRoot=None)
    raw = out(source, "Get-VMKeyProtector", VMName="Win11-B")[0]
    (kp,) = out(
        source, "Grant-HgsKeyProtectorAccess", KeyProtector=raw, GuardianFriendlyName="HV02", AllowUntrustedRoot=None
    )
    assert [g.Name for g in kp.Guardians] == ["UntrustedGuardian", "HV02"] and kp.Owner.Name == "UntrustedGuardian"
    out(source, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=kp.RawData)
    out(source, "Export-VM", Name="Win11-B", Path=r"\\LAB\share\moving")
    vm_id = source.vm("Win11-B").id.upper()
    out(target, "Import-VM", Path=rf"\\LAB\share\moving\Win11-B\Virtual Machines\{vm_id}.vmcx", Copy=None)
    out(target, "Start-VM", Name="Win11-B")
    assert target.vm("Win11-B").state == "Running"
    source_guardian = source.guardians["UntrustedGuardian"]
    assert not {source_guardian.signing.thumbprint, source_guardian.encryption.thumbprint} & set(target.store or {})


def test_invalid_key_protector_bytes_are_refused(make_host):
    host = make_host("healthy")
    err = error(host, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=b"\x00\x00\x00\x04")
    assert err.fqid == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.SetVMKeyProtector"


def test_turning_the_tpm_off_lets_a_vm_start_without_its_guardian(make_host):
    host = make_host("reinstalled")
    assert UNWRAP in error(host, "Start-VM", Name="Win11-B").message
    out(host, "Disable-VMTPM", VMName="Win11-B")  # no guardian here at all: nothing to sign with, nothing refused
    out(host, "Start-VM", Name="Win11-B")
    assert host.vm("Win11-B").state == "Running" and host.guardians == {}
