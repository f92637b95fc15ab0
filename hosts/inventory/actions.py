"""The next step for what the inventory shows: links to the workflow pages that fix a risk or change a VM.

Each action carries the permission its page requires, so pages show it only to users whose role may run it
(`permitted`). URLs are reversed from the workflows' URL names: a workflow that is not installed offers nothing,
rather than a link that 404s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from console.roles import can
from hosts.models import Host

from .models import VirtualMachine

RUN_JOBS, DESTRUCTIVE = "run_jobs", "run_destructive_jobs"


@dataclass(frozen=True)
class Action:
    """Built when a page asks (labels in the reader's language); never stored."""

    code: str  # restore, restore_all, upload, rescue, escrow, escrow_all, reset, vtpm_off, vtpm_off_many, vtpm_on, …
    label: str
    url: str
    permission: str
    style: str = "secondary"  # button style: secondary | danger


def _url(name: str, **query: Any) -> str | None:
    try:
        base = reverse(name)
    except NoReverseMatch:
        return None
    # ':' stays readable in "signing:encryption"; everything else (a guardian's name) is encoded.
    return f"{base}?{urlencode(query, safe=':')}" if query else base


def _action(code: str, label: str, name: str, permission: str, style: str = "secondary", **query: Any) -> list[Action]:
    url = _url(name, **query)
    return [Action(code, label, url, permission, style)] if url else []


def restore(host: Host, vm_name: str) -> list[Action]:
    return _action("restore", _("Restore…"), "restore_preflight", RUN_JOBS, host=host.pk, vm=vm_name)


def rescue(host: Host, vm_name: str) -> list[Action]:
    label = _("Rescue as a new VM without vTPM…")
    return _action("rescue", label, "rescue_preflight", RUN_JOBS, "danger", host=host.pk, vm=vm_name)


def lost_keys(host: Host, vm_name: str, vtpm_off: bool = True) -> list[Action]:
    """For a VM no host can start and the vault cannot help: the two ways out that need no keys (domain.md) — the
    vTPM off only where Hyper-V allows it (`vtpm_off`) — and the upload of a backup that may exist elsewhere."""
    query = {"host": host.pk, "vm": vm_name, "action": "disable"}
    off = _action("vtpm_off", _("Turn vTPM off…"), "vtpm_preflight", DESTRUCTIVE, "danger", **query) if vtpm_off else []
    return rescue(host, vm_name) + off + upload_backup()


def upload_backup() -> list[Action]:
    return _action("upload", _("Upload a backup…"), "vault_upload", RUN_JOBS)


def escrow(host: Host, pair: tuple[str, str]) -> list[Action]:
    guardian = f"{pair[0]}:{pair[1]}"
    return _action("escrow", _("Escrow…"), "escrow_preflight", RUN_JOBS, host=host.pk, guardian=guardian)


def escrow_all(host: Host) -> list[Action]:
    label = _("Escrow every pair on this host…")
    return _action("escrow_all", label, "escrow_preflight", RUN_JOBS, host=host.pk, guardian="all")


def restore_all(host: Host) -> list[Action]:
    label = _("Restore every restorable VM…")
    return _action("restore_all", label, "restore_all_preflight", RUN_JOBS, host=host.pk)


def vtpm_off_selection(host: Host) -> list[Action]:
    """The vTPM page for the host: tick the VMs, type each one's name."""
    label = _("Turn vTPM off for several VMs…")
    return _action("vtpm_off_many", label, "vtpm_preflight", DESTRUCTIVE, "danger", host=host.pk, action="disable")


def reset(host: Host, guardian_name: str) -> list[Action]:
    return _action("reset", _("Reset…"), "reset_preflight", DESTRUCTIVE, "danger", host=host.pk, guardian=guardian_name)


def vtpm(host: Host, vm_name: str, enabled: bool) -> list[Action]:
    query: dict[str, Any]
    if enabled:
        query = {"host": host.pk, "vm": vm_name, "action": "disable"}
        return _action("vtpm_off", _("Turn vTPM off…"), "vtpm_preflight", DESTRUCTIVE, "danger", **query)
    query = {"host": host.pk, "vm": vm_name, "action": "enable"}
    return _action("vtpm_on", _("Turn vTPM on…"), "vtpm_preflight", DESTRUCTIVE, **query)


def migrate(host: Host, vm_name: str) -> list[Action]:
    return _action("migrate", _("Migrate…"), "migrate_wizard", RUN_JOBS, host=host.pk, vm=vm_name)


def for_vm(vm: VirtualMachine) -> list[Action]:
    """Move the VM, and turn its vTPM off or on (generation 2 VMs only have one)."""
    found = migrate(vm.host, vm.name)
    if vm.generation == 2:
        found += vtpm(vm.host, vm.name, vm.tpm_enabled)
    return found


def import_guardian(entry_pk: int, host: Host) -> list[Action]:
    label = _("Import the escrowed guardian here…")
    return _action("import", label, "import_guardian_preflight", RUN_JOBS, pair=entry_pk, host=host.pk)


def vault_entry_url(pk: int | None) -> str:
    """The vault's page of an escrowed pair ('' when there is none, or no vault)."""
    if pk is None:
        return ""
    try:
        return reverse("vault_detail", args=[pk])
    except NoReverseMatch:
        return ""


def permitted(actions: list[Action], user: Any) -> list[Action]:
    """The actions this user's role may run: pages never offer a button that ends on a 403."""
    return [a for a in actions if user is not None and can(user, a.permission)]
