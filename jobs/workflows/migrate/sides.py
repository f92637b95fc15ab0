"""The two hosts of a migration as its steps reach them, live or shown.

The migration's steps (run.py) are written once, against `Side`: the job drives them over `LiveSide`s, which send
each operation on the host's session; the preflight page drives the very same steps over `ShownSide`s, which send
nothing — each operation becomes a Show PowerShell line, and each read is answered as the preflight predicts, so
the branches the job will take are the ones shown. What a person reads is what the job sends, by construction.

Carrying a guardian's pair is escrow's and import's own business: a side hands it to escrow_pair / import_pair,
or, when shown, to their Show PowerShell (escrow_lines / import_lines).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from django.contrib.auth.base_user import AbstractBaseUser

from hosts.models import Host
from hosts.remoting.catalog.guardians import ReadFileBytes, RemoveFiles
from hosts.remoting.catalog.inventory import VmFacts
from hosts.remoting.catalog.keyprotectors import shown_follow_ups
from hosts.remoting.catalog.vms import (
    CompareMove,
    CompareVM,
    CompatibilityReport,
    GetVM,
    GetVmSecurity,
    GrantKeyProtectorAccess,
    ImportVM,
    MoveVM,
    RemoveVM,
    StartVM,
    StopVM,
    VmSecurity,
)
from hosts.remoting.errors import RemotingError
from hosts.remoting.operation import Operation
from hosts.remoting.session import HostSession
from hosts.vault.models import EscrowedPair
from jobs.kinds import Step

from ..escrow.plan import escrow_lines, escrow_pair
from ..import_guardian.plan import import_lines, import_pair
from ..powershell import PowerShellScript

T = TypeVar("T")


class Sender(Protocol):
    """What the preflight reads a host through: an open HostSession, or a Side."""

    def run(self, op: Operation[T]) -> T: ...


class Side(ABC):
    """One host of a migration, its source or its target."""

    def __init__(self, host: Host, role: str) -> None:
        self.host, self.role = host, role

    def __str__(self) -> str:
        return str(self.host)

    @abstractmethod
    def run(self, op: Operation[T], shown_as: str = "") -> T:
        """Send one operation. `shown_as`: the variable Show PowerShell assigns the bytes the operation reads to."""

    @abstractmethod
    def again(self, op: Operation[T]) -> T:
        """Send a clean-up operation, reconnecting once if the connection broke (the usual reason to clean up)."""

    @abstractmethod
    def escrow(self, signing: str, encryption: str, user: AbstractBaseUser | None) -> EscrowedPair:
        """Escrow the pair from this host into the vault."""

    @abstractmethod
    def import_pair(self, pair: EscrowedPair, expected_name: str) -> str:
        """Make this host hold `pair` as a guardian; its name there (`expected_name`: what the preflight predicts)."""


class LiveSide(Side):
    """A host reached over its open session. With a `script`, what is sent is also written there (the preflight
    page reads both hosts live and shows those reads)."""

    def __init__(self, session: HostSession, host: Host, role: str, script: PowerShellScript | None = None) -> None:
        super().__init__(host, role)
        self.session, self.script = session, script

    def run(self, op: Operation[T], shown_as: str = "") -> T:
        if self.script is None:
            return self.session.run(op)
        self.script.on(self.host, self.role).add(op, into=shown_as)
        answer = self.session.run(op)
        self.script.add(*shown_follow_ups(op, answer))  # what the session sent after it: the host reads key protectors
        return answer

    def again(self, op: Operation[T]) -> T:
        try:
            return self.run(op)
        except RemotingError:
            try:
                self.session.close()
                self.session.open()
            except RemotingError:
                pass  # the second attempt below reports it
            return self.session.run(op)

    def escrow(self, signing: str, encryption: str, user: AbstractBaseUser | None) -> EscrowedPair:
        return escrow_pair(self.session, self.host, signing, encryption, user=user)

    def import_pair(self, pair: EscrowedPair, expected_name: str) -> str:
        return import_pair(self.session, self.host, pair)


class ShownLab:
    """Both hosts as the preflight predicts them while a migration is only shown: the script the operations go to,
    and where the VM is registered (by role) in which state, which decides the branches the steps take."""

    def __init__(self, script: PowerShellScript, vm: VmFacts, target_store_exists: bool = True) -> None:
        self.script, self.vm = script, vm
        self.target_store_exists = target_store_exists
        self.states: dict[str, str] = {"source": vm.state}

    def side(self, host: Host, role: str) -> ShownSide:
        return ShownSide(self, host, role)

    def answer(self, role: str, op: Operation[Any]) -> object:
        """What the host would return, as far as the migration's next steps look at it."""
        self.change(role, op)
        if isinstance(op, GetVM | ImportVM):
            state = self.states.get(role)
            return None if state is None else replace(self.vm, state=state)
        if isinstance(op, CompareVM | CompareMove):
            return CompatibilityReport(self.vm.name, self.vm.vm_id)
        if isinstance(op, GetVmSecurity):
            return VmSecurity(tpm_enabled=True)
        if isinstance(op, ReadFileBytes | GrantKeyProtectorAccess):
            return b""  # shown as the variable the read is assigned to
        return [] if isinstance(op, RemoveFiles) else None

    def change(self, role: str, op: Operation[Any]) -> None:
        if isinstance(op, StopVM | ImportVM):
            self.states[role] = "Off"
        elif isinstance(op, StartVM):
            self.states[role] = "Running"
        elif isinstance(op, RemoveVM):
            self.states.pop(role, None)
        elif isinstance(op, MoveVM):
            self.states["target"] = self.states.pop("source")  # a live migration keeps the VM's state


class ShownSide(Side):
    """A host that is sent nothing: each operation becomes a line of the lab's script."""

    def __init__(self, lab: ShownLab, host: Host, role: str) -> None:
        super().__init__(host, role)
        self.lab = lab

    @property
    def script(self) -> PowerShellScript:
        return self.lab.script.on(self.host, self.role)

    def run(self, op: Operation[T], shown_as: str = "") -> T:
        self.script.add(op, into=shown_as)
        return cast(T, self.lab.answer(self.role, op))

    def again(self, op: Operation[T]) -> T:
        return self.run(op)

    def escrow(self, signing: str, encryption: str, user: AbstractBaseUser | None) -> EscrowedPair:
        escrow_lines(self.script, signing, encryption)
        return EscrowedPair(signing_thumbprint=signing, encryption_thumbprint=encryption)  # not stored: shown only

    def import_pair(self, pair: EscrowedPair, expected_name: str) -> str:
        # A pair escrowed above is carried over in the variables its escrow read; a stored one is the vault's download.
        store_exists = self.lab.target_store_exists  # as the preflight read it
        import_lines(self.script, pair, expected_name, from_vault=pair.pk is not None, store_exists=store_exists)
        return expected_name


class ShownRun:
    """The run of a migration that is only shown (jobs.kinds.Run): each step becomes a comment above its lines."""

    user = None

    def __init__(self, script: PowerShellScript) -> None:
        self.script = script

    @contextmanager
    def step(self, title: str, destructive: bool = False) -> Iterator[Step]:
        self.script.comment(title)
        yield Step(title=title, needed=True)

    def record(self, key: str, value: object) -> None:
        return None

    def check_cancelled(self) -> None:
        return None
