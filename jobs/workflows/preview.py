"""A preflight page's preview of a job: the job's own plan, with the reads that decide its branches answered from the
host's last inventory instead of the host, so Show PowerShell lists the job's reads where it sends them and then
the operations of the branch the inventory predicts.

A plan reads through an `Ask`: `session.run` in the job, `InventoryAnswers` in the preview.

    plan = plan_import(session.run, pair)                                  # the job
    plan = plan_import(InventoryAnswers(host, script), pair)               # its preview
    show(script, plan.operations(files), files.variables())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from hosts.inventory.models import Certificate, Guardian, HostInventory, VirtualMachine
from hosts.models import Host
from hosts.remoting.catalog.guardians import (
    GetGuardians,
    ListShieldedCertificates,
    ReadFileBytes,
    StoreCertificate,
    StoreListing,
    WriteFileBytes,
)
from hosts.remoting.catalog.inventory import GuardianFacts, ReadVmDetails, VmDetails, VmFacts
from hosts.remoting.catalog.keyprotectors import shown_follow_ups
from hosts.remoting.catalog.vms import GetVM
from hosts.remoting.keyprotector import MIN_KEY_PROTECTOR_BYTES, GuardianRef, KeyProtectorInfo
from hosts.remoting.operation import Operation
from hosts.vault.services import thumbprint_pairs

from .powershell import PowerShellScript

T = TypeVar("T")


class Ask(Protocol):
    """How a plan reads a host before it decides what to send."""

    def __call__(self, op: Operation[T], /) -> T: ...


class InventoryAnswers:
    """Answers the reads of a plan with what `host`'s last inventory says, adding each read to `script` as asked."""

    def __init__(self, host: Host, script: PowerShellScript) -> None:
        self.host = host
        self.script = script

    def __call__(self, op: Operation[T], /) -> T:
        if not op.read_only:
            raise TypeError(f"{type(op).__name__} changes the host: a preview shows it, it does not answer it")
        self.script.add(op)
        answer = self.answer(op)
        self.script.add(*shown_follow_ups(op, answer))  # the host reads the key protectors, as the job's session asks
        return cast(T, answer)

    def answer(self, op: Operation[Any]) -> object:
        if isinstance(op, GetGuardians):
            return [guardian_facts(row) for row in Guardian.objects.filter(host=self.host)]
        if isinstance(op, ListShieldedCertificates):
            return self.store()
        if isinstance(op, ReadVmDetails):
            rows = VirtualMachine.objects.filter(host=self.host, name__in=op.vm_names)
            return {row.name: vm_details(row) for row in rows}
        if isinstance(op, GetVM):
            row = VirtualMachine.objects.filter(host=self.host, name=op.vm_name).first()
            return VmFacts(row.name, row.vm_id, row.state, row.generation, row.path) if row is not None else None
        raise TypeError(f"The inventory keeps no answer to {type(op).__name__}")

    def store(self) -> StoreListing:
        """The shielded store as last read; a host never read is taken to have one (most hosts do)."""
        inventory = HostInventory.objects.filter(host=self.host).first()
        exists = bool(inventory.facts.get("store_exists", True)) if inventory is not None else True
        rows = Certificate.objects.filter(host=self.host)
        return StoreListing(exists, [as_store_certificate(row) for row in rows])


def guardian_facts(row: Guardian) -> GuardianFacts:
    return GuardianFacts(
        row.name,
        row.has_private_signing_key,
        row.signing_thumbprint.upper(),
        row.encryption_thumbprint.upper(),
        row.signing_subject,
        row.encryption_subject,
    )


def as_store_certificate(row: Certificate) -> StoreCertificate:
    """An inventory row as the live store listing would show it."""
    return StoreCertificate(row.thumbprint.upper(), row.subject, row.not_before, row.not_after, row.has_private_key)


def vm_details(row: VirtualMachine) -> VmDetails:
    owner = thumbprint_pairs(row.kp_owner_thumbprints)
    guardians = [
        GuardianRef(signing, encryption) for signing, encryption in thumbprint_pairs(row.kp_guardian_thumbprints)
    ]
    key_protector = KeyProtectorInfo(
        present=row.has_key_protector,
        guardians=guardians,
        owner=GuardianRef(*owner[0]) if owner else None,
        readable=row.kp_readable,
    )
    details = VmDetails(
        row.name,
        security_read=row.details_read,
        tpm_enabled=row.tpm_enabled,
        shielded=row.shielded,
        key_protector=key_protector,
        key_protector_read=row.details_read,
        checkpoint_count=row.checkpoint_count,
    )
    if row.has_key_protector:  # the bytes a preview shows as a variable; their length says "there is one"
        details.raw_key_protector = bytes(MIN_KEY_PROTECTOR_BYTES)
    return details


def show(
    script: PowerShellScript, operations: Sequence[Operation[Any]], variables: Mapping[str, str] | None = None
) -> PowerShellScript:
    """Add the operations a job runs to Show PowerShell, in order. `variables` names the bytes of files by path:
    a file read is assigned to its variable, and a file written takes its bytes from it (assigned above)."""
    variables = variables or {}
    for op in operations:
        if isinstance(op, WriteFileBytes) and op.path in variables:
            script.use("file", variables[op.path])
        into = variables.get(op.path, "") if isinstance(op, ReadFileBytes) else ""
        script.add(op, into=into)
    return script
