"""The cmdlets the simulated host implements: one registry, PowerShell-like parameter binding, Windows' errors.

`CMDLETS` is the one list of implemented cmdlets (the console's catalog is tested against it). Each entry takes an
`Invocation` and returns the output objects; a terminating error is a raised `CmdletError`, non-terminating ones are
appended to `invocation.errors`. Lookups are case-insensitive, as in PowerShell.

Parameter sets are declared as in Microsoft's docs: `parameters` are in every set, `sets` maps a set's name to its own
parameters, and a trailing `!` marks a mandatory one (`"Path! Copy! GenerateNewId"`). Binding picks the set like
PowerShell and leaves its name in `inv.parameter_set` for the body to branch on. `by_value` binds a parameter from one
piped object of its .NET type, as PowerShell binds ValueFromPipeline (a report piped into Import-VM). `aliases` are a
parameter's other names (`FilePath` for `Path`), `lenient` names parameters only a host without that strictness
switch accepts (the simulator's older, kinder binding), and `kind` is what Get-Command reports: a cmdlet, or a
function (the HgsClient module's commands are functions, which a JEA role must list under VisibleFunctions).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from psrpcore.types import PSSecureString

from hypervsim.model import HostModel, LabContext
from hypervsim.types import Secret

__all__ = [
    "CMDLETS", "CmdletError", "Invocation", "LabContext", "cmdlet", "command_not_found", "command_type", "find_cmdlet",
    "invoke", "missing_mandatory", "unresolved_parameter_set",
]  # fmt: skip

COMMON_PARAMETERS = [
    *("Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ErrorVariable", "WarningVariable"),
    *("InformationVariable", "OutVariable", "OutBuffer", "PipelineVariable"),
]
SHOULD_PROCESS_PARAMETERS = ("WhatIf", "Confirm")
NOT_RECOGNISED = (
    "The term '{0}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check "
    "the spelling of the name, or if a path was included, verify that the path is correct and try again."
)
ALL_SETS = "__AllParameterSets"  # PowerShell's name for the one set of a cmdlet that declares none
BINDING_EXCEPTION = [
    "System.Management.Automation.ParameterBindingException",
    "System.Management.Automation.RuntimeException",
    "System.SystemException",
    "System.Exception",
]


class CmdletError(Exception):
    """An error record as Windows would write it. fqid without a comma gets the command's class appended."""

    def __init__(
        self,
        message: str,
        fqid: str,
        category: str = "NotSpecified",
        exception_type: list[str] | None = None,
        target: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fqid = fqid
        self.category = category
        self.exception_type = exception_type or ["System.Exception"]
        self.target = target

    def qualify(self, command_class: str) -> CmdletError:
        if "," not in self.fqid:
            self.fqid = f"{self.fqid},{command_class}"
        return self


def command_not_found(name: str) -> CmdletError:
    """What PowerShell answers for a command it does not have, or a JEA endpoint does not show."""
    return CmdletError(
        NOT_RECOGNISED.format(name),
        fqid="CommandNotFoundException",
        category="ObjectNotFound",
        exception_type=[
            "System.Management.Automation.CommandNotFoundException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
        ],
        target=name,
    )


def missing_mandatory(names: list[str]) -> CmdletError:
    return CmdletError(
        f"Cannot process command because of one or more missing mandatory parameters: {' '.join(names)}.",
        "MissingMandatoryParameter",
        "InvalidArgument",
        BINDING_EXCEPTION,
    )


def unresolved_parameter_set() -> CmdletError:
    return CmdletError(
        "Parameter set cannot be resolved using the specified named parameters. One or more parameters issued cannot "
        "be used together or an insufficient number of parameters were provided.",
        "AmbiguousParameterSet",
        "InvalidArgument",
        BINDING_EXCEPTION,
    )


class NoPipelineInput(Exception):
    """Downstream in a pipeline whose upstream wrote nothing: the cmdlet never processes a record, so no output."""


@dataclass
class Invocation:
    """One command of a pipeline: the host it runs on, its bound parameters and its pipeline input."""

    host: HostModel
    lab: LabContext
    parameters: dict[str, Any] = field(default_factory=dict)
    input: list[Any] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    errors: list[CmdletError] = field(default_factory=list)
    arguments: list[Any] = field(default_factory=list)  # positional arguments, in order
    piped: bool = False  # runs downstream in a pipeline (or on client input): `input` is what reached it
    parameter_set: str = ALL_SETS  # the set binding resolved, for the body to branch on
    sees: Callable[[str], bool] = lambda command: True  # whether the session exposes a command (JEA hides some)

    def _key(self, name: str) -> str | None:
        return next((k for k in self.parameters if k.casefold() == name.casefold()), None)

    def has(self, name: str) -> bool:
        return self._key(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        key = self._key(name)
        return default if key is None else self.parameters[key]

    def switch(self, name: str) -> bool:
        """A switch is on when given without a value (pypsrp sends None) or with a true value."""
        key = self._key(name)
        if key is None:
            return False
        value = self.parameters[key]
        return value is None or bool(value)

    def strings(self, name: str) -> list[str]:
        """A [string[]] parameter: one string or an array of them."""
        value = self.get(name)
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        return [str(value)]

    def secret(self, name: str) -> str | None:
        value = self.get(name)
        if isinstance(value, PSSecureString):
            return Secret(value.decrypt())
        return None if value is None else Secret(str(value))

    def require_input(self, *names: str) -> None:
        """Mandatory parameters that can come from the pipeline. PowerShell binds those per input object, so after an
        upstream command that wrote nothing (`Get-VM | Get-VMKeyProtector` on a host without VMs) the cmdlet simply
        does not run: no output, no error. Anywhere else they are checked like any mandatory parameter."""
        if self.piped and not self.input:
            raise NoPipelineInput
        self.require(*names)

    def require(self, *names: str) -> None:
        missing = [n for n in names if self.get(n) is None]
        if missing:
            raise missing_mandatory(missing)


@dataclass(frozen=True)
class ParameterSet:
    name: str
    parameters: frozenset[str]
    mandatory: tuple[str, ...]


@dataclass(frozen=True)
class CmdletSpec:
    name: str
    command_class: str
    parameters: tuple[str, ...]
    positional: tuple[str, ...]
    body: Callable[[Invocation], list[Any]]
    should_process: bool
    locks_itself: bool
    sets: tuple[ParameterSet, ...]
    default_set: str | None = None
    by_value: tuple[tuple[str, str], ...] = ()  # (parameter, .NET type) bound from pipeline input of that type
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, parameter)
    lenient: tuple[str, tuple[str, ...]] | None = None  # (strictness switch, parameters only a lenient host takes)
    kind: str = "Cmdlet"  # or "Function", as Get-Command reports it

    def __call__(self, inv: Invocation) -> list[Any]:
        # One cmdlet at a time per host, so a reader never sees a half-made change. A cmdlet that spans hosts
        # (Move-VM) takes its locks itself, in one global order.
        with nullcontext() if self.locks_itself else inv.host.lock:
            return self._run(inv)

    def _run(self, inv: Invocation) -> list[Any]:
        try:
            inv.parameters = self.bind(inv)
            inv.arguments = []
            output = self.body(inv)
        except NoPipelineInput:
            return []
        except CmdletError as exc:
            raise exc.qualify(self.command_class) from None
        finally:
            for error in inv.errors:
                error.qualify(self.command_class)
        action = str(inv.get("ErrorAction", "Continue")).casefold()
        if inv.errors and action == "stop":
            raise inv.errors.pop(0)
        if action in ("silentlycontinue", "ignore"):
            inv.errors.clear()  # such errors never reach the error stream, so the client never sees them
        return output

    def bind(self, inv: Invocation) -> dict[str, Any]:
        """Canonical parameter names, accepting any case, aliases and unambiguous prefixes, as PowerShell does."""
        known = [p for p in self.parameters if p not in self._refused(inv)] + COMMON_PARAMETERS
        if self.should_process:
            known += SHOULD_PROCESS_PARAMETERS
        aliases = {alias: name for alias, name in self.aliases if name in known}
        bound: dict[str, Any] = {}
        for given, value in inv.parameters.items():
            canonical = self._canonical(given, known + list(aliases))
            bound[aliases.get(canonical, canonical)] = value
        for position, value in enumerate(inv.arguments):
            if position >= len(self.positional) or self.positional[position] in bound:
                raise CmdletError(
                    f"A positional parameter cannot be found that accepts argument '{value}'.",
                    "PositionalParameterNotFound",
                    "InvalidArgument",
                    BINDING_EXCEPTION,
                )
            bound[self.positional[position]] = value
        for parameter, type_name in self.by_value:
            types = [getattr(getattr(o, "PSObject", None), "type_names", [""])[0] for o in inv.input]
            if parameter not in bound and len(types) == 1 and types[0] == type_name:
                bound[parameter] = inv.input[0]
        inv.parameter_set = self._resolve_set(bound, inv)
        return bound

    def _refused(self, inv: Invocation) -> tuple[str, ...]:
        """Parameters this host does not have: the lenient ones, once their strictness switch is on."""
        if self.lenient is None or not getattr(inv.host.strict, self.lenient[0]):
            return ()
        return self.lenient[1]

    def _resolve_set(self, bound: dict[str, Any], inv: Invocation) -> str:
        """PowerShell's choice: the sets holding every given parameter; of several, the default set, else the only
        one whose mandatory parameters are all given. Mandatory ones still missing may come from pipeline input."""
        given = {n for n in bound if n not in COMMON_PARAMETERS and n not in SHOULD_PROCESS_PARAMETERS}
        candidates = [s for s in self.sets if given <= s.parameters]
        if len(candidates) > 1:
            complete = [s for s in candidates if all(m in bound for m in s.mandatory)]
            default = [s for s in candidates if s.name == self.default_set]
            candidates = default or (complete if len(complete) == 1 else [])
        if not candidates:
            raise unresolved_parameter_set()
        chosen = candidates[0]
        missing = [m for m in chosen.mandatory if m not in bound]
        if missing and not inv.piped:
            raise missing_mandatory(missing)
        if missing and not inv.input:
            raise NoPipelineInput
        return chosen.name

    def _canonical(self, given: str, known: list[str]) -> str:
        name = given.lstrip("-")
        exact = [k for k in known if k.casefold() == name.casefold()]
        if exact:
            return exact[0]
        matches = [k for k in known if k.casefold().startswith(name.casefold())]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CmdletError(
                f"A parameter cannot be found that matches parameter name '{name}'.",
                "NamedParameterNotFound",
                "InvalidArgument",
                BINDING_EXCEPTION,
            )
        options = " ".join(f"-{m}" for m in matches)
        raise CmdletError(
            f"Parameter cannot be processed because the parameter name '{name}' is ambiguous. "
            f"Possible matches include: {options}.",
            "AmbiguousParameter",
            "InvalidArgument",
            BINDING_EXCEPTION,
        )


class _CaseInsensitiveTable(dict[str, CmdletSpec]):
    """PowerShell resolves command names case-insensitively; so does this table."""

    def _canonical(self, name: object) -> object:
        if isinstance(name, str):
            return next((k for k in self.keys() if k.casefold() == name.casefold()), name)
        return name

    def __getitem__(self, name: str) -> CmdletSpec:
        return super().__getitem__(str(self._canonical(name)))

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self._canonical(name))

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(str(self._canonical(name)), default)


