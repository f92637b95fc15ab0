"""Inventory reads: everything a host holds in two pipelines, whatever its number of VMs.

ReadHostInventory sends ten statements: every VM's raw key protector, security settings and checkpoints — piped
from Get-VM, so no VM name is needed up front — the VMs, OS facts, HGS client configuration, whether live migration
is enabled (Get-VMHost), guardians, whether the shielded-VM certificate store exists, and its certificates.
Select-Object keeps only the properties the inventory stores. Asked for `unsealers` (as read_inventory does), its
follow-up pipeline (keyprotectors.py) asks the host who may unseal each VM whose key protector is not `known` from an
earlier read.

Outputs of all statements arrive in one ordered stream. Objects are told apart by their type names and
properties; checkpoints name their VM; security settings (VMSecurity has no VMName or VMId) and key protectors
(bare byte arrays) are matched to VMs by position, which is checked: when the counts disagree (a VM appeared or
vanished in between) the caller reads the details again with ReadVmDetails, one statement per VM.

A host's reply is input, not trusted structure: a property that is missing or of another type makes that one fact
unknown, with a note in the host's (or the VM's) problems; a VM is never left out without one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import RemoteCommandError, UnexpectedReply
from ..keyprotector import KeyProtectorInfo, certificate_thumbprint, read_key_protector
from ..operation import Cmd, Operation, PipelineResult, literal_name
from ..psobjects import (
    has_type,
    known_flag,
    known_number,
    printable,
    prop,
    repaired,
    text,
    timestamp,
    unparsed,
)
from .keyprotectors import KnownProtectors, ReadKeyProtectors, to_convert

if TYPE_CHECKING:
    from ..session import HostSession

from .host import HGS_STATEMENT, OS_STATEMENT, HostFacts, is_hgs_configuration, is_os, read_hgs, read_os

SHIELDED_STORE = "Cert:\\LocalMachine\\Shielded VM Local Certificates"
# Only what the inventory keeps: a whole Get-VM object is ~1.4 KB on the wire, these ~0.2 KB (200 VMs: 270 → 40 KB).
VM_PROPERTIES = ["Name", "VMId", "State", "Generation", "Path"]
# VMSecurity names neither its VM nor the VM's id: its answers are matched to VMs by their order.
SECURITY_PROPERTIES = ["TpmEnabled", "Shielded"]
# Whether the host takes part in live migrations (Enable-VMMigration): the migration wizard refuses live migration
# from the stored fact before it asks either host.
VM_HOST_STATEMENT = [Cmd("Get-VMHost"), Cmd("Select-Object", {"Property": ["VirtualMachineMigrationEnabled"]})]
Notes = list[str]


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
    raw_key_protector: bytes = field(default=b"", repr=False)  # as Get-VMKeyProtector gave it
    kp_sha256: str = ""  # of raw_key_protector, once the host has named its guardians (keyprotectors.py)


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


def is_guardian(obj: Any) -> bool:
    return has_type(obj, "HgsGuardian") or prop(obj, "HasPrivateSigningKey") is not None


def is_certificate(obj: Any) -> bool:
    return has_type(obj, "X509Certificate") or (
        prop(obj, "Thumbprint") is not None and prop(obj, "NotAfter") is not None
    )


def is_vm_host(obj: Any) -> bool:
    return prop(obj, "VirtualMachineMigrationEnabled") is not None


def is_vm(obj: Any) -> bool:
    return has_type(obj, "HyperV.PowerShell.VirtualMachine") or (
        prop(obj, "VMId") is not None and prop(obj, "Generation") is not None
    )


def read_guardian(obj: Any, notes: Notes | None = None) -> GuardianFacts:
    """A guardian; a private-key flag that is not true/false reads as False here (ReadHostInventory then takes it
    from the certificate store), certificates that cannot be read leave their thumbprint empty."""
    notes = [] if notes is None else notes
    signing, signing_subject = certificate_thumbprint(prop(obj, "SigningCertificate"))
    encryption, encryption_subject = certificate_thumbprint(prop(obj, "EncryptionCertificate"))
    name = text(prop(obj, "Name"))
    has_key = known_flag(prop(obj, "HasPrivateSigningKey"))
    if has_key is None:
        notes.append(
            f"Guardian '{printable(name)}': the host did not say plainly whether it has its private signing key; "
            "the certificate store is asked instead."
        )
    return GuardianFacts(
        name=name,
        has_private_signing_key=bool(has_key),
        signing_thumbprint=signing,
        encryption_thumbprint=encryption,
        signing_subject=signing_subject,
        encryption_subject=encryption_subject,
    )


def read_certificate(obj: Any, notes: Notes | None = None) -> CertificateFacts:
    notes = [] if notes is None else notes
    facts = CertificateFacts(
        thumbprint=text(prop(obj, "Thumbprint")).upper(),
        subject=text(prop(obj, "Subject")),
        not_before=timestamp(prop(obj, "NotBefore")),
        not_after=timestamp(prop(obj, "NotAfter")),
        has_private_key=bool(known_flag(prop(obj, "HasPrivateKey"))),
    )
    shown = f"Certificate {facts.thumbprint or printable(facts.subject) or '(no thumbprint)'}"
    if not facts.thumbprint:
        notes.append(f"{shown} in the shielded store came without a thumbprint: it is left out.")
    if facts.not_after is None:
        notes.append(f"{shown}: its expiry date could not be read, so it is not checked.")
    if known_flag(prop(obj, "HasPrivateKey")) is None:
        notes.append(f"{shown}: whether the store holds its private key was not said plainly; taken as not.")
    return facts


def read_vm(obj: Any, notes: Notes | None = None) -> VmFacts:
    """A VM, always: a fact that is missing or of another type is left empty (0 for the generation), with a note."""
    notes = [] if notes is None else notes
    vm = VmFacts(
        name=text(prop(obj, "Name", "VMName")),
        vm_id=text(prop(obj, "VMId", "Id")).lower(),
        state=text(prop(obj, "State")),
        generation=known_number(prop(obj, "Generation")) or 0,
        path=text(prop(obj, "Path", "ConfigurationLocation")),
    )
    if not vm.name:
        vm.name = f"(unnamed VM {vm.vm_id})" if vm.vm_id else "(unnamed VM)"
        notes.append(f"A VM came without a name; it is listed as '{vm.name}'.")
    shown = f"VM '{printable(vm.name)}'"
    if not vm.vm_id:
        notes.append(f"{shown} came without its id; it is told apart by its name.")
    if not vm.state:
        notes.append(f"{shown}: its state was not sent; it is shown as unknown.")
    if vm.generation not in (1, 2):
        notes.append(f"{shown}: its generation ({printable(text(prop(obj, 'Generation'), 'none'))}) is unknown.")
    return vm


def read_security(obj: Any, detail: VmDetails) -> None:
    """A VM's TpmEnabled and Shielded; when TpmEnabled is not true/false, whether the VM has a vTPM stays unknown."""
    tpm, shielded = known_flag(prop(obj, "TpmEnabled")), known_flag(prop(obj, "Shielded"))
    shown = f"VM '{printable(detail.name)}'"
    if tpm is None:
        detail.problems.append(f"{shown}: the host did not say plainly whether its vTPM is on; it is unknown.")
        return
    if shielded is None:
        detail.problems.append(f"{shown}: the host did not say plainly whether it is shielded; taken as not.")
    detail.security_read, detail.tpm_enabled, detail.shielded = True, tpm, bool(shielded)


