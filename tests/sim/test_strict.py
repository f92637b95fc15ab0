"""A simulated host as strict as Windows, one story per behaviour, over unmodified pypsrp (docs/fidelity.md has the
sources). Each story turns on its own switch only, so it shows that behaviour alone, and then shows what a host
without the switch does instead (the simulator's older, kinder behaviour; every switch is on by default)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography import x509
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool

from hypervsim import Strictness
from tests.plugins.sim import sim_wsman
from tests.sim.test_cmdlets_remote import fails, ok, prop, run, session

pytestmark = pytest.mark.timeout(60)
TEMP = r"C:\Windows\Temp"


def only(*switches: str) -> Strictness:
    """Every switch off but these: the behaviour under test, alone."""
    return Strictness.lenient().amended(",".join(switches))


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


# -- 1. Export-HgsGuardian: -InputObject (alias Guardian, from the pipeline) and -Path (alias FilePath) -----------


def test_export_hgs_guardian_has_no_name_parameter_and_takes_the_guardian_from_the_pipeline(sim_host):
    h = sim_host("healthy", strict=only("export_guardian_by_object"))
    guardian = h.model.guardian("UntrustedGuardian")
    with session(h) as pool:
        by_name = fails(pool, "Export-HgsGuardian", Name="UntrustedGuardian", Path=rf"{TEMP}\by-name.xml")
        assert str(by_name) == "A parameter cannot be found that matches parameter name 'Name'."
        assert by_name.fq_error == "NamedParameterNotFound,Export-HgsGuardian"
        assert by_name.reason == "ParameterBindingException"

        piped = run(
            pool,
            ("Get-HgsGuardian", {"Name": "UntrustedGuardian"}),
            ("|Export-HgsGuardian", {"Path": rf"{TEMP}\piped.xml"}),
        )
        assert not piped.had_errors and piped.output == []
        (sent_back,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        ok(pool, "Export-HgsGuardian", Guardian=sent_back, FilePath=rf"{TEMP}\aliases.xml")  # the two aliases
        for name, path in (("Piped", "piped.xml"), ("Aliases", "aliases.xml")):
            (imported,) = ok(pool, "Import-HgsGuardian", Path=rf"{TEMP}\{path}", Name=name, AllowUntrustedRoot=None)
            assert prop(imported, "HasPrivateSigningKey") is True  # the same certificates, whose keys are here
        nobody = run(pool, ("Get-HgsGuardian", {"Name": "Nobody"}), ("|Export-HgsGuardian", {"Path": rf"{TEMP}\x.xml"}))
        assert [e.fq_error for e in nobody.streams.error] == ["CmdletizationQuery_NotFound_Name,Get-HgsGuardian"]
    assert h.model.guardian("Piped").encryption.thumbprint == guardian.encryption.thumbprint
    assert not h.model.files.resolve(rf"{TEMP}\by-name.xml").exists()

    h.strict.export_guardian_by_object = False  # the simulator's older, kinder binding
    with session(h) as pool:
        ok(pool, "Export-HgsGuardian", Name="UntrustedGuardian", Path=rf"{TEMP}\by-name.xml")


# -- 2. Depth 1: nested objects arrive as their ToString() text; bytes and primitives stay -------------------------


def test_output_is_serialized_at_depth_one(sim_host):
    h = sim_host("healthy", strict=only("depth_one"))
    signing = h.model.guardian("UntrustedGuardian").signing
    with session(h) as pool:
        (vm,) = ok(pool, "Get-VM", Name="Win11-A")
        assert prop(vm, "State") == "Running"  # an enum arrives as its name
        assert isinstance(prop(vm, "VMId"), uuid.UUID) and isinstance(prop(vm, "Generation"), int)

        (guardian,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        shown = prop(guardian, "SigningCertificate")
        assert isinstance(shown, str) and f"[Thumbprint]\r\n  {signing.thumbprint}" in shown

        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-A")
        (kp,) = ok(pool, "ConvertTo-HgsKeyProtector", Bytes=raw)
        assert prop(kp, "Owner") == 'MSFT_HgsGuardian (Name = "UntrustedGuardian")'
        assert prop(kp, "Guardians") == ['MSFT_HgsGuardian (Name = "UntrustedGuardian")']
        assert prop(kp, "RawData") == raw  # a byte array at depth 1 stays a byte array

        # Select-Object -ExpandProperty lifts the nested object to the top, so its own properties come back.
        expand = ("|Select-Object", {"ExpandProperty": "Owner"})
        (owner,) = run(pool, ("ConvertTo-HgsKeyProtector", {"Bytes": raw}), expand).output
        assert prop(owner, "Name") == "UntrustedGuardian" and isinstance(prop(owner, "SigningCertificate"), str)

        ok(pool, "Export-VM", Name="Win11-B", Path=rf"{TEMP}\export")
        vmcx = rf"{TEMP}\export\Win11-B\Virtual Machines\{h.model.vm('Win11-B').id.upper()}.vmcx"
        (report,) = ok(pool, "Compare-VM", Path=vmcx)
        assert prop(report, "VM").startswith("VirtualMachine (Name = 'Win11-B')")
        (problem,) = prop(report, "Incompatibilities")  # the VM is still registered here: its id is taken
        assert "a virtual machine with the same identifier already exists" in problem

    h.strict.depth_one = False  # the simulator's older, deeper output
    with session(h) as pool:
        (guardian,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        assert prop(prop(guardian, "SigningCertificate"), "Thumbprint") == signing.thumbprint


# -- 3. Get-VMSecurity: the host's name, not the VM's -----------------------------------------------------------


SECURITY_PROPERTIES = {
    "ComputerName", "IsDeleted", "TpmEnabled", "KsdEnabled", "Shielded", "EncryptStateAndVmMigrationTraffic",
    "VirtualizationBasedSecurityOptOut", "BindToHostTpm",
}  # fmt: skip


def test_vm_security_does_not_say_which_vm_it_belongs_to(sim_host):
    h = sim_host("healthy", strict=only("security_without_vm"))
    with session(h) as pool:
        (security,) = ok(pool, "Get-VMSecurity", VMName="Win11-B")
        assert set(security.adapted_properties) == SECURITY_PROPERTIES
        assert (prop(security, "ComputerName"), prop(security, "TpmEnabled")) == (h.name, True)
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_cmdlet("Get-VMSecurity")
        ps.add_cmdlet("Select-Object").add_parameter("Property", ["VMName", "VMId", "TpmEnabled"])
        selected = ps.invoke()
        assert [prop(s, "VMName") for s in selected] == [None] * len(h.model.vms)  # asked per VM, told apart by order

    h.strict.security_without_vm = False
    with session(h) as pool:
        assert prop(ok(pool, "Get-VMSecurity", VMName="Win11-B")[0], "VMName") == "Win11-B"


# -- 4. HgsClient commands are functions: JEA shows them under VisibleFunctions only -------------------------------


@contextmanager
def endpoint(h: Any, configuration: str) -> Iterator[RunspacePool]:
    with sim_wsman(h) as wsman, RunspacePool(wsman, configuration_name=configuration) as pool:
        yield pool


def command_types(pool: Any, *names: str) -> dict[str, str]:
    return {prop(c, "Name"): str(prop(c, "CommandType")) for c in ok(pool, "Get-Command", Name=list(names))}


def test_hgs_client_commands_are_functions_that_a_jea_role_must_list_as_functions(sim_host):
    endpoints = {
        "Microsoft.PowerShell": None,
        "AsCmdlets": ["Get-VM", "Get-HgsGuardian"],
        "AsFunctions": {"VisibleCmdlets": ["Get-VM"], "VisibleFunctions": ["Get-HgsGuardian"]},
    }
    h = sim_host("healthy", strict=only("hgs_functions"), configurations=endpoints)
    with session(h) as pool:
        assert command_types(pool, "Get-HgsGuardian", "Get-VM") == {"Get-HgsGuardian": "Function", "Get-VM": "Cmdlet"}
    with endpoint(h, "AsCmdlets") as pool:
        refused = PowerShell(pool)
        refused.add_cmdlet("Get-HgsGuardian").invoke()
        assert refused.state == PSInvocationState.FAILED
        assert refused.streams.error[0].fq_error == "CommandNotFoundException"
        assert "The term 'Get-HgsGuardian' is not recognized as the name of a cmdlet, function" in str(
            refused.streams.error[0]
        )
        assert [prop(c, "Name") for c in ok(pool, "Get-Command")] == ["Get-Command", "Get-VM", "Select-Object"]
    with endpoint(h, "AsFunctions") as pool:
        assert [prop(g, "Name") for g in ok(pool, "Get-HgsGuardian")] == ["UntrustedGuardian"]

    h.strict.hgs_functions = False  # either field will do, as the simulator used to accept
    with endpoint(h, "AsCmdlets") as pool:
        assert [prop(g, "Name") for g in ok(pool, "Get-HgsGuardian")] == ["UntrustedGuardian"]


# -- 5. WMI property types: Mode is a uint16, a guardian's certificates are byte arrays ---------------------------


def test_hgs_client_mode_and_attestation_fields_are_the_numbers_of_the_wmi_class(sim_host):
    h = sim_host("healthy", strict=only("wmi_numbers"))
    with session(h) as pool:
        (config,) = ok(pool, "Get-HgsClientConfiguration")
        numbers = [prop(config, name) for name in ("Mode", "AttestationStatus", "AttestationSubstatus")]
        assert numbers == [1, 0, 0]  # Local; attestation not configured; no information
    h.model.hgs_mode = "HostGuardianService"
    with session(h) as pool:
        assert prop(ok(pool, "Get-HgsClientConfiguration")[0], "Mode") == 2

    h.strict.wmi_numbers = False  # the names the simulator used to send (the console reads both)
    with session(h) as pool:
        assert str(prop(ok(pool, "Get-HgsClientConfiguration")[0], "Mode")) == "HostGuardianService"


def test_a_guardians_certificates_are_byte_arrays_as_the_wmi_class_declares(sim_host):
    h = sim_host("healthy", strict=only("certificate_bytes"))
    guardian = h.model.guardian("UntrustedGuardian")
    with session(h) as pool:
        (listed,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        signing, encryption = prop(listed, "SigningCertificate"), prop(listed, "EncryptionCertificate")
        assert thumbprint(signing) == guardian.signing.thumbprint
        assert thumbprint(encryption) == guardian.encryption.thumbprint
        assert "(UntrustedGuardian)" in x509.load_der_x509_certificate(signing).subject.rfc4514_string()

    h.strict.certificate_bytes = False  # certificate objects, as the module presents them locally
    with session(h) as pool:
        (listed,) = ok(pool, "Get-HgsGuardian", Name="UntrustedGuardian")
        assert prop(prop(listed, "SigningCertificate"), "Thumbprint") == guardian.signing.thumbprint


# -- 6. Hyper-V names are wildcard patterns; an id or a VM object addresses one VM ----------------------------------


def names(vms: list[Any]) -> list[str]:
    return sorted(prop(vm, "Name") for vm in vms)


def test_vm_names_are_wildcard_patterns_so_a_literal_name_can_match_other_vms(sim_host):
    h = sim_host("healthy", strict=only("wildcard_names"))
    with h.model.changing() as model:
        odd = model.add_vm("Win11-?", vhd_paths=[rf"{TEMP}\odd.vhdx"])
        model.add_vm("*", vhd_paths=[rf"{TEMP}\star.vhdx"])
    with session(h) as pool:
        assert names(ok(pool, "Get-VM", Name="Win11-?")) == ["Win11-?", "Win11-A", "Win11-B", "Win11-C"]
        assert len(ok(pool, "Get-VMKeyProtector", VMName="Win11-?")) == 4  # what a console asking for one VM gets
        assert names(ok(pool, "Get-VM", Name="Win11-`?")) == ["Win11-?"]  # a backtick makes it literal
        assert names(ok(pool, "Get-VM", Name="win11-[a-b]")) == ["Win11-A", "Win11-B"]
        assert names(ok(pool, "Get-VM", Name="`*")) == ["*"]
        assert names(ok(pool, "Get-VM", Id=odd.id)) == ["Win11-?"]
        by_object = run(pool, ("Get-VM", {"Id": odd.id}), ("|Get-VMKeyProtector", {}))
        assert len(by_object.output) == 1 and not by_object.had_errors
        assert ok(pool, "Get-VM", Name="Nothing*") == []  # a pattern that matches nothing is no error
        unknown = fails(pool, "Get-VM", Name=odd.id)  # a name is never an id
        assert str(unknown) == f'Hyper-V was unable to find a virtual machine with name "{odd.id}".'
        bad = fails(pool, "Get-VM", Name="Win11-[")
        assert str(bad) == "The specified wildcard character pattern is not valid: Win11-["

    h.strict.wildcard_names = False
    with session(h) as pool:
        assert names(ok(pool, "Get-VM", Name=odd.id)) == ["Win11-?"]


# -- 7. Key protector bytes are opaque; ConvertTo-HgsKeyProtector is the documented reader ------------------------


def test_key_protector_bytes_are_opaque_and_convert_to_hgs_key_protector_names_the_guardians(sim_host):
    h = sim_host("healthy", strict=only("opaque_key_protector", "certificate_bytes"))
    guardian = h.model.guardian("UntrustedGuardian")
    with session(h) as pool:
        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
        assert raw.startswith(b"<?xml") and guardian.signing.der not in raw and guardian.encryption.der not in raw
        (kp,) = ok(pool, "ConvertTo-HgsKeyProtector", Bytes=raw)
        assert prop(kp, "RawData") == raw
        owner, rows = prop(kp, "Owner"), prop(kp, "Guardians")
        assert prop(owner, "Name") == "UntrustedGuardian"
        assert [thumbprint(prop(g, "EncryptionCertificate")) for g in rows] == [guardian.encryption.thumbprint]
        assert thumbprint(prop(owner, "SigningCertificate")) == guardian.signing.thumbprint
        ok(pool, "Stop-VM", Name="Win11-A", TurnOff=None)
        ok(pool, "Set-VMKeyProtector", VMName="Win11-A", KeyProtector=raw)  # the opaque bytes go back as they came
        forged = raw.replace(b'Owner="0"', b'Owner="1"')
        assert str(fails(pool, "Set-VMKeyProtector", VMName="Win11-A", KeyProtector=forged)) == (
            "The key protector is not valid."
        )
        ok(pool, "Start-VM", Name="Win11-A")

    h.strict.opaque_key_protector = False
    with session(h) as pool:
        assert guardian.signing.der in ok(pool, "Get-VMKeyProtector", VMName="Win11-B")[0]


def test_a_host_as_strict_as_windows_still_runs_the_public_key_flow(sim_lab):
    """Everything on at once: the documented flow (Export-HgsGuardian on the target, Import + Grant on the source)
    written the way Windows needs it. The lab share is reached from NTLM sessions here, so the second hop stays off:
    test_second_hop.py has what Windows does to those."""
    lab = sim_lab(hosts=2, scenarios=["healthy", "fresh"])
    source, target = lab.hosts
    for host in lab.hosts:
        host.model.strict = Strictness.windows().amended("-second_hop")
    with session(target) as pool:
        ok(pool, "Set-VMKeyProtector", VMName="Srv-Plain", NewLocalKeyProtector=None)
        export = ("|Export-HgsGuardian", {"Path": r"\\LAB\share\HV02.xml"})
        assert not run(pool, ("Get-HgsGuardian", {"Name": "UntrustedGuardian"}), export).had_errors
    with session(source) as pool:
        ok(pool, "Import-HgsGuardian", Path=r"\\LAB\share\HV02.xml", Name="HV02", AllowUntrustedRoot=None)
        (raw,) = ok(pool, "Get-VMKeyProtector", VMName="Win11-B")
        grant = {"GuardianFriendlyName": "HV02", "AllowUntrustedRoot": None}
        (granted,) = run(
            pool, ("ConvertTo-HgsKeyProtector", {"Bytes": raw}), ("|Grant-HgsKeyProtectorAccess", grant)
        ).output
        assert prop(granted, "Guardians") == [f'MSFT_HgsGuardian (Name = "{n}")' for n in ("UntrustedGuardian", "HV02")]
        ok(pool, "Set-VMKeyProtector", VMName="Win11-B", KeyProtector=prop(granted, "RawData"))
        vm_id = source.model.vm("Win11-B").id
        ok(pool, "Export-VM", Name="Win11-B", Path=r"\\LAB\share\out")
    with session(target) as pool:
        ok(pool, "Import-VM", Path=rf"\\LAB\share\out\Win11-B\Virtual Machines\{vm_id.upper()}.vmcx", Copy=None)
        ok(pool, "Start-VM", Name="Win11-B")
    assert target.model.vm("Win11-B").state == "Running"


# -- switches: defaults, the environment, the command line ---------------------------------------------------------


def test_strictness_specs_apply_left_to_right_over_the_defaults(monkeypatch):
    assert Strictness().amended("all,-wmi_numbers") == Strictness.windows().amended("-wmi_numbers")
    assert Strictness().amended("none,depth_one") == only("depth_one")
    with pytest.raises(ValueError, match="unknown strictness 'deepest'"):
        Strictness().amended("deepest")
    monkeypatch.setenv("HYPERVSIM_STRICT", "all")
    assert Strictness.default() == Strictness.windows()


def test_the_command_line_sets_strictness_and_the_idle_timeout(tmp_path):
    from hypervsim import cli

    args = cli._parser().parse_args(["serve", "--state", str(tmp_path), "--strict", "none,hgs_functions"])
    assert args.strict == only("hgs_functions") and args.idle_timeout == 120
    timed = cli._parser().parse_args(["serve", "--state", str(tmp_path), "--idle-timeout", "5"])
    (h,) = cli._start(timed)
    try:
        assert h.strict == Strictness.default() and h.idle_timeout == 5
    finally:
        h.stop()
