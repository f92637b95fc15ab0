"""Reading many statements' answers from one pipeline: every VM gets its own security settings, key protector and
checkpoints, even when some statements fail on the host (a VM deleted between the two reads)."""

from __future__ import annotations

from typing import Any

import pytest
from pypsrp.complex_objects import GenericComplexObject

from hosts.remoting.catalog.inventory import ReadHostInventory, ReadVmDetails
from hosts.remoting.errors import RemoteCommandError
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
