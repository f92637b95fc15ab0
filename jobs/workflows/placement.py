"""Where a vault pair's private keys may go: onto a host that has held the pair before, by anyone who may run jobs;
onto a host that never held it, only by an admin (whoever administers that host could take the keys, so placing them
there is as much an admin's decision as downloading them from the vault). Under the two-person policy
(settings.TWO_PERSON_APPROVAL) such an import also waits for a second admin's approval (import_guardian/kind.py).

"Has held it" is read from what the console knows: the host's last inventory (a guardian or a store certificate of the
pair), the host the pair was escrowed from, and the vault's earlier placements (hosts.vault.models.Placement, written
with a `vault.placed` audit event by every import of a pair onto a host: who asked, whether the keys are exportable).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from console.roles import can
from hosts.inventory.models import Certificate, Guardian
from hosts.models import Host
from hosts.vault.models import EscrowedPair, Placement
from hosts.vault.models import record_placement as placed
from jobs.kinds import JobFailed

# Placing a pair on a new host is allowed to whoever may download it from the vault: the same trust.
PLACE_ANYWHERE = "download_vault"


def has_held(host: Host, pair: EscrowedPair) -> bool:
    """Has `host` held this pair, as the inventory, the pair's origin and the audit trail tell?"""
    key = (pair.signing_thumbprint, pair.encryption_thumbprint)
    if pair.source_host_id == host.pk:
        return True
    if Guardian.objects.filter(host=host, signing_thumbprint=key[0], encryption_thumbprint=key[1]).exists():
        return True
    if Certificate.objects.filter(host=host, thumbprint__in=key).exists():
        return True
    if pair.pk is None:
        return False  # a pair about to be escrowed (a migration's carry) has no placement yet
    return Placement.objects.filter(pair=pair, host=host).exists()


def may_place(user: Any, host: Host, pair: EscrowedPair) -> bool:
    """`user` None is the console itself (as for jobs.services.create_job): no person to refuse."""
    return user is None or can(user, PLACE_ANYWHERE) or has_held(host, pair)


def placement_refusal(host: Host, pair: EscrowedPair) -> str:
    return _(
        "%(host)s has never held %(pair)s: putting its private keys on a new host is an admin action (anyone who "
        "administers that host could take them). Ask an admin to run it."
    ) % {"host": host, "pair": pair}


def check_placement(user: Any, host: Host, pair: EscrowedPair) -> None:
    """The job's own check, right before any key is sent: the page may have been skipped or the role changed since."""
    if not may_place(user, host, pair):
        raise JobFailed(placement_refusal(host, pair) + " " + _("Nothing was sent to the host."))


def allows_exportable(user: Any) -> bool:
    """Only an admin may ask for the keys to be imported exportable (so that they can be exported again there)."""
    return user is not None and can(user, PLACE_ANYWHERE)


def check_exportable(user: Any, exportable: bool) -> None:
    if exportable and not allows_exportable(user):
        raise JobFailed(_("Only an admin may import private keys as exportable. Nothing was sent to the host."))


def record_placement(user: Any, host: Host, pair: EscrowedPair, exportable: bool, job: int | None = None) -> None:
    """The vault's record that `host` now holds the pair's private keys, by whose job (with its audit event)."""
    placed(pair, host, user, exportable=exportable, job=job)
