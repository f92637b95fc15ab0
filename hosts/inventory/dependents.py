"""Who depends on an escrowed pair: the hosts where it is installed, the VMs sealed to it, and whether each of those
VMs starts on its own host. The vault's page of a pair shows this through the inventory's `pair_dependents` tag:
the inventory reads the vault, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass, field

from hosts.vault.models import EscrowedPair
from hosts.vault.services import thumbprint_pairs

from .analysis import Inventory
from .models import Guardian, VirtualMachine


@dataclass
class Dependents:
    """Where a pair is installed (hosts whose guardian has these thumbprints) and which VMs are sealed to it."""

    installed: list[Guardian] = field(default_factory=list)
    vms: list[VirtualMachine] = field(default_factory=list)
    owner_of: set[int] = field(default_factory=set)  # ids of VMs whose owner is this pair


def dependents(pair: EscrowedPair) -> Dependents:
    """Lab-sized data, so VMs are scanned in Python (JSON containment queries are not portable to SQLite)."""
    found = Dependents()
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    found.installed = list(
        Guardian.objects.filter(signing_thumbprint=key[0], encryption_thumbprint=key[1]).select_related("host")
    )
    for vm in VirtualMachine.objects.select_related("host"):
        owners = thumbprint_pairs(vm.kp_owner_thumbprints)
        if key in owners or key in thumbprint_pairs(vm.kp_guardian_thumbprints):
            found.vms.append(vm)
            if key in owners:
                found.owner_of.add(vm.pk)
    return found


def sealed_vm_rows(deps: Dependents) -> list[dict[str, object]]:
    """The VMs sealed to a pair, each with whether it starts on its own host: the restore button goes where it can't."""
    inventory = Inventory() if deps.vms else None
    rows: list[dict[str, object]] = []
    for vm in deps.vms:
        starts, why = inventory.can_start(vm, vm.host) if inventory else (None, "")
        if why.startswith("Unknown"):  # not inventoried or unreadable: offer no restore on a guess
            starts = None
        rows.append({"vm": vm, "owner": vm.pk in deps.owner_of, "starts": starts, "why": why})
    return rows
