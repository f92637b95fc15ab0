"""Template tags of the inventory: the panels that the host page and the vault's page of a pair include (those
apps sit below the inventory, so they show its answers through templates), and small formatting helpers."""

from __future__ import annotations

from typing import Any

from django import template

from console.params import page_of
from hosts.models import Host
from hosts.vault.models import EscrowedPair

from .. import labmap, reading, rules
from ..actions import Action, permitted
from ..dependents import dependents, sealed_vm_rows
from ..models import Certificate, Guardian, HostInventory, KnownGuardian, VirtualMachine
from ..vmstates import vm_state_words

register = template.Library()

VMS_PER_HOST_PAGE = 100
RISKS_PER_KIND = 10


@register.inclusion_tag("inventory/_host_inventory.html", takes_context=True)
def host_inventory(context: dict[str, Any], host: Host) -> dict[str, Any]:
    """Everything the host page shows about what the host holds, with "can it start here?" per VM (a page of them),
    and the host's risks of each kind (the first few, linking to all)."""
    request = context.get("request")
    vms = VirtualMachine.objects.filter(host=host).order_by("name", "pk")
    listing = page_of(request, vms, VMS_PER_HOST_PAGE, param="vms") if request else None
    shown = list(listing.page) if listing else list(vms[:VMS_PER_HOST_PAGE])
    answers = reading.start_answers([(vm, host) for vm in shown])
    guardians = list(Guardian.objects.filter(host=host).select_related("host"))
    return {
        "host": host,
        "state": HostInventory.objects.filter(host=host).first(),
        "vms": [(vm, ok, reason) for vm, (ok, reason) in zip(shown, answers, strict=True)],
        "vm_listing": listing,
        "guardians": guardians,
        "certificates": Certificate.objects.filter(host=host).order_by("subject", "thumbprint"),
        "risk_groups": [g for g in reading.risk_groups(first=RISKS_PER_KIND, host=host) if g.count],
        "guardian_actions": reading.guardian_actions(host, guardians),
        "host_actions": reading.host_actions(host),
        "user": context.get("user"),
        "perm_run_jobs": context.get("perm_run_jobs", False),
        "perm_destructive": context.get("perm_destructive", False),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("inventory/_lab_map.html")
def lab_map(hosts: list[Host], more_hosts: int = 0, map_id: str = "lab-map") -> dict[str, Any]:
    """The lab as a picture for these hosts (the dashboard's attention-first list, or one host)."""
    picture = labmap.lab_map(list(hosts), more_hosts)
    return {"picture": picture, "nodes": [picture.hosts, picture.guardians, picture.vms], "map_id": map_id}


@register.inclusion_tag("inventory/_lab_map.html")
def host_lab_map(host: Host) -> dict[str, Any]:
    """One host's part of the picture: its guardians, and the VMs sealed to them wherever they are."""
    return lab_map([host], map_id="host-lab-map")


@register.inclusion_tag("inventory/_pair_dependents.html", takes_context=True)
def pair_dependents(context: dict[str, Any], pair: EscrowedPair) -> dict[str, Any]:
    """Where a vault pair is installed and which VMs are sealed to it (the first of them), with a restore offer where
    one cannot start (only on an intact entry, for users who may run jobs: the vault page's `integrity_error` and
    `can_run`)."""
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
def index(items: list[Any], position: int) -> Any:
    return items[position]


@register.filter
def short_thumbprint(value: str) -> str:
    """The first and last few digits, enough to tell thumbprints apart on a page; the full one is in the title."""
    value = value or ""
    return f"{value[:8]}…{value[-4:]}" if len(value) > 16 else value


@register.filter
def risk_title(code: str) -> str:
    """A risk code's title in the reader's language."""
    return rules.risk_title(code)


@register.filter
def guardian_name(guardian: KnownGuardian) -> str:
    """A known guardian's name in the reader's language (rules.shown_name)."""
    return rules.shown_name(guardian.display_name, guardian.subject)


@register.filter
def vm_state(state: str | None) -> str:
    """A VM's state (Hyper-V's name: Running, Off, Saved…) as Hyper-V Manager shows it in the active language."""
    return vm_state_words(state or "")
