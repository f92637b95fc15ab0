"""Output as PowerShell remoting serializes it: to depth 1.

The top-level object keeps its properties; a property that holds an object arrives as that object's ToString() text,
an enum as its name, and a collection as a list whose objects are texts. Byte arrays, strings, numbers, booleans,
GUIDs, dates and time spans stay what they are at any depth. The recordings show it: a ServiceController's
`ServicesDependedOn` arrives as `<LST><S>RPCSS</S><S>HTTP</S></LST>`, its `Status` as `<S>Running</S>` and its
`ServiceHandle` as `<S>SafeServiceHandle</S>` (test_psrp_multiple_commands.yml).

A type may declare a greater SerializationDepth in its types file; none of the types the simulator sends is known
to, so none is listed here (name the source when adding one).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

from psrpcore.types import PSNoteProperty, PSObject, PSSecureString, PSVersion

from hypervsim.cmdlets.utility import text_of

_PRIMITIVE = (
    *(str, bool, int, float, bytes, bytearray, uuid.UUID, dt.datetime, dt.timedelta, decimal.Decimal),
    *(PSSecureString, PSVersion),
)


def at_depth_one(value: Any) -> Any:
    """The value as a client receives it: nested objects of an object replaced by their text."""
    meta = getattr(value, "PSObject", None)
    if _is_primitive(value) or meta is None or isinstance(value, list | dict):
        return value
    flat = PSObject()
    flat.PSObject.type_names = list(meta.type_names)
    flat.PSObject.to_string = meta.to_string
    for source, target in (
        (meta.adapted_properties, flat.PSObject.adapted_properties),
        (meta.extended_properties, flat.PSObject.extended_properties),
    ):
        for prop in source:
            target.append(PSNoteProperty(prop.name, _at_depth_zero(prop.get_value(value))))
    return flat


def _at_depth_zero(value: Any) -> Any:
    """A property of the top-level object: collections are still listed, one level down everything is text."""
    if isinstance(value, list | tuple):
        return [_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_text(item) for key, item in value.items()}
    return _as_text(value)


def _as_text(value: Any) -> Any:
    if _is_primitive(value):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    meta = getattr(value, "PSObject", None)
    if meta is not None and meta.to_string is None and meta.type_names:
        return str(meta.type_names[0])  # .NET's default ToString() is the type's name
    return text_of(value)


def _is_primitive(value: Any) -> bool:
    return value is None or (isinstance(value, _PRIMITIVE) and not isinstance(value, enum.Enum))