def read_raw_key_protector(data: bytes, detail: VmDetails) -> None:
    """The raw key protector, and the guardians its DER scan finds (the fallback: keyprotectors.py asks the host)."""
    detail.raw_key_protector = data
    detail.key_protector = read_key_protector(data)
    detail.key_protector_read = True


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
    """Everything of a host in one pipeline; with `unsealers`, who may unseal its VMs in a second one (read_inventory
    asks; a workflow that reads the key protectors it needs with ReadVmDetails does not). Without the per-VM details
    (vm_details=False) seven statements."""

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
        "Get-VMHost",
        "Select-Object",
        *ReadKeyProtectors.CMDLETS,  # its follow-up
    )

    vm_details: bool = True  # False: leave out the statements piped from Get-VM (see read_inventory)
    unsealers: bool = False  # True: the details' key protectors are read by the host (ReadKeyProtectors) too
    known: KnownProtectors = field(default_factory=dict, repr=False)  # key protectors the host need not read again

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
            VM_HOST_STATEMENT,
            [Cmd("Get-HgsGuardian")],
            # A host whose TPMs were never enabled has no store yet: Test-Path answers that, and the listing stays
            # quiet (-ErrorAction Ignore), so a new host costs no PathNotFound error line in every refresh's log.
            [Cmd("Test-Path", {"LiteralPath": SHIELDED_STORE})],
            [Cmd("Get-ChildItem", {"Path": SHIELDED_STORE, "ErrorAction": "Ignore"})],
        ]

    def parse(self, result: PipelineResult) -> HostInventoryFacts:
        inventory = HostInventoryFacts(facts=HostFacts())
        reader = _PipedDetails()
        unsure_keys: list[GuardianFacts] = []
        for kind, value in result.events:
            if kind == "error":
                self._error(value, inventory, reader)
                continue
            value = _readable(value, inventory.problems)
            if isinstance(value, bytes | bytearray):
                reader.key_protectors.append(bytes(value))
            elif isinstance(value, bool):  # the only bare boolean: Test-Path of the certificate store
                inventory.store_exists = value
            elif is_security(value):
                reader.security.append(value)
            elif is_snapshot(value):
                reader.add_checkpoint(value, inventory.problems)
            else:
                self._sort(value, inventory, unsure_keys)
        if not inventory.facts.os_caption and not inventory.facts.mode:
            raise result.errors[0] if result.errors else UnexpectedReply("The host sent no OS facts.")
        inventory.problems += inventory.facts.problems
        fill_guardian_thumbprints(inventory.guardians, inventory.certificates)
        _signing_keys_from_store(unsure_keys, inventory)
        inventory.details, inventory.details_complete = reader.details_of(inventory.vms)
        return inventory

    def follow_up(self, parsed: HostInventoryFacts) -> Operation[HostInventoryFacts] | None:
        """Who may unseal each VM, when asked, unless the details are read again anyway (read_inventory)."""
        wanted = self.unsealers and parsed.details_complete
        pending = to_convert(list(parsed.details.values()), self.known) if wanted else []
        return ReadKeyProtectors(parsed, pending) if pending else None

    @staticmethod
    def _error(error: RemoteCommandError, inventory: HostInventoryFacts, reader: _PipedDetails) -> None:
        command = command_of(error)
        if _store_missing(error):
            inventory.store_exists = False
        elif command in ("Get-VMKeyProtector", "Get-VMSecurity"):
            reader.answer_of(command).append(error)  # keeps its place among the VMs' answers
        elif command == "Get-VMSnapshot":
            reader.problems.append(error)
        else:
            inventory.problems.append(str(error))

    @staticmethod
    def _sort(obj: Any, inventory: HostInventoryFacts, unsure_keys: list[GuardianFacts]) -> None:
        notes = inventory.problems
        if is_os(obj):
            read_os(obj, inventory.facts)
        elif is_vm_host(obj):
            inventory.facts.live_migration_enabled = known_flag(prop(obj, "VirtualMachineMigrationEnabled"))
        elif is_hgs_configuration(obj):
            read_hgs(obj, inventory.facts)
        elif is_guardian(obj):
            inventory.guardians.append(read_guardian(obj, notes))
            if known_flag(prop(obj, "HasPrivateSigningKey")) is None:
                unsure_keys.append(inventory.guardians[-1])
        elif is_certificate(obj):
            inventory.certificates.append(read_certificate(obj, notes))
        elif is_vm(obj):
            inventory.vms.append(read_vm(obj, notes))


