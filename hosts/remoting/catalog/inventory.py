"""Inventory reads: everything a host holds in one pipeline, whatever its number of VMs.

ReadHostInventory sends nine statements: every VM's raw key protector, security settings and checkpoints — piped
from Get-VM, so no VM name is needed up front — the VMs, OS facts, HGS client configuration, guardians, whether the
shielded-VM certificate store exists, and its certificates. Select-Object keeps only the properties the inventory
stores.

Outputs of all statements arrive in one ordered stream. Objects are told apart by their type names and
properties; security settings and checkpoints name their VM; key protectors (bare byte arrays) are matched to VMs
by position, which is checked: when the counts disagree (a VM appeared or vanished in between) the caller reads
the details again with ReadVmDetails, one statement per VM.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography import x509

from ..errors import RemoteCommandError, UnexpectedReply
from ..keyprotector import KeyProtectorInfo, read_key_protector, thumbprint
from ..operation import Cmd, Operation, PipelineResult
from ..psobjects import byte_string, flag, has_type, number, prop, text, timestamp

if TYPE_CHECKING:
    from ..session import HostSession

from .host import HGS_STATEMENT, OS_STATEMENT, HostFacts, is_hgs_configuration, is_os, read_hgs, read_os

SHIELDED_STORE = "Cert:\\LocalMachine\\Shielded VM Local Certificates"
# Only what the inventory keeps: a whole Get-VM object is ~1.4 KB on the wire, these ~0.2 KB (200 VMs: 270 → 40 KB).
VM_PROPERTIES = ["Name", "VMId", "State", "Generation", "Path"]
SECURITY_PROPERTIES = ["VMName", "VMId", "TpmEnabled", "Shielded"]
_THUMBPRINT = re.compile(r"\b([0-9A-Fa-f]{40})\b")


@dataclass
class CertificateFacts:
    thumbprint: str
    subject: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    has_private_key: bool


@dataclass
class GuardianFacts:
    name: str
    has_private_signing_key: bool
    signing_thumbprint: str = ""
    encryption_thumbprint: str = ""
    signing_subject: str = ""
    encryption_subject: str = ""


@dataclass
class VmFacts:
    name: str
    vm_id: str
    state: str
    generation: int
    path: str = ""


@dataclass
class VmDetails:
    name: str
    security_read: bool = False
    tpm_enabled: bool = False
    shielded: bool = False
    key_protector: KeyProtectorInfo = field(default_factory=lambda: KeyProtectorInfo(present=False))
    key_protector_read: bool = False
    checkpoint_count: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class HostInventoryFacts:
    facts: HostFacts
    guardians: list[GuardianFacts] = field(default_factory=list)
    certificates: list[CertificateFacts] = field(default_factory=list)
    vms: list[VmFacts] = field(default_factory=list)
    store_exists: bool = True
    problems: list[str] = field(default_factory=list)
    details: dict[str, VmDetails] = field(default_factory=dict)  # by VM name
    details_complete: bool = False  # False: read them again with ReadVmDetails


# -- certificates as they may arrive: DER bytes, an X509Certificate2 object, or its ToString text --------------


def certificate_thumbprint(value: Any) -> tuple[str, str]:
    """(thumbprint, subject) of a nested certificate value, whatever shape remoting gave it; ('', '') if none."""
    raw = byte_string(value)
    if raw:
        try:
            cert = x509.load_der_x509_certificate(raw)
            return thumbprint(raw), cert.subject.rfc4514_string()
        except ValueError:
            return "", ""
    found = text(prop(value, "Thumbprint"))
    if found:
        return found.upper(), text(prop(value, "Subject"))
    shown = text(value)
    match = re.search(r"\[Thumbprint\]\s*([0-9A-Fa-f]{40})", shown) or _THUMBPRINT.search(shown)
    subject = re.search(r"\[Subject\]\s*(.+)", shown)
    return (match.group(1).upper() if match else ""), (subject.group(1).strip() if subject else "")


def is_guardian(obj: Any) -> bool:
    return has_type(obj, "HgsGuardian") or prop(obj, "HasPrivateSigningKey") is not None


def is_certificate(obj: Any) -> bool:
    return has_type(obj, "X509Certificate") or (
        prop(obj, "Thumbprint") is not None and prop(obj, "NotAfter") is not None
    )


def is_vm(obj: Any) -> bool:
    return has_type(obj, "HyperV.PowerShell.VirtualMachine") or (
        prop(obj, "VMId") is not None and prop(obj, "Generation") is not None
    )


def read_guardian(obj: Any) -> GuardianFacts:
    signing, signing_subject = certificate_thumbprint(prop(obj, "SigningCertificate"))
    encryption, encryption_subject = certificate_thumbprint(prop(obj, "EncryptionCertificate"))
    return GuardianFacts(
        name=text(prop(obj, "Name")),
        has_private_signing_key=flag(prop(obj, "HasPrivateSigningKey")),
        signing_thumbprint=signing,
        encryption_thumbprint=encryption,
        signing_subject=signing_subject,
        encryption_subject=encryption_subject,
    )


def read_certificate(obj: Any) -> CertificateFacts:
    return CertificateFacts(
        thumbprint=text(prop(obj, "Thumbprint")).upper(),
        subject=text(prop(obj, "Subject")),
        not_before=timestamp(prop(obj, "NotBefore")),
        not_after=timestamp(prop(obj, "NotAfter")),
        has_private_key=flag(prop(obj, "HasPrivateKey")),
    )


def read_vm(obj: Any) -> VmFacts:
    return VmFacts(
        name=text(prop(obj, "Name", "VMName")),
        vm_id=text(prop(obj, "VMId", "Id")).lower(),
        state=text(prop(obj, "State")),
        generation=number(prop(obj, "Generation")),
        path=text(prop(obj, "Path", "ConfigurationLocation")),
    )


def fill_guardian_thumbprints(guardians: list[GuardianFacts], certificates: list[CertificateFacts]) -> None:
    """When a guardian's certificates did not come through remoting, find them in the store by the subject
    Hyper-V gives them: 'Shielded VM Signing Certificate (<guardian>) (<host>)'."""
    for guardian in guardians:
        for role in ("signing", "encryption"):
            if getattr(guardian, f"{role}_thumbprint"):
                continue
            marker = f"({guardian.name})".lower()
            match = next((c for c in certificates if marker in c.subject.lower() and role in c.subject.lower()), None)
            if match is not None:
                setattr(guardian, f"{role}_thumbprint", match.thumbprint)
                setattr(guardian, f"{role}_subject", match.subject)


def _store_missing(error: RemoteCommandError) -> bool:
    blob = f"{error.command} {error.fqid} {error.message} {error.target}".lower()
    return "shielded vm local certificates" in blob or ("childitem" in blob and "notfound" in blob)


@dataclass
class ReadHostInventory(Operation[HostInventoryFacts]):
    """Everything of a host in one pipeline; without the per-VM details (vm_details=False) six statements."""

    name: ClassVar[str] = "Read host inventory"
    read_only: ClassVar[bool] = True
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = (
        "Get-CimInstance",
        "Get-HgsClientConfiguration",
        "Get-HgsGuardian",
        "Test-Path",
        "Get-ChildItem",
        "Get-VM",
        "Get-VMSecurity",
        "Get-VMKeyProtector",
        "Get-VMSnapshot",
        "Select-Object",
    )

    vm_details: bool = True  # False: leave out the statements piped from Get-VM (see read_inventory)

    def statements(self) -> list[list[Cmd]]:
        # The bulk (key protectors, ~3 KB a VM) goes first: a host answers a Receive as soon as some output is
        # ready, so small answers first would come back in a reply of their own and cost one more round trip.
        details = [
            [Cmd("Get-VM"), Cmd("Get-VMKeyProtector")],
            [Cmd("Get-VM"), Cmd("Get-VMSecurity"), Cmd("Select-Object", {"Property": SECURITY_PROPERTIES})],
            [Cmd("Get-VM"), Cmd("Get-VMSnapshot")],
        ]
        return (details if self.vm_details else []) + [
            [Cmd("Get-VM"), Cmd("Select-Object", {"Property": VM_PROPERTIES})],
            OS_STATEMENT,
            HGS_STATEMENT,
            [Cmd("Get-HgsGuardian")],
            # A host whose TPMs were never enabled has no store yet: Test-Path answers that, and the listing stays
            # quiet (-ErrorAction Ignore), so a new host costs no PathNotFound error line in every refresh's log.
            [Cmd("Test-Path", {"LiteralPath": SHIELDED_STORE})],
            [Cmd("Get-ChildItem", {"Path": SHIELDED_STORE, "ErrorAction": "Ignore"})],
        ]

    def parse(self, result: PipelineResult) -> HostInventoryFacts:
        inventory = HostInventoryFacts(facts=HostFacts())
        reader = _PipedDetails()
        for kind, value in result.events:
            if kind == "error":
                self._error(value, inventory, reader)
            elif isinstance(value, bytes | bytearray):
                reader.key_protectors.append(bytes(value))
            elif isinstance(value, bool):  # the only bare boolean: Test-Path of the certificate store
                inventory.store_exists = value
            elif is_security(value) or is_snapshot(value):
                reader.add(value)
            else:
                self._sort(value, inventory)
        if not inventory.facts.os_caption and not inventory.facts.mode:
            raise result.errors[0] if result.errors else UnexpectedReply("The host sent no OS facts.")
        inventory.problems += inventory.facts.problems
        fill_guardian_thumbprints(inventory.guardians, inventory.certificates)
        inventory.details, inventory.details_complete = reader.details_of(inventory.vms)
        return inventory

    @staticmethod
    def _error(error: RemoteCommandError, inventory: HostInventoryFacts, reader: _PipedDetails) -> None:
        command = command_of(error)
        if _store_missing(error):
            inventory.store_exists = False
        elif command == "Get-VMKeyProtector":
            reader.key_protectors.append(error)  # keeps its place among the VMs' key protectors
        elif command in ("Get-VMSecurity", "Get-VMSnapshot"):
            reader.problems.append(error)
        else:
            inventory.problems.append(str(error))

    @staticmethod
    def _sort(obj: Any, inventory: HostInventoryFacts) -> None:
        if is_os(obj):
            read_os(obj, inventory.facts)
        elif is_hgs_configuration(obj):
            read_hgs(obj, inventory.facts)
        elif is_guardian(obj):
            inventory.guardians.append(read_guardian(obj))
        elif is_certificate(obj):
            inventory.certificates.append(read_certificate(obj))
        elif is_vm(obj):
            inventory.vms.append(read_vm(obj))


class _PipedDetails:
    """Security settings, checkpoints and key protectors of `Get-VM | Get-…` statements, matched to the VMs."""

    def __init__(self) -> None:
        self.security: dict[str, Any] = {}  # by VM id, and by name
        self.checkpoints: dict[str, int] = {}
        self.key_protectors: list[bytes | RemoteCommandError] = []
        self.problems: list[RemoteCommandError] = []

    def add(self, obj: Any) -> None:
        keys = [text(prop(obj, "VMId")).lower(), text(prop(obj, "VMName"))]
        for key in filter(None, keys):
            if is_security(obj):
                self.security[key] = obj
            else:
                self.checkpoints[key] = self.checkpoints.get(key, 0) + 1

    def details_of(self, vms: list[VmFacts]) -> tuple[dict[str, VmDetails], bool]:
        details: dict[str, VmDetails] = {}
        aligned = len(self.key_protectors) == len(vms)
        for position, vm in enumerate(vms):
            detail = details[vm.name] = VmDetails(vm.name)
            security = self.security.get(vm.vm_id) or self.security.get(vm.name)
            if security is not None:
                detail.security_read = True
                detail.tpm_enabled = flag(prop(security, "TpmEnabled"))
                detail.shielded = flag(prop(security, "Shielded"))
            detail.checkpoint_count = self.checkpoints.get(vm.vm_id, self.checkpoints.get(vm.name, 0))
            answer = self.key_protectors[position] if aligned else None
            if isinstance(answer, bytes):
                detail.key_protector = read_key_protector(answer)
                detail.key_protector_read = True
            elif isinstance(answer, RemoteCommandError):
                detail.problems.append(str(answer))
        complete = aligned and all(d.security_read for d in details.values()) and not self.problems
        return details, complete


_COMMAND_OF_FQID = {
    "getvmsecurity": "Get-VMSecurity",
    "getvmkeyprotector": "Get-VMKeyProtector",
    "getvmsnapshot": "Get-VMSnapshot",
    "getvmcheckpoint": "Get-VMSnapshot",
}


def command_of(error: RemoteCommandError) -> str:
    """Which cmdlet raised the error: from its invocation info, else from the FQID's command class."""
    if error.command:
        return error.command
    tail = error.fqid.rsplit(".", 1)[-1].replace("-", "").lower()
    return _COMMAND_OF_FQID.get(tail, "")


