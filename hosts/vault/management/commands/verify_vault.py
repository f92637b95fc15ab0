"""`manage.py verify_vault`: open every vault entry as an import would, and name the damaged ones.

Meant for a nightly check: exit status 1 when any entry is damaged or tampered (each is also written to the audit
trail), so a broken entry is found long before the day it is needed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from console.models import AuditEvent
from hosts import crypto
from hosts.vault.models import EscrowedPair


class Command(BaseCommand):
    help = "Check that every escrowed pair opens, matches its SHA-256 and its thumbprints."

    def handle(self, *args: Any, **options: Any) -> None:
        damaged = 0
        for pair in EscrowedPair.objects.order_by("pk"):
            try:
                pair.open()
            except crypto.SecretError as exc:
                damaged += 1
                AuditEvent.record(None, "vault.tampered", pair, reason=str(exc))
                self.stdout.write(self.style.ERROR(f"#{pair.pk} {exc}"))
            else:
                if not pair.opened_seal:  # stored before pages could check cheaply: now they can
                    pair.record_opened()
        total = EscrowedPair.objects.count()
        if damaged:
            raise CommandError(f"{damaged} of {total} vault entries are damaged; restore them from a backup.")
        self.stdout.write(self.style.SUCCESS(f"All {total} vault entries are intact."))
