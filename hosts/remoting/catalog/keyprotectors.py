"""Who may unseal a VM: its key protector's guardians, as the host's own ConvertTo-HgsKeyProtector reads them.

The raw key protector (Get-VMKeyProtector) is an undocumented container; the documented reader is
`ConvertTo-HgsKeyProtector -Bytes <raw>`, which returns MSFT_HgsKeyProtector with `Owner` and `Guardians`
(MSFT_HgsGuardian, certificates as byte arrays). Remoting sends those nested objects as their text (depth 1), so
`Select-Object -ExpandProperty Guardians` (or `Owner`) lifts them to the top, where their certificate bytes come
back whole; a thumbprint is the SHA-1 of a certificate's DER.

It needs the raw bytes the reads before it returned, so it is their second pipeline (their `follow_up`): one
pipeline for every VM of a host, each VM's bytes sent once. The owner is one of a key protector's guardians
(domain.md), so a protector with one guardian needs no second question; only VMs sealed to several guardians are
asked for their owner, in one more pipeline. Every VM's answers arrive in one stream, so they start with a marker:
the VM's place in the batch, echoed back by `Select-Object -InputObject <index>`.

A VM the host cannot read keeps what the DER scan of its bytes found (keyprotector.py) or, when that found nothing,
its guardians are unknown, with a note in its problems: it never reads as "sealed to no guardian".

The guardians are in the bytes (a key protector embeds every guardian's certificates, domain.md), so the same bytes
always read the same: what the host said about them is kept with their SHA-256 (`kp_sha256`), and a caller that
passes those answers back (`known`) has only new or changed key protectors sent to the host again. At ~3 KB a
protector, sent up and read back, that is what keeps a refresh of a host whose VMs did not change to one pipeline.
The first read of hundreds of new protectors still fills several 500 KB envelopes each way: `-Bytes` takes no
pipeline input, so the host cannot be handed Get-VMKeyProtector's output in the same pipeline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..keyprotector import MIN_KEY_PROTECTOR_BYTES, GuardianRef, KeyProtectorInfo, guardian_ref
from ..operation import Cmd, Operation, PipelineResult, literal_name
from ..psobjects import printable, repaired

if TYPE_CHECKING:
    from .inventory import VmDetails

T = TypeVar("T")
Events = list[tuple[str, Any]]
# What the host said about key protectors it read before, by the SHA-256 of their bytes (see kp_sha256).
KnownProtectors = dict[str, KeyProtectorInfo]
# Pipelines at most: the guardians, the owners of VMs with several, and one more for VMs a failing statement kept
# from being read (a host stops the pipeline at a terminating error).
ROUNDS = 3


def key_protector_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def to_convert(details: list[VmDetails], known: KnownProtectors | None = None) -> list[Question]:
    """The VMs whose raw key protector came back and holds one (a VM without one sends a few bytes only), less those
    whose very bytes the host read before: those take the guardians it named then."""
    questions = []
    for detail in details:
        if len(detail.raw_key_protector) < MIN_KEY_PROTECTOR_BYTES:
            continue
        digest = key_protector_hash(detail.raw_key_protector)
        if known and digest in known:
            answer = known[digest]
            detail.key_protector = replace(answer, guardians=list(answer.guardians))
            detail.kp_sha256 = digest
        else:
            questions.append(Question(detail))
    return questions


@dataclass
class Question:
    """What is asked about one VM: its guardians, or (they are known, and several) which of them is the owner."""

    vm: VmDetails
    guardians: list[GuardianRef] | None = None  # None: ask for the guardians

    @property
    def expand(self) -> str:
        return "Guardians" if self.guardians is None else "Owner"


@dataclass
class ReadKeyProtectors(Operation[T]):
    """The guardians of the VMs' key protectors, read by the host; completes those VmDetails in place and returns
    `answer` (the result of the read that fetched the raw bytes)."""

    answer: T
    questions: list[Question]
    round: int = 1
    _next: list[Question] = field(default_factory=list, init=False, repr=False)

    name: ClassVar[str] = "Read key protectors"
    read_only: ClassVar[bool] = True
    errors_are_fatal: ClassVar[bool] = False
    CMDLETS: ClassVar[tuple[str, ...]] = ("ConvertTo-HgsKeyProtector", "Select-Object")

    def statements(self) -> list[list[Cmd]]:
        statements: list[list[Cmd]] = []
        for index, question in enumerate(self.questions):
            statements += [
                [Cmd("Select-Object", {"InputObject": index})],
                [
                    Cmd("ConvertTo-HgsKeyProtector", {"Bytes": question.vm.raw_key_protector}),
                    Cmd("Select-Object", {"ExpandProperty": question.expand}),
                ],
            ]
        return statements

    def key_protector_of(self) -> dict[int, str]:
        """Which statement sends which VM's bytes, the VM named as Get-VMKeyProtector -VMName names it (for Show
        PowerShell, where each VM's key protector is a variable of its own)."""
        return {2 * index + 1: literal_name(question.vm.name) for index, question in enumerate(self.questions)}

    def parse(self, result: PipelineResult) -> T:
        unplaced, sections = _sections(result.events)
        self._next = []
        for index, question in enumerate(self.questions):
            if index in sections:
                self._next += _answer(question, sections[index])
        missing = [q for index, q in enumerate(self.questions) if index not in sections]
        if sections:  # the host got through some VMs before one of them stopped the pipeline: ask the rest again
            self._next += missing
        else:
            why = f"the host said: {unplaced[0]}" if unplaced else "the host sent no answer."
            for question in missing:
                _unknown(question, why)
        if self.round == ROUNDS:
            for question in self._next:
                _unknown(question, "the host stopped before it, three times.")
            self._next = []
        return self.answer

    def follow_up(self, parsed: T) -> Operation[T] | None:
        return ReadKeyProtectors(parsed, self._next, self.round + 1) if self._next else None


