"""Template tags of the inventory: the panels that the host page and the vault's page of a pair include (those
apps sit below the inventory, so they show its answers through templates), and small formatting helpers."""

from __future__ import annotations

from typing import Any

from django import template

from hosts.models import Host
from hosts.vault.models import EscrowedPair

from ..actions import Action, permitted
from ..analysis import Inventory
from ..dependents import dependents, sealed_vm_rows

register = template.Library()


@register.inclusion_tag("inventory/_host_inventory.html", takes_context=True)
def host_inventory(context: dict[str, Any], host: Host) -> dict[str, Any]:
    """Everything the host page shows about what the host holds, with "can it start here?" per VM."""
    inventory = Inventory()
    vms = [(vm, *inventory.can_start(vm, host)) for vm in inventory.vms if vm.host_id == host.pk]
    return {
        "host": host,
        "state": inventory.states.get(host.pk),
        "vms": vms,
        "guardians": [g for g in inventory.guardians if g.host_id == host.pk],
        "certificates": [c for c in inventory.certificates if c.host_id == host.pk],
        "risks": [r for r in inventory.risks() if r.host is not None and r.host.pk == host.pk],
        "guardian_actions": {g.pk: inventory.guardian_actions(g) for g in inventory.guardians if g.host_id == host.pk},
        "host_actions": inventory.host_actions(host),
        "user": context.get("user"),
        "perm_run_jobs": context.get("perm_run_jobs", False),
        "perm_destructive": context.get("perm_destructive", False),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("inventory/_pair_dependents.html", takes_context=True)
def pair_dependents(context: dict[str, Any], pair: EscrowedPair) -> dict[str, Any]:
    """Where a vault pair is installed and which VMs are sealed to it, with a restore offer where one cannot start
    (only on an intact entry, for users who may run jobs: the vault page's `integrity_error` and `can_run`)."""
    deps = dependents(pair)
    return {
        "deps": deps,
        "vm_rows": sealed_vm_rows(deps),
        "offer_restore": context.get("can_run", False) and not context.get("integrity_error"),
    }


@register.inclusion_tag("inventory/_actions.html", takes_context=True)
def action_links(context: dict[str, Any], actions: list[Action]) -> dict[str, Any]:
    """The links of the actions the page's user may run (none for a viewer)."""
    return {"actions": permitted(actions or [], context.get("user"))}


@register.filter
def lookup(mapping: dict[Any, Any], key: Any) -> Any:
    return mapping.get(key) if mapping else None


@register.filter
def short_thumbprint(value: str) -> str:
    """The first and last few digits, enough to tell thumbprints apart on a page; the full one is in the title."""
    value = value or ""
    return f"{value[:8]}…{value[-4:]}" if len(value) > 16 else value
