"""What a remote operation is: statements of cmdlets with parameters, a parser of their output, and a rendering
as the equivalent PowerShell lines for people to read.

Operations never hold script text: a Cmd is a cmdlet name and parameter values, sent with add_cmdlet /
add_parameter, so a value can never become code on the host.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from .errors import RemoteCommandError

T = TypeVar("T")


class UndeclaredCmdlet(RuntimeError):
    """A programming error: an operation sends a cmdlet missing from its CMDLETS."""


class Secret(str):
    """A parameter value sent as a SecureString. It renders as a placeholder and never shows in repr()."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('********')"


@dataclass(frozen=True, repr=False)
class Credential:
    """A parameter value sent as a PSCredential (the user name and a SecureString password). It renders as a prompt
    for the password and never shows the password in repr()."""

    user: str
    password: Secret

    def __repr__(self) -> str:
        return f"Credential({self.user!r}, Secret('********'))"


class Switch:
    """A switch parameter (`-Force`): present, without a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SWITCH"


SWITCH = Switch()


class Long(int):
    """A [long] parameter value (`-MemoryStartupBytes`): sent as an Int64, since 4 GB does not fit an Int32."""


@dataclass(frozen=True)
class Cmd:
    """One command of a statement: a cmdlet name and its parameters, in order."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """What one invocation returned: output objects and error records, and both in the order they arrived.

    `received` is filled only by a recording session (the capture kit): every pipeline message as it arrived, as
    (MS-PSRP message type name, its CLIXML text)."""

    output: list[Any] = field(default_factory=list)
    errors: list[RemoteCommandError] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)  # ("output", obj) | ("error", RemoteCommandError)
    received: list[tuple[str, str]] = field(default_factory=list)


class Operation(Generic[T]):
    """Base of every catalog operation. Subclasses are dataclasses that set `name` and `read_only` and implement
    `statements()` and `parse()`.

    `errors_are_fatal`: when True (the default) the first error record ends the operation with that
    RemoteCommandError; operations that expect some statements to fail (an absent store, a deleted VM) set it
    False and read `result.errors` in parse().
    """

    name: ClassVar[str] = "operation"
    read_only: ClassVar[bool] = True
    errors_are_fatal: ClassVar[bool] = True

    def statements(self) -> list[list[Cmd]]:
        raise NotImplementedError

    def parse(self, result: PipelineResult) -> T:
        raise NotImplementedError

    def read(self, result: PipelineResult) -> T:
        """What running the operation gives for this result: its first error when errors are fatal, else parse()."""
        if result.errors and self.errors_are_fatal:
            raise result.errors[0]
        return self.parse(result)

    def follow_up(self, parsed: T) -> Operation[T] | None:
        """A second pipeline that completes `parsed`, for what the console can only ask once it has read the first
        one's answers (a key protector's bytes, sent back to be read); None when there is nothing to ask.
        HostSession.run sends it and returns its result in place of `parsed`."""
        return None

    @classmethod
    def cmdlets(cls) -> set[str]:
        """Every cmdlet this operation can ever send (for the catalog/simulator check)."""
        return set(getattr(cls, "CMDLETS", ()))

    def check_declared(self) -> None:
        """Refuse to send a cmdlet the operation does not declare in CMDLETS: the declared lists are what the
        simulator and the generated JEA role are checked against, so they must never fall behind the code."""
        undeclared = {c.name for statement in self.statements() for c in statement} - self.cmdlets()
        if undeclared:
            raise UndeclaredCmdlet(f"{type(self).__name__} sends {sorted(undeclared)} without declaring it in CMDLETS")

    def has_secrets(self) -> bool:
        return any(
            isinstance(v, Secret | Credential)
            for statement in self.statements()
            for c in statement
            for v in c.params.values()
        )

    def describe(self) -> str:
        """A short label of what runs, for the log: 'Get-VM' or 'Get-VMSecurity ×20, Get-VMKeyProtector ×20'."""
        counts = Counter(c.name for statement in self.statements() for c in statement)
        return ", ".join(name if n == 1 else f"{name} ×{n}" for name, n in counts.items())


_BARE_WORD = re.compile(r"^[A-Za-z0-9_.:\\-]+$")


def quote(value: Any) -> str:
    """A PowerShell literal for a parameter value. Strings use single quotes, where only ' needs doubling
    (PowerShell also treats the typographic quotes ‘ ’ ‚ ‛ as single quotes, so those are doubled too)."""
    if isinstance(value, Secret):
        return "(Read-Host -AsSecureString '<password>')"
    if isinstance(value, Credential):
        return f"(Get-Credential -UserName {quote(value.user)} -Message 'Password of the share account')"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if value is None:
        return "$null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return f"([byte[]]<{len(value)} bytes>)"
    if isinstance(value, list | tuple):
        return "@(" + ", ".join(quote(v) for v in value) + ")"
    text = str(value)
    for q in ("'", "\u2018", "\u2019", "\u201a", "\u201b"):
        text = text.replace(q, q + q)
    return f"'{text}'"


def render_cmd(cmd: Cmd) -> str:
    parts = [cmd.name]
    for name, value in cmd.params.items():
        if isinstance(value, Switch):
            parts.append(f"-{name}")
        elif isinstance(value, bool):
            parts.append(f"-{name}:{quote(value)}")
        else:
            parts.append(f"-{name} {quote(value)}")
    return " ".join(parts)


def render_powershell(op: Operation[Any]) -> list[str]:
    """The PowerShell lines equivalent to the operation, one statement a line; secrets become a placeholder."""
    return [" | ".join(render_cmd(c) for c in statement) for statement in op.statements()]


WILDCARD_CHARACTERS = "`*?[]"


def literal_name(name: str) -> str:
    """A VM name as a wildcard pattern that matches only that VM.

    Hyper-V's -Name/-VMName take wildcard patterns, so a VM literally named `*` or `Win11-?` would make a command
    act on other VMs too. Each of ` * ? [ ] gets a backtick before it, as PowerShell's WildcardPattern.Escape does;
    the cmdlet takes the backticks off again, and the line Show PowerShell renders still runs as shown."""
    return "".join(f"`{char}" if char in WILDCARD_CHARACTERS else char for char in name)
