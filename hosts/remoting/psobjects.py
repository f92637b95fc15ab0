"""Defensive readers for deserialized PowerShell objects (pypsrp GenericComplexObject and primitives).

Properties may be adapted or extended, enums arrive as objects with a to_string, DateTime as ISO strings with
seven fractional digits, booleans sometimes as strings. Every reader returns a plain Python value or a default,
never raises on an odd shape: a host's reply is input, not trusted structure.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from pypsrp.complex_objects import ComplexObject, GenericComplexObject
from pypsrp.serializer import Serializer


def type_names(obj: Any) -> list[str]:
    names = getattr(obj, "types", None) or []
    return [n[len("Deserialized.") :] if n.startswith("Deserialized.") else n for n in names if isinstance(n, str)]


def has_type(obj: Any, *fragments: str) -> bool:
    """Whether any of the object's type names contains one of the fragments (case-insensitive)."""
    names = " ".join(type_names(obj)).lower()
    return any(f.lower() in names for f in fragments)


def props(obj: Any) -> dict[str, Any]:
    """All properties of an object, adapted first, then extended (note) properties on top."""
    if not isinstance(obj, ComplexObject):
        return {}
    merged: dict[str, Any] = {}
    for source in (getattr(obj, "adapted_properties", None), getattr(obj, "extended_properties", None)):
        if isinstance(source, dict):
            merged.update(source)
    return merged


def prop(obj: Any, *names: str, default: Any = None) -> Any:
    """The first present property among names (case-insensitive), else default."""
    all_props = props(obj)
    lowered = {k.lower(): v for k, v in all_props.items() if isinstance(k, str)}
    for name in names:
        if name in all_props:
            return all_props[name]
        if name.lower() in lowered:
            return lowered[name.lower()]
    return default


def text(value: Any, default: str = "") -> str:
    """A string for a primitive, an enum (its to_string) or an object (its ToString)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, bytes):
        return default
    if isinstance(value, GenericComplexObject):
        if value.to_string:
            return str(value.to_string)
        inner = prop(value, "Value")
        return text(inner, default) if inner is not None else default
    shown = getattr(value, "to_string", None) or getattr(value, "_to_string", None)
    if isinstance(shown, str):
        return shown
    return str(value)


def enum_name(value: Any, names: Mapping[int, str]) -> str:
    """The name of an enum value that may arrive as its number (a WMI uint16), as a digit string, or as its name (in
    any case, or as a deserialized enum object); '' when it is none of the known ones."""
    if isinstance(value, GenericComplexObject):
        value = value.to_string or prop(value, "value__", "Value")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return names.get(value, "")
    if isinstance(value, str):
        return next((n for n in names.values() if n.casefold() == value.strip().casefold()), "")
    return ""


def flag(value: Any, default: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "$true"):
            return True
        if lowered in ("false", "0", "no", "$false", ""):
            return False
    return default


def known_flag(value: Any) -> bool | None:
    """A boolean property as sent ($true/$false, or their text); None when it is missing or something else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def known_number(value: Any) -> int | None:
    """A whole-number property as sent (a number, its text, or an enum's value); None when it is missing or
    something else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, GenericComplexObject):
        return known_number(prop(value, "value__", "Value"))
    return None


def number(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    found = known_number(value)
    return default if found is None else found


_FRACTION = re.compile(r"\.(\d+)")


def timestamp(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime from a CLIXML DateTime ('2026-01-02T03:04:05.1234567+01:00'), else None.
    A DateTime without offset is read as UTC, which is what the console stores."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    raw = text(value).strip()
    if not raw:
        return None
    raw = raw.replace("Z", "+00:00")
    raw = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), raw, count=1)
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# Characters XML 1.0 does not allow. Windows PowerShell escapes them as _xHHHH_ in property values but, as the
# simulator does too, may leave them raw in an object's <ToString>; pypsrp then cannot parse the object at all and
# hands over its CLIXML text instead.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def repaired(value: Any) -> tuple[Any, bool]:
    """An output object pypsrp could not parse (it gives its CLIXML as text), parsed again with the characters XML
    does not allow escaped the way CLIXML escapes them: (the object, True). Anything else: (value, False)."""
    if not (isinstance(value, str) and value.startswith("<Obj ") and _NOT_XML.search(value)):
        return value, False
    escaped = _NOT_XML.sub(lambda m: f"_x{ord(m.group()):04X}_", value)
    try:
        parsed = Serializer().deserialize(escaped)
    except Exception:  # noqa: BLE001 - still not CLIXML pypsrp can read: the caller notes it as unreadable
        return value, False
    return (parsed, True) if isinstance(parsed, ComplexObject) else (value, False)


def printable(value: str) -> str:
    """A host's text for a message: control characters shown as escapes (\\x07), everything else as it is."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", value)


def unparsed(value: Any) -> bool:
    """Whether an output is CLIXML text pypsrp gave up on (and repaired() could not mend)."""
    return isinstance(value, str) and value.startswith("<Obj ")


def byte_string(value: Any) -> bytes:
    """Bytes from a byte[] that arrived as bytes, or as a list of small integers."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    return b""
