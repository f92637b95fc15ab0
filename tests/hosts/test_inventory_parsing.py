"""Reading many statements' answers from one pipeline: every VM gets its own security settings, key protector and
checkpoints, even when some statements fail on the host (a VM deleted between the two reads)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pypsrp.complex_objects import GenericComplexObject

from hosts.remoting.catalog.inventory import ReadHostInventory, ReadVmDetails, VmDetails
from hosts.remoting.catalog.keyprotectors import ReadKeyProtectors, to_convert
from hosts.remoting.errors import RemoteCommandError
from hosts.remoting.keyprotector import KeyProtectorInfo, read_key_protector
from hosts.remoting.operation import PipelineResult
from hypervsim import certs
from hypervsim.keyprotector import NO_KEY_PROTECTOR, KeyProtector


def ps_object(type_name: str, **properties: Any) -> GenericComplexObject:
    obj = GenericComplexObject()
    obj.types = [f"Deserialized.{type_name}", "Deserialized.System.Object"]
    obj.adapted_properties = dict(properties)
    return obj


def security(vm: str, tpm: bool = True) -> GenericComplexObject:
    return ps_object("Microsoft.HyperV.PowerShell.VMSecurity", VMName=vm, TpmEnabled=tpm, Shielded=False)


def snapshot(vm: str) -> GenericComplexObject:
    return ps_object("Microsoft.HyperV.PowerShell.VMSnapshot", VMName=vm, Name="cp", SnapshotType="Standard")


def not_found(command: str, vm: str) -> RemoteCommandError:
    return RemoteCommandError(
        f'Hyper-V was unable to find a virtual machine with name "{vm}".',
        fqid=f"InvalidParameter,Microsoft.HyperV.PowerShell.Commands.{command.replace('-', '')}",
        category="InvalidArgument",
        target=vm,
    )


def events(*items: Any) -> PipelineResult:
    result = PipelineResult()
    for item in items:
        kind = "error" if isinstance(item, RemoteCommandError) else "output"
        result.events.append((kind, item))
        (result.errors if kind == "error" else result.output).append(item)
    return result


def kp_bytes(label: str) -> tuple[bytes, str]:
    signing, encryption = certs.guardian_pair("UntrustedGuardian", label, key_label=f"parse/{label}")
    return KeyProtector.create(signing, encryption).to_bytes(), signing.thumbprint


def test_answers_of_many_vms_are_given_to_the_right_vm() -> None:
    kp_a, owner_a = kp_bytes("A")
    kp_c, owner_c = kp_bytes("C")
    result = events(
        security("A"), kp_a, snapshot("A"), snapshot("A"),
        not_found("Get-VMSecurity", "B"), not_found("Get-VMKeyProtector", "B"), not_found("Get-VMSnapshot", "B"),
        security("C"), kp_c,
        security("D", tpm=False), NO_KEY_PROTECTOR,
    )  # fmt: skip

    details = ReadVmDetails(["A", "B", "C", "D"]).parse(result)

    assert details["A"].key_protector.owner.signing == owner_a  # type: ignore[union-attr]
    assert details["A"].checkpoint_count == 2
    assert not details["B"].security_read and not details["B"].key_protector_read and len(details["B"].problems) == 3
    assert details["C"].key_protector.owner.signing == owner_c  # type: ignore[union-attr]
    assert details["C"].checkpoint_count == 0
    assert details["D"].security_read and not details["D"].tpm_enabled and not details["D"].key_protector.present


def test_unnamed_errors_keep_their_place_in_the_order() -> None:
    kp_c, owner_c = kp_bytes("C2")
    unnamed = RemoteCommandError("Something failed")
    result = events(security("A"), unnamed, security("C"), kp_c)

    details = ReadVmDetails(["A", "C"]).parse(result)

    assert details["A"].problems == ["Something failed"] and not details["A"].key_protector_read
    assert details["C"].key_protector.owner.signing == owner_c  # type: ignore[union-attr]


def test_host_inventory_sorts_objects_by_type_and_notes_a_missing_store() -> None:
    os = ps_object(
        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem",
        CSName="HV01", Caption="Microsoft Windows Server 2022 Datacenter", Version="10.0.20348", BuildNumber="20348",
        LastBootUpTime="2026-11-30T01:02:03.1234567+00:00",
    )  # fmt: skip
    hgs_type = "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Hgs/MSFT_HgsClientConfiguration"
    hgs = ps_object(hgs_type, Mode="Local", IsHostGuarded=False)
    vm = ps_object("Microsoft.HyperV.PowerShell.VirtualMachine", Name="Win11-A", VMId="ABC", State="Running",
                   Generation=2)  # fmt: skip
    missing = RemoteCommandError(
        "Cannot find path 'Cert:\\LocalMachine\\Shielded VM Local Certificates' because it does not exist.",
        fqid="PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand",
        category="ObjectNotFound",
    )

    inventory = ReadHostInventory().parse(events(os, hgs, missing, vm))

    assert inventory.facts.computer_name == "HV01" and inventory.facts.mode == "Local"
    assert inventory.facts.last_boot is not None and inventory.facts.last_boot.microsecond == 123456
    assert inventory.store_exists is False and inventory.problems == []
    assert [(v.name, v.vm_id, v.state, v.generation) for v in inventory.vms] == [("Win11-A", "abc", "Running", 2)]


def vm_object(name: str, vm_id: str) -> GenericComplexObject:
    return ps_object("Microsoft.HyperV.PowerShell.VirtualMachine", Name=name, VMId=vm_id, State="Off", Generation=2)


def os_and_mode() -> list[GenericComplexObject]:
    os = ps_object(
        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem",
        CSName="HV01", Caption="Windows Server", Version="10.0", BuildNumber="20348",
    )  # fmt: skip
    return [os]


def test_piped_key_protectors_are_matched_to_vms_by_position() -> None:
    kp_a, owner_a = kp_bytes("PA")
    kp_missing = not_found("Get-VMKeyProtector", "B")
    result = events(
        *os_and_mode(), vm_object("A", "id-a"), vm_object("B", "id-b"),
        ps_object("Microsoft.HyperV.PowerShell.VMSecurity", VMName="A", VMId="ID-A", TpmEnabled=True),
        ps_object("Microsoft.HyperV.PowerShell.VMSecurity", VMName="B", VMId="ID-B", TpmEnabled=False),
        kp_a, kp_missing, snapshot("B"),
    )  # fmt: skip

    inventory = ReadHostInventory().parse(result)

    assert inventory.details_complete
    a, b = inventory.details["A"], inventory.details["B"]
    assert a.tpm_enabled and a.key_protector.owner.signing == owner_a  # type: ignore[union-attr]
    assert not b.tpm_enabled and not b.key_protector_read and b.problems and b.checkpoint_count == 1


def test_a_vm_appearing_between_statements_asks_for_a_second_read() -> None:
    kp_a, _ = kp_bytes("PB")
    result = events(
        *os_and_mode(), vm_object("A", "id-a"),
        ps_object("Microsoft.HyperV.PowerShell.VMSecurity", VMName="A", VMId="ID-A", TpmEnabled=True),
        kp_a, NO_KEY_PROTECTOR,  # two key protectors for one VM listed: positions cannot be trusted
    )  # fmt: skip

    inventory = ReadHostInventory().parse(result)

    assert not inventory.details_complete
    assert not inventory.details["A"].key_protector_read


HGS_TYPE = "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Hgs/MSFT_HgsClientConfiguration"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(1, "Local"), ("1", "Local"), ("Local", "Local"), ("local", "Local"), (2, "HostGuardianService"),
     ("HostGuardianService", "HostGuardianService")],
)  # fmt: skip
def test_the_hgs_mode_is_read_from_the_wmi_number_or_the_name(mode: Any, expected: str) -> None:
    hgs = ps_object(HGS_TYPE, Mode=mode, IsHostGuarded=False, AttestationStatus=0)

    inventory = ReadHostInventory().parse(events(*os_and_mode(), hgs))

    assert inventory.facts.mode == expected and inventory.problems == []
    assert inventory.facts.attestation_status == "NotConfigured"


@pytest.mark.parametrize("mode", [0, 7, "Secure", None, [1]])
def test_an_hgs_mode_the_console_does_not_know_is_unknown_never_local(mode: Any) -> None:
    hgs = ps_object(HGS_TYPE, Mode=mode, IsHostGuarded=False)

    inventory = ReadHostInventory().parse(events(*os_and_mode(), hgs))

    assert inventory.facts.mode == "" and not inventory.facts.local_mode
    assert len(inventory.problems) == 1 and "mode" in inventory.problems[0]


def test_attestation_numbers_are_named() -> None:
    hgs = ps_object(HGS_TYPE, Mode=2, IsHostGuarded=True, AttestationStatus=303, AttestationSubstatus=0)
    facts = ReadHostInventory().parse(events(*os_and_mode(), hgs)).facts
    assert (facts.mode, facts.is_host_guarded, facts.attestation_status) == (
        "HostGuardianService",
        True,
        "InsecureHostConfiguration",
    )


# -- Get-VMSecurity names no VM: its answers are matched to VMs by their order --------------------------------------


def windows_security(tpm: Any, shielded: Any = False) -> GenericComplexObject:
    """A VMSecurity as Windows sends it, selected down to what the inventory reads: no VMName, no VMId."""
    return ps_object("Selected.Microsoft.HyperV.PowerShell.VMSecurity", TpmEnabled=tpm, Shielded=shielded)


def test_security_settings_without_a_vm_name_are_given_to_the_vms_in_order() -> None:
    kp_a, owner_a = kp_bytes("WA")
    security_failed = RemoteCommandError(
        "The operation failed.", fqid="OperationFailed,Microsoft.HyperV.PowerShell.Commands.GetVMSecurity"
    )
    result = events(
        *os_and_mode(), vm_object("A", "id-a"), vm_object("B", "id-b"), vm_object("C", "id-c"),
        kp_a, NO_KEY_PROTECTOR, NO_KEY_PROTECTOR,
        windows_security(True), security_failed, windows_security(False),
    )  # fmt: skip

    inventory = ReadHostInventory().parse(result)

    a, b, c = (inventory.details[name] for name in "ABC")
    assert a.security_read and a.tpm_enabled and a.key_protector.owner.signing == owner_a  # type: ignore[union-attr]
    assert not b.security_read and b.problems[0].startswith("The operation failed.")
    assert c.security_read and not c.tpm_enabled
    assert not inventory.details_complete  # B is read again, by itself


def test_one_security_answer_too_many_makes_the_positions_untrusted() -> None:
    result = events(*os_and_mode(), vm_object("A", "id-a"), NO_KEY_PROTECTOR, windows_security(True),
                    windows_security(False))  # fmt: skip

    inventory = ReadHostInventory().parse(result)

    assert not inventory.details_complete and not inventory.details["A"].security_read


# -- who may unseal a VM: ConvertTo-HgsKeyProtector's answers, VM by VM ---------------------------------------------


def guardian_object(name: str, signing: Any, encryption: Any) -> GenericComplexObject:
    return ps_object(
        "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Hgs/MSFT_HgsGuardian",
        Name=name, HasPrivateSigningKey=True, SigningCertificate=signing.der, EncryptionCertificate=encryption.der,
    )  # fmt: skip


def sealed(label: str) -> tuple[VmDetails, GenericComplexObject, tuple[str, str]]:
    """A VM whose raw key protector came back (opaque: no DER to scan), and the guardian the host would name."""
    signing, encryption = certs.guardian_pair("UntrustedGuardian", label, key_label=f"parse/{label}")
    detail = VmDetails(label, security_read=True, tpm_enabled=True, key_protector_read=True)
    detail.raw_key_protector = b"<KeyProtector>" + bytes(64)
    detail.key_protector = KeyProtectorInfo(present=True, readable=False)
    pair = (signing.thumbprint, encryption.thumbprint)
    return detail, guardian_object("UntrustedGuardian", signing, encryption), pair


def pairs(detail: VmDetails) -> list[tuple[str, str]]:
    return [(g.signing, g.encryption) for g in detail.key_protector.guardians]


def owner(detail: VmDetails) -> tuple[str, str] | None:
    found = detail.key_protector.owner
    return (found.signing, found.encryption) if found else None


def test_each_vm_gets_the_guardians_the_host_names_after_its_marker() -> None:
    (a, guardian_a, pair_a), (b, guardian_b, pair_b) = sealed("KA"), sealed("KB")
    read = ReadKeyProtectors("answer", to_convert([a, b]))

    assert read.parse(events(0, guardian_a, 1, guardian_b)) == "answer"

    assert (pairs(a), owner(a), a.key_protector.readable) == ([pair_a], pair_a, True)
    assert (pairs(b), owner(b)) == ([pair_b], pair_b)
    assert read.follow_up("answer") is None and a.problems == [] == b.problems
    assert read.statements()[1][0].params["Bytes"] == a.raw_key_protector  # the bytes go back as they came


def test_a_vm_sealed_to_several_guardians_is_asked_for_its_owner() -> None:
    a, guardian_a, pair_a = sealed("OA")
    _peer, guardian_peer, pair_peer = sealed("OP")
    first = ReadKeyProtectors("answer", to_convert([a]))
    first.parse(events(0, guardian_peer, guardian_a))

    second = first.follow_up("answer")

    assert isinstance(second, ReadKeyProtectors)
    assert second.statements()[1][1].params == {"ExpandProperty": "Owner"}
    second.parse(events(0, guardian_a))
    assert (pairs(a), owner(a)) == ([pair_peer, pair_a], pair_a)


def test_a_key_protector_the_host_read_before_is_not_sent_again_and_a_changed_one_is() -> None:
    a, guardian_a, pair_a = sealed("HA")
    read = ReadKeyProtectors("answer", to_convert([a]))
    read.parse(events(0, guardian_a))
    assert a.kp_sha256 == hashlib.sha256(a.raw_key_protector).hexdigest()  # what the host named, by its bytes
    known = {a.kp_sha256: a.key_protector}
    same, _g, _p = sealed("HA")  # the same bytes, read again at the next refresh
    changed, _g, _p = sealed("HB")
    changed.raw_key_protector += b"granted to one more guardian"

    questions = to_convert([same, changed], known)

    assert [q.vm.name for q in questions] == ["HB"]
    assert (pairs(same), owner(same), same.key_protector.readable, same.kp_sha256) == (
        [pair_a],
        pair_a,
        True,
        a.kp_sha256,
    )
    assert changed.kp_sha256 == "" and not changed.key_protector.readable  # unknown until the host answers


def test_a_vm_the_host_cannot_read_is_unknown_and_the_rest_are_asked_again() -> None:
    (a, guardian_a, pair_a), (b, _g, _p), (c, guardian_c, pair_c) = sealed("EA"), sealed("EB"), sealed("EC")
    bad = RemoteCommandError("The parameter is incorrect.", fqid="HRESULT 0x80070057,ConvertTo-HgsKeyProtector")
    first = ReadKeyProtectors("answer", to_convert([a, b, c]))

    first.parse(events(0, guardian_a, 1, bad))  # a terminating error: the host stops at B, C is never read

    assert owner(a) == pair_a
    assert (b.key_protector.readable, b.key_protector.guardians) == (False, [])
    assert b.problems == [
        "Who may unseal VM 'EB' is unknown: its key protector could not be read; the host said: The parameter is "
        "incorrect. (HRESULT 0x80070057,ConvertTo-HgsKeyProtector)"
    ]
    again = first.follow_up("answer")
    assert isinstance(again, ReadKeyProtectors) and [q.vm.name for q in again.questions] == ["EC"]
    again.parse(events(0, guardian_c))
    assert owner(c) == pair_c


def test_a_host_that_reads_no_key_protector_leaves_them_unknown_or_to_the_der_scan() -> None:
    a, _guardian, _pair = sealed("NA")
    kp, signing_thumbprint = kp_bytes("NB")
    b = VmDetails("NB", key_protector_read=True)
    b.raw_key_protector, b.key_protector = kp, read_key_protector(kp)  # the DER scan found its guardian
    refused = RemoteCommandError("The term 'ConvertTo-HgsKeyProtector' is not recognized as the name of a cmdlet")
    read = ReadKeyProtectors("answer", to_convert([a, b]))

    read.parse(events(refused))

    assert read.follow_up("answer") is None  # nothing got through: asking again would fail the same way
    assert not a.key_protector.readable and "is not recognized" in a.problems[0]
    assert b.key_protector.readable and b.key_protector.owner.signing == signing_thumbprint  # type: ignore[union-attr]
    assert "read by scanning its bytes" in b.problems[0]


def test_a_guardian_whose_certificates_cannot_be_read_makes_the_vm_unknown() -> None:
    a, guardian_a, _pair = sealed("CA")
    guardian_a.adapted_properties["EncryptionCertificate"] = "System.Byte[]"
    read = ReadKeyProtectors("answer", to_convert([a]))

    read.parse(events(0, guardian_a))

    assert not a.key_protector.readable and "certificates could not be read" in a.problems[0]


# -- defensive parsing: a fact that is missing or of another type is unknown, with a note -------------------------


def test_a_vm_missing_facts_is_listed_with_notes() -> None:
    nameless = ps_object("Selected.Microsoft.HyperV.PowerShell.VirtualMachine", VMId="ID-N", Generation="two")
    odd = ps_object("Selected.Microsoft.HyperV.PowerShell.VirtualMachine", Name="Odd", State="Off", Generation=2)

    inventory = ReadHostInventory(vm_details=False).parse(events(*os_and_mode(), nameless, odd))

    assert [(vm.name, vm.vm_id, vm.state, vm.generation) for vm in inventory.vms] == [
        ("(unnamed VM id-n)", "id-n", "", 0),
        ("Odd", "", "Off", 2),
    ]
    problems = " | ".join(inventory.problems)
    assert "A VM came without a name; it is listed as '(unnamed VM id-n)'" in problems
    assert "its generation (two) is unknown" in problems and "its state was not sent" in problems
    assert "VM 'Odd' came without its id" in problems


@pytest.mark.parametrize("tpm", ["yes", 1, None, ["True"]])
def test_a_tpm_flag_that_is_not_true_or_false_leaves_the_vtpm_unknown(tpm: Any) -> None:
    result = events(*os_and_mode(), vm_object("A", "id-a"), NO_KEY_PROTECTOR, windows_security(tpm))

    detail = ReadHostInventory().parse(result).details["A"]

    assert not detail.security_read and "whether its vTPM is on" in detail.problems[0]


def test_a_guardian_without_a_plain_private_key_flag_asks_the_certificate_store() -> None:
    signing, encryption = certs.guardian_pair("UntrustedGuardian", "GS", key_label="parse/GS")
    guardian = guardian_object("UntrustedGuardian", signing, encryption)
    guardian.adapted_properties["HasPrivateSigningKey"] = "maybe"
    store = [
        ps_object("System.Security.Cryptography.X509Certificates.X509Certificate2", Thumbprint=cert.thumbprint,
                  Subject="CN=x", NotBefore="2026-01-01T00:00:00Z", NotAfter="not a date", HasPrivateKey=True)
        for cert in (signing, encryption)
    ]  # fmt: skip

    inventory = ReadHostInventory(vm_details=False).parse(events(*os_and_mode(), guardian, *store))

    assert inventory.guardians[0].has_private_signing_key is True  # the store holds the signing key
    problems = " | ".join(inventory.problems)
    assert "did not say plainly whether it has its private signing key" in problems
    assert problems.count("its expiry date could not be read") == 2


def test_an_answer_pypsrp_could_not_parse_is_read_again_or_noted() -> None:
    clixml = (
        '<Obj RefId="0"><TN RefId="0"><T>Selected.Microsoft.HyperV.PowerShell.VirtualMachine</T>'
        "<T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS>"
        '<S N="Name">Bell_x0007_VM</S><S N="VMId">id-bell</S><S N="State">Off</S><I32 N="Generation">2</I32></MS>'
        "<ToString>@{Name=Bell\x07VM}</ToString></Obj>"
    )

    inventory = ReadHostInventory(vm_details=False).parse(events(*os_and_mode(), clixml, "<Obj RefId='1'><MS>"))

    assert [vm.name for vm in inventory.vms] == ["Bell\x07VM"]
    assert any("'Bell\\x07VM' held control characters" in p for p in inventory.problems)
    assert any("could not be read at all" in p for p in inventory.problems)
