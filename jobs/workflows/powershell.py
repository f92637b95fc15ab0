"""Show PowerShell: the commands a workflow will send, as lines a person can paste and run in order by hand.

Every preflight page renders its operations through `PowerShellScript`, so the lines are the catalog's own
statements (hosts.remoting.operation.render_cmd) with passwords as a Read-Host placeholder. A byte array the job
reads and passes on (a key protector, a file's bytes) becomes a variable assigned from the command that read it —
`$kp = Get-VMKeyProtector -VMName 'X'` … `ConvertTo-HgsKeyProtector -Bytes $kp` — instead of its size; temporary
names carry a sample token instead of "<random>", so the lines run as shown.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from django.utils.translation import gettext as _

from hosts.remoting.catalog.guardians import TEMP_DIR
from hosts.remoting.operation import Cmd, Operation, render_cmd

# Parameters that take a byte array the job read earlier, and which kind of bytes ("channel") they take.
BYTE_INPUTS = {
    ("Set-Content", "Value"): "file",
    ("ConvertTo-HgsKeyProtector", "Bytes"): "kp",
    ("Set-VMKeyProtector", "KeyProtector"): "kp",
}


def sample_token() -> str:
    """A concrete stand-in for the random part of a temporary name, so the shown lines run as they are."""
    return secrets.token_hex(4)


def sample_pfx_paths(token: str) -> list[str]:
    """The temporary PFX paths of an escrow or import, as the job names them (gc-<token>-signing.pfx, …)."""
    return [f"{TEMP_DIR}\\gc-{token}-signing.pfx", f"{TEMP_DIR}\\gc-{token}-encryption.pfx"]


@runtime_checkable
class KeyProtectorReader(Protocol):
    """An operation that sends VMs' key protectors back to the host (catalog.keyprotectors.ReadKeyProtectors):
    which of its statements carries which VM's bytes (as the VM is named in Get-VMKeyProtector -VMName)."""

    def key_protector_of(self) -> dict[int, str]: ...


@dataclass
class _Statement:
    host: str
    cmds: list[Cmd]
    into: str = ""  # the variable this statement's output is assigned to, when a later statement uses it
    used: bool = False
    inputs: dict[tuple[int, str], tuple[str, _Statement | None]] = field(default_factory=dict)


@dataclass
class _Bytes:
    """Where a channel's current byte array comes from: a statement's output, or a value bound by the page."""

    expression: str  # what a consumer writes: $kp, $grantedKp.RawData
    statement: _Statement | None = None