def is_security(obj: Any) -> bool:
    return has_type(obj, "VMSecurity") or prop(obj, "TpmEnabled") is not None


def is_snapshot(obj: Any) -> bool:
    return has_type(obj, "VMSnapshot", "VMCheckpoint") or prop(obj, "SnapshotType", "ParentSnapshotId") is not None


@dataclass
class ReadVmDetails(Operation[dict[str, VmDetails]]):
    """Security settings, raw key protector and checkpoints of the given VMs, three statements per VM."""

    vm_names: list[str] = field(default_factory=list)

    name: ClassVar[str] = "Read VM details"
    read_only: ClassVar[bool] = True
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("Get-VMSecurity", "Get-VMKeyProtector", "Get-VMSnapshot")

    def statements(self) -> list[list[Cmd]]:
        statements = []
        for vm in self.vm_names:
            statements += [
                [Cmd("Get-VMSecurity", {"VMName": vm})],
                [Cmd("Get-VMKeyProtector", {"VMName": vm})],
                [Cmd("Get-VMSnapshot", {"VMName": vm})],
            ]
        return statements

    def parse(self, result: PipelineResult) -> dict[str, VmDetails]:
        return _VmDetailsReader(self.vm_names).read(result.events)


class _VmDetailsReader:
    """Walks the ordered outputs and errors of ReadVmDetails, one VM after the other.

    Per VM the host answers: one security object (or an error), one byte array (or an error), then zero or more
    checkpoints (or an error). A security object names its VM, which re-aligns the walk if an answer is missing.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.details = {name: VmDetails(name) for name in names}
        self.index = -1
        self.expect = "security"  # what the next single answer is: "security" (of the next VM) or "kp"

    def read(self, events: list[tuple[str, Any]]) -> dict[str, VmDetails]:
        for kind, value in events:
            if kind == "error":
                self._error(value)
            elif is_security(value):
                self._security(value)
            elif isinstance(value, bytes | bytearray):
                self._key_protector(bytes(value))
            elif is_snapshot(value):
                self._snapshot(value)
        return self.details

    def _current(self) -> VmDetails | None:
        return self.details[self.names[self.index]] if 0 <= self.index < len(self.names) else None

    def _advance(self, name: str = "") -> VmDetails | None:
        if name in self.details and self.names.index(name) > self.index:
            self.index = self.names.index(name)
        else:
            self.index += 1
        self.expect = "kp"
        return self._current()

    def _security(self, obj: Any) -> None:
        vm = self._advance(text(prop(obj, "VMName")))
        if vm is not None:
            vm.security_read = True
            vm.tpm_enabled = flag(prop(obj, "TpmEnabled"))
            vm.shielded = flag(prop(obj, "Shielded"))

    def _key_protector(self, data: bytes) -> None:
        vm = self._current()
        if vm is None or self.expect != "kp":
            return  # an answer we cannot place: leave it out rather than give it to the wrong VM
        vm.key_protector = read_key_protector(data)
        vm.key_protector_read = True
        self.expect = "security"

    def _snapshot(self, obj: Any) -> None:
        name = text(prop(obj, "VMName"))
        vm = self.details.get(name) if name else self._current()
        if vm is not None:
            vm.checkpoint_count += 1

    def _error(self, error: RemoteCommandError) -> None:
        command = command_of(error)
        if command == "Get-VMSnapshot":
            vm = self._current()
        elif command == "Get-VMSecurity" or (not command and self.expect == "security"):
            vm = self._advance(error.target if error.target in self.details else "")
        else:  # Get-VMKeyProtector, or an unnamed error where the key protector was due
            vm = self._current()
            self.expect = "security"
        if vm is not None:
            vm.problems.append(str(error))


def read_inventory(session: HostSession) -> HostInventoryFacts:
    """Everything a host holds, with every VM's details: one pipeline, a second one only when needed — a VM
    appeared or vanished between the statements, or the host failed the statements piped from Get-VM outright."""
    try:
        inventory = session.run(ReadHostInventory())
    except RemoteCommandError:
        inventory = session.run(ReadHostInventory(vm_details=False))
    names = [vm.name for vm in inventory.vms if vm.name]
    if names and not inventory.details_complete:
        inventory.details = session.run(ReadVmDetails(names))
    inventory.details_complete = True
    return inventory
