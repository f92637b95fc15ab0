"""Writes that bypass a refresh — the vault's escrow, upload and delete, an admin's or a test's row, a deleted
host — update the stored analysis too, so it is never out of step with the rows whoever wrote them.

The vault sits below the inventory and imports nothing of it: the inventory listens to its rows' signals. A refresh
writes many rows and updates the analysis once for all of them, inside `facts.batched()`, where these stay quiet.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.db.models import Model
from django.db.models.signals import post_delete, post_migrate, post_save, pre_delete
from django.dispatch import receiver

from hosts.models import Host
from hosts.vault.models import EscrowedPair

from . import facts
from .models import Certificate, Guardian, HostInventory, LabAnalysis, VirtualMachine
from .rules import Pair

INVENTORY_ROWS = (Certificate, Guardian, HostInventory, VirtualMachine)
# Columns of a host's state that mean nothing to the analysis: saving only these (mark_stale) changes no fact.
STATE_ONLY = frozenset({"stale", "last_error", "error_kind", "attempted_at", "problems", "requests", "facts"})

# The guardians a row being deleted was part of, noted before it goes (its entries and holdings cascade with it),
# by ("vm" | "host", pk); and the hosts being deleted in this context, whose rows' own signals stay quiet.
_noted: dict[tuple[str, int], set[Pair]] = {}
_hosts_going: ContextVar[frozenset[int]] = ContextVar("inventory_hosts_going", default=frozenset())


def _skip(instance: Model, raw: bool = False) -> bool:
    host_id = getattr(instance, "host_id", None)
    return raw or facts.quiet() or host_id in _hosts_going.get()


@receiver(post_save, sender=Certificate)
@receiver(post_save, sender=Guardian)
@receiver(post_save, sender=VirtualMachine)
@receiver(post_save, sender=HostInventory)
def row_saved(sender: type[Model], instance: Any, raw: bool = False, update_fields: Any = None, **_: Any) -> None:
    if _skip(instance, raw) or (sender is HostInventory and update_fields and set(update_fields) <= STATE_ONLY):
        return
    facts.update(hosts={instance.host_id})


@receiver(pre_delete, sender=VirtualMachine)
def vm_deleting(sender: type[Model], instance: VirtualMachine, **_: Any) -> None:
    if not _skip(instance):
        _noted[("vm", instance.pk)] = set(facts.vm_pairs(instance))


@receiver(post_delete, sender=Certificate)
@receiver(post_delete, sender=Guardian)
@receiver(post_delete, sender=VirtualMachine)
@receiver(post_delete, sender=HostInventory)
def row_deleted(sender: type[Model], instance: Any, **_: Any) -> None:
    if _skip(instance):
        return
    pairs = _noted.pop(("vm", instance.pk), set()) if sender is VirtualMachine else set()
    facts.update(hosts={instance.host_id}, pairs=pairs)


@receiver(pre_delete, sender=Host)
def host_deleting(sender: type[Model], instance: Host, **_: Any) -> None:
    """Its rows go with it: remember what they touched, and keep their own signals quiet."""
    if facts.quiet():
        return
    _noted[("host", instance.pk)] = facts.touched_pairs({instance.pk})
    _hosts_going.set(_hosts_going.get() | {instance.pk})


@receiver(post_delete, sender=Host)
def host_deleted(sender: type[Model], instance: Host, **_: Any) -> None:
    pairs = _noted.pop(("host", instance.pk), None)
    if pairs is None:
        return
    _hosts_going.set(_hosts_going.get() - {instance.pk})
    facts.update(pairs=pairs)


@receiver(post_save, sender=EscrowedPair)
@receiver(post_delete, sender=EscrowedPair)
def vault_changed(sender: type[Model], instance: EscrowedPair, raw: bool = False, **_: Any) -> None:
    if not raw:
        facts.update(pairs={(instance.signing_thumbprint, instance.encryption_thumbprint)})


@receiver(post_migrate)
def analyse_after_migrate(sender: Any, app_config: Any = None, **_: Any) -> None:
    """The first migrate that brings the stored analysis (or a flushed database) computes it from the rows."""
    if getattr(app_config, "label", "") == "inventory" and not LabAnalysis.objects.exists():
        LabAnalysis.objects.get_or_create(pk=1)
        facts.rebuild()
