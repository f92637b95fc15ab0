"""Commands a JEA endpoint always exposes: Select-Object, as Windows PowerShell 5.1 runs it, and Get-Command.

Select-Object -Property makes one new PSCustomObject per input object holding only the named properties (note
properties, so they serialize in <MS>), typed "Selected.<first type of the input>" then PSCustomObject. Clients use it
to shrink what crosses the wire (a full Get-VM object is ~1.4 KB, five properties ~0.2 KB).
"""

from __future__ import annotations

import datetime as dt
import enum
import fnmatch
import uuid
from typing import Any

from psrpcore.types import CommandTypes

from hypervsim import wildcards
from hypervsim.cmdlets import CMDLETS, CmdletError, Invocation, cmdlet, command_not_found, command_type
from hypervsim.types import dotnet_object

PS_CUSTOM_OBJECT = "System.Management.Automation.PSCustomObject"
ARGUMENT_EXCEPTION = [
    "System.Management.Automation.PSArgumentException",
    "System.ArgumentException",
    "System.SystemException",
    "System.Exception",
]
NOT_SUPPORTED = ["System.NotSupportedException", "System.SystemException", "System.Exception"]
_WILDCARD = set("*?[")

# .NET names of values that are plain Python objects here (psrpcore maps them the same way on the wire).
_PRIMITIVE_TYPES: list[tuple[type, str]] = [
    (bool, "System.Boolean"),
    (int, "System.Int32"),
    (float, "System.Double"),
    (str, "System.String"),
    (bytes, "System.Byte[]"),
    (bytearray, "System.Byte[]"),
    (uuid.UUID, "System.Guid"),
    (dt.datetime, "System.DateTime"),
    (dt.timedelta, "System.TimeSpan"),
    (list, "System.Object[]"),
    (tuple, "System.Object[]"),
    (dict, "System.Collections.Hashtable"),
]


def type_name_of(value: Any) -> str:
    """The first .NET type name PowerShell would report for a value."""
    meta = getattr(value, "PSObject", None)
    if meta is not None and meta.type_names:
        return str(meta.type_names[0])
    return next((name for kind, name in _PRIMITIVE_TYPES if isinstance(value, kind)), "System.Object")


def properties_of(value: Any) -> list[tuple[str, Any]]:
    """(name, value) of every property, in PSObject.Properties order: instance/extended members, then adapted."""
    meta = getattr(value, "PSObject", None)
    if meta is not None and (meta.extended_properties or meta.adapted_properties):
        return [(p.name, p.get_value(value)) for p in [*meta.extended_properties, *meta.adapted_properties]]
    if isinstance(value, str | bytes | bytearray | list | tuple):
        extra = [("Count", len(value))] if isinstance(value, list | tuple) else []
        return [("Length", len(value)), *extra]
    return []