def _readable(value: Any, notes: Notes) -> Any:
    """An output as the parsers can read it: CLIXML pypsrp could not parse (control characters) parsed again, with
    a note either way."""
    value, was_repaired = repaired(value)
    if was_repaired:
        name = text(prop(value, "Name", "VMName")) or text(prop(value, "Thumbprint"))
        notes.append(
            f"The host's answer for '{printable(name)}' held control characters that XML does not allow; it was read "
            "with them escaped."
        )
    elif unparsed(value):
        notes.append("An answer from the host was not well-formed CLIXML and could not be read at all.")
    return value


def _signing_keys_from_store(guardians: list[GuardianFacts], inventory: HostInventoryFacts) -> None:
    """A guardian whose HasPrivateSigningKey was unclear has its signing key if the store holds that key."""
    keyed = {c.thumbprint for c in inventory.certificates if c.has_private_key}
    for guardian in guardians:
        guardian.has_private_signing_key = bool(guardian.signing_thumbprint) and guardian.signing_thumbprint in keyed


class _PipedDetails:
    """Security settings, checkpoints and key protectors of `Get-VM | Get-…` statements, matched to the VMs:
    security settings and key protectors by position (one answer, or one error, per VM in Get-VM's order),
    checkpoints by the VM they name."""

    def __init__(self) -> None:
        self.security: list[Any] = []  # a VMSecurity or the RemoteCommandError in its place
        self.key_protectors: list[bytes | RemoteCommandError] = []
        self.checkpoints: dict[str, int] = {}
        self.problems: list[RemoteCommandError] = []

    def answer_of(self, command: str) -> list[Any]:
        return self.key_protectors if command == "Get-VMKeyProtector" else self.security

    def add_checkpoint(self, obj: Any, notes: Notes) -> None:
        keys = [k for k in (text(prop(obj, "VMId")).lower(), text(prop(obj, "VMName"))) if k]
        if not keys:
            notes.append("A checkpoint came without the name or id of its VM; it is not counted.")
        for key in keys:
            self.checkpoints[key] = self.checkpoints.get(key, 0) + 1

    def details_of(self, vms: list[VmFacts]) -> tuple[dict[str, VmDetails], bool]:
        details: dict[str, VmDetails] = {}
        aligned = len(self.key_protectors) == len(vms) and len(self.security) == len(vms)
        for position, vm in enumerate(vms):
            detail = details[vm.name] = VmDetails(vm.name)
            detail.checkpoint_count = self.checkpoints.get(vm.vm_id, self.checkpoints.get(vm.name, 0))
            if aligned:
                self._give(detail, self.security[position], self.key_protectors[position])
        complete = aligned and all(d.security_read for d in details.values()) and not self.problems
        return details, complete

    @staticmethod
    def _give(detail: VmDetails, security: Any, key_protector: bytes | RemoteCommandError) -> None:
        if isinstance(security, RemoteCommandError):
            detail.problems.append(str(security))
        else:
            read_security(security, detail)
        if isinstance(key_protector, RemoteCommandError):
            detail.problems.append(str(key_protector))
        else:
            read_raw_key_protector(key_protector, detail)


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
    """Security settings, raw key protector and checkpoints of the given VMs, three statements per VM; then who may
    unseal them (ReadKeyProtectors)."""

    vm_names: list[str] = field(default_factory=list)
    known: KnownProtectors = field(default_factory=dict, repr=False)  # key protectors the host need not read again

    name: ClassVar[str] = "Read VM details"
    read_only: ClassVar[bool] = True
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = (
        "Get-VMSecurity",
        "Get-VMKeyProtector",
        "Get-VMSnapshot",
        *ReadKeyProtectors.CMDLETS,  # its follow-up
    )

    def statements(self) -> list[list[Cmd]]:
        statements = []
        for vm in map(literal_name, self.vm_names):
            statements += [
                [Cmd("Get-VMSecurity", {"VMName": vm})],
                [Cmd("Get-VMKeyProtector", {"VMName": vm})],
                [Cmd("Get-VMSnapshot", {"VMName": vm})],
            ]
        return statements

    def parse(self, result: PipelineResult) -> dict[str, VmDetails]:
        return _VmDetailsReader(self.vm_names).read(result.events)

    def follow_up(self, parsed: dict[str, VmDetails]) -> Operation[dict[str, VmDetails]] | None:
        pending = to_convert(list(parsed.values()), self.known)
        return ReadKeyProtectors(parsed, pending) if pending else None


