"""Where a simulated host is as strict as Windows, one switch per behaviour (docs/fidelity.md has the sources).

Each switch ON means the host behaves as Windows does; OFF keeps the simulator's older, kinder behaviour. Every
switch is ON by default: the console copes with each of Windows' behaviours (docs/fidelity.md says how). Tests turn
switches off (or on) per host:

    h = sim_host("healthy", strict=Strictness.windows())        # everything as Windows
    h.strict.depth_one = False                                   # or one at a time, at run time

HYPERVSIM_STRICT changes the defaults of every host started in the process, to run any test suite against a kinder
simulator (or a stricter one, when a new switch starts off): "all", "none", or switch names separated by commas,
each optionally prefixed with "-" to turn it off ("all,-wmi_numbers"). Applied left to right over the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

ENVIRONMENT = "HYPERVSIM_STRICT"


@dataclass
class Strictness:
    """One switch per behaviour; the comment says what Windows does and, when the switch is off by default, why."""

    # Export-HgsGuardian takes only -InputObject (alias Guardian, from the pipeline) and -Path (alias FilePath);
    # -Name fails to bind.
    export_guardian_by_object: bool = True
    # Output is serialized at depth 1: a property holding an object arrives as that object's ToString() text, an
    # enum as its name, a collection as a list of such texts; byte arrays and primitives at any depth stay.
    depth_one: bool = True
    # Get-VMSecurity output has no VMName or VMId (VMSecurity carries ComputerName and IsDeleted, not the VM).
    security_without_vm: bool = True
    # HgsClient commands are functions: a JEA role must list them under VisibleFunctions; under VisibleCmdlets
    # they are "not recognized".
    hgs_functions: bool = True
    # MSFT_HgsClientConfiguration's Mode and attestation fields are the numbers the WMI class declares (Mode uint16:
    # 1 = Local, 2 = HostGuardianService), not names.
    wmi_numbers: bool = True
    # MSFT_HgsGuardian's SigningCertificate/EncryptionCertificate are byte arrays (uint8[] in the WMI class), not
    # certificate objects (which at depth 1 arrive as their text).
    certificate_bytes: bool = True
    # Hyper-V -Name/-VMName are PowerShell wildcard patterns (*, ?, [a-z], backtick escapes) and never match a VM
    # id; a VM object (pipeline or -VM) addresses exactly its VM by id.
    wildcard_names: bool = True
    # Get-VMKeyProtector and RawData carry the key protector as XML with base64 certificates (no DER to scan for);
    # ConvertTo-HgsKeyProtector reads it.
    opaque_key_protector: bool = True
    # The second hop (hypervsim/logon.py): a session logged on with NTLM, Basic or Kerberos without delegation is
    # refused on \\LAB\share (Test-Path False, Hyper-V's "General access denied error (0x80070005)") and by other
    # hosts (Move-VM, Compare-VM -DestinationHost), and a workgroup pair cannot live-migrate; a share mapped with
    # explicit credentials (New-PSDrive -Credential) is reached, as that is not a second hop. Off: every session
    # reaches every share and host, which Windows never does.
    second_hop: bool = True

    @classmethod
    def windows(cls) -> Strictness:
        return cls(**{f.name: True for f in fields(cls)})

    @classmethod
    def lenient(cls) -> Strictness:
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def default(cls) -> Strictness:
        """The defaults, changed by HYPERVSIM_STRICT when it is set."""
        return cls().amended(os.environ.get(ENVIRONMENT, ""))

    def amended(self, spec: str) -> Strictness:
        """This strictness with a spec applied: "all", "none", "name", "-name", comma-separated, left to right."""
        result = replace(self)
        for word in (w.strip() for w in spec.split(",")):
            if word in ("all", "none"):
                result = Strictness.windows() if word == "all" else Strictness.lenient()
            elif word:
                name = word.lstrip("-")
                if name not in self.names():
                    raise ValueError(f"unknown strictness {name!r}; known: {', '.join(self.names())}")
                setattr(result, name, not word.startswith("-"))
        return result