def text_of(value: Any) -> str:
    """How a value shows inside a PSCustomObject's ToString (en-US culture, as the lab hosts run)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value.name)
    meta = getattr(value, "PSObject", None)
    if meta is not None and meta.to_string is not None:
        return str(meta.to_string)
    if isinstance(value, dt.datetime):
        return f"{value.month}/{value.day}/{value.year} {value.strftime('%I:%M:%S %p').lstrip('0')}"
    if isinstance(value, dt.timedelta):
        hours, rest = divmod(int(value.total_seconds()), 3600)
        return f"{hours:02}:{rest // 60:02}:{rest % 60:02}"
    if isinstance(value, bytes | bytearray | list | tuple):
        return type_name_of(value)
    return str(value)


def _names(inv: Invocation, parameter: str) -> list[str]:
    value = inv.get(parameter)
    values = value if isinstance(value, list | tuple) else [] if value is None else [value]
    if any(not isinstance(v, str) for v in values):
        # Calculated properties are script blocks in hashtables: a script, which a console never sends.
        raise CmdletError(
            "The hypervsim host supports property names only (no calculated properties).",
            "NotSupported",
            "NotImplemented",
            NOT_SUPPORTED,
        )
    return [str(v) for v in values]


def _selection(inv: Invocation, value: Any, wanted: list[str], excluded: list[str]) -> list[tuple[str, Any]]:
    """The properties a -Property list picks from one object: real names, first match wins, missing ones $null."""
    available = properties_of(value)
    chosen: list[tuple[str, Any]] = []
    for pattern in wanted:
        if _WILDCARD & set(pattern):
            matches = [(n, v) for n, v in available if fnmatch.fnmatchcase(n.casefold(), pattern.casefold())]
        else:
            found = [(n, v) for n, v in available if n.casefold() == pattern.casefold()]
            matches = found[:1] or [(pattern, None)]  # a name the object lacks still becomes a $null property
        for name, prop_value in matches:
            if any(excluded_matches(name, excluded)):
                continue
            if any(n.casefold() == name.casefold() for n, _ in chosen):
                if not _WILDCARD & set(pattern):
                    inv.errors.append(_already_exists(name))
                continue
            chosen.append((name, prop_value))
    return chosen


def excluded_matches(name: str, excluded: list[str]) -> list[str]:
    return [p for p in excluded if fnmatch.fnmatchcase(name.casefold(), p.casefold())]


def _already_exists(name: str) -> CmdletError:
    return CmdletError(
        f'The property cannot be processed because the property "{name}" already exists.',
        "AlreadyExistingUserSpecifiedPropertyNoExpand",
        "InvalidOperation",
        ARGUMENT_EXCEPTION,
        name,
    )


def selected_object(value: Any, chosen: list[tuple[str, Any]]) -> Any:
    shown = "; ".join(f"{name}={text_of(v)}" for name, v in chosen)
    return dotnet_object(
        [f"Selected.{type_name_of(value)}", PS_CUSTOM_OBJECT], {}, dict(chosen), to_string=f"@{{{shown}}}"
    )


def _expand(inv: Invocation, value: Any, name: str) -> list[Any]:
    found = [v for n, v in properties_of(value) if n.casefold() == name.casefold()]
    if not found:
        inv.errors.append(
            CmdletError(
                f'Property "{name}" cannot be found.', "ExpandPropertyNotFound", "InvalidArgument", ARGUMENT_EXCEPTION
            )
        )
        return []
    expanded = found[0]
    if isinstance(expanded, list | tuple):  # an enumerable property is unrolled into the pipeline
        return list(expanded)
    return [] if expanded is None else [expanded]


def _window(inv: Invocation, objects: list[Any]) -> list[Any]:
    """-Skip, then -First and/or -Last (both: the first N followed by the last M, as PowerShell does)."""
    objects = objects[int(inv.get("Skip") or 0) :]
    first, last = inv.get("First"), inv.get("Last")
    if first is None and last is None:
        return objects
    head = objects[: int(first)] if first is not None else []
    tail = objects[len(head) :][-int(last) :] if last else []
    return head + tail


@cmdlet(
    "Select-Object",
    "Microsoft.PowerShell.Commands.SelectObjectCommand",
    "InputObject Property ExcludeProperty ExpandProperty Unique First Last Skip",
    "Property",
    locks_itself=True,  # reads only its pipeline input, never the host's state
)
def select_object(inv: Invocation) -> list[Any]:
    objects = [inv.get("InputObject")] if inv.has("InputObject") else list(inv.input)
    wanted, excluded = _names(inv, "Property"), _names(inv, "ExcludeProperty")
    if excluded and not wanted:
        wanted = ["*"]
    out: list[Any] = []
    for value in _window(inv, objects):
        if inv.has("ExpandProperty"):
            out += _expand(inv, value, str(inv.get("ExpandProperty")))
        elif wanted:
            out.append(selected_object(value, _selection(inv, value, wanted, excluded)))
        else:
            out.append(value)
    return _unique(out) if inv.switch("Unique") else out


def _unique(objects: list[Any]) -> list[Any]:
    """-Unique: the first of objects that look the same (same values, so the same ToString)."""
    seen: dict[str, Any] = {}
    for value in objects:
        seen.setdefault(text_of(value), value)
    return list(seen.values())


# The module each command comes from, as Get-Command reports it in Source/ModuleName.
MODULES = {
    "Hyper-V": "Get-VM Get-VMSecurity Get-VMKeyProtector Set-VMKeyProtector Enable-VMTPM Disable-VMTPM Start-VM "
    "Stop-VM Remove-VMSavedState Get-VMSnapshot Get-VMHost Export-VM Compare-VM Import-VM Move-VM Remove-VM",
    "Microsoft.PowerShell.Management": "Get-ChildItem Get-Item New-Item Remove-Item Test-Path Get-Content Set-Content",
    "PKI": "Export-PfxCertificate Import-PfxCertificate",
    "CimCmdlets": "Get-CimInstance",
    "Microsoft.PowerShell.Utility": "Select-Object",
    "Microsoft.PowerShell.Core": "Get-Command",
}
_MODULE_OF = {name.casefold(): module for module, names in MODULES.items() for name in names.split()}


def command_info(name: str, kind: str) -> Any:
    """A CmdletInfo or FunctionInfo, with the properties a caller checks: Name, CommandType and its module."""
    module = _MODULE_OF.get(name.casefold(), "HgsClient" if kind == "Function" else "")
    return dotnet_object(
        [f"System.Management.Automation.{kind}Info", "System.Management.Automation.CommandInfo"],
        {"Name": name, "CommandType": CommandTypes[kind], "Source": module, "ModuleName": module},
        to_string=name,
    )


@cmdlet(
    "Get-Command",
    "Microsoft.PowerShell.Commands.GetCommandCommand",
    "Name CommandType Module",
    "Name",
    locks_itself=True,  # reads only the command table
)
def get_command(inv: Invocation) -> list[Any]:
    """The commands the session shows (a JEA endpoint only its visible ones), by name or wildcard pattern."""
    shown = [name for name in CMDLETS if inv.sees(name)]
    patterns = inv.strings("Name") or ["*"]
    out: list[Any] = []
    for pattern in patterns:
        compiled = wildcards.compile_pattern(pattern)
        matches = [name for name in shown if compiled.match(name) and name not in out]
        if not matches and not wildcards.has_wildcards(pattern):
            inv.errors.append(command_not_found(pattern))
        out += matches
    return [command_info(name, command_type(name)) for name in sorted(out, key=str.casefold)]