CMDLETS: dict[str, Callable[[Invocation], list[Any]]] = _CaseInsensitiveTable()  # type: ignore[assignment]


def cmdlet(
    name: str,
    command_class: str,
    parameters: str = "",
    positional: str = "",
    should_process: bool = False,
    locks_itself: bool = False,
    sets: dict[str, str] | None = None,
    default_set: str | None = None,
    by_value: dict[str, str] | None = None,
    aliases: dict[str, str] | None = None,
    lenient: tuple[str, str] | None = None,
    kind: str = "Cmdlet",
) -> Callable[[Callable[[Invocation], list[Any]]], CmdletSpec]:
    """Register a cmdlet implementation under its PowerShell name with its declared parameters and parameter sets.

    lenient: (strictness switch, "Param ...") — parameters the simulator accepts only while that switch is off."""
    common = parameters.split()
    declared = [ParameterSet(set_name, *_set_members(common + text.split())) for set_name, text in (sets or {}).items()]
    every = dict.fromkeys(n.rstrip("!") for n in common + [w for text in (sets or {}).values() for w in text.split()])

    def register(body: Callable[[Invocation], list[Any]]) -> CmdletSpec:
        spec = CmdletSpec(
            name,
            command_class,
            tuple(every),
            tuple(positional.split()),
            body,
            should_process,
            locks_itself,
            tuple(declared) or (ParameterSet(ALL_SETS, *_set_members(common)),),
            default_set,
            tuple((by_value or {}).items()),
            tuple((aliases or {}).items()),
            (lenient[0], tuple(lenient[1].split())) if lenient else None,
            kind,
        )
        CMDLETS[name] = spec
        return spec

    return register


def _set_members(words: list[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    return frozenset(w.rstrip("!") for w in words), tuple(w.rstrip("!") for w in words if w.endswith("!"))


def find_cmdlet(name: str) -> Callable[[Invocation], list[Any]] | None:
    return CMDLETS.get(name)


def command_type(name: str) -> str:
    """The command's CommandType as Get-Command reports it: Cmdlet, or Function."""
    return str(getattr(CMDLETS.get(name), "kind", "Cmdlet"))


def invoke(
    host: HostModel, name: str, parameters: dict[str, Any] | None = None, *, input: list[Any] | None = None
) -> tuple[list[Any], list[CmdletError]]:
    """Run one cmdlet in-process (tests, demo seeding): its output and non-terminating errors; raises CmdletError.

    Passing `input` (even []) runs it as if piped from a command that wrote those objects."""
    lab = host.lab or LabContext(host.state_dir / "share")
    inv = Invocation(host, lab, dict(parameters or {}), list(input or []), piped=input is not None)
    return CMDLETS[name](inv), inv.errors


# Importing the families registers their cmdlets.
from hypervsim.cmdlets import files, hgs, shares, system, utility, vmconfig, vms  # noqa: E402,F401