def _sections(events: Events) -> tuple[list[Any], dict[int, Events]]:
    """The answers that came before any marker, and each VM's answers by its place in the batch."""
    unplaced: list[Any] = []
    sections: dict[int, Events] = {}
    current: Events | None = None
    for kind, value in events:
        if kind == "output" and isinstance(value, int) and not isinstance(value, bool):
            current = sections.setdefault(value, [])
        elif current is not None:
            current.append((kind, repaired(value)[0]))
        else:
            unplaced.append(value)
    return unplaced, sections


def _answer(question: Question, answers: Events) -> list[Question]:
    """Read one VM's answers; the question still to ask about it, if any (the owner among several guardians)."""
    errors = [value for kind, value in answers if kind == "error"]
    guardians = [guardian_ref(value) for kind, value in answers if kind == "output"]
    readable = [g for g in guardians if g is not None]
    if errors:
        _unknown(question, f"the host said: {errors[0]}")
    elif not guardians or len(readable) < len(guardians):
        what = "no guardian" if not guardians else "a guardian whose certificates could not be read"
        _unknown(question, f"the host named {what} in it.")
    elif question.guardians is not None:
        _known(question.vm, question.guardians, owner=readable[0])
    elif len(readable) > 1:
        return [Question(question.vm, readable)]
    else:
        _known(question.vm, readable, owner=readable[0])
    return []


def _known(vm: VmDetails, guardians: list[GuardianRef], owner: GuardianRef) -> None:
    pairs = {(g.signing, g.encryption) for g in guardians}
    everyone = guardians if (owner.signing, owner.encryption) in pairs else [owner, *guardians]
    vm.key_protector = KeyProtectorInfo(present=True, guardians=everyone, owner=owner)
    vm.kp_sha256 = key_protector_hash(vm.raw_key_protector)  # only what the host named is worth keeping


def _unknown(question: Question, why: str) -> None:
    """The host did not answer the question: keep the guardians known so far (from the host, else from the DER
    scan of the bytes) with a note, or leave them unknown."""
    vm, shown = question.vm, printable(question.vm.name)
    if question.guardians is not None:
        vm.key_protector = KeyProtectorInfo(present=True, guardians=question.guardians, owner=None)
        vm.problems.append(f"The owner of VM '{shown}''s key protector is unknown; {why}")
        return
    if vm.key_protector.guardians:
        vm.problems.append(
            f"The key protector of VM '{shown}' was read by scanning its bytes, as ConvertTo-HgsKeyProtector could "
            f"not read it; {why}"
        )
        return
    vm.key_protector = KeyProtectorInfo(present=True, readable=False)
    vm.problems.append(f"Who may unseal VM '{shown}' is unknown: its key protector could not be read; {why}")


def shown_follow_ups(op: Operation[Any], answer: Any) -> list[Operation[Any]]:
    """The pipelines HostSession.run sends after `op` to have the host read key protectors, as they follow from the
    answer it ends with (each VM's guardians known): what Show PowerShell lists after a read of VM details. The
    guardians of every VM with a key protector, then the owner of each sealed to several."""
    first = op.follow_up(answer)
    if not isinstance(first, ReadKeyProtectors):
        return []
    several = [
        Question(q.vm, q.vm.key_protector.guardians) for q in first.questions if len(q.vm.key_protector.guardians) > 1
    ]
    return [first] + ([ReadKeyProtectors(first.answer, several, 2)] if several else [])
