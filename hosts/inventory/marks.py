"""Marking a VM or a guardian lost or retired, and unmarking it: each change audited. Pages hide the risks of what is
marked (reading.py) and list the marks, with the way back, on the marks page."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from console.models import AuditEvent

from .models import KnownGuardian, Mark, VirtualMachine


def mark_vm(user: Any, vm: VirtualMachine, state: str) -> Mark:
    """Mark the VM `state` (lost | retired); marking it again changes the state."""
    with transaction.atomic():
        mark, _ = Mark.objects.update_or_create(
            host=vm.host, vm_id=vm.vm_id, defaults={"name": str(vm), "state": state, "marked_by": _who(user)}
        )
        AuditEvent.record(user, f"vm.mark_{state}", vm, host=vm.host.name, vm_id=vm.vm_id)
    return mark


def mark_guardian(user: Any, guardian: KnownGuardian, state: str) -> Mark:
    with transaction.atomic():
        mark, _ = Mark.objects.update_or_create(
            signing_thumbprint=guardian.signing_thumbprint,
            encryption_thumbprint=guardian.encryption_thumbprint,
            defaults={"name": guardian.display_name, "state": state, "marked_by": _who(user)},
        )
        AuditEvent.record(user, f"guardian.mark_{state}", guardian, signing=guardian.signing_thumbprint)
    return mark


def unmark(user: Any, mark: Mark) -> None:
    """Take the mark away: its risks are shown again."""
    with transaction.atomic():
        kind = "vm" if mark.is_vm else "guardian"
        AuditEvent.record(user, f"{kind}.unmark", mark, was=mark.state, name=mark.name)
        mark.delete()


def _who(user: Any) -> str:
    return user.get_username() if getattr(user, "is_authenticated", False) else ""


# -- what pages filter with: one subquery each, so a page keeps its number of queries --------------------------------


def vm_marked() -> Exists:
    """For VirtualMachine rows: marked lost or retired."""
    return Exists(Mark.objects.filter(host=OuterRef("host"), vm_id=OuterRef("vm_id"), vm_id__gt=""))


def pair_marked(signing: str = "signing_thumbprint", encryption: str = "encryption_thumbprint") -> Exists:
    """For rows carrying a guardian pair (Guardian, KnownGuardian): that guardian is marked."""
    return Exists(
        Mark.objects.filter(
            signing_thumbprint=OuterRef(signing), encryption_thumbprint=OuterRef(encryption), signing_thumbprint__gt=""
        )
    )


def mark_of_vm(vm: VirtualMachine) -> Mark | None:
    return Mark.objects.filter(host=vm.host_id, vm_id=vm.vm_id, vm_id__gt="").first()


def mark_of_guardian(guardian: KnownGuardian) -> Mark | None:
    return Mark.objects.filter(
        signing_thumbprint=guardian.signing_thumbprint, encryption_thumbprint=guardian.encryption_thumbprint
    ).first()


def all_marks() -> QuerySet[Mark]:
    return Mark.objects.select_related("host").order_by("-marked_at", "pk")


def page_of_marked(mark: Mark) -> str:
    """The page of what a mark is about (its VM or its guardian), or the marks page when it is gone."""
    if mark.is_vm:
        vm = VirtualMachine.objects.filter(host=mark.host_id, vm_id=mark.vm_id).only("pk").first()
        return f"/vms/{vm.pk}/" if vm is not None else "/marks/"
    return f"/guardians/{mark.signing_thumbprint}-{mark.encryption_thumbprint}/"
