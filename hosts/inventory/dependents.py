"""Who depends on an escrowed pair: the hosts where it is installed, the VMs sealed to it, and whether each of those
VMs starts on its own host. The vault's page of a pair shows this through the inventory's `pair_dependents` tag:
the inventory reads the vault, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass, field

from hosts.vault.models import EscrowedPair

from . import reading
from .models import Guardian, KeyProtectorEntry, KnownGuardian, VirtualMachine

FIRST_VMS = 50  # the page lists these, and links to the VM list filtered on the pair for the rest


@dataclass
class Dependents:
    """Where a pair is installed (hosts whose guardian has these thumbprints) and which VMs are sealed to it."""

    installed: list[Guardian] = field(default_factory=list)
    vms: list[VirtualMachine] = field(default_factory=list)  # the first FIRST_VMS, by name
    vm_count: int = 0
    owner_of: set[int] = field(default_factory=set)  # ids of VMs whose owner is this pair
    guardian: KnownGuardian | None = None  # the pair as the inventory knows it (None: no host or VM names it)


def dependents(pair: EscrowedPair) -> Dependents:
    """Indexed queries on the stored key-protector entries (a VM is sealed to the pair when its key protector lists
    it or names it as owner), whatever the number of VMs."""
    key = (pair.signing_thumbprint.upper(), pair.encryption_thumbprint.upper())
    found = Dependents()
    found.installed = list(
        Guardian.objects.filter(signing_thumbprint=key[0], encryption_thumbprint=key[1]).select_related("host")
    )
    found.guardian = KnownGuardian.objects.filter(signing_thumbprint=key[0], encryption_thumbprint=key[1]).first()
    if found.guardian is None:
        return found
    entries = KeyProtectorEntry.objects.filter(guardian=found.guardian)
    found.vm_count = entries.count()
    chosen = entries.select_related("vm", "vm__host").order_by("vm__name", "vm__host__name")[:FIRST_VMS]
    for entry in chosen:
        found.vms.append(entry.vm)
        if entry.owner:
            found.owner_of.add(entry.vm_id)
    return found


def sealed_vm_rows(deps: Dependents) -> list[dict[str, object]]:
    """The VMs sealed to a pair, each with whether it starts on its own host: the restore button goes where it can't."""
    answers = reading.start_verdicts([(vm, vm.host) for vm in deps.vms])
    rows: list[dict[str, object]] = []
    for vm, (starts, why) in zip(deps.vms, answers, strict=True):
        rows.append(
            {
                "vm": vm,
                "owner": vm.pk in deps.owner_of,
                "starts": starts,  # None: not inventoried or unreadable, so no restore is offered on a guess
                "why": why,
            }
        )
    return rows