class PowerShellScript:
    """The commands a workflow sends, in order and host by host, as PowerShell lines."""

    def __init__(self) -> None:
        self.items: list[str | _Statement] = []  # a str is a comment line
        self.host = ""
        self.current: dict[str, _Bytes] = {}
        self.variables: dict[str, _Bytes] = {}
        # Each VM's key protector as read (Get-VMKeyProtector -VMName X), for a later statement that names its VM
        # (ReadKeyProtectors sends every VM's bytes back in one pipeline: each must take its own VM's variable).
        self.key_protectors: dict[tuple[str, str], _Bytes] = {}  # by (host, VM)

    def comment(self, text: str) -> PowerShellScript:
        self.items.append(f"# {text}")
        return self

    def on(self, host: Any, role: str = "") -> PowerShellScript:
        """The next statements run on `host`: a comment line says so whenever the host changes."""
        if str(host) != self.host:
            self.host = str(host)
            said = {"host": host, "role": role}
            self.comment(_("On %(host)s (%(role)s):") % said if role else _("On %(host)s:") % said)
        return self

    def bind(self, channel: str, variable: str, expression: str, note: str = "") -> PowerShellScript:
        """A byte array the job has from elsewhere (the vault, data kept by an earlier job): assigned here."""
        if note:
            self.comment(note)
        self.items.append(f"{variable} = {expression}")
        self.current[channel] = self.variables[variable] = _Bytes(variable)
        return self

    def use(self, channel: str, variable: str) -> PowerShellScript:
        """The next consumer of `channel` takes `variable`, assigned earlier (by `bind` or `add(..., into=)`)."""
        self.current[channel] = self.variables[variable]
        return self

    def add(self, *operations: Operation[Any], into: str = "") -> PowerShellScript:
        for op in operations:
            of_vm = op.key_protector_of() if isinstance(op, KeyProtectorReader) else {}
            for number, cmds in enumerate(op.statements()):
                self._statement(list(cmds), into, of_vm.get(number, ""))
        return self

    def _statement(self, cmds: list[Cmd], into: str, of_vm: str = "") -> None:
        statement = _Statement(self.host, cmds)
        for index, cmd in enumerate(cmds):
            for param, value in cmd.params.items():
                channel = BYTE_INPUTS.get((cmd.name, param))
                own = self.key_protectors.get((self.host, of_vm)) if channel == "kp" and of_vm else None
                if channel and isinstance(value, bytes | bytearray) and (own or channel in self.current):
                    source = own or self.current[channel]
                    statement.inputs[(index, param)] = (source.expression, source.statement)
                    if source.statement is not None:
                        source.statement.used = True
        self.items.append(statement)
        last = cmds[-1].name
        if last == "Get-VMKeyProtector":
            self._key_protector_read(statement, str(cmds[-1].params.get("VMName", "")), into)
        elif last == "Grant-HgsKeyProtectorAccess":
            self._output(statement, "kp", into or "$grantedKp", ".RawData")
        elif last == "Revoke-HgsKeyProtectorAccess":
            self._output(statement, "kp", into or "$revokedKp", ".RawData")
        elif last == "Get-Content" and cmds[-1].params.get("Encoding") == "Byte":
            self._output(statement, "file", into or "$fileBytes")

    def _key_protector_read(self, statement: _Statement, vm: str, into: str) -> None:
        """$kp for the first VM's key protector, $kp2, $kp3… for other VMs (a VM read again keeps its variable); a
        read of every VM at once (no -VMName) is the plain $kp of its statement."""
        known = self.key_protectors.get((self.host, vm)) if vm else None
        numbered = "$kp" if not self.key_protectors else f"$kp{len(self.key_protectors) + 1}"
        variable = into or (known.expression if known is not None else numbered if vm else "$kp")
        self._output(statement, "kp", variable)
        if vm:
            self.key_protectors[(self.host, vm)] = self.current["kp"]

    def _output(self, statement: _Statement, channel: str, variable: str, member: str = "") -> None:
        statement.into = variable
        self.current[channel] = self.variables[variable] = _Bytes(variable + member, statement)

    def commands(self) -> list[tuple[str, Cmd]]:
        """(host, command) of every statement, in order: what a test compares with what a host received."""
        return [(item.host, cmd) for item in self.items if isinstance(item, _Statement) for cmd in item.cmds]

    def lines(self) -> list[str]:
        out: list[str] = []
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
                continue
            for expression, source in item.inputs.values():
                if source is not None and source.host != item.host:
                    variable = expression.split(".")[0]
                    carry = _("%(variable)s holds what was read on %(host)s above: carry its value over first")
                    out.append("# " + carry % {"variable": variable, "host": source.host})
            out.append(_render_statement(item))
        return out


def _render_statement(statement: _Statement) -> str:
    parts = []
    for index, cmd in enumerate(statement.cmds):
        params = dict(cmd.params)
        markers = {}
        for (at, param), (expression, _source) in statement.inputs.items():
            if at == index:
                marker = f"\x00{param}\x00"
                params[param], markers[marker] = marker, expression
        text = render_cmd(Cmd(cmd.name, params))
        for marker, expression in markers.items():
            text = text.replace(f"'{marker}'", expression)
        parts.append(text)
    line = " | ".join(parts)
    return f"{statement.into} = {line}" if statement.into and statement.used else line


def powershell_of(operations: list[Operation[Any]]) -> list[str]:
    return PowerShellScript().add(*operations).lines()


def by_hand(*operations: Operation[Any]) -> str:
    """What a person runs to finish a step the console could not (a remedy in a page or a job's log), on one line
    and rendered like Show PowerShell, so a name from a host is quoted the one way (never pasted into an f-string)."""
    return "; ".join(powershell_of(list(operations)))