class _VmDetailsReader:
    """Walks the ordered outputs and errors of ReadVmDetails, one VM after the other.

    Per VM the host answers: one security object (or an error), one byte array (or an error), then zero or more
    checkpoints (or an error). A security object that names its VM (Windows' does not) re-aligns the walk if an
    answer is missing.
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
                continue
            value = _readable(value, self._notes())
            if is_security(value):
                self._security(value)
            elif isinstance(value, bytes | bytearray):
                self._key_protector(bytes(value))
            elif is_snapshot(value):
                self._snapshot(value)
        return self.details

    def _notes(self) -> Notes:
        """Where a note about an answer goes: the VM being read (or the first one, before any)."""
        current = self._current() or next(iter(self.details.values()), None)
        return current.problems if current is not None else []

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
            read_security(obj, vm)

    def _key_protector(self, data: bytes) -> None:
        vm = self._current()
        if vm is None or self.expect != "kp":
            return  # an answer we cannot place: leave it out rather than give it to the wrong VM
        read_raw_key_protector(data, vm)
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


def read_inventory(session: HostSession, known: KnownProtectors | None = None) -> HostInventoryFacts:
    """Everything a host holds, with every VM's details: two pipelines (the second asks the host who may unseal each
    VM whose key protector is not `known`, and is not sent when none is new), and the details read again, per VM,
    only when needed — a VM appeared or vanished between the statements, or the host failed the statements piped
    from Get-VM outright."""
    known = known or {}
    try:
        inventory = session.run(ReadHostInventory(unsealers=True, known=known))
    except RemoteCommandError:
        inventory = session.run(ReadHostInventory(vm_details=False))
    names = [vm.name for vm in inventory.vms if vm.name]
    if names and not inventory.details_complete:
        inventory.details = session.run(ReadVmDetails(names, known))
    inventory.details_complete = True
    return inventory
