"""The catalog: every remote operation the console can send, each a short sequence of cmdlets with a typed result.

Modules: host.py (test connection), inventory.py (refresh), guardians.py (E1: guardians, certificate store,
PFX), vms.py (E2: VMs, TPM, key protectors). `all_cmdlets()` is what the simulator must implement; a test keeps
the two equal.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..operation import Operation
from .host import HostFacts, TestConnection
from .inventory import (
    CertificateFacts,
    GuardianFacts,
    HostInventoryFacts,
    ReadHostInventory,
    ReadVmDetails,
    VmDetails,
    VmFacts,
)

OPTIONAL_MODULES = ("guardians", "vms")


def _load_optional_modules() -> None:
    """Import the catalog modules other engineers add (they may not exist yet in a given checkout) and offer
    their operations as attributes of the catalog too (`catalog.RemoveGuardian`)."""
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        module = importlib.import_module(f"{__name__}.{name}")
        for attr, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, Operation) and value.__module__ == module.__name__:
                globals().setdefault(attr, value)


def operations() -> list[type[Operation]]:  # type: ignore[type-arg]
    """Every concrete operation class of the catalog."""
    _load_optional_modules()
    found: list[type[Operation]] = []  # type: ignore[type-arg]
    todo = list(Operation.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith(__name__):
            found.append(cls)
    return found


def all_cmdlets() -> set[str]:
    """Every cmdlet name any catalog operation can send."""
    names: set[str] = set()
    for cls in operations():
        names |= cls.cmdlets()
    return names


_load_optional_modules()

__all__ = [
    "CertificateFacts",
    "GuardianFacts",
    "HostFacts",
    "HostInventoryFacts",
    "ReadHostInventory",
    "ReadVmDetails",
    "TestConnection",
    "VmDetails",
    "VmFacts",
    "all_cmdlets",
    "operations",
]
